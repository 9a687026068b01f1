// SLA: payouts past their settlement target now (by rail, connector, beneficiary country and
// currency; the most overdue ones), and missed targets per day over the last weeks.

import { api } from "../api.js";
import { errorBox, fill, h, badge, table } from "../dom.js";
import { count, dateTime, money, rate } from "../format.js";
import { merchantLink, payoutLink } from "../links.js";

const PALETTE = ["#c0362c", "#2456d3", "#a15c00", "#7a2fd1", "#0e7490", "#be185d", "#4d7c0f", "#13795b"];

function overdue(seconds) {
  const s = Math.max(0, Math.round(seconds));
  if (s < 3600) return `${Math.max(1, Math.round(s / 60))} min`;
  if (s < 172800) return `${(s / 3600).toFixed(1)} h`;
  return `${Math.round(s / 86400)} days`;
}

export async function render({ root }) {
  const by = h("select", { id: "sla-by" }, [["rail", "Rail"], ["connector", "Connector"], ["country", "Country"]].map(([v, l]) => h("option", { value: v }, l)));
  const days = h("select", { id: "sla-days" }, [7, 14, 30, 90].map((d) => h("option", { value: d, selected: d === 14 }, `Last ${d} days`)));
  const kpis = h("section", { class: "grid kpis", "data-testid": "sla-kpis" });
  const groups = h("div", { "data-testid": "sla-groups" });
  const overdueList = h("div", { "data-testid": "sla-open" });
  const canvas = h("canvas", { role: "img", "aria-label": "Missed settlement targets per day" });
  const historyTable = h("div", { "data-testid": "sla-history" });
  root.append(
    h("div", { class: "row" }, h("h1", {}, "SLA"), h("span", { class: "spacer" }),
      h("label", { for: "sla-by" }, "Group by", by), h("label", { for: "sla-days" }, "History", days)),
    kpis,
    h("div", { class: "grid two-even" },
      h("section", { class: "panel", "aria-labelledby": "sla-now" }, h("h2", { id: "sla-now" }, "Breached now"), groups),
      h("section", { class: "panel", "aria-labelledby": "sla-hist" }, h("h2", { id: "sla-hist" }, "Missed targets per day"),
        h("div", { class: "chart-box" }, canvas), historyTable)),
    h("section", { "aria-labelledby": "sla-list" }, h("h2", { id: "sla-list" }, "Most overdue payouts"), overdueList));
  let chart = null;

  async function load() {
    let d;
    try { d = await api("/sla/breaches", { params: { days: days.value } }); } catch (err) { fill(groups, errorBox(err)); return; }
    const key = by.value;
    const label = (v) => (v ?? "—");
    // breached now, by the chosen dimension, counts and amounts per currency (never summed across)
    const agg = new Map();
    for (const g of d.open_by_group) {
      const k = `${label(g[key])}|${g.currency}`;
      const a = agg.get(k) || { key: label(g[key]), currency: g.currency, count: 0, amount: 0n, oldest: g.oldest_target_at };
      a.count += g.count; a.amount += BigInt(g.amount_minor);
      if (g.oldest_target_at < a.oldest) a.oldest = g.oldest_target_at;
      agg.set(k, a);
    }
    const perCurrency = new Map();
    for (const a of agg.values()) perCurrency.set(a.currency, (perCurrency.get(a.currency) || 0) + a.count);
    const due = d.history.reduce((n, r) => n + r.due, 0);
    const missed = d.history.reduce((n, r) => n + r.breached, 0);
    fill(kpis,
      h("div", { class: "panel kpi" }, h("div", { class: "label" }, "Breached now"), h("div", { class: "value", "data-testid": "sla-open-total" }, count(d.open_total)),
        h("div", { class: "delta flat" }, [...perCurrency].map(([c, n]) => `${count(n)} ${c}`).join(" · ") || "none")),
      h("div", { class: "panel kpi" }, h("div", { class: "label" }, `Targets met, ${d.days} days`), h("div", { class: "value" }, due ? rate(1 - missed / due) : "—"),
        h("div", { class: "delta flat" }, `${count(missed)} missed of ${count(due)}`)));
    fill(groups, table([
      { label: key === "country" ? "Country" : key === "rail" ? "Rail" : "Connector", cell: (a) => a.key },
      { label: "Payouts", num: true, cell: (a) => count(a.count) },
      { label: "Amount", num: true, cell: (a) => money(a.amount.toString(), a.currency) },
      { label: "Oldest target", cls: "nowrap", cell: (a) => dateTime(a.oldest) },
    ], [...agg.values()].sort((x, y) => y.count - x.count), { empty: "No payout is past its settlement target.", rowAttrs: (a) => ({ "data-group": a.key }) }));

    // history: one stacked series per value of the chosen dimension
    const dayList = [...new Set(d.history.map((r) => r.day))].sort();
    const keys = [...new Set(d.history.map((r) => label(r[key])))].sort();
    const cell = (day, k) => d.history.filter((r) => r.day === day && label(r[key]) === k).reduce((n, r) => n + r.breached, 0);
    if (chart) chart.destroy();
    chart = window.Chart ? new window.Chart(canvas, {
      type: "bar",
      data: { labels: dayList.map((x) => new Intl.DateTimeFormat(undefined, { timeZone: "UTC", day: "2-digit", month: "short" }).format(new Date(`${x}T00:00:00Z`))),
        datasets: keys.map((k, i) => ({ label: k, data: dayList.map((day) => cell(day, k)), backgroundColor: PALETTE[i % PALETTE.length], maxBarThickness: 48 })) },
      options: { responsive: true, maintainAspectRatio: false, animation: false,
        scales: { x: { stacked: true, ticks: { maxRotation: 0, autoSkip: true } }, y: { stacked: true, beginAtZero: true, ticks: { precision: 0 } } } },
    }) : null;
    const rows = keys.map((k) => {
      const mine = d.history.filter((r) => label(r[key]) === k);
      const n = mine.reduce((s, r) => s + r.due, 0), m = mine.reduce((s, r) => s + r.breached, 0);
      return { k, n, m };
    });
    fill(historyTable, table([
      { label: key === "country" ? "Country" : key === "rail" ? "Rail" : "Connector", cell: (r) => r.k },
      { label: "Due", num: true, cell: (r) => count(r.n) },
      { label: "Missed", num: true, cell: (r) => count(r.m) },
      { label: "Met", num: true, cell: (r) => (r.n ? rate(1 - r.m / r.n) : "—") },
    ], rows, { empty: "No settlement target fell in this period." }));
    fill(overdueList, table([
      { label: "Payout", cell: (p) => payoutLink(p.payout_id) },
      { label: "Merchant", cell: (p) => merchantLink(p.merchant_id) },
      { label: "Rail", cell: (p) => `${p.rail || "—"} · ${p.connector || "—"}` },
      { label: "Country", cell: (p) => p.country || "—" },
      { label: "Status", cell: (p) => badge(p.status) },
      { label: "Target", cls: "nowrap", cell: (p) => dateTime(p.settlement_target_at) },
      { label: "Overdue", num: true, cell: (p) => overdue(p.overdue_seconds) },
      { label: "Amount", num: true, cell: (p) => money(p.amount_minor, p.currency) },
    ], d.open_payouts, { empty: "Nothing overdue.", rowAttrs: (p) => ({ "data-overdue": p.payout_id }) }));
    groups.dataset.loaded = "true";
  }

  by.addEventListener("change", load);
  days.addEventListener("change", load);
  const timer = setInterval(load, 30000);
  await load();
  return () => { clearInterval(timer); if (chart) chart.destroy(); };
}
