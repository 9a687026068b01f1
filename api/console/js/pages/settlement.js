// Settlement: the merchant's funds per currency (available, pending, in flight) with each rail's
// next cutoff and settlement date, its payout bank accounts (status, cool-off) and, for its
// merchant_admin, registering an account and "Withdraw": an ordinary payout to one of its usable
// accounts (POST /merchants/{id}/withdrawals) that then appears on the Payouts page.
// Ops (balances:read) open it for a merchant: #/settlement/<merchant id>, read-only.

import { api } from "../api.js";
import { actionButton, badge, errorBox, facts, fill, h, modal, table, toast } from "../dom.js";
import { dateTime, exponent, money, prefs } from "../format.js";
import { payoutLink } from "../links.js";
import * as live from "../live.js";

// "12.50" EUR -> 1250 without floats
export function toMinor(amount, currency) {
  const text = String(amount).trim();
  if (!/^\d+(\.\d+)?$/.test(text)) throw new Error(`${text || "(empty)"} is not an amount like 12.50`);
  const e = exponent(currency);
  const [whole, frac = ""] = text.split(".");
  if (frac.length > e) throw new Error(`${currency} has ${e} decimal places`);
  return Number(BigInt(whole) * 10n ** BigInt(e) + BigInt((frac + "0".repeat(e)).slice(0, e) || "0"));
}

// the details fields each rail takes (as in a payout's beneficiary)
const RAIL_FIELDS = {
  sepa: ["iban", "bic"], ach: ["routing_number", "account_number"], wire: ["bic", "iban", "account_number"],
  faster_payments: ["sort_code", "account_number"], mobile_money: ["phone", "operator"],
};
const RAIL_CURRENCY = { sepa: "EUR", ach: "USD", wire: "USD", faster_payments: "GBP", mobile_money: "XOF" };

export function pickMerchant(root, navigate, page, title) {
  const input = h("input", { id: "merchant-pick", name: "merchant", required: true, placeholder: "mer_…" });
  const form = h("form", { class: "row" }, h("label", { for: "merchant-pick" }, "Merchant id "), input,
    h("button", { type: "submit", class: "primary" }, "Open"));
  form.addEventListener("submit", (ev) => { ev.preventDefault(); navigate(`#/${page}/${encodeURIComponent(input.value.trim())}`); });
  root.append(h("h1", {}, title), h("p", { class: "muted" }, "Choose the merchant to look at (read-only)."), form);
}

function accountLabel(a) {
  const d = a.details || {};
  return `${a.rail} · ${a.currency} · ${d.name || ""} ••${d.last4 || ""}${d.bic ? ` · ${d.bic}` : ""}${d.routing_number ? ` · ${d.routing_number}` : ""}`;
}

// The portal dashboard's settlement panel: the same figures as this page's cards, compact, with a
// link here (where Withdraw is). load() reads GET /merchants/{id}/settlement again.
export function settlementSummary(merchantId) {
  const body = h("div", { class: "grid cards" }, h("p", { class: "muted" }, "Loading…"));
  const panel = h("section", { class: "panel", "aria-labelledby": "settlement-summary-title", "data-testid": "portal-settlement" },
    h("div", { class: "row" }, h("h2", { id: "settlement-summary-title" }, "Settlement"), h("span", { class: "spacer" }),
      h("a", { href: "#/settlement" }, "Settlement & withdraw")), body);
  async function load() {
    let s;
    try { s = await api(`/merchants/${encodeURIComponent(merchantId)}/settlement`); } catch (err) { fill(body, errorBox(err)); return; }
    fill(body, ...(s.currencies.length ? s.currencies.map((c) => h("div", { class: "panel", "data-currency": c.currency },
      h("h3", {}, c.currency),
      facts([
        ["Available", h("span", { "data-field": "available" }, money(c.available_minor, c.currency))],
        ["Pending", h("span", { "data-field": "pending" }, money(c.pending_minor, c.currency))],
        ["In flight", h("span", { "data-field": "in_flight" }, money(c.in_flight_minor, c.currency))],
        ["Next settlement", h("span", { "data-field": "next_settlement" }, c.next_settlement_at ? dateTime(c.next_settlement_at) : "—")],
      ]))) : [h("p", { class: "muted" }, "No funds yet.")]));
    panel.dataset.loaded = "true";
  }
  return { panel, load };
}

export async function render({ root, me, args, navigate }) {
  const merchantId = me.merchant_id || args[0];
  if (!merchantId) return pickMerchant(root, navigate, "settlement", "Settlement");
  const isAdmin = me.roles.includes("merchant_admin") && me.merchant_id === merchantId;
  const kyc = h("div", { "data-testid": "settlement-kyc" });
  const cards = h("div", { class: "grid cards", "data-testid": "settlement-panel" });
  const accounts = h("div", { "data-testid": "bank-accounts" });
  const result = h("div", { "data-testid": "withdrawal-result", "aria-live": "polite" });
  const actions = h("div", { class: "row" });
  root.append(h("h1", {}, "Settlement"),
    h("p", { class: "muted" }, `Funds per currency and the next settlement date of each rail (times in ${prefs.tz}).`),
    kyc, actions, result, cards, h("h2", {}, "Payout bank accounts"), accounts);
  let panel = null;

  async function register() {
    const values = await modal("Register a payout bank account", [
      { name: "rail", label: "Rail", type: "select", required: true,
        options: Object.keys(RAIL_FIELDS).map((r) => ({ value: r, label: r })) },
      { name: "currency", label: "Currency", required: true, value: "EUR", maxlength: 3 },
      { name: "holder_name", label: "Account holder (defaults to the company name)" },
      { name: "iban", label: "IBAN (sepa, wire)" }, { name: "bic", label: "BIC (sepa, wire)" },
      { name: "routing_number", label: "Routing number (ach)" }, { name: "account_number", label: "Account number (ach, faster payments, wire)" },
      { name: "sort_code", label: "Sort code (faster payments)" },
      { name: "phone", label: "Phone, E.164 (mobile money)" }, { name: "operator", label: "Operator (mobile money: orange, mtn, wave, moov, airtel)" },
    ], { submit: "Register", intro: "Checked per rail (IBAN checksum, routing checksum, E.164…). It can be used after its cool-off, or sooner once ops approve it." });
    if (!values) return;
    const details = {};
    for (const f of RAIL_FIELDS[values.rail]) if (values[f].trim()) details[f] = values[f].trim();
    const body = { rail: values.rail, currency: (values.currency || RAIL_CURRENCY[values.rail]).trim().toUpperCase(), details };
    if (values.holder_name.trim()) body.holder_name = values.holder_name.trim();
    const a = await api(`/merchants/${encodeURIComponent(merchantId)}/bank-accounts`, { method: "POST", body });
    toast(`Account ••${a.details.last4} registered: usable from ${dateTime(a.effective_at)}`);
    await load();
  }

  async function withdraw() {
    const usable = panel.bank_accounts.filter((a) => a.usable);
    if (!usable.length) {
      toast("No bank account is usable yet (still in its cool-off, or none registered).", "error");
      return;
    }
    const values = await modal("Withdraw", [
      { name: "account_id", label: "To account", type: "select", required: true,
        options: usable.map((a) => ({ value: a.id, label: accountLabel(a) })) },
      { name: "amount", label: "Amount", required: true, help: "in the account's currency, e.g. 250.00" },
      { name: "priority", label: "Priority", type: "select", options: [
        { value: "standard", label: "standard (at the rail's next cutoff)" }, { value: "instant", label: "instant" }] },
    ], { submit: "Withdraw", intro: "An ordinary payout of your available funds to your own account." });
    if (!values) return;
    const account = usable.find((a) => a.id === values.account_id);
    const body = { account_id: account.id, currency: account.currency, amount_minor: toMinor(values.amount, account.currency),
      priority: values.priority || "standard" };
    try {
      const payout = await api(`/merchants/${encodeURIComponent(merchantId)}/withdrawals`, {
        method: "POST", body, headers: { "Idempotency-Key": crypto.randomUUID() } });
      fill(result, h("div", { class: "panel", "data-payout": payout.id }, "Withdrawal created: payout ", payoutLink(payout.id),
        ` of ${money(payout.amount_minor, payout.currency)} (fee ${money(payout.fee_minor, payout.currency)}), `,
        h("span", { "data-withdrawal-status": payout.id }, badge(payout.status))));
      await load();
    } catch (err) {
      fill(result, errorBox(err));
    }
  }

  async function load() {
    panel = await api(`/merchants/${encodeURIComponent(merchantId)}/settlement`);
    fill(kyc, h("p", {}, "KYC ", badge(panel.kyc_status),
      panel.can_withdraw ? "" : " — withdrawals are possible once ops have verified the KYC."));
    fill(actions, isAdmin ? [
      actionButton("Withdraw", withdraw, { class: "primary", "data-testid": "withdraw", disabled: !panel.can_withdraw,
        title: panel.can_withdraw ? null : `KYC is ${panel.kyc_status}: withdrawals need a verified KYC` }),
      actionButton("Register bank account", register, { "data-testid": "register-account" })] : null);
    fill(cards, panel.currencies.map((c) => h("section", { class: "panel", "data-currency": c.currency },
      h("div", { class: "card-head" }, h("h3", {}, c.currency)),
      facts([
        ["Available", h("span", { "data-field": "available" }, money(c.available_minor, c.currency))],
        ["Pending (held, not at the bank)", h("span", { "data-field": "pending" }, `${money(c.pending_minor, c.currency)} · ${c.pending_payouts} payout(s)`)],
        ["In flight (at the bank)", h("span", { "data-field": "in_flight" }, `${money(c.in_flight_minor, c.currency)} · ${c.in_flight_payouts} payout(s)`)],
        ["Next settlement", h("span", { "data-field": "next_settlement" }, c.next_settlement_at ? dateTime(c.next_settlement_at) : "—")],
      ]),
      table([
        { label: "Rail", cell: (r) => r.rail },
        { label: "Next cutoff", cls: "nowrap", cell: (r) => (r.continuous ? "24/7" : dateTime(r.next_cutoff_at)) },
        { label: "Settles by", cls: "nowrap", cell: (r) => dateTime(r.next_settlement_at) },
        { label: "Calendar", cell: (r) => `${r.calendar} · ${r.timezone}` },
      ], c.rails, { empty: "No rail carries this currency.", rowAttrs: (r) => ({ "data-rail": r.rail }) }))));
    fill(accounts, table([
      { label: "Account", cell: (a) => accountLabel(a) },
      { label: "Status", cell: (a) => [badge(a.status), a.superseded ? [" ", badge("superseded")] : null] },
      { label: "Usable", cell: (a) => (a.usable ? "yes" : a.cooling_off ? `cool-off until ${dateTime(a.effective_at)}` : "no") },
      { label: "Checks", cell: (a) => a.checks.join(", ") },
      { label: "Registered", cls: "nowrap", cell: (a) => `${dateTime(a.created_at)} by ${a.created_by}` },
    ], panel.bank_accounts, { empty: "No bank account registered.", rowAttrs: (a) => ({ "data-account": a.id, "data-usable": String(a.usable) }) }));
    root.dataset.loaded = "true";
  }

  // a payout of this merchant moved (a withdrawal's hold placed, sent, settled): the funds moved with it
  let timer = null;
  const off = live.on("payouts", (msg) => {
    if (msg.merchant_id && msg.merchant_id !== merchantId) return;
    const status = result.querySelector(`[data-withdrawal-status="${CSS.escape(msg.payout_id || "")}"]`);
    if (status) fill(status, badge(msg.status));
    clearTimeout(timer);
    timer = setTimeout(() => load().catch(() => {}), 500);
  });
  try {
    await load();
  } catch (err) {
    off();
    throw err;
  }
  return () => { off(); clearTimeout(timer); };
}
