// Transactions: filters, keyset pages, a detail drawer (raw payload, reconciliation status),
// CSV/XLSX exports of what the filters select.

import { api, download } from "../api.js";
import { badge, errorBox, facts, h, json, openDrawer, statusLabel, table, toast, fill } from "../dom.js";
import { count, dateTime, money } from "../format.js";
import { merchantLink } from "../links.js";
import * as live from "../live.js";

export async function render({ root, me }) {
  const f = {
    q: h("input", { id: "f-q", type: "search", placeholder: "id, order id, UTR, email" }),
    source: h("select", { id: "f-source" }, ["", "vima", "payshack"].map((s) => h("option", { value: s }, s ? statusLabel(s) : "Any"))),
    status: h("select", { id: "f-status" }, ["", "success", "failed", "pending", "refunded"].map((s) => h("option", { value: s }, s ? statusLabel(s) : "Any"))),
    currency: h("input", { id: "f-currency", maxlength: "3", size: "4", placeholder: "INR", pattern: "[A-Za-z]{3}" }),
    from: h("input", { id: "f-from", type: "date" }),
    to: h("input", { id: "f-to", type: "date" }),
    merchant: me.is_merchant_user ? null : h("input", { id: "f-merchant", placeholder: "mer_…" }),
  };
  const pages = [null]; // cursors of the pages seen, for Previous
  let page = 0;
  const list = h("div", { "data-testid": "transactions" });
  const pager = h("div", { class: "pager" });
  const form = h("form", { class: "filters", role: "search", "aria-label": "Filter transactions" },
    h("label", { for: "f-q" }, "Search", f.q),
    h("label", { for: "f-source" }, "Provider", f.source),
    h("label", { for: "f-status" }, "Status", f.status),
    h("label", { for: "f-currency" }, "Currency", f.currency),
    h("label", { for: "f-from" }, "From", f.from),
    h("label", { for: "f-to" }, "To (exclusive)", f.to),
    f.merchant ? h("label", { for: "f-merchant" }, "Merchant", f.merchant) : null,
    h("button", { type: "submit", class: "primary" }, "Apply"));
  const total = h("div", { class: "muted page-total", "data-testid": "tx-total" });
  root.append(h("div", { class: "row" }, h("h1", {}, "Transactions"), h("span", { class: "spacer" }),
    h("button", { type: "button", onclick: () => exportAs("csv") }, "Export CSV"),
    h("button", { type: "button", onclick: () => exportAs("xlsx") }, "Export XLSX")), form, list, total, pager);

  function filters() {
    return {
      q: f.q.value.trim(), source: f.source.value, status: f.status.value,
      currency: f.currency.value.trim().toUpperCase(), merchant_id: f.merchant?.value.trim(),
      occurred_from: f.from.value ? new Date(`${f.from.value}T00:00:00`).toISOString() : "",
      occurred_to: f.to.value ? new Date(`${f.to.value}T00:00:00`).toISOString() : "",
    };
  }

  async function exportAs(format) {
    try {
      const name = await download("/export/transactions", { ...filters(), format }, `transactions.${format}`);
      toast(`Downloading ${name}`);
    } catch (err) { toast(err.message, "error"); }
  }

  async function load() {
    let data;
    try {
      data = await api("/transactions", { params: { ...filters(), limit: 25, cursor: pages[page] } });
    } catch (err) {
      fill(list, errorBox(err));
      return;
    }
    pages[page + 1] = data.next_cursor;
    fill(list, table([
      { label: "When", cls: "nowrap", cell: (t) => dateTime(t.occurred_at) },
      { label: "Transaction", cell: (t) => h("button", { type: "button", class: "link mono", "data-tx": t.id, onclick: () => detail(t.id) }, `${t.source}:${t.source_id}`) },
      { label: "Order", cell: (t) => h("span", { class: "mono" }, t.client_operation_id || "—") },
      { label: "Project", cell: (t) => t.project || "—" },
      { label: "Payer", cell: (t) => t.payer_email || t.payer_name || "—" },
      { label: "Status", cell: (t) => badge(t.status) },
      { label: "Amount", num: true, cell: (t) => money(t.amount_minor, t.currency) },
    ], data.data, { empty: me.is_merchant_user ? "No transactions for your merchant." : "No transactions match." }));
    list.dataset.count = data.data.length;
    // this page's total, per currency (amounts in different currencies are never added up)
    const sums = new Map();
    for (const t of data.data) {
      const cur = sums.get(t.currency) || { n: 0, minor: 0n };
      cur.n += 1; cur.minor += BigInt(t.amount_minor);
      sums.set(t.currency, cur);
    }
    fill(total, data.data.length ? `This page: ${[...sums].map(([c, v]) => `${count(v.n)} × ${c}, ${money(v.minor.toString(), c)}`).join(" · ")}` : "");
    fill(pager, 
      h("span", { class: "muted" }, `Page ${page + 1}`),
      h("button", { type: "button", disabled: page === 0, onclick: () => { page -= 1; load(); } }, "Previous"),
      h("button", { type: "button", disabled: !data.next_cursor, onclick: () => { page += 1; load(); } }, "Next"));
  }

  async function detail(id) {
    const body = openDrawer(`Transaction ${id}`, h("p", { class: "muted" }, "Loading…"));
    try {
      const t = await api(`/transactions/${id}`);
      fill(body, 
        facts([
          ["Provider", `${t.source} · ${t.source_id}`], ["Order id", t.client_operation_id], ["Merchant", t.merchant_id ? merchantLink(t.merchant_id) : null],
          ["Project", t.project], ["Amount", money(t.amount_minor, t.currency)], ["Fee", money(t.fee_minor, t.currency)],
          ["Status", h("span", {}, badge(t.status), t.original_status ? ` (${t.original_status})` : "")],
          ["Payer", [t.payer_name, t.payer_email].filter(Boolean).join(" · ")], ["UTR", t.utr],
          ["Occurred", dateTime(t.occurred_at, { seconds: true })], ["Updated at provider", dateTime(t.source_updated_at)],
          ["Reconciliation", h("span", { "data-testid": "recon-status" }, badge(t.reconciliation.status))],
        ]),
        t.reconciliation.results.length ? [h("h3", {}, "Reconciliation results"), json(t.reconciliation.results)] : null,
        h("h3", {}, "Raw provider payload"), json(t.raw));
    } catch (err) { fill(body, errorBox(err)); }
  }

  form.addEventListener("submit", (ev) => { ev.preventDefault(); pages.length = 1; page = 0; load(); });
  // new transactions from a sync: refresh the first page when it is what the user looks at
  let timer = null;
  const off = live.on("transactions", () => {
    if (page !== 0) return;
    clearTimeout(timer);
    timer = setTimeout(load, 500);
  });
  await load();
  return () => { off(); clearTimeout(timer); };
}
