// Rails: each rail's SLA and fee rule (methods, currencies, countries, cutoff, settlement time,
// calendar, fee), its next cutoff, and the holiday calendars. Edits go through PUT /rails/{rail}
// and the calendar endpoints, so the API's permissions (payouts:operate) decide who may change them.

import { api } from "../api.js";
import { actionButton, badge, errorBox, fill, h, modal, table, toast } from "../dom.js";
import { count, dateTime, money, prefs } from "../format.js";

function settlement(r) {
  if (r.settlement_seconds != null) return r.settlement_seconds < 120 ? `${r.settlement_seconds} s` : `${Math.round(r.settlement_seconds / 60)} min`;
  if (r.settlement_business_days != null) return r.settlement_business_days === 0 ? "same business day" : `${r.settlement_business_days} business day${r.settlement_business_days === 1 ? "" : "s"}`;
  return "—";
}

function fee(r) {
  const cur = r.currencies[0];
  const fixed = cur ? money(r.fee_fixed_minor, cur) : count(r.fee_fixed_minor);
  const bps = r.fee_bps ? `${(r.fee_bps / 100).toLocaleString(undefined, { maximumFractionDigits: 2 })} %` : null;
  return [fixed, bps].filter(Boolean).join(" + ");
}

export async function render({ root, can }) {
  const list = h("div", { "data-testid": "rails" });
  const cal = h("div", { "data-testid": "calendars" });
  const year = new Date().getFullYear();
  root.append(h("h1", {}, "Rails"),
    h("p", { class: "muted" }, `Rules, fees and cutoffs per rail; cutoffs are in each rail's own time zone, next cutoffs shown in ${prefs.tz}.`),
    list, h("section", { "aria-labelledby": "cal-title" }, h("h2", { id: "cal-title" }, `Holiday calendars ${year}`), cal));
  const mayEdit = can("payouts:operate");

  async function edit(r) {
    const v = await modal(`Edit ${r.rail}`, [
      { name: "cutoff_time", label: `Cutoff (HH:MM, ${r.timezone}; empty for 24/7)`, value: r.cutoff_time || "" },
      { name: "fee_fixed_minor", label: `Fixed fee (minor units${r.currencies[0] ? ` of ${r.currencies[0]}` : ""})`, type: "number", value: String(r.fee_fixed_minor), required: true },
      { name: "fee_bps", label: "Fee (basis points)", type: "number", value: String(r.fee_bps), required: true },
      { name: "description", label: "Description", value: r.description || "" },
    ], { submit: "Save rule" });
    if (!v) return;
    const body = { fee_fixed_minor: Number(v.fee_fixed_minor), fee_bps: Number(v.fee_bps), description: v.description || null };
    if (v.cutoff_time) body.cutoff_time = v.cutoff_time;
    await api(`/rails/${encodeURIComponent(r.rail)}`, { method: "PUT", body });
    toast(`${r.rail} updated`);
    await load();
  }

  async function addHoliday(calendar) {
    const v = await modal(`Add a holiday to ${calendar}`, [
      { name: "day", label: "Day", type: "date", required: true },
      { name: "name", label: "Name", maxlength: 200 },
    ], { submit: "Add holiday" });
    if (!v) return;
    await api(`/rails/calendars/${encodeURIComponent(calendar)}/days/${v.day}`, { method: "PUT", body: { is_holiday: true, name: v.name || null } });
    toast(`${v.day} is a holiday in ${calendar}`);
    await load();
  }

  async function load() {
    let rails;
    try { rails = await api("/rails"); } catch (err) { fill(list, errorBox(err)); return; }
    fill(list, table([
      { label: "Rail", cell: (r) => h("div", {}, h("strong", {}, r.rail), r.description ? h("div", { class: "muted small" }, r.description) : null) },
      { label: "Methods", cell: (r) => r.methods.join(", ") },
      { label: "Currencies", cell: (r) => r.currencies.join(", ") || "any" },
      { label: "Countries", cell: (r) => (r.countries.length > 6 ? `${r.countries.slice(0, 6).join(", ")} +${r.countries.length - 6}` : r.countries.join(", ") || "any") },
      { label: "Cutoff", cell: (r) => (r.cutoff_time ? `${r.cutoff_time} ${r.timezone}` : "24/7") },
      { label: "Next cutoff", cls: "nowrap", cell: (r) => dateTime(r.next_cutoff_at) },
      { label: "Settles in", cell: settlement },
      { label: "Calendar", cell: (r) => r.calendar },
      { label: "Fee", cls: "nowrap", cell: fee },
      { label: "State", cell: (r) => h("span", {}, badge(r.enabled ? "enabled" : "disabled"), r.batch ? " " : null, r.batch ? badge("batch", "Batch") : null) },
      { label: "", cls: "actions", cell: (r) => (mayEdit ? actionButton("Edit", () => edit(r), { "data-edit-rail": r.rail }) : "") },
    ], rails, { empty: "No rails configured.", rowAttrs: (r) => ({ "data-rail": r.rail }) }));
    const calendars = [...new Set(rails.map((r) => r.calendar))].filter((c) => c && c !== "NONE").sort();
    const days = await Promise.all(calendars.map((c) => api(`/rails/calendars/${encodeURIComponent(c)}`, { params: { year } }).catch(() => [])));
    fill(cal, h("div", { class: "grid cards" }, calendars.map((c, i) => h("section", { class: "panel", "data-calendar": c },
      h("div", { class: "card-head" }, h("h3", {}, c), h("span", { class: "muted" }, `${count(days[i].filter((d) => d.is_holiday).length)} holidays`), h("span", { class: "spacer" }),
        mayEdit ? actionButton("Add holiday", () => addHoliday(c), { "data-add-holiday": c }) : null),
      table([
        { label: "Day", cell: (d) => new Intl.DateTimeFormat(undefined, { timeZone: "UTC", weekday: "short", day: "2-digit", month: "short" }).format(new Date(`${d.day}T00:00:00Z`)) },
        { label: "Name", cell: (d) => d.name || "—" },
        { label: "Source", cell: (d) => (d.source === "override" ? badge(d.is_holiday ? "override" : "working_day", d.is_holiday ? "Override" : "Working day") : "built-in") },
      ], days[i], { empty: "No holidays." })))));
    list.dataset.loaded = "true";
  }

  await load();
}
