// Connectors: each connector's circuit breaker, health check, success rate and latency, and
// pause / resume through ops actions (the approvals flow decides when they take effect). The
// connector's recent ops actions are its pause history.

import { api } from "../api.js";
import { actionButton, badge, errorBox, facts, fill, h, modal, statusLabel, table, toast } from "../dom.js";
import { count, dateTime, rate } from "../format.js";
import * as live from "../live.js";

const PAUSE = "PAUSE_PAYOUTS";
const RESUME = "RESUME_PAYOUTS";

// paused if the connector's newest executed pause/resume is a pause; open requests shown apart
function pauseState(actions) {
  const done = actions.filter((a) => [PAUSE, RESUME].includes(a.type) && a.status === "executed");
  const pending = actions.filter((a) => [PAUSE, RESUME].includes(a.type) && ["pending_approval", "approved", "executing"].includes(a.status));
  return { paused: done.length ? done[0].type === PAUSE : false, pending };
}

function latency(ms) {
  if (ms === null || ms === undefined) return "—";
  return ms < 1000 ? `${Math.round(ms)} ms` : `${(ms / 1000).toFixed(1)} s`;
}

export async function render({ root, can }) {
  const summary = h("div", { class: "grid kpis", "data-testid": "connector-kpis" });
  const cards = h("div", { class: "grid cards", "data-testid": "connectors" });
  root.append(h("h1", {}, "Connectors"),
    h("p", { class: "muted" }, "Circuit breakers, health checks and recent submissions per connector. Pausing a connector routes new payouts around it; it goes through approvals like every ops action."),
    summary, cards);
  const mayAct = can("ops_actions:create");

  async function request(type, connector) {
    const verb = type === PAUSE ? "Pause" : "Resume";
    const values = await modal(`${verb} ${connector}`, [
      { name: "reason", label: "Reason (kept in the audit trail)", type: "textarea", required: true, maxlength: 1000 },
    ], { submit: `Request ${verb.toLowerCase()}`, danger: type === PAUSE,
      intro: type === PAUSE ? "New payouts will not be routed to this connector once the action is approved." : "Payouts may be routed to this connector again once the action is approved." });
    if (!values) return;
    const a = await api("/ops/actions", { method: "POST",
      body: { type, params: { connector }, reason: values.reason } });
    toast(`${verb} requested (${a.id}); it needs ${a.required_approvals} approval(s)`);
    await load();
  }

  async function load() {
    let health;
    try { health = await api("/connectors/health"); } catch (err) { fill(cards, errorBox(err)); return; }
    const actions = await Promise.all(health.map((c) => api("/ops/actions", { params: { target: `connector:${c.connector}`, limit: 20 } })
      .then((p) => p.data).catch(() => [])));
    const open = health.filter((c) => c.state !== "closed").length;
    const reqs = health.reduce((n, c) => n + (c.recent_requests || 0), 0);
    const errs = health.reduce((n, c) => n + (c.recent_errors || 0), 0);
    fill(summary,
      h("div", { class: "panel kpi" }, h("div", { class: "label" }, "Connectors"), h("div", { class: "value" }, count(health.length))),
      h("div", { class: "panel kpi" }, h("div", { class: "label" }, "Breakers open"), h("div", { class: `value${open ? " bad" : ""}`, "data-testid": "breakers-open" }, count(open))),
      h("div", { class: "panel kpi" }, h("div", { class: "label" }, "Recent success rate"), h("div", { class: "value" }, reqs ? rate(1 - errs / reqs) : "—"),
        h("div", { class: "delta flat" }, `${count(reqs)} submissions`)));
    fill(cards, health.map((c, i) => {
      const st = pauseState(actions[i]);
      const success = c.recent_requests ? 1 - c.recent_error_rate : null;
      return h("section", { class: "panel", "data-connector": c.connector, "aria-labelledby": `con-${c.connector}` },
        h("div", { class: "card-head" },
          h("h2", { id: `con-${c.connector}` }, c.connector),
          h("span", { class: "spacer" }),
          mayAct ? (st.paused
            ? actionButton("Resume", () => request(RESUME, c.connector), { "data-resume": c.connector })
            : actionButton("Pause", () => request(PAUSE, c.connector), { class: "danger", "data-pause": c.connector })) : null),
        h("div", { class: "card-badges" },
          h("span", { "data-breaker": c.connector }, badge(c.state, `Breaker ${statusLabel(c.state).toLowerCase()}`)),
          st.paused ? h("span", { "data-paused": c.connector }, badge("held", "Paused")) : null,
          st.pending.length ? badge("pending_approval", `${st.pending[0].type === PAUSE ? "Pause" : "Resume"} awaiting approval`) : null),
        facts([
          ["Rails", c.rails.join(", ") || "—"],
          ["Routable", c.routable ? "yes" : "no (not used by routing)"],
          ["Success rate", h("span", { "data-success": c.connector }, success === null ? "no recent submissions" : `${rate(success)} of ${count(c.recent_requests)}`)],
          ["Last health check", c.last_checked_at ? `${dateTime(c.last_checked_at)} · ${c.last_ok ? "ok" : "failed"}` : "never"],
          ["Latency (last check)", h("span", { "data-latency": c.connector }, latency(c.last_latency_ms))],
          ["Consecutive failures", count(c.consecutive_failures)],
          c.last_error ? ["Last error", c.last_error] : null,
          c.opened_at ? ["Breaker opened", `${dateTime(c.opened_at)}${c.open_reason ? ` · ${c.open_reason}` : ""}`] : null,
        ]),
        h("h3", {}, "Pause history"),
        table([
          { label: "When", cell: (a) => dateTime(a.updated_at) },
          { label: "Action", cell: (a) => (a.type === PAUSE ? "Pause" : a.type === RESUME ? "Resume" : statusLabel(a.type)) },
          { label: "Status", cell: (a) => badge(a.status) },
          { label: "By", cell: (a) => a.created_by },
        ], actions[i].slice(0, 5), { empty: "No pause or resume yet." }));
    }));
    cards.dataset.loaded = "true";
  }

  const off = live.on("ops_actions", () => load());
  const timer = setInterval(load, 15000); // breaker states change on the worker's health checks
  await load();
  return () => { off(); clearInterval(timer); };
}
