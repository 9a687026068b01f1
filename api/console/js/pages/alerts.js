// Alerts: open / acknowledged / resolved, acknowledge and resolve (platform roles).

import { api } from "../api.js";
import { actionButton, badge, errorBox, h, table, toast, fill } from "../dom.js";
import { count, dateTime } from "../format.js";
import * as live from "../live.js";

export async function render({ root, me }) {
  const status = h("select", { id: "al-status" }, ["open", "acknowledged", "resolved", ""].map((s) => h("option", { value: s }, s || "any")));
  const severity = h("select", { id: "al-severity" }, ["", "low", "medium", "high", "critical"].map((s) => h("option", { value: s }, s || "any")));
  const list = h("div", { "data-testid": "alerts" });
  root.append(h("h1", {}, "Alerts"),
    h("div", { class: "filters" }, h("label", { for: "al-status" }, "Status", status), h("label", { for: "al-severity" }, "Severity", severity)),
    list);
  const mayAct = !me.is_merchant_user;

  async function load() {
    let page;
    try { page = await api("/alerts", { params: { status: status.value, severity: severity.value, limit: 100 } }); } catch (err) { fill(list, errorBox(err)); return; }
    fill(list, table([
      { label: "Last seen", cell: (a) => dateTime(a.last_seen_at) },
      { label: "Severity", cell: (a) => badge(a.severity) },
      { label: "Rule", cell: (a) => h("span", { class: "mono" }, a.rule) },
      { label: "Message", cell: (a) => a.message },
      { label: "Times", num: true, cell: (a) => count(a.occurrences) },
      { label: "Status", cell: (a) => h("span", {}, badge(a.status), a.acknowledged_by ? h("span", { class: "muted" }, ` by ${a.acknowledged_by}`) : "") },
      { label: "", cls: "actions", cell: (a) => (mayAct ? [
        a.status === "open" ? actionButton("Acknowledge", async () => { await api(`/alerts/${a.id}/acknowledge`, { method: "POST" }); toast("Acknowledged"); await load(); }, { "data-ack": a.id }) : null,
        a.status !== "resolved" ? actionButton("Resolve", async () => { await api(`/alerts/${a.id}/resolve`, { method: "POST" }); toast("Resolved"); await load(); }, { "data-resolve-alert": a.id }) : null,
      ] : "") },
    ], page.data, { empty: "No alerts." }));
  }

  status.addEventListener("change", load);
  severity.addEventListener("change", load);
  const off = live.on("alerts", load);
  await load();
  return off;
}
