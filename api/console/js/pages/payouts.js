// Payouts: the list (filters, live status), and one payout's detail: step timeline from its
// audit trail, the workflow's live state, the routing explanation, the Temporal UI link, and
// retry / cancel for ops; when its workflow was closed outside payops (Terminate, ...), a banner
// and "Repair…" (a REPAIR_PAYOUT ops action) instead.

import { api, download } from "../api.js";
import { actionButton, badge, errorBox, facts, h, json, modal, statusLabel, table, toast, fill } from "../dom.js";
import { dateTime, money } from "../format.js";
import { merchantLink, payoutLink } from "../links.js";
import * as live from "../live.js";

const STATUSES = ["", "pending", "held", "routed", "submitting", "retrying", "submitted", "settled", "failed", "returned", "rejected", "cancelled", "dlq"];
const GOOD = new Set(["settled"]);
const BAD = new Set(["failed", "returned", "rejected", "dlq", "cancelled"]);

export async function render(ctx) {
  if (ctx.args[0] === "merchant") return renderList(ctx, ctx.args[1]);
  return ctx.args[0] ? renderDetail(ctx, ctx.args[0]) : renderList(ctx);
}

async function renderList({ root, me, navigate }, merchantId) {
  const status = h("select", { id: "p-status" }, STATUSES.map((s) => h("option", { value: s }, s ? statusLabel(s) : "Any")));
  const currency = h("input", { id: "p-currency", maxlength: "3", size: "4", placeholder: "EUR" });
  const merchant = me.is_merchant_user ? null : h("input", { id: "p-merchant", placeholder: "mer_…", value: merchantId || "" });
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
      { label: "Created", cls: "nowrap", cell: (p) => dateTime(p.created_at) },
      { label: "Payout", cell: (p) => payoutLink(p.id) },
      { label: "Merchant", cell: (p) => merchantLink(p.merchant_id) },
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

// "service_unavailable: service_unavailable: the bank…" (payouts recorded before the fix) reads once
export function errorText(code, message) {
  let m = String(message || "");
  const prefix = /^([a-z][a-z0-9_]*): /;
  let first = null;
  for (let match = m.match(prefix); match && (first === null || match[1] === first); match = m.match(prefix)) {
    first = match[1];
    m = m.slice(match[0].length);
  }
  const c = code || first;
  return c && m && m !== c ? `${c}: ${m}` : (c || m);
}

// consecutive "retrying" entries are one line with a count; the earlier ones fold away
function collapseRetries(events) {
  const out = [];
  for (const e of events) {
    const prev = out[out.length - 1];
    if (prev && prev.to_status === "retrying" && e.to_status === "retrying") {
      prev.earlier = [...(prev.earlier || []), { created_at: prev.last_at || prev.created_at, reason: prev.reason }];
      prev.repeats = (prev.repeats || 0) + 1;
      prev.last_at = e.created_at;
      prev.reason = e.reason;
    } else out.push({ ...e });
  }
  return out;
}

// the engine's sentence, with its fee and time in words ("fee 25 minor, expected 0.00 h" read badly)
function why(routing, currency) {
  const text = routing.why || "";
  const chosen = (routing.candidates || []).find((c) => c.status === "chosen");
  const cut = text.lastIndexOf(" (fee ");
  if (!chosen || cut < 0) return text;
  return `${text.slice(0, cut)} (fee ${chosen.cost_minor == null ? "—" : money(chosen.cost_minor, currency)}, expected ${duration(chosen.expected_seconds)})`;
}

function routingView(routing, currency) {
  if (!routing) return h("p", { class: "muted" }, "Not routed yet.");
  const parts = [h("p", { "data-testid": "routing-why" }, why(routing, currency))];
  if (routing.candidates?.length) {
    parts.push(table([
      { label: "Rail", cell: (c) => c.rail },
      { label: "Connector", cell: (c) => c.connector },
      { label: "Status", cell: (c) => badge(c.status === "chosen" ? "settled" : c.status === "excluded" ? "cancelled" : "submitted", statusLabel(c.status)) },
      { label: "Fee", num: true, cell: (c) => (c.cost_minor == null || (c.status === "excluded" && !c.cost_minor) ? "—" : money(c.cost_minor, currency)) },
      { label: "Expected", num: true, cell: (c) => (c.status === "excluded" && !c.expected_seconds ? "—" : duration(c.expected_seconds)) },
      { label: "Why", cls: "why", cell: (c) => [...(c.reasons || []), ...(c.notes || [])].join("; ") || "—" },
    ], routing.candidates, { rowAttrs: (c) => ({ class: `candidate ${c.status}` }) }));
  }
  if (routing.fallbacks?.length) parts.push(h("p", { class: "muted" }, `Fallbacks: ${routing.fallbacks.map((f) => `${f.rail} via ${f.connector}`).join(", ")}`));
  if ("sla_rule" in routing) {  // routed since SLA rules exist: which one set the target
    const r = routing.sla_rule;
    const keys = r ? ["connector", "rail", "country", "priority"].filter((k) => r[k] != null).map((k) => `${k} ${r[k]}`).join(", ") : "";
    parts.push(h("p", { class: "muted", "data-testid": "routing-sla-rule" }, r
      ? h("span", {}, "Settlement target from ", h("a", { href: "#/sla" }, `SLA rule #${r.id}`), ` (${keys || "any payout"})`)
      : `Settlement target from the ${routing.rail} rail's own terms (no SLA rule matches)`));
  }
  return parts;
}

const REPAIR_MODES = {
  compensate: { label: "Compensate", help: "reverse the hold (the funds return to the merchant) and fail the payout" },
  restart: { label: "Restart", help: "run its workflow again: the bank is asked idempotently, nothing is paid twice" },
};

// the REPAIR_PAYOUT actions still open on this payout (a second one would answer 409)
async function openRepairs(id) {
  try {
    const r = await api("/ops/actions", { params: { type: "REPAIR_PAYOUT", target: `payout:${id}`, limit: 20 } });
    return r.data.filter((a) => ["pending_approval", "approved", "executing"].includes(a.status));
  } catch { return []; }
}

function approvalsLink(a) {
  return h("a", { href: `#/approvals/${encodeURIComponent(a.id)}`, "data-testid": "repair-action-link", "data-action-id": a.id },
    `${statusLabel(a.type)} ${a.id}`);
}

function closedBanner(p, repairs) {
  return h("div", { class: "warn-box", role: "status", "data-testid": "workflow-closed" },
    h("p", {}, h("strong", {}, `Its workflow was closed outside payops (${p.workflow_status}).`),
      ` The payout stays ${statusLabel(p.status).toLowerCase()} and nothing will move it any more, so Retry and Cancel no longer apply.`),
    h("p", {}, "The workflow reaper raises a critical alert for it (",
      h("a", { href: "#/alerts" }, "Alerts"),
      "). Repair it with a REPAIR_PAYOUT ops action, which runs once approved: ",
      p.repair_modes.map((m) => `${m} (${REPAIR_MODES[m]?.help || m})`).join("; "), "."),
    repairs.length
      ? h("p", { "data-testid": "open-repairs" }, "Repair requested, awaiting approval in Approvals: ",
        repairs.map((a, i) => [i ? ", " : "", approvalsLink(a), ` (${statusLabel(a.status).toLowerCase()})`]))
      : null);
}

function repairButton(p, reload) {
  return actionButton("Repair…", async () => {
    const v = await modal("Repair this payout", [
      { name: "mode", label: "Mode", type: "select", required: true,
        options: p.repair_modes.map((m) => ({ value: m, label: `${REPAIR_MODES[m]?.label || m}: ${REPAIR_MODES[m]?.help || ""}` })) },
      { name: "reason", label: "Reason (kept in the audit trail)", type: "textarea", required: true, maxlength: 500 },
    ], { submit: "Request repair", intro: `${money(p.amount_minor, p.currency)} to ${p.beneficiary?.name || "the beneficiary"}, its workflow ${p.workflow_status}. This creates a REPAIR_PAYOUT ops action; it runs once others approve it.` });
    if (!v) return;
    const a = await api(`/payouts/${encodeURIComponent(p.id)}/repair`, { method: "POST", body: { mode: v.mode, reason: v.reason } });
    toast(`Repair requested (${a.id}); it needs ${a.required_approvals} approval(s) in Approvals`);
    await reload();
  }, { class: "primary", "data-action": "repair" });
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
    // its workflow was closed outside payops (Terminate, ...): retry and cancel would answer 409;
    // the way out is a REPAIR_PAYOUT ops action (the server lists the modes that apply)
    const orphaned = Array.isArray(p.repair_modes);
    const repairs = orphaned && !me.is_merchant_user && can("ops_actions:read") ? await openRepairs(id) : [];
    if (orphaned) {
      if (ops && can("ops_actions:create") && !repairs.length) buttons.push(repairButton(p, load));
    } else if (ops && p.status === "dlq") {
      buttons.push(actionButton("Retry", async () => {
        const r = await api(`/payouts/${encodeURIComponent(id)}/retry`, { method: "POST", body: { reason: "retried from the console" } });
        toast(r.decision.detail || "retry sent");
        await load();
      }, { class: "primary", "data-action": "retry" }));
    }
    if (ops && !orphaned && !["submitted", "settled", "failed", "returned", "rejected", "cancelled"].includes(p.status)) {
      buttons.push(actionButton("Cancel payout", async () => {
        const v = await modal("Cancel this payout?", [
          { name: "reason", label: "Reason (kept in the audit trail)", type: "textarea", required: true, maxlength: 500 },
        ], { submit: "Cancel payout", danger: true, intro: `${money(p.amount_minor, p.currency)} to ${p.beneficiary?.name || "the beneficiary"}: funds return to the merchant's balance.` });
        if (!v) return;
        const r = await api(`/payouts/${encodeURIComponent(id)}/cancel`, { method: "POST", body: { reason: v.reason } });
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
      orphaned && !me.is_merchant_user ? closedBanner(p, repairs) : null,
      h("div", { class: "grid two" },
        h("section", { class: "panel", "aria-labelledby": "pd-facts" },
          h("h2", { id: "pd-facts" }, "Details"),
          facts([
            ["Amount", money(p.amount_minor, p.currency)], ["Fee", money(p.fee_minor, p.currency)],
            ["Merchant", merchantLink(p.merchant_id)], ["Method", `${p.method} · ${p.priority}`],
            ["Rail / connector", `${p.rail || "—"} / ${p.connector || "—"}`],
            ["Beneficiary", `${p.beneficiary?.name || ""} ${p.beneficiary?.last4 ? `…${p.beneficiary.last4}` : ""} ${p.beneficiary?.bic || p.beneficiary?.routing_number || ""}`],
            ["Created", dateTime(p.created_at, { seconds: true })], ["Settle by", dateTime(p.settlement_target_at)],
            p.failure_code ? ["Failure", errorText(p.failure_code, p.failure_message)] : null,
            ["Description", p.description],
          ]),
          h("h2", {}, "Workflow state"),
          p.workflow_status ? facts([["Temporal status", h("span", { class: "mono", "data-testid": "workflow-status" }, p.workflow_status)]]) : null,
          wf ? facts([["Step", statusLabel(wf.step)], ["Attempts", wf.attempts], ["Last error", wf.last_error ? errorText(null, wf.last_error) : null], ["Hold", wf.hold_status],
            ["Next attempt", dateTime(wf.next_attempt_at)], ["SLA breached", wf.sla_breached ? "yes" : "no"]])
            : h("p", { class: "muted" }, p.workflow_error || "The workflow did not answer.")),
        h("section", { class: "panel", "aria-labelledby": "pd-timeline" },
          h("h2", { id: "pd-timeline" }, "Timeline"),
          h("ol", { class: "timeline", "data-testid": "timeline" }, collapseRetries(events).map((e) =>
            h("li", { class: GOOD.has(e.to_status) ? "good" : BAD.has(e.to_status) ? "bad" : "" },
              h("div", {}, badge(e.to_status), e.from_status ? h("span", { class: "muted" }, ` from ${statusLabel(e.from_status).toLowerCase()}`) : ""),
              h("div", { class: "when" }, e.repeats
                ? `${dateTime(e.created_at, { seconds: true })} – ${dateTime(e.last_at, { seconds: true })} · ${e.actor}`
                : `${dateTime(e.created_at, { seconds: true })} · ${e.actor}`),
              e.repeats ? h("div", { class: "muted", "data-retries": e.repeats + 1 }, `${e.repeats + 1} retries`) : null,
              e.reason ? h("div", {}, p.routing && e.reason === p.routing.why ? why(p.routing, p.currency) : errorText(null, e.reason)) : null,
              e.earlier ? h("details", {}, h("summary", {}, `${e.earlier.length} earlier retr${e.earlier.length === 1 ? "y" : "ies"}`),
                h("ul", { class: "plain" }, e.earlier.map((x) => h("li", {}, `${dateTime(x.created_at, { seconds: true })}${x.reason ? ` · ${errorText(null, x.reason)}` : ""}`)))) : null))))),
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
