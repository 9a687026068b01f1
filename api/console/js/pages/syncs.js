// Provider syncs: a card per source (state, cursor, counts, schedule, recent runs), trigger.

import { api } from "../api.js";
import { actionButton, badge, errorBox, facts, h, statusLabel, table, toast, fill } from "../dom.js";
import { count, dateTime } from "../format.js";
import * as live from "../live.js";

function every(seconds) {
  if (seconds % 3600 === 0) return `${count(seconds / 3600)} h`;
  if (seconds % 60 === 0) return `${count(seconds / 60)} min`;
  return `${count(seconds)} s`;
}

// run start times in a table: day and time only (the year is the card's)
function short(iso) {
  return iso ? dateTime(iso, { intl: { year: undefined } }) : "—";
}

export async function render({ root, can }) {
  const cards = h("div", { class: "grid cards", "data-testid": "sync-cards" });
  root.append(h("h1", {}, "Provider syncs"), cards);

  async function load() {
    let sources;
    try { sources = await api("/sync/status"); } catch (err) { fill(cards, errorBox(err)); return; }
    fill(cards, ...sources.map((s) => h("section", { class: "panel", "data-source": s.source, "aria-labelledby": `sync-${s.source}` },
      h("div", { class: "card-head" }, h("h2", { id: `sync-${s.source}` }, statusLabel(s.source)), h("span", { "data-sync-status": s.source }, badge(s.status)), h("span", { class: "spacer" }),
        can("sync:manage") ? actionButton("Sync now", async () => {
          const r = await api("/sync/trigger", { method: "POST", body: { source: s.source } });
          toast(`Started ${r.workflow_id}`);
          setTimeout(load, 800);
        }, { class: "primary", "data-trigger": s.source }) : null),
      s.error ? h("div", { class: "error-box" }, s.error) : null,
      facts([
        ["Records synced", h("span", { "data-records": s.source }, count(s.records_synced))], ["Quarantined", count(s.records_quarantined)],
        ["Last run", dateTime(s.last_run_at)], ["Last success", dateTime(s.last_success_at)],
        ["Schedule", s.schedule ? `${s.schedule.paused ? "paused" : "active"}${s.schedule.interval_seconds ? ` · every ${every(s.schedule.interval_seconds)}` : ""}` : "none"],
        ["Next run", dateTime(s.schedule?.next_run_at)],
      ]),
      table([
        { label: "Started", cls: "nowrap", cell: (r) => short(r.started_at) },
        { label: "Mode", cell: (r) => statusLabel(r.mode) },
        { label: "Status", cell: (r) => badge(r.status) },
        { label: "Fetched", num: true, cell: (r) => count(r.rows_fetched) },
        { label: "New", num: true, cell: (r) => count(r.rows_inserted) },
        { label: "Updated", num: true, cell: (r) => count(r.rows_updated) },
      ], s.recent_runs.slice(0, 5), { empty: "No runs yet." }))));
  }

  let timer = null;
  const off = live.on("sync", () => { clearTimeout(timer); timer = setTimeout(load, 500); });
  await load();
  return () => { off(); clearTimeout(timer); };
}
