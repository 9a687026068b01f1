// API logs: every authenticated request to the API (route template, status, latency, idempotency
// key, request id, client IP), newest first, filtered and paged. A merchant user sees its own.

import { api } from "../api.js";
import { badge, errorBox, fill, h, table } from "../dom.js";
import { dateTime } from "../format.js";
import { merchantLink } from "../links.js";

export async function render({ root, me }) {
  const method = h("select", { id: "log-method" }, ["", "GET", "POST", "PUT", "PATCH", "DELETE"].map((m) => h("option", { value: m }, m || "Any")));
  const status = h("input", { id: "log-status", type: "number", min: 100, max: 599, placeholder: "e.g. 422", size: 6 });
  const routeInput = h("input", { id: "log-route", placeholder: "/api/v1/payouts", size: 28 });
  const principal = h("input", { id: "log-principal", placeholder: "token subject", size: 18 });
  const list = h("div", { "data-testid": "api-logs" });
  const pager = h("div", { class: "pager" });
  const cursors = [null];
  let page = 0;
  const params = () => ({ method: method.value, status: status.value, route: routeInput.value.trim(), principal: principal.value.trim() });
  const form = h("form", { class: "filters", role: "search", "aria-label": "Filter API logs" },
    h("label", { for: "log-method" }, "Method", method),
    h("label", { for: "log-status" }, "Status", status),
    h("label", { for: "log-route" }, "Route", routeInput),
    h("label", { for: "log-principal" }, "Caller", principal),
    h("button", { type: "submit", class: "primary" }, "Apply"));
  root.append(h("h1", {}, "API logs"),
    h("p", { class: "muted" }, "Requests made with a token: no bodies, no headers besides the idempotency key and request id."),
    form, list, pager);

  async function load() {
    let data;
    try { data = await api("/api-logs", { params: { ...params(), limit: 50, cursor: cursors[page] } }); } catch (err) { fill(list, errorBox(err)); return; }
    cursors[page + 1] = data.next_cursor;
    fill(list, table([
      { label: "When", cls: "nowrap", cell: (r) => h("time", { datetime: r.at }, dateTime(r.at)) },
      me.is_merchant_user ? null : { label: "Merchant", cell: (r) => (r.merchant_id ? merchantLink(r.merchant_id) : h("span", { class: "muted" }, "platform")) },
      { label: "Caller", cell: (r) => r.principal },
      { label: "Request", cell: (r) => h("code", { "data-log-route": r.id }, `${r.method} ${r.route}`) },
      { label: "Status", cell: (r) => badge(r.status >= 500 ? "failed" : r.status >= 400 ? "rejected" : "succeeded", String(r.status)) },
      { label: "Latency", num: true, cell: (r) => `${r.latency_ms.toFixed(1)} ms` },
      { label: "Idempotency key", cell: (r) => r.idempotency_key || "" },
      { label: "Request id", cell: (r) => h("code", {}, r.request_id) },
      { label: "Client IP", cell: (r) => r.client_ip || "" },
    ].filter(Boolean), data.data, { empty: "No requests match.", rowAttrs: (r) => ({ "data-api-log": r.id }) }));
    fill(pager,
      h("span", { class: "muted" }, `Page ${page + 1}`),
      h("button", { type: "button", disabled: page === 0, onclick: () => { page -= 1; load(); } }, "Previous"),
      h("button", { type: "button", disabled: !data.next_cursor, onclick: () => { page += 1; load(); } }, "Next"));
  }

  form.addEventListener("submit", (ev) => { ev.preventDefault(); cursors.length = 1; page = 0; load(); });
  await load();
  return () => {};
}
