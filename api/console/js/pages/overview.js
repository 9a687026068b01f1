// Overview: KPI cards against the previous window, then the tenant's widget layout (GET
// /dashboard/widgets: GMV trend, volume, float and conversion gauges, top countries, alerts by
// default; add / remove / move for those who may edit it), and the live activity feed.

import { api } from "../api.js";
import { actionButton, badge, clear, errorBox, h, fill, modal, statusLabel, table, toast } from "../dom.js";
import { merchantLink } from "../links.js";
import { count, dateTime, delta, majorToNumber, money, prefs, rate, shortLabel, time } from "../format.js";
import * as live from "../live.js";
import { renderMiniMap } from "./agents.js";
import { topThree } from "./recommendations.js";

const PALETTE = ["#2456d3", "#13795b", "#c0362c", "#a15c00", "#7a2fd1", "#0e7490", "#be185d", "#4d7c0f"];
// time axes: horizontal labels, as many as fit (Chart.js skips the rest)
const TIME_TICKS = { maxRotation: 0, autoSkip: true, autoSkipPadding: 12, maxTicksLimit: 8 };

function kpiCard(id, label, value, pair, { inverse = false, note } = {}) {
  const d = note ? { text: note, dir: "flat" } : delta(pair?.value, pair?.previous);
  return h("div", { class: "panel kpi", "data-kpi": id },
    h("div", { class: "label" }, label),
    h("div", { class: "value", "data-testid": `kpi-${id}` }, value),
    h("div", { class: `delta ${d.dir}${inverse ? " inverse" : ""}` }, d.text));
}

function chart(canvas, config) {
  if (!window.Chart) return null;
  return new window.Chart(canvas, { ...config, options: { responsive: true, maintainAspectRatio: false, animation: false, ...config.options } });
}

const EXAMPLES = {
  kpi: { metric: "gmv" }, trend: { metric: "gmv" }, breakdown: { by: "source", metric: "gmv", limit: 5 },
  gauge: { metric: "success_rate", min: 0, max: 1, thresholds: [{ at: 0, level: "bad" }, { at: 0.9, level: "ok" }] },
  table: { query: "recent_payouts", limit: 10 }, alerts: { severity: ["critical", "high"] }, map: {},
};
const MONEY = ["gmv", "net_revenue", "fees", "refunds", "average_transaction", "float_available"];
const isMoney = (m) => MONEY.includes(m);
const isRate = (m) => m.endsWith("_rate");

// a metric of the Overview's answer: counts and rates for all currencies, money per currency
function overviewValue(ov, metric, currency) {
  if (!isMoney(metric)) return ov.kpis[metric];
  const block = ov.by_currency.find((c) => c.currency === currency) || ov.by_currency[0];
  return block ? block[metric] : null;
}

function gauge(cfg, value, currency) {
  const span = cfg.max - cfg.min;
  const pct = value === null || value === undefined ? 0 : Math.max(0, Math.min(100, ((value - cfg.min) / span) * 100));
  const level = [...cfg.thresholds].reverse().find((t) => value !== null && value !== undefined && value >= t.at)?.level || "none";
  const shown = cfg.metric === "float_available" ? money(value, currency) : rate(value);
  return h("div", { class: `gauge ${level}`, "data-level": level },
    h("div", { class: "gauge-value", "data-testid": `gauge-${cfg.metric}` }, shown),
    h("div", { class: "gauge-track", role: "meter", "aria-valuemin": cfg.min, "aria-valuemax": cfg.max, "aria-valuenow": value ?? "" },
      h("span", { class: "gauge-fill", style: `width:${pct.toFixed(1)}%` })),
    h("div", { class: "gauge-scale muted" },
      h("span", {}, cfg.metric === "float_available" ? money(cfg.min, currency) : rate(cfg.min)),
      h("span", {}, cfg.metric === "float_available" ? money(cfg.max, currency) : rate(cfg.max))));
}

// `embedded`: the merchant portal's dashboard draws the cards and widgets inside its own page, with
// its own heading and activity feed.
export async function render({ root, me, embedded = false }) {
  const charts = [];
  const widgetCharts = [];
  const state = { period: "24h", currency: null };
  const periodSel = h("select", { id: "period" },
    [["24h", "Last 24 hours"], ["7d", "Last 7 days"], ["30d", "Last 30 days"], ["90d", "Last 90 days"]]
      .map(([v, l]) => h("option", { value: v }, l)));
  const currencySel = h("select", { id: "currency" });
  const body = h("div", {});
  const recs = h("div", {});
  topThree(me).then((box) => recs.append(box)).catch(() => {});
  const feed = h("ol", { class: "feed", "aria-live": "polite", "data-testid": "live-feed" });
  root.append(
    h("div", { class: "row" },
      embedded ? h("h2", {}, "Key figures") : me.is_merchant_user ? h("h1", {}, "Overview · ", merchantLink(me.merchant_id)) : h("h1", {}, "Overview"),
      h("span", { class: "spacer" }),
      h("label", { for: "period" }, "Period", periodSel),
      h("label", { for: "currency" }, "Currency", currencySel)),
    body,
    embedded ? "" : recs,
    embedded ? "" : h("section", { class: "panel", "aria-labelledby": "feed-title" },
      h("h2", { id: "feed-title" }, "Live activity"),
      feed));
  feed.append(h("li", { class: "muted" }, "Waiting for activity…"));

  async function load() {
    charts.splice(0).forEach((c) => c && c.destroy());
    clear(body).append(h("p", { class: "muted" }, "Loading…"));
    let overview;
    try {
      overview = await api("/dashboard/overview", { params: { period: state.period } });
    } catch (err) {
      clear(body).append(errorBox(err));
      return;
    }
    const currencies = overview.by_currency.map((c) => c.currency);
    if (!state.currency || !currencies.includes(state.currency)) state.currency = currencies[0] || null;
    clear(currencySel).append(...currencies.map((c) => h("option", { value: c, selected: c === state.currency }, c)));
    currencySel.disabled = !currencies.length;
    const cur = overview.by_currency.find((c) => c.currency === state.currency);
    const k = overview.kpis;
    const cards = [];
    if (cur) {
      const m = (pair) => money(pair.value, cur.currency);
      cards.push(
        kpiCard("gmv", `GMV (${cur.currency})`, m(cur.gmv), cur.gmv),
        kpiCard("net_revenue", "Net revenue", m(cur.net_revenue), cur.net_revenue),
        kpiCard("fees", "Fees", m(cur.fees), cur.fees),
        kpiCard("average_transaction", "Average transaction", m(cur.average_transaction), cur.average_transaction),
        me.is_merchant_user ? kpiCard("float_available", "Balance available", m(cur.float_available), cur.float_available, { note: "balance now" })
          : kpiCard("float_available", "Float available", m(cur.float_available), cur.float_available, { note: "balance now, all merchants" }),
        kpiCard("payouts_settled", "Payouts settled", `${count(cur.payouts.settled.count.value)} · ${money(cur.payouts.settled.amount_minor.value, cur.currency)}`, cur.payouts.settled.count),
      );
    }
    // DLQ counts mix currencies: the total, and how it splits per currency
    const dlq = overview.by_currency.map((c) => [c.currency, c.payouts.dlq?.count?.value || 0, c.payouts.dlq?.count?.previous || 0]);
    const dlqTotal = dlq.reduce((n, [, v]) => n + v, 0);
    const dlqSplit = dlq.filter(([, v]) => v > 0).map(([c, v]) => `${count(v)} ${c}`).join(" · ");
    if (overview.by_currency.length) {
      cards.push(kpiCard("payouts_dlq", "Payouts in DLQ", count(dlqTotal), null,
        { inverse: true, note: dlqTotal ? dlqSplit : "none, all currencies" }));
    }
    cards.push(
      kpiCard("transactions", "Transactions", count(k.transactions.value), k.transactions),
      kpiCard("success_rate", "Success rate", rate(k.success_rate.value), k.success_rate),
      kpiCard("fraud_rate", "Fraud rate", rate(k.fraud_rate.value), k.fraud_rate, { inverse: true }),
    );
    // the window's last bucket ends in the future; the header says "now" instead
    const to = new Date(overview.window.to) > new Date() ? "now" : dateTime(overview.window.to);
    const windowNote = h("p", { class: "muted", "data-testid": "window" }, `${dateTime(overview.window.from)} – ${to} (${prefs.tz}), compared with the ${state.period} before.`);
    clear(body).append(windowNote,
      h("section", { class: "grid kpis", "aria-label": "Key figures", "data-testid": "kpis" }, cards),
      widgetsBox);
    await renderWidgets();
    body.dataset.loaded = "true";
  }

  // --- the layout's widgets (GET /dashboard/widgets): each drawn from its own data endpoint ---
  const widgetsBox = h("section", { "aria-label": "Widgets", "data-testid": "widgets" });
  let catalog = null;

  async function renderWidgets() {
    widgetCharts.splice(0).forEach((c) => c && c.destroy());
    let layout;
    try {
      layout = await api("/dashboard/widgets");
    } catch (err) {
      fill(widgetsBox, errorBox(err));
      return;
    }
    const ids = layout.data.map((w) => w.id);
    const tools = layout.can_edit
      ? h("div", { class: "row widget-tools" }, h("span", { class: "spacer" }),
        actionButton("Add widget", addWidget, { "data-testid": "add-widget" }))
      : null;
    const grid = h("div", { class: "grid charts widgets-grid", "data-testid": "widget-grid" },
      layout.data.map((w, i) => widgetPanel(w, i, ids, layout.can_edit)));
    if (!layout.data.length) grid.append(h("p", { class: "muted" }, "No widgets on this dashboard."));
    fill(widgetsBox, tools, grid);
    widgetsBox.dataset.count = String(layout.data.length);
  }

  async function move(ids, i, by) {
    const order = ids.slice();
    [order[i], order[i + by]] = [order[i + by], order[i]];
    await api("/dashboard/widgets/reorder", { method: "POST", body: { ids: order } });
    await renderWidgets();
  }

  async function addWidget() {
    catalog = catalog || await api("/dashboard/widgets/catalog");
    const values = await modal("Add a widget", [
      { name: "kind", label: "Kind", type: "select", options: catalog.map((c) => ({ value: c.kind, label: `${c.label} — ${c.description.split("\n")[0]}` })) },
      { name: "name", label: "Title", help: "empty: the kind's name" },
      { name: "config", label: "Config (JSON)", type: "textarea",
        help: "empty: the kind's example — " + Object.entries(EXAMPLES).map(([k, v]) => `${k}: ${JSON.stringify(v)}`).join("; ") },
    ], { submit: "Add" });
    if (!values) return;
    let config;
    try {
      config = values.config.trim() ? JSON.parse(values.config) : EXAMPLES[values.kind];
    } catch {
      toast("Config is not valid JSON", "error");
      return;
    }
    await api("/dashboard/widgets", { method: "POST", body: { kind: values.kind, title: values.name.trim() || null, config } });
    toast("Widget added");
    await renderWidgets();
  }

  function widgetPanel(w, i, ids, canEdit) {
    const content = h("div", { class: "widget-body" }, h("p", { class: "muted" }, "Loading…"));
    const controls = canEdit ? h("span", { class: "widget-controls" },
      actionButton("↑", () => move(ids, i, -1), { title: "Move up", "aria-label": `Move ${w.title} up`, "data-move-up": w.id, disabled: i === 0 }),
      actionButton("↓", () => move(ids, i, 1), { title: "Move down", "aria-label": `Move ${w.title} down`, "data-move-down": w.id, disabled: i === ids.length - 1 }),
      actionButton("×", async () => {
        await api(`/dashboard/widgets/${encodeURIComponent(w.id)}`, { method: "DELETE" });
        toast(`Removed ${w.title}`);
        await renderWidgets();
      }, { title: "Remove", "aria-label": `Remove ${w.title}`, "data-remove": w.id })) : null;
    const panel = h("div", { class: `panel widget${w.kind === "trend" && w.config.metric === "gmv" ? " wide" : ""}`, "data-widget": w.id, "data-kind": w.kind },
      h("div", { class: "row widget-head" }, h("h2", {}, w.title), h("span", { class: "spacer" }), controls),
      content);
    loadWidget(w, content).catch((err) => fill(content, errorBox(err)));
    return panel;
  }

  async function loadWidget(w, content) {
    const res = await api(`/dashboard/widgets/${encodeURIComponent(w.id)}/data`,
      { params: { period: state.period, currency: state.currency || undefined, tz: prefs.tz } });
    const d = res.data, cfg = w.config;
    const currency = cfg.currency || state.currency;
    if (w.kind === "kpi" || w.kind === "gauge") {
      const v = overviewValue(d, cfg.metric, currency);
      if (w.kind === "kpi") {
        const shown = isMoney(cfg.metric) ? money(v?.value, currency) : isRate(cfg.metric) ? rate(v?.value) : count(v?.value);
        fill(content, kpiCard(`w-${w.id}`, isMoney(cfg.metric) ? `${cfg.metric.replace(/_/g, " ")} (${currency || "—"})` : cfg.metric.replace(/_/g, " "), shown, v));
      } else {
        fill(content, gauge(cfg, v?.value, currency));
      }
    } else if (w.kind === "trend") {
      const gran = res.source.params.granularity;
      const canvas = h("canvas", { "aria-label": `${w.title} over time`, role: "img" });
      fill(content, h("div", { class: "chart-box" }, canvas));
      const money_ = isMoney(cfg.metric);
      const series = d.series.filter((s) => !money_ || !currency || s.currency === currency || d.series.length === 1);
      const bar = cfg.chart === "bar";
      widgetCharts.push(chart(canvas, {
        type: bar ? "bar" : "line",
        data: {
          labels: (series[0]?.points || []).map((p) => shortLabel(p.t, gran)),
          datasets: series.map((s, k) => ({ label: s.currency || cfg.metric, data: s.points.map((p) => money_ ? majorToNumber(p.value || 0, s.currency) : (p.value || 0)),
            borderColor: PALETTE[k % PALETTE.length], backgroundColor: bar ? PALETTE[k % PALETTE.length] : PALETTE[k % PALETTE.length] + "33", fill: !bar, tension: .25, pointRadius: 0 })),
        },
        options: { plugins: { legend: { display: money_ && series.length > 1 } }, scales: { x: { ticks: TIME_TICKS }, y: { beginAtZero: true, ticks: { callback: (v) => new Intl.NumberFormat(undefined, { notation: "compact" }).format(v) } } } },
      }));
    } else if (w.kind === "breakdown") {
      const m = cfg.metric;
      const moneyRow = cfg.by !== "rail" ? isMoney(m) : m === "amount_minor";
      const items = d.items.filter((i) => (!moneyRow || !currency || i.currency === currency) && (i[m] ?? 0) > 0).slice(0, cfg.limit);
      const fmt = (i) => moneyRow ? money(i[m], i.currency) : isRate(m) || m === "settle_rate" ? rate(i[m]) : count(i[m]);
      const unknown = cfg.by === "country" ? "Unknown" : "(none)";
      fill(content, h("ol", { class: "top-countries", "data-testid": cfg.by === "country" ? "top-countries" : `breakdown-${cfg.by}` },
        items.length ? items.map((i) => h("li", { "data-key": i.key || "", "data-country": cfg.by === "country" ? (i.key || "") : null },
          h("span", { class: i.key ? "mono" : "muted" }, i.key || unknown), " ", fmt(i),
          m === "gmv" ? h("span", { class: "muted" }, ` · ${count(i.succeeded)} succeeded`) : null))
          : [h("li", { class: "muted" }, "Nothing in this window.")]));
    } else if (w.kind === "table") {
      const rows = d.data;
      const col = (label, cell, num) => ({ label, cell, num });
      fill(content, cfg.query === "recent_payouts"
        ? table([col("Payout", (p) => h("a", { href: `#/payouts/${encodeURIComponent(p.id)}`, class: "mono id" }, p.id.slice(0, 14) + "…")),
          col("Status", (p) => badge(p.status)), col("Amount", (p) => money(p.amount_minor, p.currency), true)], rows, { empty: "No payouts yet." })
        : table([col("When", (t) => time(t.occurred_at)), col("Source", (t) => t.source), col("Status", (t) => badge(t.status)),
          col("Amount", (t) => money(t.amount_minor, t.currency), true)], rows, { empty: "No transactions yet." }));
    } else if (w.kind === "alerts") {
      fill(content, h("ul", { class: "plain widget-alerts" }, d.data.length
        ? d.data.map((a) => h("li", { "data-alert": a.id }, badge(a.severity), " ", a.message || a.rule))
        : h("li", {}, "No alerts.")));
    } else {  // map: the agent map's clusters for the widget's box, drawn by the agent map's code
      const canvas = h("canvas", { class: "widget-map", "data-testid": "widget-map", role: "img",
        "aria-label": `${w.title}: ${count(d.total)} agents in ${count(d.clusters.length)} clusters` });
      fill(content, canvas, h("p", { class: "row muted" },
        h("span", { "data-testid": "widget-map-total" }, `${count(d.total)} agents in ${count(d.clusters.length)} ${d.clusters.length === 1 ? "cluster" : "clusters"}`),
        h("span", { class: "spacer" }),
        h("a", { href: "#/agents", "data-testid": "widget-map-link" }, "Open the agent map")));
      await renderMiniMap(canvas, d);
    }
  }

  function feedItem(channel, data) {
    const waiting = feed.querySelector("li.muted");
    if (waiting) waiting.remove();
    let text;
    if (channel === "payouts") text = h("span", {}, "Payout ", h("a", { href: `#/payouts/${encodeURIComponent(data.payout_id)}`, class: "mono" }, data.payout_id), " ", badge(data.status), " ", money(data.amount_minor, data.currency), data.merchant_id ? [" · ", merchantLink(data.merchant_id)] : null);
    else if (channel === "transactions") text = h("span", {}, `${data.source}: `, h("strong", {}, `${count(data.inserted ?? 0)} new`), `, ${count(data.updated ?? 0)} updated transactions`);
    else if (channel === "ops_actions") text = h("span", {}, `Ops action ${statusLabel(data.action_type)} `, badge(data.status), h("span", { class: "muted" }, ` (${data.event})`));
    else if (channel === "alerts") text = h("span", {}, "Alert ", badge(data.severity), ` ${data.message || data.rule}`);
    else if (channel === "sync") text = h("span", {}, `Sync ${data.source} `, badge(data.status), data.totals ? ` · ${count(data.totals.rows_fetched ?? 0)} rows` : "");
    else text = h("span", {}, JSON.stringify(data));
    const li = h("li", { class: "fresh", "data-channel": channel }, h("time", {}, time(data.at || new Date().toISOString())), text);
    feed.prepend(li);
    while (feed.children.length > 60) feed.lastChild.remove();
  }

  let reloadTimer = null;
  const off = live.on("*", (data, channel) => {
    if (!embedded) feedItem(channel, data);
    if (channel === "payouts" || channel === "transactions") {
      clearTimeout(reloadTimer);
      reloadTimer = setTimeout(load, 3000); // the KPIs follow new data, at most every few seconds
    }
  });
  periodSel.addEventListener("change", () => { state.period = periodSel.value; load(); });
  currencySel.addEventListener("change", () => { state.currency = currencySel.value; load(); });
  await load();
  return () => { off(); clearTimeout(reloadTimer); charts.forEach((c) => c && c.destroy()); widgetCharts.forEach((c) => c && c.destroy()); };
}
