// Approvals inbox: actions awaiting approval (approve / reject with a comment), the create-action
// form, and recent actions (execute the approved manual ones). #/approvals/<id> opens that action.

import { api } from "../api.js";
import { actionButton, badge, errorBox, facts, h, json, openDrawer, statusLabel, table, toast, fill } from "../dom.js";
import { dateTime } from "../format.js";
import { richText } from "../links.js";
import * as live from "../live.js";

// --- a form from an action type's params JSON schema (pydantic's) ---------------------------------

function resolve(schema, root) {
  if (schema?.$ref) return root.$defs?.[schema.$ref.split("/").pop()] || {};
  return schema || {};
}

// the one non-null branch of an Optional (anyOf [X, null]), and whether null is allowed
function unwrap(prop, root) {
  const p = resolve(prop, root);
  const branches = (p.anyOf || []).map((b) => resolve(b, root));
  const real = branches.filter((b) => b.type !== "null");
  if (branches.length && real.length === 1) return { ...p, ...real[0], anyOf: undefined, nullable: true };
  return p;
}

function fieldFor(name, prop, required, root) {
  const p = unwrap(prop, root);
  const id = `a-param-${name}`;
  const label = `${statusLabel(name.split(".").pop())}${required ? "" : " (optional)"}`;
  const help = p.description ? h("small", { class: "muted" }, p.description) : null;
  let input, read;
  if (p.enum) {
    input = h("select", { id, name, required }, [required ? null : h("option", { value: "" }, "—"), ...p.enum.map((v) => h("option", { value: v }, statusLabel(v)))]);
    read = () => input.value || undefined;
  } else if (p.type === "boolean") {
    input = h("input", { id, name, type: "checkbox" });
    input.checked = Boolean(p.default);
    read = () => input.checked;
    return { el: h("label", { for: id, class: "row check" }, input, label, help), read, name };
  } else if (p.type === "integer" || p.type === "number") {
    input = h("input", { id, name, type: "number", required, step: p.type === "integer" ? "1" : "any",
      min: p.minimum ?? null, max: p.maximum ?? null, value: p.default ?? null });
    read = () => (input.value === "" ? undefined : Number(input.value));
  } else if (p.type === "array" && ["string", "integer"].includes(resolve(p.items, root).type)) {
    input = h("input", { id, name, type: "text", required, placeholder: "comma-separated" });
    const itemType = resolve(p.items, root).type;
    read = () => {
      const items = input.value.split(/[\s,]+/).filter(Boolean);
      return items.length ? items.map((x) => (itemType === "integer" ? Number(x) : x)) : undefined;
    };
  } else if (p.type === "object" || p.properties) {
    // a nested object (e.g. a DLQ filter): its own fields, read into one object
    const sub = Object.entries(p.properties || {}).map(([n, sp]) => fieldFor(`${name}.${n}`, sp, (p.required || []).includes(n), root));
    read = () => {
      const out = {};
      for (const f of sub) { const v = f.read(); if (v !== undefined && v !== "") out[f.name.split(".").pop()] = v; }
      return Object.keys(out).length ? out : undefined;
    };
    return { el: h("fieldset", { class: "stack" }, h("legend", {}, label), help, sub.map((f) => f.el)), read, name };
  } else {
    const type = p.format === "date-time" ? "datetime-local" : "text";
    input = h("input", { id, name, type, required, maxlength: p.maxLength ?? null, pattern: p.pattern ? p.pattern.replace(/^\^|\$$/g, "") : null,
      placeholder: name.endsWith("merchant_id") ? "mer_…" : name.endsWith("payout_id") ? "po_…" : null });
    read = () => {
      if (input.value === "") return undefined;
      return type === "datetime-local" ? new Date(input.value).toISOString() : input.value.trim();
    };
  }
  return { el: h("label", { for: id }, label, input, help), read, name };
}

export function schemaForm(schema) {
  const root = schema || {};
  const required = new Set(root.required || []);
  const fields = Object.entries(root.properties || {}).map(([n, p]) => fieldFor(n, p, required.has(n), root));
  return {
    fields: fields.map((f) => f.el),
    values: () => {
      const out = {};
      for (const f of fields) { const v = f.read(); if (v !== undefined && v !== "") out[f.name] = v; }
      return out;
    },
  };
}

export async function render({ root, me, can, args }) {
  const inbox = h("div", { "data-testid": "pending-actions" });
  const recent = h("div", { "data-testid": "recent-actions" });
  const mine = h("input", { type: "checkbox", id: "mine" });
  root.append(
    h("div", { class: "row" }, h("h1", {}, "Approvals"), h("span", { class: "spacer" }),
      can("ops_actions:approve") ? h("label", { for: "mine", class: "row" }, mine, "Only those I can still vote on") : null),
    h("section", { "aria-labelledby": "inbox-title" }, h("h2", { id: "inbox-title" }, "Awaiting approval"), inbox));
  let types = [];
  if (can("ops_actions:create")) {
    try { types = await api("/ops/action-types"); } catch (err) { root.append(errorBox(err)); }
    root.append(createForm(types, () => load()));
  }
  root.append(h("section", { "aria-labelledby": "recent-title" }, h("h2", { id: "recent-title" }, "Recent actions"), recent));

  function voteCell(a, detail) {
    if (!can("ops_actions:approve")) return h("span", { class: "muted" }, "—");
    if (a.created_by === me.sub) return h("span", { class: "muted", "data-own": a.id }, "Your action: others approve it");
    if (detail?.approvals?.some((v) => v.approver === me.sub)) return h("span", { class: "muted", "data-voted": a.id }, "You voted");
    const comment = h("input", { type: "text", placeholder: "comment", "aria-label": `Comment on ${a.type} ${a.id}`, "data-comment": a.id });
    const vote = (decision) => actionButton(decision === "approve" ? "Approve" : "Reject", async () => {
      const tally = await api(`/ops/actions/${encodeURIComponent(a.id)}/${decision}`, { method: "POST", body: { comment: comment.value || null } });
      toast(`${decision === "approve" ? "Approved" : "Rejected"}: ${tally.approvals} of ${tally.required} approvals, now ${statusLabel(tally.status).toLowerCase()}`);
      await load();
    }, { class: decision === "approve" ? "good" : "danger", "data-vote": decision, "data-action-id": a.id });
    return h("div", { class: "row" }, comment, vote("approve"), vote("reject"));
  }

  async function load() {
    try {
      const [pending, all] = await Promise.all([
        api("/ops/actions", { params: { status: "pending_approval", awaiting_my_approval: mine.checked || undefined } }),
        api("/ops/actions", { params: { limit: 25 } }),
      ]);
      // each open action's votes so far, for the "1 of 3" tally
      const details = new Map((await Promise.all(pending.data.map((a) => api(`/ops/actions/${encodeURIComponent(a.id)}`).catch(() => null))))
        .filter(Boolean).map((d) => [d.id, d]));
      // what executing each would do, computed now: approvers read it before the Approve button
      const plans = new Map((await Promise.all(pending.data.map((a) => api(`/ops/actions/${encodeURIComponent(a.id)}/plan`).catch(() => null))))
        .filter(Boolean).map((p) => [p.action_id, p]));
      const approvedSoFar = (a) => (details.get(a.id)?.approvals || []).filter((v) => v.decision === "approve").length;
      fill(inbox, table([
        { label: "Created", cell: (a) => dateTime(a.created_at) },
        { label: "Action", cell: (a) => h("button", { type: "button", class: "btn-ghost", onclick: () => detail(a.id) }, h("strong", {}, statusLabel(a.type)), " ", h("span", { class: "mono" }, a.target_label)) },
        { label: "Risk", cell: (a) => badge(a.risk_level) },
        { label: "Approvals", cell: (a) => h("span", { "data-approvals": a.id, title: `${approvedSoFar(a)} of the ${a.required_approvals} approvals it needs` }, `${approvedSoFar(a)} of ${a.required_approvals}`) },
        { label: "By", cell: (a) => a.created_by },
        { label: "Reason", cell: (a) => a.reason || "—" },
        { label: "Plan (if executed now)", cell: (a) => planCell(a, plans.get(a.id)) },
        { label: "Vote", cls: "actions", cell: (a) => voteCell(a, details.get(a.id)) },
      ], pending.data, { empty: "Nothing awaits approval.", rowAttrs: (a) => ({ "data-action-row": a.id }) }));
      fill(recent, table([
        { label: "Updated", cell: (a) => dateTime(a.updated_at) },
        { label: "Action", cell: (a) => h("button", { type: "button", class: "btn-ghost", onclick: () => detail(a.id) }, h("strong", {}, statusLabel(a.type)), " ", h("span", { class: "mono" }, a.target_label)) },
        { label: "Status", cell: (a) => h("span", { "data-action-status": a.id }, badge(a.status)) },
        { label: "Risk", cell: (a) => badge(a.risk_level) },
        { label: "", cls: "actions", cell: (a) => (a.status === "approved" && can("ops_actions:create")
          ? actionButton("Execute", async () => { await api(`/ops/actions/${encodeURIComponent(a.id)}/execute`, { method: "POST" }); toast("Executed"); await load(); }, { class: "primary" })
          : "") },
      ], all.data, { empty: "No actions yet." }));
    } catch (err) { fill(inbox, errorBox(err)); }
  }

  function planCell(a, plan) {
    if (!plan) return h("span", { class: "muted" }, "—");
    return h("div", { "data-plan": a.id },
      plan.would_refuse ? h("div", { class: "warn-box", role: "note", "data-would-refuse": plan.action_id }, h("strong", {}, "Would fail now: "), plan.would_refuse) : null,
      h("span", {}, plan.summary), " ",
      h("button", { type: "button", class: "btn-ghost", onclick: () => detail(a.id), "data-plan-open": a.id }, "Details"));
  }

  async function detail(id) {
    const body = openDrawer(`Action ${id}`, h("p", { class: "muted" }, "Loading…"));
    try {
      const [a, plan] = await Promise.all([api(`/ops/actions/${encodeURIComponent(id)}`),
        api(`/ops/actions/${encodeURIComponent(id)}/plan`).catch(() => null)]);
      fill(body, 
        facts([["Type", statusLabel(a.type)], ["Target", a.target_label], ["Status", badge(a.status)], ["Risk", `${a.risk_level} (${a.required_approvals} approvals)`],
          ["Created by", a.created_by], ["Created", dateTime(a.created_at)], ["Expires", dateTime(a.expires_at)], ["Reason", a.reason], ["Error", a.error ? richText(a.error, dateTime) : null]]),
        h("h3", {}, "Votes"),
        a.approvals.length ? h("ul", {}, a.approvals.map((v) => h("li", {}, badge(v.decision), ` ${v.approver} (${v.roles.join(", ")}) · ${dateTime(v.at)}${v.comment ? ` — “${v.comment}”` : ""}`))) : h("p", { class: "muted" }, "No votes yet."),
        h("h3", {}, "Params"), json(a.params),
        plan ? planSection(plan) : null,
        a.status === "pending_approval" ? voteCell(a, a) : null,
        a.result ? [h("h3", {}, "Result"), json(a.result)] : null,
        h("p", {}, h("a", { href: a.links?.temporal_ui || "#", target: "_blank", rel: "noopener" }, "Workflow in Temporal UI ↗")));
    } catch (err) { fill(body, errorBox(err)); }
  }

  mine.addEventListener("change", load);
  let timer = null;
  const off = live.on("ops_actions", () => { clearTimeout(timer); timer = setTimeout(load, 300); });
  await load();
  if (args?.[0]) detail(args[0]);  // #/approvals/<action id>: a link from another page (a payout's repair)
  return () => { off(); clearTimeout(timer); };
}

// The plan: what executing the action would do, computed at the time shown (GET .../plan).
function planSection(plan) {
  const money = (m, cur) => (m === null || m === undefined ? "—" : `${m} ${cur || ""} (minor units)`);
  return h("section", { "data-testid": "action-plan", "aria-labelledby": "plan-title" },
    h("h3", { id: "plan-title" }, "Plan: what executing it would do now"),
    h("p", { "data-plan-summary": plan.action_id }, plan.summary),
    plan.would_refuse ? h("div", { class: "warn-box", role: "note", "data-would-refuse": plan.action_id }, h("strong", {}, "Would fail now: "), plan.would_refuse) : null,
    plan.payouts.length ? table([
      { label: "Payout", cell: (p) => h("span", { class: "mono" }, p.payout_id) },
      { label: "Status now", cell: (p) => badge(p.status) },
      { label: "Amount", cell: (p) => money(p.amount_minor, p.currency) },
      { label: "Held", cell: (p) => money(p.held_minor, p.currency) },
      { label: "Effect", cell: (p) => h("span", { "data-plan-effect": p.payout_id }, badge(p.effect)) },
      { label: "", cell: (p) => p.detail || "" },
    ], plan.payouts) : h("p", { class: "muted" }, "No payout changes."),
    plan.amounts.length ? h("ul", {}, plan.amounts.map((m) => h("li", {}, `${statusLabel(m.effect)}: ${money(m.amount_minor, m.currency)} on ${m.account}`))) : null,
    plan.controls.length ? h("ul", {}, plan.controls.map((c) => h("li", {}, `${statusLabel(c.change)} ${statusLabel(c.kind).toLowerCase()} on ${c.target}${c.control_ids.length ? ` (controls ${c.control_ids.join(", ")})` : ""}`))) : null,
    plan.routes.length ? h("ul", {}, plan.routes.map((r) => h("li", {}, `Route ${r.target}: ${r.from_connector || "routing decides"} → ${r.to_connector || "routing decides"}${r.until ? ` until ${r.until}` : ""}`))) : null,
    plan.notes.length ? h("ul", { class: "muted" }, plan.notes.map((n) => h("li", {}, n))) : null,
    h("p", { class: "muted" }, `Computed ${dateTime(plan.computed_at)}.`));
}

function createForm(types, onCreated) {
  const type = h("select", { id: "a-type", required: true }, types.map((t) => h("option", { value: t.type }, statusLabel(t.type))));
  const help = h("p", { class: "muted", id: "a-type-help" });
  const paramsBox = h("div", { class: "stack", "data-testid": "action-params" });
  const risk = h("select", { id: "a-risk" }, ["", "low", "medium", "high", "critical"].map((r) => h("option", { value: r }, r ? statusLabel(r) : "The type's default")));
  const reason = h("input", { id: "a-reason", type: "text", maxlength: "1000" });
  const error = h("div", { role: "alert" });
  let params = schemaForm({});
  const sync = () => {
    const t = types.find((x) => x.type === type.value);
    help.textContent = t ? `${t.description} Default risk ${t.default_risk} (${t.required_approvals} approval${t.required_approvals === 1 ? "" : "s"}); ${t.execution}.` : "";
    params = schemaForm(t?.params_schema);
    fill(paramsBox, params.fields.length ? params.fields : h("p", { class: "muted" }, "No parameters."));
  };
  type.addEventListener("change", sync);
  sync();
  const form = h("form", { class: "panel stack", "aria-labelledby": "create-title", "data-testid": "create-action" },
    h("h2", { id: "create-title" }, "Create an action"),
    h("label", { for: "a-type" }, "Type", type), help,
    h("fieldset", { class: "stack" }, h("legend", {}, "Parameters"), paramsBox),
    h("label", { for: "a-risk" }, "Risk level", risk),
    h("label", { for: "a-reason" }, "Reason", reason),
    error,
    h("div", {}, h("button", { type: "submit", class: "primary" }, "Create action")));
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    fill(error);
    try {
      const a = await api("/ops/actions", { method: "POST", body: { type: type.value, params: params.values(), risk_level: risk.value || null, reason: reason.value || null } });
      toast(`Created ${statusLabel(a.type).toLowerCase()} (${a.id}); it needs ${a.required_approvals} approval(s)`);
      reason.value = "";
      sync();
      onCreated(a);
    } catch (err) { fill(error, errorBox(err)); }
  });
  return form;
}
