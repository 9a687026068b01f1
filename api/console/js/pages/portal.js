// The merchant portal's dashboard (merchant users, and ops in a "view as" session): key figures
// and charts (the overview's, scoped to the merchant), payout status cards, recent transactions,
// the settlement panel (funds per currency, next settlement, a link to Withdraw), the activity feed
// with live updates, and the merchant's system health.

import { api } from "../api.js";
import { badge, errorBox, fill, h, statusLabel, table } from "../dom.js";
import { count, dateTime, money } from "../format.js";
import { merchantName } from "../links.js";
import * as live from "../live.js";
import { activityFeed, healthPanel } from "../portal_widgets.js";
import { render as renderOverview } from "./overview.js";
import { settlementSummary } from "./settlement.js";

export async function render(ctx) {
  const { root, me } = ctx;
  const title = h("span", { "data-testid": "portal-merchant" }, me.merchant_id);
  merchantName(me.merchant_id).then((name) => { if (name) title.textContent = name; });
  const figures = h("div", { "data-testid": "portal-figures" });
  const statusCards = h("section", { class: "grid kpis", "aria-label": "Payouts by status", "data-testid": "status-cards" });
  const recent = h("div", { "data-testid": "recent-transactions" }, h("p", { class: "muted" }, "Loading…"));
  const feed = activityFeed({ title: "Activity" });
  const health = healthPanel();
  const settlement = settlementSummary(me.merchant_id);
  root.append(
    h("h1", {}, "Merchant portal · ", title),
    me.view_as_by ? h("p", { class: "muted" }, "Read-only: you see what this merchant's viewers see.") : "",
    figures,
    settlement.panel,
    h("section", { class: "panel", "aria-labelledby": "status-title" }, h("h2", { id: "status-title" }, "Payouts by status (24 h)"), statusCards),
    h("section", { class: "panel", "aria-labelledby": "recent-title" },
      h("div", { class: "row" }, h("h2", { id: "recent-title" }, "Recent transactions"), h("span", { class: "spacer" }), h("a", { href: "#/transactions" }, "All transactions"))
      , recent),
    h("div", { class: "grid portal-bottom" }, feed.panel, health.panel));

  async function loadStatus() {
    let ov;
    try { ov = await api("/dashboard/overview", { params: { period: "24h" } }); } catch (err) { fill(statusCards, errorBox(err)); return; }
    const groups = {};
    for (const c of ov.by_currency) {
      for (const [g, v] of Object.entries(c.payouts)) {
        groups[g] = groups[g] || { count: 0, amounts: [] };
        groups[g].count += v.count.value;
        if (v.count.value) groups[g].amounts.push(money(v.amount_minor.value, c.currency));
      }
    }
    const names = Object.keys(groups);
    fill(statusCards, ...(names.length ? names.map((g) => h("div", { class: "panel kpi", "data-status": g },
      h("div", { class: "label" }, statusLabel(g)), h("div", { class: "value" }, count(groups[g].count)),
      h("div", { class: "delta flat" }, groups[g].amounts.join(" · ") || "—"))) : [h("p", { class: "muted" }, "No payouts in the last 24 hours.")]));
  }

  async function loadRecent() {
    let page;
    try { page = await api("/transactions", { params: { limit: 8 } }); } catch (err) { fill(recent, errorBox(err)); return; }
    fill(recent, table([
      { label: "When", cls: "nowrap", cell: (t) => dateTime(t.occurred_at) },
      { label: "Reference", cell: (t) => h("code", {}, t.client_operation_id || t.source_id) },
      { label: "Customer", cell: (t) => t.payer_email || t.payer_name || "" },
      { label: "Amount", num: true, cell: (t) => money(t.amount_minor, t.currency) },
      { label: "Provider", cell: (t) => t.source },
      { label: "Status", cell: (t) => badge(t.status) },
    ], page.data, { empty: "No transactions yet." }));
  }

  const overviewCleanup = await renderOverview({ ...ctx, root: figures, embedded: true });
  let timer = null;
  const off = live.on("*", (_data, channel) => {
    if (channel !== "payouts" && channel !== "transactions") return;
    clearTimeout(timer);
    timer = setTimeout(() => { loadStatus(); loadRecent(); if (channel === "payouts") settlement.load(); }, 2000);
  });
  await Promise.all([loadStatus(), loadRecent(), feed.load(), health.load(), settlement.load()]);
  return () => { off(); clearTimeout(timer); feed.cleanup(); if (typeof overviewCleanup === "function") overviewCleanup(); };
}
