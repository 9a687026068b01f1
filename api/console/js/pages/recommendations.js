// Recommendations: what payops suggests from its own data, each with its monthly impact (and the
// arithmetic), a confidence (and why), its evidence and the ops action Apply creates. Apply and
// Dismiss for roles that create ops actions; a merchant user sees its own, read-only.

import { api } from "../api.js";
import { actionButton, badge, errorBox, facts, fill, h, json, openDrawer, statusLabel, table, toast } from "../dom.js";
import { dateTime, money } from "../format.js";
import { merchantLink } from "../links.js";

function impact(r) {
  return h("span", { title: r.impact.arithmetic }, money(r.impact.amount_minor, r.impact.currency), h("span", { class: "muted" }, " / month"));
}

function details(r) {
  openDrawer(r.title,
    facts([
      ["Kind", statusLabel(r.kind)],
      ["Status", badge(r.status)],
      ["Merchant", r.merchant_id ? merchantLink(r.merchant_id) : "Platform"],
      ["Impact", impact(r)],
      ["Arithmetic", h("span", { "data-testid": "rec-arithmetic" }, r.impact.arithmetic)],
      ["Confidence", `${Math.round(r.confidence * 100)} %`],
      ["Why this confidence", r.confidence_explanation],
      ["Suggested action", r.suggested_action ? `${r.suggested_action.type} ${JSON.stringify(r.suggested_action.params)}` : "Informational: no ops action"],
      ["Ops action", r.action_id ? h("a", { href: "#/approvals", "data-rec-action": r.action_id }, r.action_id) : "—"],
      ["Expires", dateTime(r.expires_at)],
    ]),
    h("h3", {}, "Evidence"), json(r.evidence));
}

function actions(r, mayAct, reload) {
  if (!mayAct || r.status !== "pending") return "";
  return [
    r.suggested_action ? actionButton("Apply", async () => {
      const done = await api(`/recommendations/${r.id}/apply`, { method: "POST" });
      toast(`Ops action ${done.action_id} created: it needs its approvals`);
      await reload();
    }, { "data-apply": r.id, class: "primary" }) : null,
    actionButton("Dismiss", async () => {
      await api(`/recommendations/${r.id}/dismiss`, { method: "POST" });
      toast("Dismissed");
      await reload();
    }, { "data-dismiss": r.id }),
  ];
}

function columns(mayAct, reload) {
  return [
    { label: "Impact", num: true, cell: impact },
    { label: "Recommendation", cell: (r) => h("a", { href: "#", "data-rec": r.id, onclick: (e) => { e.preventDefault(); details(r); } }, r.title) },
    { label: "Merchant", cell: (r) => (r.merchant_id ? merchantLink(r.merchant_id) : h("span", { class: "muted" }, "Platform")) },
    { label: "Confidence", num: true, cell: (r) => h("span", { title: r.confidence_explanation }, `${Math.round(r.confidence * 100)} %`) },
    { label: "Status", cell: (r) => h("span", { "data-rec-status": r.id }, badge(r.status), r.action_id ? h("span", { class: "muted mono" }, ` ${r.action_id}`) : "") },
    { label: "Expires", cls: "nowrap", cell: (r) => h("time", { datetime: r.expires_at }, dateTime(r.expires_at)) },
    { label: "", cls: "actions", cell: (r) => actions(r, mayAct, reload) },
  ];
}

function mayActOn(me) {
  return !me.is_merchant_user && (me.permissions || []).includes("ops_actions:create");
}

// The Overview's panel: the three pending recommendations with the largest impact.
export async function topThree(me) {
  const box = h("section", { class: "panel", "aria-labelledby": "top-recs-title", "data-testid": "top-recommendations" },
    h("h2", { id: "top-recs-title" }, h("a", { href: "#/recommendations" }, "Top recommendations")));
  const list = h("div", {});
  box.append(list);
  async function load() {
    try {
      const page = await api("/recommendations", { params: { status: "pending", sort: "impact", limit: 3 } });
      fill(list, table(columns(mayActOn(me), load), page.data, { empty: "No pending recommendations." }));
    } catch (err) { fill(list, errorBox(err)); }
  }
  await load();
  return box;
}

export async function render({ root, me }) {
  const kind = h("select", { id: "rec-kind" }, ["", "cheaper_route", "batch_instead_of_standard", "float_runway", "failing_connector"].map((s) => h("option", { value: s }, s ? statusLabel(s) : "Any")));
  const status = h("select", { id: "rec-status" }, ["pending", "applied", "dismissed", "expired", ""].map((s) => h("option", { value: s }, s ? statusLabel(s) : "Any")));
  const list = h("div", { "data-testid": "recommendations" });
  const more = h("div", {});
  root.append(h("h1", {}, "Recommendations"),
    h("div", { class: "filters" }, h("label", { for: "rec-kind" }, "Kind", kind), h("label", { for: "rec-status" }, "Status", status)),
    list, more);
  const mayAct = mayActOn(me);
  let rows = [];

  async function load(cursor) {
    let page;
    try { page = await api("/recommendations", { params: { kind: kind.value, status: status.value, limit: 50, cursor } }); } catch (err) { fill(list, errorBox(err)); return; }
    rows = cursor ? rows.concat(page.data) : page.data;
    fill(list, table(columns(mayAct, () => load()), rows, { empty: "No recommendations." }));
    fill(more, page.next_cursor ? actionButton("More", () => load(page.next_cursor)) : null);
  }

  kind.addEventListener("change", () => load());
  status.addEventListener("change", () => load());
  await load();
}
