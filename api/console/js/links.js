// Ids as links and merchants by name: a merchant's name is fetched once (GET /merchants/{id}) and
// shared by every page; the id stays in the link's title and data attribute.

import { api } from "./api.js";
import { h } from "./dom.js";

const names = new Map();

export function merchantName(id) {
  if (!id) return Promise.resolve(null);
  if (!names.has(id)) names.set(id, api(`/merchants/${encodeURIComponent(id)}`).then((m) => m.name).catch(() => null));
  return names.get(id);
}

// a link to the merchant's payouts, showing its id until its name arrives
export function merchantLink(id) {
  if (!id) return "—";
  const a = h("a", { href: `#/payouts/merchant/${encodeURIComponent(id)}`, class: "merchant", title: id, "data-merchant": id }, id);
  merchantName(id).then((name) => { if (name) { a.textContent = name; a.classList.add("named"); } });
  return a;
}

export function payoutLink(id) {
  if (!id) return "—";
  return h("a", { href: `#/payouts/${encodeURIComponent(id)}`, class: "mono id", "data-payout-link": id, title: id }, shortId(id));
}

export function batchLink(id) {
  if (!id) return "—";
  return h("a", { href: `#/batches/${encodeURIComponent(id)}`, class: "mono id", title: id }, shortId(id));
}

// "po_3f9a…c21e": long hex ids shortened for tables; the full id is in the title and the URL
export function shortId(id) {
  const s = String(id);
  const m = s.match(/^([a-z]+_)?([0-9a-f]{20,})$/i);
  return m ? `${m[1] || ""}${m[2].slice(0, 6)}…${m[2].slice(-4)}` : s;
}

// Text with payout ids turned into links and ISO timestamps into the chosen zone's local time.
export function richText(text, fmtTime) {
  const parts = [];
  const re = /(po_[0-9a-f]{32})|(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:?\d{2}))/g;
  let last = 0;
  let m;
  const s = String(text ?? "");
  while ((m = re.exec(s))) {
    if (m.index > last) parts.push(s.slice(last, m.index));
    parts.push(m[1] ? payoutLink(m[1]) : h("time", { datetime: m[2] }, fmtTime(m[2])));
    last = m.index + m[0].length;
  }
  if (last < s.length) parts.push(s.slice(last));
  return parts;
}
