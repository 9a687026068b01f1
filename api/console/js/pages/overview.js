// Overview: KPI cards against the previous window, GMV and volume trends, payout status donut,
// provider and project bars, and the live activity feed.

import { api } from "../api.js";
import { badge, clear, errorBox, h, fill, statusLabel } from "../dom.js";
import { merchantLink } from "../links.js";
import { count, dateTime, delta, majorToNumber, money, prefs, rate, shortLabel, time } from "../format.js";
import * as live from "../live.js";
import { topThree } from "./recommendations.js";

const PALETTE = ["#2456d3", "#13795b", "#c0362c", "#a15c00", "#7a2fd1", "#0e7490", "#be185d", "#4d7c0f"];
// time axes: horizontal labels, as many as fit (Chart.js skips the rest)
const TIME_TICKS = { maxRotation: 0, autoSkip: true, autoSkipPadding: 12, maxTicksLimit: 8 };
const STATUS_COLORS = { settled: "#13795b", pending: "#d9a406", in_flight: "#2456d3", failed: "#c0362c", cancelled: "#98a2b3", dlq: "#7a2fd1" };

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

export async function render({ root, me }) {
  const charts = [];
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
      me.is_merchant_user ? h("h1", {}, "Overview · ", merchantLink(me.merchant_id)) : h("h1", {}, "Overview"),
      h("span", { class: "spacer" }),
      h("label", { for: "period" }, "Period", periodSel),
      h("label", { for: "currency" }, "Currency", currencySel)),
    body,
    recs,
    h("section", { class: "panel", "aria-labelledby": "feed-title" },
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
        kpiCard("float_available", "Float available", m(cur.float_available), cur.float_available, { note: "balance now, all merchants" }),
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
    const gmvCanvas = h("canvas", { "aria-label": "GMV over time", role: "img" });
    const volCanvas = h("canvas", { "aria-label": "Transaction volume over time", role: "img" });
    const donutCanvas = h("canvas", { "aria-label": "Payouts by status", role: "img" });
    const providerCanvas = h("canvas", { "aria-label": "GMV by provider", role: "img" });
    const projectCanvas = h("canvas", { "aria-label": "GMV by project", role: "img" });
    const countryList = h("ol", { class: "top-countries", "data-testid": "top-countries" }, h("li", { class: "muted" }, "Loading…"));
    clear(body).append(windowNote,
      h("section", { class: "grid kpis", "aria-label": "Key figures", "data-testid": "kpis" }, cards),
      h("section", { class: "grid charts", "aria-label": "Charts" },
        h("div", { class: "panel wide" }, h("h2", {}, `GMV${cur ? ` (${cur.currency})` : ""}`), h("div", { class: "chart-box" }, gmvCanvas)),
        h("div", { class: "panel" }, h("h2", {}, "Transactions"), h("div", { class: "chart-box" }, volCanvas)),
        h("div", { class: "panel" }, h("h2", {}, "Payouts by status"), h("div", { class: "chart-box" }, donutCanvas)),
        h("div", { class: "panel" }, h("h2", {}, "By provider"), h("div", { class: "chart-box" }, providerCanvas)),
        h("div", { class: "panel" }, h("h2", {}, "By project"), h("div", { class: "chart-box" }, projectCanvas)),
        h("div", { class: "panel" }, h("h2", {}, `Top countries${state.currency ? ` (${state.currency})` : ""}`), countryList)));

    // payouts by status group, all currencies
    const groups = {};
    for (const c of overview.by_currency) for (const [g, v] of Object.entries(c.payouts)) groups[g] = (groups[g] || 0) + v.count.value;
    const groupNames = Object.keys(groups).filter((g) => groups[g] > 0);
    charts.push(chart(donutCanvas, {
      type: "doughnut",
      data: { labels: groupNames.map(statusLabel), datasets: [{ data: groupNames.map((g) => groups[g]), backgroundColor: groupNames.map((g) => STATUS_COLORS[g] || "#667085") }] },
      options: { plugins: { legend: { position: "right", labels: { boxWidth: 12 } }, tooltip: { callbacks: { label: (c) => `${c.label}: ${count(c.raw)}` } } } },
    }));

    const granularity = state.period === "24h" ? "hour" : "day";
    const params = { period: state.period, granularity, tz: prefs.tz };
    const [gmv, volume, bySource, byProject, byCountry] = await Promise.allSettled([
      api("/metrics/trends", { params: { ...params, metric: "gmv", currency: state.currency || undefined } }),
      api("/metrics/trends", { params: { ...params, metric: "transactions" } }),
      api("/metrics/breakdown", { params: { by: "source", period: state.period, currency: state.currency || undefined } }),
      api("/metrics/breakdown", { params: { by: "project", period: state.period, currency: state.currency || undefined, limit: 10 } }),
      api("/metrics/breakdown", { params: { by: "country", period: state.period, currency: state.currency || undefined, limit: 5 } }),
    ]);
    if (gmv.status === "fulfilled") {
      const series = gmv.value.series;
      charts.push(chart(gmvCanvas, {
        type: "line",
        data: {
          labels: (series[0]?.points || []).map((p) => shortLabel(p.t, granularity)),
          datasets: series.map((s, i) => ({ label: s.currency, data: s.points.map((p) => majorToNumber(p.value || 0, s.currency)), borderColor: PALETTE[i % PALETTE.length], backgroundColor: PALETTE[i % PALETTE.length] + "33", fill: true, tension: .25, pointRadius: 0 })),
        },
        options: { scales: { x: { ticks: TIME_TICKS }, y: { ticks: { callback: (v) => new Intl.NumberFormat(undefined, { notation: "compact" }).format(v) } } },
          plugins: { tooltip: { callbacks: { label: (c) => `${c.dataset.label}: ${new Intl.NumberFormat(undefined, { style: "currency", currency: c.dataset.label }).format(c.raw)}` } } } },
      }));
    }
    if (volume.status === "fulfilled") {
      const pts = volume.value.series[0]?.points || [];
      charts.push(chart(volCanvas, {
        type: "bar",
        data: { labels: pts.map((p) => shortLabel(p.t, granularity)), datasets: [{ label: "transactions", data: pts.map((p) => p.value || 0), backgroundColor: "#2456d3" }] },
        options: { plugins: { legend: { display: false } }, scales: { x: { ticks: TIME_TICKS }, y: { beginAtZero: true, ticks: { precision: 0 } } } },
      }));
    }
    for (const [res, canvas] of [[bySource, providerCanvas], [byProject, projectCanvas]]) {
      if (res.status !== "fulfilled") continue;
      const items = res.value.items.filter((i) => i.currency && (!state.currency || i.currency === state.currency));
      charts.push(chart(canvas, {
        type: "bar",
        data: { labels: items.map((i) => i.key || "(none)"), datasets: [{ label: `GMV ${state.currency || ""}`, data: items.map((i) => majorToNumber(i.gmv || 0, i.currency)), backgroundColor: PALETTE.slice(0, items.length) }] },
        options: { indexAxis: "y", plugins: { legend: { display: false }, tooltip: { callbacks: { label: (c) => money(items[c.dataIndex].gmv || 0, items[c.dataIndex].currency) } } } },
      }));
    }
    // top 5 payer countries by GMV in the selected currency (rows without a country: "Unknown")
    if (byCountry.status === "fulfilled") {
      const items = byCountry.value.items.filter((i) => i.currency === state.currency && i.gmv > 0).slice(0, 5);
      clear(countryList).append(...(items.length ? items.map((i) => h("li", { "data-country": i.key || "" },
        h("span", { class: i.key ? "mono" : "muted" }, i.key || "Unknown"), " ", money(i.gmv, i.currency),
        h("span", { class: "muted" }, ` · ${count(i.succeeded)} succeeded`)))
        : [h("li", { class: "muted" }, "No succeeded transactions in this window.")]));
    } else clear(countryList).append(h("li", { class: "muted" }, "Could not load countries."));
    body.dataset.loaded = "true";
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
    feedItem(channel, data);
    if (channel === "payouts" || channel === "transactions") {
      clearTimeout(reloadTimer);
      reloadTimer = setTimeout(load, 3000); // the KPIs follow new data, at most every few seconds
    }
  });
  periodSel.addEventListener("change", () => { state.period = periodSel.value; load(); });
  currencySel.addEventListener("change", () => { state.currency = currencySel.value; load(); });
  await load();
  return () => { off(); clearTimeout(reloadTimer); charts.forEach((c) => c && c.destroy()); };
}
