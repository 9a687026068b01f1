// Merchants (ops): one merchant's activity feed and system health, and "View as" — the
// merchant's portal, read-only and audited (POST /ops/view-as).

import { api } from "../api.js";
import { errorBox, fill, h, modal, toast } from "../dom.js";
import { startViewAs } from "../app.js";
import { activityFeed, healthPanel } from "../portal_widgets.js";

export async function render({ root, me, args, navigate, can }) {
  const merchantId = args[0] || "";
  const input = h("input", { id: "merchant-id", value: merchantId, placeholder: "mer_…", size: 28, list: "merchant-ids", required: true });
  const options = h("datalist", { id: "merchant-ids" });
  const form = h("form", { class: "filters", role: "search", "aria-label": "Choose a merchant" },
    h("label", { for: "merchant-id" }, "Merchant id", input), options,
    h("button", { type: "submit", class: "primary" }, "Show"));
  form.addEventListener("submit", (ev) => { ev.preventDefault(); navigate(`#/merchant/${encodeURIComponent(input.value.trim())}`); });
  root.append(h("h1", {}, "Merchants"), form);
  api("/dev/demo-users").then((users) => {
    for (const u of users) if (u.merchant_id) options.append(h("option", { value: u.merchant_id }, u.label));
  }).catch(() => {});
  if (!merchantId) {
    root.append(h("p", { class: "muted" }, "Name a merchant to see its activity and health, or view its portal as it does."));
    return () => {};
  }
  let merchant;
  try { merchant = await api(`/merchants/${encodeURIComponent(merchantId)}`); } catch (err) { root.append(errorBox(err)); return () => {}; }
  const head = h("div", { class: "row" }, h("h2", {}, merchant.name, " ", h("code", {}, merchant.id)), h("span", { class: "spacer" }));
  if (can("portal:view_as")) {
    head.append(h("button", { type: "button", class: "primary", "data-testid": "view-as", onclick: async () => {
      const values = await modal(`View ${merchant.name}'s portal`, [
        { name: "reason", label: "Why (audited, shown to the merchant)", required: true, minlength: 3 }],
      { submit: "View as (read-only)", intro: "You will see the merchant portal as its viewers do, read-only, for a limited time." });
      if (!values) return;
      try {
        const session = await api("/ops/view-as", { method: "POST", body: { merchant_id: merchant.id, reason: values.reason } });
        await startViewAs(session.token);
      } catch (err) { toast(err.message, "error"); }
    } }, "View as…"));
  }
  const feed = activityFeed({ merchantId: merchant.id, title: "Activity" });
  const health = healthPanel(merchant.id);
  root.append(head, h("div", { class: "grid portal-bottom" }, feed.panel, health.panel));
  await Promise.all([feed.load(), health.load()]);
  return feed.cleanup;
}
