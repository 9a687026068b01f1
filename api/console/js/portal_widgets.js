// Merchant portal panels shared by the merchant's dashboard and the ops "Merchants" page:
// the activity feed (GET /activity, paged, with live updates prepended) and the health panel
// (GET /health/merchant).

import { api } from "./api.js";
import { badge, clear, errorBox, h } from "./dom.js";
import { count, dateTime, money, rate } from "./format.js";
import { payoutLink } from "./links.js";
import * as live from "./live.js";

const KIND_LABEL = { payment: "Payment", payout: "Payout", settlement: "Settlement", webhook: "Webhook", ops: "Ops" };

function describe(e) {
  const d = e.detail || {};
  if (e.kind === "payment") return [`${d.source || "payment"} `, h("code", {}, e.ref), " ", badge(e.event), " ", money(e.amount_minor, e.currency)];
  if (e.kind === "payout" || e.kind === "settlement") return [payoutLink(e.ref), " ", badge(e.event), " ", money(e.amount_minor, e.currency)];
  if (e.kind === "webhook") {
    if (e.event === "disabled") return ["Endpoint ", h("code", {}, e.ref), " ", badge("failed", "disabled"), d.reason ? h("span", { class: "muted" }, ` ${d.reason}`) : ""];
    return ["Delivery of ", h("code", {}, e.ref), " ", badge(e.event === "delivered" ? "succeeded" : "failed", e.event),
      d.status_code ? h("span", { class: "muted" }, ` HTTP ${d.status_code}`) : "", d.latency_ms != null ? h("span", { class: "muted" }, ` · ${d.latency_ms} ms`) : ""];
  }
  if (e.kind === "ops") {
    if (e.event === "view_as.started") return [`${d.actor} viewed this portal`, h("span", { class: "muted" }, ` — ${d.reason}`)];
    if (e.event === "view_as.ended") return [`${d.actor}'s view of this portal ended`, h("span", { class: "muted" }, ` by ${d.ended_by}`)];
    return [`${(d.action_type || "").replaceAll("_", " ")} `, badge(d.to_status || d.event), h("span", { class: "muted" }, ` by ${d.actor}`)];
  }
  return [JSON.stringify(e)];
}

function item(e, fresh = false) {
  return h("li", { class: fresh ? "fresh" : null, "data-kind": e.kind, "data-event-id": e.id, "data-ref": e.ref || "" },
    h("time", { datetime: e.at }, dateTime(e.at)), h("span", { class: `kind kind-${e.kind}` }, KIND_LABEL[e.kind] || e.kind), " ", ...describe(e));
}

// A live message as a feed entry: payouts (status changes) and synced transactions, which carry
// the merchant id (the server only sends a merchant user its own).
function fromLive(channel, data) {
  const at = data.at || new Date().toISOString();
  if (channel === "payouts") {
    return { id: `live:${data.payout_id}:${data.version}`, at, kind: data.status === "settled" ? "settlement" : "payout",
      event: data.status, merchant_id: data.merchant_id, ref: data.payout_id, amount_minor: data.amount_minor, currency: data.currency, detail: {} };
  }
  if (channel === "transactions") {
    return { id: `live:tx:${Date.now()}:${Math.random()}`, at, kind: "payment", event: "synced", merchant_id: data.merchant_id, ref: null, detail: data, live: true };
  }
  return null;
}

export function activityFeed({ merchantId = null, title = "Activity", pageSize = 20 } = {}) {
  const list = h("ol", { class: "feed activity", "aria-live": "polite", "data-testid": "activity-feed" });
  const more = h("button", { type: "button", hidden: true, "data-testid": "activity-more" }, "Older");
  const kinds = h("select", { "aria-label": "Kinds of activity", "data-testid": "activity-kinds" },
    [["", "Everything"], ["payment", "Payments"], ["payout", "Payouts"], ["settlement", "Settlements"], ["webhook", "Webhooks"], ["ops", "Ops actions"]]
      .map(([v, l]) => h("option", { value: v }, l)));
  const panel = h("section", { class: "panel", "aria-label": title, "data-testid": "activity-panel" },
    h("div", { class: "row" }, h("h2", {}, title), h("span", { class: "live-dot on", title: "live" }, "live"), h("span", { class: "spacer" }), kinds),
    list, more);
  let cursor = null;

  async function load(reset) {
    if (reset) { cursor = null; clear(list); }
    let page;
    try {
      page = await api("/activity", { params: { merchant_id: merchantId || undefined, limit: pageSize, cursor: cursor || undefined, kinds: kinds.value || undefined } });
    } catch (err) { list.append(h("li", {}, errorBox(err))); return; }
    if (reset && !page.data.length) list.append(h("li", { class: "muted empty" }, "Nothing yet."));
    list.append(...page.data.map((e) => item(e)));
    cursor = page.next_cursor;
    more.hidden = !cursor;
    panel.dataset.loaded = "true";
  }
  more.addEventListener("click", () => load(false));
  kinds.addEventListener("change", () => load(true));
  const off = live.on("*", (data, channel) => {
    if (merchantId && data.merchant_id !== merchantId) return;
    const e = fromLive(channel, data);
    if (!e || (kinds.value && kinds.value !== e.kind)) return;
    list.querySelector("li.empty")?.remove();
    const li = e.live
      ? h("li", { class: "fresh", "data-kind": "payment", "data-live": "true" }, h("time", { datetime: e.at }, dateTime(e.at)),
        h("span", { class: "kind kind-payment" }, "Payments"), ` ${data.source}: `, h("strong", {}, `${count(data.inserted ?? 0)} new`), `, ${count(data.updated ?? 0)} updated`)
      : item(e, true);
    li.dataset.live = "true";
    list.prepend(li);
  });
  return { panel, load: () => load(true), cleanup: off };
}

function pct(x) { return x == null ? "—" : rate(x); }
function ms(x) { return x == null ? "—" : `${Math.round(x)} ms`; }

export function healthPanel(merchantId = null) {
  const body = h("div", { class: "health" }, h("p", { class: "muted" }, "Loading…"));
  const panel = h("section", { class: "panel", "aria-label": "System health", "data-testid": "health-panel" }, h("h2", {}, "System health"), body);
  async function load() {
    let data;
    try { data = await api("/health/merchant", { params: { merchant_id: merchantId || undefined } }); } catch (err) { clear(body).append(errorBox(err)); return; }
    const w = data.windows;
    const row = (label, f) => h("tr", {}, h("th", { scope: "row" }, label), ...["24h", "7d"].map((k) => h("td", { class: "num" }, f(w[k]))));
    const uptime = (win) => (win.uptime.length ? win.uptime.map((c) => `${c.component} ${c.uptime_pct.toFixed(2)} %`).join(" · ") : "—");
    clear(body).append(h("table", { class: "table compact" },
      h("thead", {}, h("tr", {}, h("th", {}, ""), h("th", { class: "num" }, "24 h"), h("th", { class: "num" }, "7 d"))),
      h("tbody", {},
        row("Webhook delivery rate", (x) => h("span", { "data-testid": "health-webhook-rate" }, pct(x.webhooks.success_rate))),
        row("Webhook latency p50 / p95", (x) => `${ms(x.webhooks.latency_p50_ms)} / ${ms(x.webhooks.latency_p95_ms)}`),
        row("API requests", (x) => count(x.api.requests)),
        row("API latency p50 / p95", (x) => `${ms(x.api.latency_p50_ms)} / ${ms(x.api.latency_p95_ms)}`),
        row("API errors 5xx / 4xx", (x) => `${pct(x.api.error_rate_5xx)} / ${pct(x.api.error_rate_4xx)}`),
        row("Uptime", uptime),
        row("Rails used", (x) => (x.rails.length ? x.rails.map((r) => `${r.rail}${r.connector ? ` (${r.connector})` : ""} ${pct(r.success_rate)}`).join(" · ") : "—")))));
    panel.dataset.loaded = "true";
  }
  return { panel, load };
}
