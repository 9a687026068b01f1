// Batch files: every batch (rail, cutoff, status, entries, totals, the bank's verdicts), one
// batch's entries with each payout's outcome, and the file exactly as it was sent to the bank.

import { api, download } from "../api.js";
import { actionButton, badge, errorBox, facts, fill, h, statusLabel, table, toast } from "../dom.js";
import { count, dateTime, money } from "../format.js";
import { batchLink, payoutLink } from "../links.js";

const STATUSES = ["", "collecting", "built", "submitted", "rejected", "empty"];

export async function render(ctx) {
  return ctx.args[0] ? renderDetail(ctx, ctx.args[0]) : renderList(ctx);
}

function verdicts(b) {
  if (!b.submitted_at && !b.accepted_count && !b.rejected_count) return h("span", { class: "muted" }, "not sent yet");
  return h("span", { "data-verdict": b.id },
    h("span", { class: "good-text" }, `${count(b.accepted_count)} accepted`), " · ",
    h("span", { class: b.rejected_count ? "bad-text" : "muted" }, `${count(b.rejected_count)} rejected`));
}

async function renderList({ root }) {
  const rail = h("input", { id: "b-rail", placeholder: "ach" , size: "8" });
  const status = h("select", { id: "b-status" }, STATUSES.map((s) => h("option", { value: s }, s || "any")));
  const list = h("div", { "data-testid": "batches" });
  const pager = h("div", { class: "pager" });
  const cursors = [null];
  let page = 0;
  const form = h("form", { class: "filters", role: "search", "aria-label": "Filter batches" },
    h("label", { for: "b-rail" }, "Rail", rail), h("label", { for: "b-status" }, "Status", status),
    h("button", { type: "submit", class: "primary" }, "Apply"));
  root.append(h("h1", {}, "Batch files"), form, list, pager);

  async function load() {
    let data;
    try { data = await api("/payouts/batches", { params: { rail: rail.value.trim(), status: status.value, limit: 25, cursor: cursors[page] } }); } catch (err) { fill(list, errorBox(err)); return; }
    cursors[page + 1] = data.next_cursor;
    fill(list, table([
      { label: "Cutoff", cls: "nowrap", cell: (b) => dateTime(b.cutoff_at) },
      { label: "Batch", cell: (b) => batchLink(b.id) },
      { label: "Rail", cell: (b) => `${b.rail} · ${b.connector}` },
      { label: "Status", cell: (b) => badge(b.status) },
      { label: "Entries", num: true, cell: (b) => count(b.entry_count) },
      { label: "Total", num: true, cell: (b) => (b.currency ? money(b.total_amount_minor, b.currency) : count(b.total_amount_minor)) },
      { label: "Bank verdict", cell: verdicts },
      { label: "File", cell: (b) => (b.file_name ? h("span", { class: "mono" }, b.file_name) : "—") },
    ], data.data, { empty: "No batches yet: batch rails build one at each cutoff.", rowAttrs: (b) => ({ "data-batch": b.id }) }));
    fill(pager, h("span", { class: "muted" }, `Page ${page + 1}`),
      h("button", { type: "button", disabled: page === 0, onclick: () => { page -= 1; load(); } }, "Previous"),
      h("button", { type: "button", disabled: !data.next_cursor, onclick: () => { page += 1; load(); } }, "Next"));
  }
  form.addEventListener("submit", (ev) => { ev.preventDefault(); cursors.length = 1; page = 0; load(); });
  await load();
}

async function renderDetail({ root }, id) {
  const box = h("div", { "data-testid": "batch-detail" });
  root.append(h("div", { class: "row" }, h("a", { href: "#/batches" }, "← Batch files")), box);
  let b;
  try { b = await api(`/payouts/batches/${encodeURIComponent(id)}`); } catch (err) { fill(box, errorBox(err)); return; }
  const cur = b.currency;
  fill(box,
    h("div", { class: "row" }, h("h1", {}, "Batch ", h("span", { class: "mono" }, b.id)), h("span", { "data-testid": "batch-status" }, badge(b.status)),
      h("span", { class: "spacer" }),
      b.file_name ? actionButton("Download file", async () => {
        toast(`Downloading ${await download(`/payouts/batches/${encodeURIComponent(b.id)}/file`, {}, b.file_name)}`);
      }, { class: "primary", "data-action": "download-file" }) : null),
    h("div", { class: "grid two" },
      h("section", { class: "panel", "aria-labelledby": "bd-facts" }, h("h2", { id: "bd-facts" }, "Details"),
        facts([
          ["Rail / connector", `${b.rail} / ${b.connector}`], ["Cutoff", dateTime(b.cutoff_at)],
          ["Entries", count(b.entry_count)], ["Total", cur ? money(b.total_amount_minor, cur) : count(b.total_amount_minor)],
          ["File", b.file_name ? `${b.file_name} (${b.file_format})` : "not written yet"],
          ["SHA-256", b.file_sha256 ? h("span", { class: "mono" }, b.file_sha256) : "—"],
          ["Sent", dateTime(b.submitted_at)], ["Bank file id", b.bank_file_id],
          ["Bank verdict", verdicts(b)], b.error ? ["Error", b.error] : null,
        ])),
      h("section", { class: "panel", "aria-labelledby": "bd-control" }, h("h2", { id: "bd-control" }, "Control totals"),
        Object.keys(b.control || {}).length
          ? facts(Object.entries(b.control).map(([k, v]) => [statusLabel(k.replace(/_minor$/, "")),
            k.endsWith("_minor") && cur ? money(v, cur) : typeof v === "number" ? count(v) : String(v)]))
          : h("p", { class: "muted" }, "None yet."))),
    h("section", { "aria-labelledby": "bd-entries" }, h("h2", { id: "bd-entries" }, `Entries (${count(b.entries.length)}${b.entries.length < b.entry_count ? ` of ${count(b.entry_count)}` : ""})`),
      h("div", { "data-testid": "batch-entries" }, table([
        { label: "#", num: true, cell: (e) => (e.sequence ?? "—") },
        { label: "Payout", cell: (e) => payoutLink(e.payout_id) },
        { label: "Amount", num: true, cell: (e) => money(e.amount_minor, e.currency) },
        { label: "Bank verdict", cell: (e) => (e.outcome ? badge(e.outcome) : h("span", { class: "muted" }, "awaiting")) },
        { label: "Bank payment id", cell: (e) => (e.bank_payment_id ? h("span", { class: "mono" }, e.bank_payment_id) : "—") },
        { label: "Error", cell: (e) => e.error || "—" },
      ], b.entries, { empty: "No entries.", rowAttrs: (e) => ({ "data-entry": e.payout_id }) }))));
}
