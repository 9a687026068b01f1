// The console shell: sign-in, navigation by permission, hash routing, the time-zone picker.

import { api, auth } from "./api.js";
import { clear, closeDrawer, errorBox, h, toast } from "./dom.js";
import { prefs, timeZones } from "./format.js";
import { merchantName } from "./links.js";
import * as live from "./live.js";

// Merchant users (merchant_admin, merchant_viewer, and an ops "view as" session) get the merchant
// portal: only the pages marked `merchant: true` (pageAllowed). Ops users get every page but the
// portal's dashboard that their permissions allow.
const PAGES = [
  { id: "dashboard", label: "Dashboard", merchant: true, load: () => import("./pages/portal.js"), allowed: (me) => me.is_merchant_user && can(me, "dashboard:read") },
  { id: "overview", label: "Overview", load: () => import("./pages/overview.js"), allowed: (me) => !me.is_merchant_user && can(me, "dashboard:read") },
  { id: "transactions", label: "Transactions", merchant: true, load: () => import("./pages/transactions.js"), allowed: (me) => can(me, "dashboard:read") },
  { id: "payouts", label: "Payouts", merchant: true, load: () => import("./pages/payouts.js"), allowed: (me) => can(me, "payouts:read") },
  { id: "schedules", label: "Schedules", merchant: true, load: () => import("./pages/schedules.js"), allowed: (me) => can(me, "payouts:read") },
  { id: "approvals", label: "Approvals", load: () => import("./pages/approvals.js"), allowed: (me) => can(me, "ops_actions:read") },
  { id: "reconciliation", label: "Reconciliation", load: () => import("./pages/reconciliation.js"), allowed: (me) => can(me, "ledger:read") },
  { id: "connectors", label: "Connectors", load: () => import("./pages/connectors.js"), allowed: (me) => can(me, "payouts:read") },
  { id: "rails", label: "Rails", load: () => import("./pages/rails.js"), allowed: (me) => can(me, "payouts:read") },
  { id: "batches", label: "Batches", load: () => import("./pages/batches.js"), allowed: (me) => can(me, "ledger:read") },
  { id: "sla", label: "SLA", load: () => import("./pages/sla.js"), allowed: (me) => can(me, "payouts:read") },
  { id: "syncs", label: "Syncs", load: () => import("./pages/syncs.js"), allowed: (me) => can(me, "dashboard:read") },
  { id: "alerts", label: "Alerts", load: () => import("./pages/alerts.js"), allowed: (me) => can(me, "dashboard:read") },
  { id: "api-logs", label: "API logs", merchant: true, load: () => import("./pages/api_logs.js"), allowed: (me) => can(me, "dashboard:read") },
  { id: "settlement", label: "Settlement", merchant: true, load: () => import("./pages/settlement.js"), allowed: (me) => can(me, "balances:read") },
  { id: "profile", label: "Profile", merchant: true, load: () => import("./pages/profile.js"), allowed: (me) => me.is_merchant_user || can(me, "balances:read") },
  { id: "recommendations", label: "Recommendations", load: () => import("./pages/recommendations.js"), allowed: (me) => can(me, "dashboard:read") },
  { id: "webhooks", label: "Webhooks", merchant: true, load: () => import("./pages/webhooks.js"), allowed: (me) => can(me, "payouts:read") },
  { id: "merchant", label: "Merchants", load: () => import("./pages/merchant.js"), allowed: (me) => can(me, "dashboard:read") },
  { id: "agents", label: "Agent map", load: () => import("./pages/agents.js"), allowed: (me) => can(me, "agents:read") },
];

function pageAllowed(p, me) {
  return p.allowed(me) && (!me.is_merchant_user || p.merchant === true);
}

export function can(me, permission) {
  return Boolean(me && me.permissions.includes(permission));
}

const state = { me: null, config: null, cleanup: null };
const OPS_TOKEN_KEY = "payops.token.ops";  // the ops user's own token while a "view as" session runs

export const isPortal = (me) => Boolean(me && me.is_merchant_user);
const brandName = (me) => (isPortal(me) ? "Merchant portal" : "payops console");

// Ops "view as": keep the ops token aside, sign in with the session's read-only token.
export async function startViewAs(token) {
  sessionStorage.setItem(OPS_TOKEN_KEY, auth.token);
  live.disconnect();
  await signIn(token, "#/dashboard");
}

// Ends the session on the server (its token is refused from then), with the session's own token.
// A plain fetch: a 401 here (already ended, or expired) must not start another exit.
async function endViewAsSession() {
  const id = state.me && state.me.view_as_session;
  if (!id || !auth.token) return;
  try {
    await fetch(`/api/v1/ops/view-as/${encodeURIComponent(id)}/end`, {
      method: "POST", headers: { Authorization: `Bearer ${auth.token}`, Accept: "application/json" },
    });
  } catch { /* the API is unreachable: the token still expires on its own */ }
}

async function exitViewAs() {
  await endViewAsSession();
  const own = sessionStorage.getItem(OPS_TOKEN_KEY);
  sessionStorage.removeItem(OPS_TOKEN_KEY);
  live.disconnect();
  if (own) await signIn(own, "#/merchant");
  else { auth.token = null; state.me = null; render(); }
}

function renderBanner() {
  const banner = document.getElementById("view-as-banner");
  if (!banner) return;
  clear(banner);
  if (!state.me || !state.me.view_as_by) { banner.hidden = true; return; }
  const label = h("strong", { "data-testid": "view-as-merchant" }, state.me.merchant_id);
  merchantName(state.me.merchant_id).then((name) => { if (name) label.textContent = name; });
  banner.append(h("span", {}, "Viewing as ", label, " — read-only"),
    h("span", { class: "muted" }, ` (you are ${state.me.view_as_by}; every request is audited)`),
    h("button", { type: "button", class: "btn-ghost", "data-testid": "view-as-exit", onclick: exitViewAs }, "Exit view as"));
  banner.hidden = false;
}

function route() {
  const [page, ...rest] = location.hash.replace(/^#\/?/, "").split("/");
  return { page: page || "overview", args: rest.map(decodeURIComponent) };
}

export function navigate(hash) {
  if (location.hash === hash) render();
  else location.hash = hash;
}

async function loadMe() {
  if (!auth.token) return null;
  try {
    return await api("/me");
  } catch {
    auth.token = null;
    return null;
  }
}

function buildNav() {
  const nav = document.getElementById("nav");
  clear(nav);
  const { page } = route();
  document.body.dataset.portal = isPortal(state.me) ? "merchant" : "ops";
  document.getElementById("brand-name").textContent = isPortal(state.me) ? "merchant portal" : "console";
  renderBanner();
  for (const p of PAGES.filter((p) => pageAllowed(p, state.me))) {
    nav.append(h("a", { href: `#/${p.id}`, "aria-current": p.id === page ? "page" : null, "data-page": p.id }, p.label));
  }
  nav.hidden = false;
  document.querySelector(".nav-toggle").hidden = false;
  document.getElementById("session").hidden = false;
  const who = state.me.merchant_id ? `${state.me.sub} · ${state.me.roles.join(", ")} · ${state.me.merchant_id}`
    : `${state.me.sub} · ${state.me.roles.join(", ")}`;
  document.getElementById("who").textContent = who;
  if (state.me.merchant_id) {
    merchantName(state.me.merchant_id).then((name) => {
      if (name) document.getElementById("who").textContent = `${state.me.sub} · ${state.me.roles.join(", ")} · ${name}`;
    });
  }
}

function hideChrome() {
  document.getElementById("nav").hidden = true;
  document.querySelector(".nav-toggle").hidden = true;
  document.getElementById("session").hidden = true;
  const banner = document.getElementById("view-as-banner");
  if (banner) banner.hidden = true;
}

async function render() {
  closeDrawer();
  if (state.cleanup) { try { state.cleanup(); } catch { /* page already gone */ } state.cleanup = null; }
  // A fresh <main> per render: a page still loading when the user moves on keeps writing into
  // its own, now detached, element instead of the next page's.
  const previous = document.getElementById("main");
  const main = previous.cloneNode(false);
  previous.replaceWith(main);
  if (!state.me) {
    hideChrome();
    return renderSignIn(main);
  }
  buildNav();
  const { page, args } = route();
  const spec = PAGES.find((p) => p.id === page && pageAllowed(p, state.me)) || PAGES.find((p) => pageAllowed(p, state.me));
  document.title = `${spec.label} · ${brandName(state.me)}`;
  main.dataset.page = spec.id;
  try {
    const mod = await spec.load();
    const cleanup = await mod.render({ root: main, me: state.me, config: state.config, args, navigate, can: (p) => can(state.me, p) });
    if (typeof cleanup !== "function") return;
    if (main.isConnected) state.cleanup = cleanup;
    else cleanup();  // left before it finished loading: stop its timers and streams now
  } catch (err) {
    console.error(err);
    if (main.isConnected) main.append(errorBox(err));
  }
  document.getElementById("nav").classList.remove("open");
}

async function signIn(token, home = null) {
  auth.token = token.trim();
  state.me = await loadMe();
  if (!state.me) {
    toast("That token was not accepted (expired, wrong issuer or no payops role).", "error");
    return;
  }
  live.connect();
  const target = home || (!location.hash || location.hash === "#/signin" ? (isPortal(state.me) ? "#/dashboard" : "#/overview") : null);
  if (target && location.hash !== target) location.hash = target;
  else render();
}

async function renderSignIn(main) {
  document.title = "Sign in · payops console";
  main.dataset.page = "signin";
  const tokenInput = h("textarea", { id: "token", rows: "4", required: true, autocomplete: "off", spellcheck: "false",
    placeholder: "eyJhbGciOi…" });
  const form = h("form", { class: "stack", "aria-labelledby": "signin-paste" },
    h("h2", { id: "signin-paste" }, "Sign in with a token"),
    h("label", { for: "token" }, "Bearer token (JWT)"), tokenInput,
    h("div", {}, h("button", { type: "submit", class: "primary" }, "Sign in")));
  form.addEventListener("submit", (ev) => { ev.preventDefault(); signIn(tokenInput.value); });
  const panel = h("section", { class: "panel signin", "aria-labelledby": "signin-title" },
    h("h1", { id: "signin-title" }, "payops console"),
    h("p", { class: "muted" }, "Payouts, approvals, reconciliation and provider syncs in one place."));
  main.append(panel);
  if (state.config?.env === "dev") {
    try {
      const users = await api("/dev/demo-users");
      panel.append(h("h2", {}, "Demo users (dev only)"),
        h("div", { class: "users", role: "list", "data-testid": "demo-users" }, users.map((u) =>
          h("button", { type: "button", role: "listitem", "data-role": u.role, "data-merchant": u.merchant_id || "",
            onclick: () => signIn(u.token) }, h("span", { class: "label" }, u.label),
            u.merchant_id ? h("span", { class: "role mono", title: u.merchant_id }, u.merchant_id) : null))));
    } catch (err) {
      panel.append(errorBox(err));
    }
  }
  panel.append(form);
  main.focus({ preventScroll: true });
}

function setupTimeZone() {
  const select = document.getElementById("tz");
  for (const z of timeZones()) select.append(h("option", { value: z, selected: z === prefs.tz }, z));
  select.addEventListener("change", () => { prefs.tz = select.value; render(); });
}

async function start() {
  setupTimeZone();
  document.getElementById("sign-out").addEventListener("click", () => {
    sessionStorage.removeItem(OPS_TOKEN_KEY);
    auth.token = null;
    state.me = null;
    live.disconnect();
    location.hash = "#/signin";
    render();
  });
  document.getElementById("drawer-close").addEventListener("click", closeDrawer);
  document.getElementById("drawer-backdrop").addEventListener("click", closeDrawer);
  document.addEventListener("keydown", (ev) => { if (ev.key === "Escape") closeDrawer(); });
  const toggle = document.querySelector(".nav-toggle");
  toggle.addEventListener("click", () => {
    const nav = document.getElementById("nav");
    nav.classList.toggle("open");
    toggle.setAttribute("aria-expanded", nav.classList.contains("open"));
  });
  window.addEventListener("hashchange", render);
  window.addEventListener("payops:unauthorized", () => {
    if (!state.me) return;
    if (state.me.view_as_by && sessionStorage.getItem(OPS_TOKEN_KEY)) {
      toast("The view-as session ended.", "info");
      exitViewAs();
      return;
    }
    toast("Your session ended; sign in again.", "error");
    auth.token = null;
    state.me = null;
    live.disconnect();
    render();
  });
  try { state.config = await api("/console/config"); } catch { state.config = { env: "prod", temporal_ui_url: "", timezone: "UTC" }; }
  state.me = await loadMe();
  if (state.me) live.connect();
  await render();
  document.body.dataset.ready = "true";
}

start();
