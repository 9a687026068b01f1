// Approvals inbox: actions awaiting approval (approve / reject with a comment), the create-action
// form, and recent actions (execute the approved manual ones).

import { api } from "../api.js";
import { actionButton, badge, errorBox, facts, h, json, openDrawer, table, toast, fill } from "../dom.js";
import { dateTime } from "../format.js";
import * as live from "../live.js";

function skeleton(schema) {
  // an example params object from the type's JSON schema: its required fields, typed
  const out = {};
  const props = schema?.properties || {};
  for (const name of schema?.required || Object.keys(props).slice(0, 2)) {
    const p = props[name] || {};
    const type = p.type || (p.anyOf || []).map((a) => a.type).find((t) => t && t !== "null");
    out[name] = type === "integer" || type === "number" ? 0 : type === "boolean" ? false : type === "array" ? [] : type === "object" ? {} : "";
  }
  return out;
}

export async function render({ root, me, can }) {
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

  function voteCell(a) {
    if (!can("ops_actions:approve")) return h("span", { class: "muted" }, "—");
    const comment = h("input", { type: "text", placeholder: "comment", "aria-label": `Comment on ${a.type} ${a.id}`, "data-comment": a.id });
    const vote = (decision) => actionButton(decision === "approve" ? "Approve" : "Reject", async () => {
      const tally = await api(`/ops/actions/${encodeURIComponent(a.id)}/${decision}`, { method: "POST", body: { comment: comment.value || null } });
      toast(`${decision === "approve" ? "Approved" : "Rejected"}: ${tally.approvals}/${tally.required} approvals, now ${tally.status}`);
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
      fill(inbox, table([
        { label: "Created", cell: (a) => dateTime(a.created_at) },
        { label: "Action", cell: (a) => h("button", { type: "button", class: "btn-ghost", onclick: () => detail(a.id) }, h("strong", {}, a.type), " ", h("span", { class: "mono" }, a.target_label)) },
        { label: "Risk", cell: (a) => badge(a.risk_level) },
        { label: "Approvals", cell: (a) => h("span", { "data-approvals": a.id }, `needs ${a.required_approvals}`) },
        { label: "By", cell: (a) => a.created_by },
        { label: "Reason", cell: (a) => a.reason || "—" },
        { label: "Vote", cls: "actions", cell: voteCell },
      ], pending.data, { empty: "Nothing awaits approval.", rowAttrs: (a) => ({ "data-action-row": a.id }) }));
      fill(recent, table([
        { label: "Updated", cell: (a) => dateTime(a.updated_at) },
        { label: "Action", cell: (a) => h("button", { type: "button", class: "btn-ghost", onclick: () => detail(a.id) }, h("strong", {}, a.type), " ", h("span", { class: "mono" }, a.target_label)) },
        { label: "Status", cell: (a) => h("span", { "data-action-status": a.id }, badge(a.status)) },
        { label: "Risk", cell: (a) => badge(a.risk_level) },
        { label: "", cls: "actions", cell: (a) => (a.status === "approved" && can("ops_actions:create")
          ? actionButton("Execute", async () => { await api(`/ops/actions/${encodeURIComponent(a.id)}/execute`, { method: "POST" }); toast("Executed"); await load(); }, { class: "primary" })
          : "") },
      ], all.data, { empty: "No actions yet." }));
    } catch (err) { fill(inbox, errorBox(err)); }
  }

  async function detail(id) {
    const body = openDrawer(`Action ${id}`, h("p", { class: "muted" }, "Loading…"));
    try {
      const a = await api(`/ops/actions/${encodeURIComponent(id)}`);
      fill(body, 
        facts([["Type", a.type], ["Target", a.target_label], ["Status", badge(a.status)], ["Risk", `${a.risk_level} (${a.required_approvals} approvals)`],
          ["Created by", a.created_by], ["Created", dateTime(a.created_at)], ["Expires", dateTime(a.expires_at)], ["Reason", a.reason], ["Error", a.error]]),
        h("h3", {}, "Votes"),
        a.approvals.length ? h("ul", {}, a.approvals.map((v) => h("li", {}, badge(v.decision), ` ${v.approver} (${v.roles.join(", ")}) · ${dateTime(v.at)}${v.comment ? ` — “${v.comment}”` : ""}`))) : h("p", { class: "muted" }, "No votes yet."),
        h("h3", {}, "Params"), json(a.params),
        a.result ? [h("h3", {}, "Result"), json(a.result)] : null,
        h("p", {}, h("a", { href: a.links?.temporal_ui || "#", target: "_blank", rel: "noopener" }, "Workflow in Temporal UI ↗")));
    } catch (err) { fill(body, errorBox(err)); }
  }

  mine.addEventListener("change", load);
  let timer = null;
  const off = live.on("ops_actions", () => { clearTimeout(timer); timer = setTimeout(load, 300); });
  await load();
  void me;
  return () => { off(); clearTimeout(timer); };
}

function createForm(types, onCreated) {
  const type = h("select", { id: "a-type", required: true }, types.map((t) => h("option", { value: t.type }, t.type)));
  const help = h("p", { class: "muted", id: "a-type-help" });
  const params = h("textarea", { id: "a-params", rows: "5", "aria-describedby": "a-type-help" });
  const risk = h("select", { id: "a-risk" }, ["", "low", "medium", "high", "critical"].map((r) => h("option", { value: r }, r || "type's default")));
  const reason = h("input", { id: "a-reason", type: "text", maxlength: "1000" });
  const error = h("div", { role: "alert" });
  const sync = () => {
    const t = types.find((x) => x.type === type.value);
    help.textContent = t ? `${t.description} Default risk ${t.default_risk} (${t.required_approvals} approvals); ${t.execution}.` : "";
    params.value = JSON.stringify(skeleton(t?.params_schema), null, 2);
  };
  type.addEventListener("change", sync);
  sync();
  const form = h("form", { class: "panel stack", "aria-labelledby": "create-title", "data-testid": "create-action" },
    h("h2", { id: "create-title" }, "Create an action"),
    h("label", { for: "a-type" }, "Type", type), help,
    h("label", { for: "a-params" }, "Params (JSON)", params),
    h("label", { for: "a-risk" }, "Risk level", risk),
    h("label", { for: "a-reason" }, "Reason", reason),
    error,
    h("div", {}, h("button", { type: "submit", class: "primary" }, "Create action")));
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    fill(error, );
    let p;
    try { p = JSON.parse(params.value || "{}"); } catch (err) { fill(error, errorBox({ message: `params are not JSON: ${err.message}` })); return; }
    try {
      const a = await api("/ops/actions", { method: "POST", body: { type: type.value, params: p, risk_level: risk.value || null, reason: reason.value || null } });
      toast(`Created ${a.type} (${a.id}); it needs ${a.required_approvals} approval(s)`);
      reason.value = "";
      onCreated(a);
    } catch (err) { fill(error, errorBox(err)); }
  });
  return form;
}
