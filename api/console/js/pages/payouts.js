// Payouts: the list (filters, live status), and one payout's detail: step timeline from its
// audit trail, the workflow's live state, the routing explanation, the Temporal UI link, and
// retry / cancel for ops.

import { api, download } from "../api.js";
import { actionButton, badge, errorBox, facts, h, json, table, toast, fill } from "../dom.js";
import { dateTime, money } from "../format.js";
import * as live from "../live.js";

const STATUSES = ["", "pending", "held", "routed", "submitting", "retrying", "submitted", "settled", "failed", "returned", "rejected", "cancelled", "dlq"];
const GOOD = new Set(["settled"]);
const BAD = new Set(["failed", "returned", "rejected", "dlq", "cancelled"]);

export async function render(ctx) {
  return ctx.args[0] ? renderDetail(ctx, ctx.args[0]) : renderList(ctx);
}

async function renderList({ root, me, navigate }) {
  const status = h("select", { id: "p-status" }, STATUSES.map((s) => h("option", { value: s }, s || "any")));
  const currency = h("input", { id: "p-currency", maxlength: "3", size: "4", placeholder: "EUR" });
  const merchant = me.is_merchant_user ? null : h("input", { id: "p-merchant", placeholder: "mer_…" });
  const list = h("div", { "data-testid": "payouts" });
  const pager = h("div", { class: "pager" });
  const cursors = [null];
  let page = 0;
  const params = () => ({ status: status.value, currency: currency.value.trim().toUpperCase(), merchant_id: merchant?.value.trim() });
  const form = h("form", { class: "filters", role: "search", "aria-label": "Filter payouts" },
    h("label", { for: "p-status" }, "Status", status),
    h("label", { for: "p-currency" }, "Currency", currency),
    merchant ? h("label", { for: "p-merchant" }, "Merchant", merchant) : null,
    h("button", { type: "submit", class: "primary" }, "Apply"),
    h("button", { type: "button", onclick: async () => {
      try { toast(`Downloading ${await download("/export/payouts", { ...params(), format: "csv" }, "payouts.csv")}`); } catch (err) { toast(err.message, "error"); }
    } }, "Export CSV"));
  root.append(h("h1", {}, "Payouts"), form, list, pager);

  async function load() {
    let data;
    try { data = await api("/payouts", { params: { ...params(), limit: 25, cursor: cursors[page] } }); } catch (err) { fill(list, errorBox(err)); return; }
    cursors[page + 1] = data.next_cursor;
    fill(list, table([
      { label: "Created", cell: (p) => dateTime(p.created_at) },
      { label: "Payout", cell: (p) => h("a", { href: `#/payouts/${encodeURIComponent(p.id)}`, class: "mono" }, p.id) },
      { label: "Merchant", cell: (p) => h("span", { class: "mono", "data-merchant": p.merchant_id }, p.merchant_id) },
      { label: "Method", cell: (p) => `${p.method}${p.rail ? ` → ${p.rail}` : ""}` },
      { label: "Beneficiary", cell: (p) => `${p.beneficiary?.name || ""} ${p.beneficiary?.last4 ? `…${p.beneficiary.last4}` : ""}` },
      { label: "Status", cell: (p) => h("span", { "data-payout-status": p.id }, badge(p.status)) },
      { label: "Amount", num: true, cell: (p) => money(p.amount_minor, p.currency) },
    ], data.data, { empty: "No payouts match.", rowAttrs: (p) => ({ "data-payout": p.id }) }));
    fill(pager, 
      h("span", { class: "muted" }, `Page ${page + 1}`),
      h("button", { type: "button", disabled: page === 0, onclick: () => { page -= 1; load(); } }, "Previous"),
      h("button", { type: "button", disabled: !data.next_cursor, onclick: () => { page += 1; load(); } }, "Next"));
  }

  form.addEventListener("submit", (ev) => { ev.preventDefault(); cursors.length = 1; page = 0; load(); });
  let timer = null;
  const off = live.on("payouts", (msg) => {
    const cell = list.querySelector(`[data-payout-status="${CSS.escape(msg.payout_id)}"]`);
    if (cell) fill(cell, badge(msg.status));
    else if (page === 0) { clearTimeout(timer); timer = setTimeout(load, 400); }
  });
  await load();
  void navigate;
  return () => { off(); clearTimeout(timer); };
}

function duration(seconds) {
  if (seconds == null) return "—";
  if (seconds < 90) return `${Math.round(seconds)} s`;
  if (seconds < 5400) return `${Math.round(seconds / 60)} min`;
  return `${(seconds / 3600).toFixed(1)} h`;
}

function routingView(routing, currency) {
  if (!routing) return h("p", { class: "muted" }, "Not routed yet.");
  const parts = [h("p", { "data-testid": "routing-why" }, routing.why || "")];
  if (routing.candidates?.length) {
    parts.push(table([
      { label: "Rail", cell: (c) => c.rail },
      { label: "Connector", cell: (c) => c.connector },
      { label: "Status", cell: (c) => badge(c.status) },
      { label: "Fee", num: true, cell: (c) => (c.cost_minor == null ? "—" : money(c.cost_minor, currency)) },
      { label: "Expected", num: true, cell: (c) => duration(c.expected_seconds) },
      { label: "Why", cell: (c) => [...(c.reasons || []), ...(c.notes || [])].join("; ") || "—" },
    ], routing.candidates, { rowAttrs: (c) => ({ class: `candidate ${c.status}` }) }));
  }
  if (routing.fallbacks?.length) parts.push(h("p", { class: "muted" }, `Fallbacks: ${routing.fallbacks.map((f) => `${f.rail} via ${f.connector}`).join(", ")}`));
  return parts;
}

async function renderDetail({ root, can, me }, id) {
  const head = h("div", { class: "row" }, h("a", { href: "#/payouts" }, "← Payouts"));
  const box = h("div", { "data-testid": "payout-detail" });
  root.append(head, box);

  async function load() {
    let p, events;
    try { [p, events] = await Promise.all([api(`/payouts/${encodeURIComponent(id)}`), api(`/payouts/${encodeURIComponent(id)}/events`)]); } catch (err) { fill(box, errorBox(err)); return; }
    const ops = can("payouts:operate") && !me.is_merchant_user;
    const buttons = [];
    if (ops && p.status === "dlq") {
      buttons.push(actionButton("Retry", async () => {
        const r = await api(`/payouts/${encodeURIComponent(id)}/retry`, { method: "POST", body: { reason: "retried from the console" } });
        toast(r.decision.detail || "retry sent");
        await load();
      }, { class: "primary", "data-action": "retry" }));
    }
    if (ops && !["submitted", "settled", "failed", "returned", "rejected", "cancelled"].includes(p.status)) {
      buttons.push(actionButton("Cancel payout", async () => {
        const reason = prompt("Why cancel this payout?");
        if (!reason) return;
        const r = await api(`/payouts/${encodeURIComponent(id)}/cancel`, { method: "POST", body: { reason } });
        toast(r.decision.detail || "cancel sent");
        await load();
      }, { class: "danger", "data-action": "cancel" }));
    }
    const wf = p.workflow;
    fill(box, 
      h("div", { class: "row" },
        h("h1", {}, "Payout ", h("span", { class: "mono" }, p.id)),
        h("span", { "data-testid": "payout-status" }, badge(p.status)),
        h("span", { class: "spacer" }),
        ...buttons,
        h("a", { class: "btn", href: p.links.temporal_ui, target: "_blank", rel: "noopener", "data-testid": "temporal-link" }, "Workflow in Temporal UI ↗")),
      h("div", { class: "grid two" },
        h("section", { class: "panel", "aria-labelledby": "pd-facts" },
          h("h2", { id: "pd-facts" }, "Details"),
          facts([
            ["Amount", money(p.amount_minor, p.currency)], ["Fee", money(p.fee_minor, p.currency)],
            ["Merchant", h("span", { class: "mono" }, p.merchant_id)], ["Method", `${p.method} · ${p.priority}`],
            ["Rail / connector", `${p.rail || "—"} / ${p.connector || "—"}`],
            ["Beneficiary", `${p.beneficiary?.name || ""} ${p.beneficiary?.last4 ? `…${p.beneficiary.last4}` : ""} ${p.beneficiary?.bic || p.beneficiary?.routing_number || ""}`],
            ["Created", dateTime(p.created_at, { seconds: true })], ["Settle by", dateTime(p.settlement_target_at)],
            p.failure_code ? ["Failure", `${p.failure_code}: ${p.failure_message || ""}`] : null,
            ["Description", p.description],
          ]),
          h("h2", {}, "Workflow state"),
          wf ? facts([["Step", wf.step], ["Attempts", wf.attempts], ["Last error", wf.last_error], ["Hold", wf.hold_status],
            ["Next attempt", dateTime(wf.next_attempt_at)], ["SLA breached", wf.sla_breached ? "yes" : "no"]])
            : h("p", { class: "muted" }, p.workflow_error || "The workflow did not answer.")),
        h("section", { class: "panel", "aria-labelledby": "pd-timeline" },
          h("h2", { id: "pd-timeline" }, "Timeline"),
          h("ol", { class: "timeline", "data-testid": "timeline" }, events.map((e) =>
            h("li", { class: GOOD.has(e.to_status) ? "good" : BAD.has(e.to_status) ? "bad" : "" },
              h("div", {}, badge(e.to_status), e.from_status ? h("span", { class: "muted" }, ` from ${e.from_status}`) : ""),
              h("div", { class: "when" }, `${dateTime(e.created_at, { seconds: true })} · ${e.actor}`),
              e.reason ? h("div", {}, e.reason) : null))))),
      h("section", { class: "panel", "aria-labelledby": "pd-routing" },
        h("h2", { id: "pd-routing" }, "Routing"), routingView(p.routing, p.currency)),
      Object.keys(p.metadata || {}).length ? h("section", { class: "panel" }, h("h2", {}, "Metadata"), json(p.metadata)) : null);
  }

  let timer = null;
  const off = live.on("payouts", (msg) => {
    if (msg.payout_id !== id) return;
    clearTimeout(timer);
    timer = setTimeout(load, 250);
  });
  await load();
  return () => { off(); clearTimeout(timer); };
}
