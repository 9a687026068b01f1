// Schedules: payout schedules (a merchant's or the platform's batch of payouts on a calendar or
// cron), each a Temporal Schedule. The list shows when each runs next; "Next runs" opens the next
// ten fire times and the last fires (the bulk payout each made); Pause/Resume go through
// PATCH /payout-schedules/{id}, so the API decides who may (a merchant, not the platform's).

import { api } from "../api.js";
import { actionButton, badge, errorBox, fill, h, openDrawer, table, toast } from "../dom.js";
import { count, dateTime, exponent, money, prefs } from "../format.js";
import { merchantLink, shortId } from "../links.js";

// "12.50" EUR -> 1250: decimal strings as the API takes them, to minor units without floats
function toMinor(amount, currency) {
  const e = exponent(currency);
  const [whole, frac = ""] = String(amount).split(".");
  return BigInt(whole) * 10n ** BigInt(e) + BigInt((frac + "0".repeat(e)).slice(0, e) || "0");
}

function totals(items) {
  const by = new Map();
  for (const it of items) by.set(it.currency, (by.get(it.currency) || 0n) + toMinor(it.amount, it.currency));
  return [...by.entries()].sort().map(([cur, minor]) => money(minor.toString(), cur)).join(" + ");
}

function when(s) {
  return h("div", {}, h("div", {}, s.description), h("div", { class: "muted small" }, s.time_zone));
}

export async function render({ root, me, can }) {
  const list = h("div", { "data-testid": "schedules" });
  root.append(h("h1", {}, "Schedules"),
    h("p", { class: "muted" }, `Payouts made in batches on a calendar or cron. Each fire is one bulk payout; times shown in ${prefs.tz}.`),
    list);
  const mayWrite = can("payouts:write");
  const mayChange = (s) => mayWrite && (!me.is_merchant_user || s.owner === "merchant");

  async function setEnabled(s, enabled) {
    await api(`/payout-schedules/${encodeURIComponent(s.id)}`, { method: "PATCH", body: { enabled } });
    toast(`${s.name} ${enabled ? "resumed" : "paused"}`);
    await load();
  }

  async function showRuns(s) {
    const [preview, full] = await Promise.all([
      api(`/payout-schedules/${encodeURIComponent(s.id)}/preview`, { params: { count: 10 } }),
      api(`/payout-schedules/${encodeURIComponent(s.id)}`),
    ]);
    openDrawer(s.name,
      h("p", { class: "muted" }, `${s.description} (${s.time_zone}) · cron `, h("code", {}, s.cron),
        " · Temporal Schedule ", h("code", {}, s.temporal_schedule_id)),
      preview.enabled ? null : h("p", {}, badge("paused"), " these times will not fire until the schedule is resumed."),
      h("h3", {}, "Next runs"),
      h("ol", { "data-testid": "schedule-next-runs" }, preview.next.map((t) => h("li", { "data-at": t.at_utc }, dateTime(t.at_utc)))),
      h("h3", {}, "Last fires"),
      table([
        { label: "Fire time", cls: "nowrap", cell: (r) => dateTime(r.fire_time) },
        { label: "Outcome", cell: (r) => badge(r.outcome) },
        { label: "Bulk payout", cell: (r) => (r.bulk_payout_id ? h("span", { class: "mono id", title: r.bulk_payout_id }, shortId(r.bulk_payout_id)) : r.detail || "—") },
        { label: "Batch", cell: (r) => (r.batch_status ? badge(r.batch_status) : "—") },
      ], full.recent_runs, { empty: "No fires yet.", rowAttrs: (r) => ({ "data-run": r.fire_time }) }));
  }

  async function load() {
    let page;
    try { page = await api("/payout-schedules"); } catch (err) { fill(list, errorBox(err)); return; }
    const schedules = page.data;
    const next = await Promise.all(schedules.map((s) => (s.enabled
      ? api(`/payout-schedules/${encodeURIComponent(s.id)}/preview`, { params: { count: 1 } }).then((p) => p.next[0]?.at_utc).catch(() => null)
      : Promise.resolve(null))));
    fill(list, table([
      { label: "Schedule", cell: (s) => h("div", {}, h("strong", {}, s.name), h("div", { class: "muted small mono", title: s.id }, shortId(s.id))) },
      { label: "Merchant", cell: (s) => merchantLink(s.merchant_id) },
      { label: "Owner", cell: (s) => badge(s.owner, s.owner === "platform" ? "Platform" : "Merchant") },
      { label: "When", cell: when },
      { label: "Payouts", cls: "nowrap", cell: (s) => `${count(s.items.length)} · ${totals(s.items)}` },
      { label: "Next run", cls: "nowrap", cell: (s) => h("span", { "data-next-run": s.id }, next[schedules.indexOf(s)] ? dateTime(next[schedules.indexOf(s)]) : "—") },
      { label: "State", cell: (s) => h("span", { "data-state": s.id }, badge(s.status)) },
      { label: "", cls: "actions", cell: (s) => h("span", {},
        actionButton("Next runs", () => showRuns(s), { "data-runs": s.id }),
        mayChange(s) ? (s.enabled
          ? actionButton("Pause", () => setEnabled(s, false), { "data-pause-schedule": s.id })
          : actionButton("Resume", () => setEnabled(s, true), { "data-resume-schedule": s.id })) : null) },
    ], schedules, { empty: "No payout schedules. Create one with POST /api/v1/payout-schedules.", rowAttrs: (s) => ({ "data-schedule": s.id }) }));
    list.dataset.loaded = "true";
  }

  await load();
}
