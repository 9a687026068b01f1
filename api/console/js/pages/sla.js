// SLA: payouts past their settlement target now (by rail, connector, beneficiary country and
// currency; the most overdue ones), missed targets per day over the last weeks, and the SLA rules
// that set the targets (keyed by rail, connector, country and priority; the most specific
// applies). Rule edits go through /sla/rules, so the API's permissions (payouts:operate) decide.

import { api } from "../api.js";
import { actionButton, errorBox, fill, h, badge, modal, table, toast } from "../dom.js";
import { count, dateTime, money, rate } from "../format.js";
import { merchantLink, payoutLink } from "../links.js";

const PALETTE = ["#c0362c", "#2456d3", "#a15c00", "#7a2fd1", "#0e7490", "#be185d", "#4d7c0f", "#13795b"];

function overdue(seconds) {
  const s = Math.max(0, Math.round(seconds));
  if (s < 3600) return `${Math.max(1, Math.round(s / 60))} min`;
  if (s < 172800) return `${(s / 3600).toFixed(1)} h`;
  return `${Math.round(s / 86400)} days`;
}

const PRIORITIES = ["batch", "standard", "instant", "priority"];
const ANY = "";

function target(r) {
  if (r.target_seconds != null) {
    const s = r.target_seconds;
    if (s < 120) return `${s} s`;
    if (s < 7200) return `${Math.round(s / 60)} min`;
    return `${(s / 3600).toLocaleString(undefined, { maximumFractionDigits: 1 })} h`;
  }
  const d = r.target_business_days;
  return d === 0 ? "cutoff day (T+0)" : `T+${d} business day${d === 1 ? "" : "s"}`;
}

// the rules panel: list, add, edit, delete, and "which rule applies?"
async function rulesSection(mayEdit) {
  const list = h("div", { "data-testid": "sla-rules" });
  const answer = h("div", { "data-testid": "sla-resolve-answer", class: "muted" });
  const [rails, connectors] = await Promise.all([
    api("/rails").then((rs) => rs.map((r) => r.rail)).catch(() => []),
    api("/connectors/health").then((cs) => cs.map((c) => c.connector)).catch(() => []),
  ]);
  const opts = (values, anyLabel) => [{ value: ANY, label: anyLabel }, ...values.map((v) => ({ value: v, label: v }))];
  const select = (id, values, anyLabel) => h("select", { id }, opts(values, anyLabel).map((o) => h("option", { value: o.value }, o.label)));
  const qRail = select("sla-q-rail", rails, "Rail…");
  const qConnector = select("sla-q-connector", connectors, "any connector");
  const qCountry = h("input", { id: "sla-q-country", placeholder: "Country (DE)", maxlength: 2, size: 4 });
  const qPriority = select("sla-q-priority", PRIORITIES, "any priority");

  function fields(r = {}) {
    const unit = r.target_seconds != null ? "hours" : r.target_business_days != null ? "business_days" : "hours";
    const amount = r.target_seconds != null ? String(r.target_seconds / 3600) : r.target_business_days != null ? String(r.target_business_days) : "";
    const withValue = (f, v) => ({ ...f, value: v ?? ANY });
    return [
      withValue({ name: "rail", label: "Rail", type: "select", options: opts(rails, "any rail") }, r.rail),
      withValue({ name: "connector", label: "Connector", type: "select", options: opts(connectors, "any connector") }, r.connector),
      { name: "country", label: "Beneficiary country (ISO code, empty = any)", value: r.country || "", maxlength: 2 },
      withValue({ name: "priority", label: "Priority", type: "select", options: opts(PRIORITIES, "any priority") }, r.priority),
      { name: "amount", label: "Target", type: "number", value: amount, required: true, help: "hours after routing, or business days after the rail's cutoff" },
      { name: "unit", label: "Target unit", type: "select", value: unit, options: [{ value: "hours", label: "hours" }, { value: "business_days", label: "business days after the cutoff" }] },
      { name: "enabled", label: "State", type: "select", value: r.enabled === false ? "false" : "true", options: [{ value: "true", label: "enabled" }, { value: "false", label: "disabled" }] },
      { name: "description", label: "Description", value: r.description || "", maxlength: 500 },
    ];
  }

  function body(v) {
    const b = { rail: v.rail || null, connector: v.connector || null, country: v.country ? v.country.toUpperCase() : null,
      priority: v.priority || null, enabled: v.enabled === "true", description: v.description || null };
    if (v.unit === "hours") { b.target_seconds = Math.round(Number(v.amount) * 3600); b.target_business_days = null; }
    else { b.target_business_days = Number(v.amount); b.target_seconds = null; }
    return b;
  }

  async function add() {
    const v = await modal("Add an SLA rule", fields(), { submit: "Add rule", intro: "Empty keys match any payout; the rule that sets the most keys applies." });
    if (!v) return;
    const b = body(v);
    if (b.target_seconds === null) delete b.target_seconds; else delete b.target_business_days;
    const rule = await api("/sla/rules", { method: "POST", body: b });
    toast(`SLA rule ${rule.id} added`);
    await load();
  }

  async function edit(r) {
    const v = await modal(`Edit SLA rule ${r.id}`, fields(r), { submit: "Save rule" });
    if (!v) return;
    const b = body(v);
    if (b.target_seconds === null) delete b.target_seconds; else delete b.target_business_days;
    await api(`/sla/rules/${r.id}`, { method: "PATCH", body: b });
    toast(`SLA rule ${r.id} updated`);
    await load();
  }

  async function remove(r) {
    const v = await modal(`Delete SLA rule ${r.id}?`, [], { submit: "Delete rule", danger: true,
      intro: "Payouts routed from now on get the next most specific rule, or their rail's own terms." });
    if (!v) return;
    await api(`/sla/rules/${r.id}`, { method: "DELETE" });
    toast(`SLA rule ${r.id} deleted`);
    await load();
  }

  async function resolve() {
    if (!qRail.value) { fill(answer, "Choose a rail."); return; }
    const params = { rail: qRail.value };
    if (qConnector.value) params.connector = qConnector.value;
    if (qCountry.value) params.country = qCountry.value.toUpperCase();
    if (qPriority.value) params.priority = qPriority.value;
    let res;
    try { res = await api("/sla/rules/resolve", { params }); } catch (err) { fill(answer, errorBox(err)); return; }
    fill(answer, h("div", { "data-rule": res.rule ? String(res.rule.id) : "rail" }, res.why));
    for (const tr of list.querySelectorAll("tr[data-sla-rule]")) tr.classList.toggle("selected", res.rule && tr.dataset.slaRule === String(res.rule.id));
  }

  async function load() {
    let rules;
    try { rules = await api("/sla/rules"); } catch (err) { fill(list, errorBox(err)); return; }
    const key = (v) => (v == null ? h("span", { class: "muted" }, "any") : v);
    fill(list, table([
      { label: "Rule", cell: (r) => h("div", {}, h("strong", {}, `#${r.id}`), r.description ? h("div", { class: "muted small" }, r.description) : null) },
      { label: "Connector", cell: (r) => key(r.connector) },
      { label: "Rail", cell: (r) => key(r.rail) },
      { label: "Country", cell: (r) => key(r.country) },
      { label: "Priority", cell: (r) => key(r.priority == null ? null : r.priority) },
      { label: "Target", cls: "nowrap", cell: target },
      { label: "Keys set", num: true, cell: (r) => `${r.specificity} of 4` },
      { label: "State", cell: (r) => badge(r.enabled ? "enabled" : "disabled") },
      { label: "Changed", cls: "nowrap", cell: (r) => h("span", {}, dateTime(r.updated_at), h("div", { class: "muted small" }, r.updated_by || r.created_by)) },
      { label: "", cls: "actions", cell: (r) => (mayEdit ? h("span", { class: "nowrap" },
        actionButton("Edit", () => edit(r), { "data-edit-sla-rule": String(r.id) }),
        " ", actionButton("Delete", () => remove(r), { "data-delete-sla-rule": String(r.id) })) : "") },
    ], rules, { empty: "No SLA rules: every payout gets its rail's own settlement terms.", rowAttrs: (r) => ({ "data-sla-rule": String(r.id) }) }));
    list.dataset.loaded = "true";
  }

  const section = h("section", { "aria-labelledby": "sla-rules-title" },
    h("div", { class: "row" }, h("h2", { id: "sla-rules-title" }, "SLA rules"), h("span", { class: "spacer" }),
      mayEdit ? actionButton("Add rule", add, { "data-action": "add-sla-rule" }) : null),
    h("p", { class: "muted" }, "A payout's settlement target comes from the enabled rule matching its rail, connector, beneficiary country and priority that sets the most of these keys; between equals, connector > rail > country > priority decides. No match: the rail's own settlement terms. Changes apply to payouts routed from then on."),
    list,
    h("div", { class: "row", "data-testid": "sla-resolve" }, h("strong", {}, "Which rule applies?"), qRail, qConnector, qCountry, qPriority,
      actionButton("Resolve", resolve, { "data-action": "resolve-sla-rule" })),
    answer);
  await load();
  return section;
}

export async function render({ root, can }) {
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
  const rulesSlot = h("div");
  root.append(rulesSlot);
  rulesSection(can ? can("payouts:operate") : false).then((section) => fill(rulesSlot, section));

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
      { label: "SLA rule", cell: (p) => (p.sla_rule ? `#${p.sla_rule.id}` : h("span", { class: "muted" }, "rail terms")) },
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
