// Webhooks: the merchant's endpoints (URL, events, enabled or disabled and why) and their
// deliveries (the activity feed's webhook events: delivered, failing, disabled).

import { api } from "../api.js";
import { badge, errorBox, fill, h, table } from "../dom.js";
import { dateTime } from "../format.js";
import { merchantLink } from "../links.js";
import { activityFeed } from "../portal_widgets.js";

export async function render({ root, me }) {
  const endpoints = h("div", { "data-testid": "webhook-endpoints" }, h("p", { class: "muted" }, "Loading…"));
  const deliveries = activityFeed({ title: "Deliveries", pageSize: 25 });
  deliveries.panel.querySelector("[data-testid=activity-kinds]").value = "webhook";
  deliveries.panel.querySelector("[data-testid=activity-kinds]").hidden = true;
  root.append(h("h1", {}, "Webhooks"),
    h("section", { class: "panel", "aria-labelledby": "ep-title" }, h("h2", { id: "ep-title" }, "Endpoints"), endpoints),
    deliveries.panel);
  try {
    const list = await api("/webhook-endpoints");
    fill(endpoints, table([
      me.is_merchant_user ? null : { label: "Merchant", cell: (e) => merchantLink(e.merchant_id) },
      { label: "URL", cell: (e) => h("code", {}, e.url) },
      { label: "Events", cell: (e) => (e.event_types || []).join(", ") },
      { label: "State", cell: (e) => (e.enabled ? badge("succeeded", "enabled") : badge("failed", "disabled")) },
      { label: "Why disabled", cell: (e) => e.disabled_reason || "" },
      { label: "Failing since", cell: (e) => (e.failing_since ? dateTime(e.failing_since) : "") },
      { label: "Created", cls: "nowrap", cell: (e) => dateTime(e.created_at) },
    ].filter(Boolean), list.data, { empty: "No endpoints registered (POST /api/v1/webhook-endpoints)." }));
  } catch (err) { fill(endpoints, errorBox(err)); }
  await deliveries.load();
  return deliveries.cleanup;
}
