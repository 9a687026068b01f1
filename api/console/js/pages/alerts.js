// Alerts: open / acknowledged / resolved / expired (not acknowledged within its lifetime),
// acknowledge and resolve (platform roles). Messages are
// shown in words: amounts in their currency, rates as percentages, times in the chosen zone,
// payout ids and merchants as links.

import { api } from "../api.js";
import { actionButton, badge, errorBox, h, statusLabel, table, toast, fill } from "../dom.js";
import { count, dateTime, money, rate } from "../format.js";
import { merchantLink, richText } from "../links.js";
import * as live from "../live.js";

const RATE_METRICS = new Set(["success_rate", "fraud_rate", "match_rate"]);

function message(a) {
  const d = a.data || {};
  const op = { "<": "below", "<=": "at or below", ">": "above", ">=": "at or above" }[d.operator] || d.operator;
  if (d.metric === "float_available" && d.currency && typeof d.value === "number") {
    return [d.merchant_id ? merchantLink(d.merchant_id) : "A merchant", `: available float ${money(Math.round(d.value), d.currency)}, ${op} the threshold of ${money(Math.round(d.threshold), d.currency)}`];
  }
  if (RATE_METRICS.has(d.metric) && typeof d.value === "number") {
    return [d.merchant_id ? merchantLink(d.merchant_id) : statusLabel(d.scope || "platform"), `: ${statusLabel(d.metric).toLowerCase()} ${rate(d.value)}, ${op} ${rate(d.threshold)}`,
      d.since ? [" since ", h("time", { datetime: d.since }, dateTime(d.since))] : null];
  }
  if (d.metric && typeof d.value === "number" && typeof d.threshold === "number") {
    const what = d.metric === "sync_lag_minutes" ? `${statusLabel(d.source || d.scope)}: last sync ${count(d.value)} min ago` : `${statusLabel(d.metric)}: ${count(d.value)}`;
    return `${what}, ${op} ${count(d.threshold)}`;
  }
  return richText(a.message, dateTime);
}

export async function render({ root, me }) {
  const status = h("select", { id: "al-status" }, ["open", "acknowledged", "resolved", "expired", ""].map((s) => h("option", { value: s }, s ? statusLabel(s) : "Any")));
  const severity = h("select", { id: "al-severity" }, ["", "low", "medium", "high", "critical"].map((s) => h("option", { value: s }, s ? statusLabel(s) : "Any")));
  const list = h("div", { "data-testid": "alerts" });
  root.append(h("h1", {}, "Alerts"),
    h("div", { class: "filters" }, h("label", { for: "al-status" }, "Status", status), h("label", { for: "al-severity" }, "Severity", severity)),
    list);
  const mayAct = !me.is_merchant_user;

  async function load() {
    let page;
    try { page = await api("/alerts", { params: { status: status.value, severity: severity.value, limit: 100 } }); } catch (err) { fill(list, errorBox(err)); return; }
    fill(list, table([
      { label: "Last seen", cls: "nowrap", cell: (a) => h("time", { datetime: a.last_seen_at }, dateTime(a.last_seen_at)) },
      { label: "Severity", cell: (a) => badge(a.severity) },
      { label: "Rule", cell: (a) => h("span", { title: a.rule }, statusLabel(a.rule)) },
      { label: "Message", cell: (a) => h("span", { "data-alert-message": a.id, title: a.message }, message(a)) },
      { label: "Times", num: true, cell: (a) => count(a.occurrences) },
      { label: "Status", cell: (a) => h("span", { "data-alert-status": a.id }, badge(a.status), a.acknowledged_by ? h("span", { class: "muted" }, ` by ${a.acknowledged_by}`) : "",
        a.expired_at ? h("span", { class: "muted", title: "not acknowledged within its lifetime; a new firing opens a new alert" }, " ", h("time", { datetime: a.expired_at }, dateTime(a.expired_at))) : "") },
      { label: "", cls: "actions", cell: (a) => (mayAct ? [
        a.status === "open" ? actionButton("Acknowledge", async () => { await api(`/alerts/${a.id}/acknowledge`, { method: "POST" }); toast("Acknowledged"); await load(); }, { "data-ack": a.id }) : null,
        a.status === "open" || a.status === "acknowledged" ? actionButton("Resolve", async () => { await api(`/alerts/${a.id}/resolve`, { method: "POST" }); toast("Resolved"); await load(); }, { "data-resolve-alert": a.id }) : null,
      ] : "") },
    ], page.data, { empty: "No alerts." }));
  }

  status.addEventListener("change", load);
  severity.addEventListener("change", load);
  const off = live.on("alerts", load);
  await load();
  return off;
}
