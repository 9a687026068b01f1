// Profile: company name, country, account type and KYC status with the history of its changes.
// A merchant_admin edits the profile (PATCH /merchants/{id}/profile, audited); the KYC status is
// changed only by ops, through a SET_KYC_STATUS ops action (Approvals). Ops open it for a
// merchant: #/profile/<merchant id>, read-only.

import { api } from "../api.js";
import { actionButton, badge, facts, fill, h, modal, table, toast } from "../dom.js";
import { dateTime } from "../format.js";
import { pickMerchant } from "./settlement.js";

export async function render({ root, me, args, navigate }) {
  const merchantId = me.merchant_id || args[0];
  if (!merchantId) return pickMerchant(root, navigate, "profile", "Profile");
  const isAdmin = me.roles.includes("merchant_admin") && me.merchant_id === merchantId;
  const body = h("div", { "data-testid": "profile" });
  const actions = h("div", { class: "row" });
  root.append(h("h1", {}, "Profile"), actions, body);

  async function edit(p) {
    const values = await modal("Edit profile", [
      { name: "company_name", label: "Company name", value: p.company_name, required: true, maxlength: 200 },
      { name: "country", label: "Country (ISO 3166 alpha-2)", value: p.country || "", maxlength: 2 },
      { name: "account_type", label: "Account type", type: "select", value: p.account_type,
        options: [{ value: "business", label: "business" }, { value: "individual", label: "individual" }] },
    ], { submit: "Save" });
    if (!values) return;
    const change = { company_name: values.company_name.trim(), account_type: values.account_type };
    if (values.country.trim()) change.country = values.country.trim().toUpperCase();
    await api(`/merchants/${encodeURIComponent(merchantId)}/profile`, { method: "PATCH", body: change });
    toast("Profile saved");
    await load();
  }

  async function load() {
    const p = await api(`/merchants/${encodeURIComponent(merchantId)}/profile`);
    fill(actions, isAdmin ? actionButton("Edit profile", () => edit(p), { "data-testid": "edit-profile" }) : null);
    fill(body,
      facts([
        ["Company", h("span", { "data-field": "company_name" }, p.company_name)],
        ["Country", h("span", { "data-field": "country" }, p.country || "—")],
        ["Account type", h("span", { "data-field": "account_type" }, p.account_type)],
        ["KYC status", h("span", { "data-field": "kyc_status" }, badge(p.kyc_status))],
        ["KYC changed", p.kyc_updated_at ? dateTime(p.kyc_updated_at) : "—"],
        ["Merchant id", h("span", { class: "mono" }, p.merchant_id)],
      ]),
      h("h2", {}, "KYC history"),
      h("p", { class: "muted" }, "Ops change the KYC status with an approved SET_KYC_STATUS ops action."),
      table([
        { label: "When", cls: "nowrap", cell: (c) => dateTime(c.at) },
        { label: "Change", cell: (c) => [badge(c.from_status || "none"), " → ", badge(c.to_status)] },
        { label: "Reason", cell: (c) => c.reason || "—" },
        { label: "By", cell: (c) => c.actor },
        { label: "Ops action", cell: (c) => (c.action_id ? h("span", { class: "mono" }, c.action_id) : "—") },
      ], p.kyc_history, { empty: "No KYC change yet.", rowAttrs: (c) => ({ "data-kyc-change": c.to_status }) }));
    root.dataset.loaded = "true";
  }

  await load();
}
