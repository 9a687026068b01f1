// Reconciliation: run a provider pair over a day, the day's summary (runs, totals, match rate),
// and its discrepancies with resolve.

import { api, download } from "../api.js";
import { actionButton, badge, errorBox, facts, h, json, openDrawer, table, toast, closeDrawer, fill } from "../dom.js";
import { count, dateTime, money, rate } from "../format.js";

const CATEGORIES = ["", "amount_mismatch", "status_mismatch", "missing_left", "missing_right", "duplicate_key", "probable_match"];
const RESOLUTIONS = ["accepted", "corrected", "written_off", "false_positive", "confirmed_match", "duplicate_confirmed", "other"];

function today() {
  return new Date().toISOString().slice(0, 10);
}

export async function render({ root, can }) {
  const day = h("input", { id: "r-date", type: "date", value: sessionStorage.getItem("payops.recon.day") || today(), required: true });
  const left = h("select", { id: "r-left" }, ["vima", "payshack"].map((s) => h("option", { value: s }, s)));
  const right = h("select", { id: "r-right" }, ["payshack", "vima"].map((s) => h("option", { value: s }, s)));
  const category = h("select", { id: "r-category" }, CATEGORIES.map((c) => h("option", { value: c }, c || "any")));
  const state = h("select", { id: "r-state" }, ["open", "resolved", "all"].map((s) => h("option", { value: s }, s)));
  const summary = h("div", { "data-testid": "recon-summary" });
  const list = h("div", { "data-testid": "discrepancies" });
  const pager = h("div", { class: "pager" });
  const cursors = [null];
  let page = 0;
  const runForm = h("form", { class: "filters", "aria-label": "Reconciliation run" },
    h("label", { for: "r-date" }, "Day", day),
    h("label", { for: "r-left" }, "Left source", left),
    h("label", { for: "r-right" }, "Right source", right),
    h("button", { type: "button", onclick: () => { sessionStorage.setItem("payops.recon.day", day.value); cursors.length = 1; page = 0; load(); } }, "Show day"),
    can("reconciliation:manage") ? h("button", { type: "submit", class: "primary", "data-action": "run" }, "Run reconciliation") : null);
  const discFilters = h("div", { class: "filters" },
    h("label", { for: "r-category" }, "Category", category),
    h("label", { for: "r-state" }, "State", state),
    h("button", { type: "button", onclick: async () => {
      try { toast(`Downloading ${await download("/reconciliation/discrepancies/export", { date: day.value, category: category.value || undefined, state: state.value, format: "csv" }, "discrepancies.csv")}`); } catch (err) { toast(err.message, "error"); }
    } }, "Export CSV"));
  const nextRun = h("p", { class: "muted", "data-testid": "recon-next-run" }, "Next scheduled run: …");
  root.append(h("h1", {}, "Reconciliation"), nextRun, runForm, summary,
    h("section", { "aria-labelledby": "disc-title" }, h("h2", { id: "disc-title" }, "Discrepancies"), discFilters, list, pager));

  let poll = null;
  runForm.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    sessionStorage.setItem("payops.recon.day", day.value);
    try {
      const started = await api("/reconciliation/run", { method: "POST", body: { date_from: day.value, left_source: left.value, right_source: right.value } });
      toast(`Run ${started.run_id} ${started.status}`);
      const deadline = Date.now() + 120_000;
      clearInterval(poll);
      poll = setInterval(async () => {
        try {
          const run = await api(`/reconciliation/runs/${encodeURIComponent(started.run_id)}`);
          summary.dataset.runStatus = run.status;
          if (["success", "error"].includes(run.status) || Date.now() > deadline) {
            clearInterval(poll);
            toast(`Run ${run.status}${run.error ? `: ${run.error}` : ""}`, run.status === "error" ? "error" : "info");
            cursors.length = 1; page = 0;
            await load();
          } else {
            summary.querySelector("[data-progress]")?.replaceChildren(`running… ${rate(run.progress)}`);
          }
        } catch { /* keep polling */ }
      }, 700);
      await load();
    } catch (err) { toast(err.message, "error"); }
  });

  let generation = 0; // a slower, older load never overwrites a newer one
  async function load() {
    const mine = ++generation;
    try {
      const [s, page_] = await Promise.all([
        api("/reconciliation/summary", { params: { date: day.value } }),
        api("/reconciliation/discrepancies", { params: { date: day.value, category: category.value || undefined, state: state.value, limit: 25, cursor: cursors[page] } }),
      ]);
      if (mine !== generation) return;
      fill(summary, h("div", { class: "grid kpis" },
        h("div", { class: "panel kpi" }, h("div", { class: "label" }, "Match rate"), h("div", { class: "value", "data-testid": "match-rate" }, rate(s.match_rate))),
        h("div", { class: "panel kpi" }, h("div", { class: "label" }, "Open discrepancies"), h("div", { class: "value", "data-testid": "open-discrepancies" }, count(s.open_discrepancies))),
        ...Object.entries(s.totals).map(([k, v]) => h("div", { class: "panel kpi" }, h("div", { class: "label" }, k.replaceAll("_", " ")), h("div", { class: "value" }, count(v))))),
        h("span", { class: "muted", "data-progress": "" }),
        table([
          { label: "Run", cell: (r) => h("span", { class: "mono" }, r.id) },
          { label: "Pair", cell: (r) => `${r.left_source} ↔ ${r.right_source}` },
          { label: "Days", cell: (r) => (r.date_from === r.date_to ? r.date_from : `${r.date_from} – ${r.date_to}`) },
          { label: "Status", cell: (r) => badge(r.status) },
          { label: "Match rate", num: true, cell: (r) => rate(r.summary?.match_rate) },
          { label: "Finished", cell: (r) => dateTime(r.finished_at) },
          { label: "By", cell: (r) => r.requested_by || "—" },
        ], s.runs, { empty: "No run covers this day yet." }));
      cursors[page + 1] = page_.next_cursor;
      fill(list, table([
        { label: "#", cell: (d) => h("button", { type: "button", class: "btn-ghost mono", onclick: () => detail(d) }, String(d.id)) },
        { label: "Category", cell: (d) => badge(d.category) },
        { label: "Key", cell: (d) => h("span", { class: "mono" }, d.match_key || "—") },
        { label: "Amount diff", num: true, cell: (d) => (d.amount_diff_minor == null ? "—" : count(d.amount_diff_minor)) },
        { label: "Left / right", cell: (d) => `${d.left_id ?? "—"} / ${d.right_id ?? "—"}` },
        { label: "State", cell: (d) => (d.resolution ? h("span", { "data-resolution": d.id }, badge("resolved"), ` ${d.resolution}`) : badge("open")) },
        { label: "", cls: "actions", cell: (d) => (can("reconciliation:manage") && !d.resolution ? h("button", { type: "button", "data-resolve": d.id, onclick: () => detail(d) }, "Resolve…") : "") },
      ], page_.items, { empty: "No discrepancies.", rowAttrs: (d) => ({ "data-discrepancy": d.id }) }));
      fill(pager, 
        h("button", { type: "button", disabled: page === 0, onclick: () => { page -= 1; load(); } }, "Previous"),
        h("button", { type: "button", disabled: !page_.next_cursor, onclick: () => { page += 1; load(); } }, "Next"));
    } catch (err) { fill(summary, errorBox(err)); }
  }

  function detail(d) {
    const resolution = h("select", { id: "d-resolution" }, RESOLUTIONS.map((r) => h("option", { value: r }, r)));
    const note = h("textarea", { id: "d-note", rows: "3", required: true });
    const form = h("form", { class: "stack", "data-testid": "resolve-form" },
      h("label", { for: "d-resolution" }, "Resolution", resolution),
      h("label", { for: "d-note" }, "Note (why)", note),
      h("div", { class: "row" }, h("button", { type: "submit", class: "primary" }, "Resolve"),
        h("button", { type: "button", "data-action": "annotate", onclick: () => send("annotate") }, "Add note only")));
    async function send(action) {
      try {
        await api(`/reconciliation/discrepancies/${d.id}/resolve`, { method: "POST", body: { action, resolution: action === "resolve" ? resolution.value : null, note: note.value } });
        toast(action === "resolve" ? `Discrepancy ${d.id} resolved` : "Note added");
        closeDrawer();
        await load();
      } catch (err) { form.append(errorBox(err)); }
    }
    form.addEventListener("submit", (ev) => { ev.preventDefault(); send("resolve"); });
    openDrawer(`Discrepancy ${d.id} · ${d.category}`,
      facts([["Run", d.run_id], ["Pair", `${d.left_source} ↔ ${d.right_source}`], ["Key", d.match_key], ["Left row", d.left_id], ["Right row", d.right_id],
        ["Amount diff (minor)", d.amount_diff_minor], ["Confidence", d.confidence == null ? null : rate(d.confidence)],
        ["Resolution", d.resolution ? `${d.resolution} by ${d.resolved_by} · ${dateTime(d.resolved_at)}` : "open"], ["Note", d.note]]),
      h("h3", {}, "Details"), json(d.details),
      can("reconciliation:manage") && !d.resolution ? form : (can("reconciliation:manage") ? actionButton("Reopen", async () => {
        await api(`/reconciliation/discrepancies/${d.id}/resolve`, { method: "POST", body: { action: "reopen", note: "reopened from the console" } });
        closeDrawer(); await load();
      }) : null));
    void money;
  }

  // the daily Schedule lives in Temporal: when it next runs (it reconciles the day before)
  async function loadSchedule() {
    try {
      const sch = await api("/reconciliation/schedule");
      if (!sch.exists) fill(nextRun, "No daily reconciliation is scheduled (the worker creates the schedule when it starts).");
      else if (sch.paused) fill(nextRun, `The daily reconciliation is paused${sch.note ? `: ${sch.note}` : ""}.`);
      else fill(nextRun, "Next scheduled run: ", h("time", { datetime: sch.next_run_at || "", "data-next-run": sch.next_run_at || "" }, dateTime(sch.next_run_at)),
        ` (reconciles the day before, ${sch.time_zone})`);
    } catch (err) { fill(nextRun, `Next scheduled run: unknown (${err.message})`); }
  }

  await Promise.all([load(), loadSchedule()]);
  return () => clearInterval(poll);
}
