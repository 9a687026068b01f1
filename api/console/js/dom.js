// A tiny element builder: text is always set as text (never parsed as HTML).

export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") el.className = v;
    else if (k === "dataset") Object.assign(el.dataset, v);
    else if (k.startsWith("on") && typeof v === "function") el.addEventListener(k.slice(2).toLowerCase(), v);
    else if (k === "value") el.value = v;
    else if (v === true) el.setAttribute(k, "");
    else el.setAttribute(k, v);
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

export function clear(el) {
  while (el.firstChild) el.firstChild.remove();
  return el;
}

// What a status key reads as: "in_flight" -> "In flight", with the few that need their own words.
const LABELS = {
  dlq: "DLQ", pending_approval: "Awaiting approval", in_flight: "In flight", float_low: "Float low",
  half_open: "Half open", closed: "Closed (routable)", open: "Open", written_off: "Written off",
  payout_sla_breach: "Payout SLA breach", payouts_sla_breached: "Payouts past SLA", sla: "SLA",
};
export function statusLabel(key) {
  if (key === null || key === undefined || key === "") return "—";
  const k = String(key);
  if (LABELS[k]) return LABELS[k];
  const words = k.replace(/[_-]+/g, " ").trim().toLowerCase();
  return words.charAt(0).toUpperCase() + words.slice(1);
}

export function badge(status, label) {
  return h("span", { class: `badge ${String(status || "").replace(/[^a-z_]/gi, "")}`, "data-status": status, title: status || null },
    label ?? statusLabel(status));
}

export function toast(message, kind = "info") {
  const box = document.getElementById("toasts");
  const el = h("div", { class: `toast ${kind}` }, message);
  box.append(el);
  setTimeout(() => el.remove(), kind === "error" ? 8000 : 4000);
}

export function errorBox(err) {
  const p = err?.problem || {};
  return h("div", { class: "error-box", role: "alert" },
    h("strong", {}, p.title || "Error"), ": ", err?.message || String(err),
    p.type ? h("span", { class: "muted mono" }, ` (${p.type})`) : null);
}

export function table(columns, rows, { empty = "Nothing here yet.", rowAttrs } = {}) {
  const head = h("tr", {}, columns.map((c) => h("th", { scope: "col", class: c.num ? "num" : null }, c.label)));
  const body = rows.length
    ? rows.map((r) => h("tr", rowAttrs ? rowAttrs(r) : {},
      columns.map((c) => h("td", { class: [c.num ? "num" : null, c.cls].filter(Boolean).join(" ") || null }, c.cell(r)))))
    : [h("tr", {}, h("td", { colspan: columns.length, class: "empty" }, empty))];
  return h("div", { class: "table-wrap" }, h("table", {}, h("thead", {}, head), h("tbody", {}, body)));
}

export function facts(pairs) {
  return h("dl", { class: "facts" }, pairs.filter(Boolean).flatMap(([k, v]) => [h("dt", {}, k), h("dd", {}, v ?? "—")]));
}

export function json(value) {
  return h("pre", { class: "json", tabindex: "0" }, JSON.stringify(value, null, 2));
}

// The details drawer: focus moves in, Escape closes, focus returns to what opened it.
let opener = null;
export function openDrawer(title, ...content) {
  const drawer = document.getElementById("drawer");
  opener = document.activeElement;
  document.getElementById("drawer-title").textContent = title;
  append(clear(document.getElementById("drawer-body")), content);
  drawer.hidden = false;
  document.getElementById("drawer-backdrop").hidden = false;
  document.getElementById("drawer-close").focus();
  return document.getElementById("drawer-body");
}

export function closeDrawer() {
  const drawer = document.getElementById("drawer");
  if (drawer.hidden) return;
  drawer.hidden = true;
  document.getElementById("drawer-backdrop").hidden = true;
  if (opener && document.contains(opener)) opener.focus();
}

export function drawerBody() {
  return document.getElementById("drawer-body");
}

// A modal dialog (<dialog>, focus trapped by the browser): fields in, a promise of the values out
// (null when cancelled). Replaces prompt(): labelled fields, required ones checked before submit.
// A field is a text input, a textarea, or a select ({ type: "select", options: [{ value, label }] });
// `help` is a line under it.
export function modal(title, fields, { submit = "OK", danger = false, intro } = {}) {
  return new Promise((resolve) => {
    const inputs = {};
    const rows = fields.map((f) => {
      const id = `modal-${f.name}`;
      const input = f.type === "textarea"
        ? h("textarea", { id, name: f.name, rows: "3", required: f.required, maxlength: f.maxlength || null })
        : f.type === "select"
          ? h("select", { id, name: f.name, required: f.required }, (f.options || []).map((o) => h("option", { value: o.value }, o.label)))
          : h("input", { id, name: f.name, type: f.type || "text", required: f.required, maxlength: f.maxlength || null });
      if (f.value !== undefined) input.value = f.value;
      inputs[f.name] = input;
      return h("label", { for: id }, f.label, input, f.help ? h("small", { class: "muted" }, f.help) : null);
    });
    const form = h("form", { method: "dialog", class: "stack" },
      h("h2", { id: "modal-title" }, title), intro ? h("p", { class: "muted" }, intro) : null, rows,
      h("div", { class: "row modal-buttons" }, h("span", { class: "spacer" }),
        h("button", { type: "button", "data-modal": "cancel", onclick: () => dialog.close("") }, "Cancel"),
        h("button", { type: "submit", class: danger ? "danger" : "primary", "data-modal": "submit", value: "ok" }, submit)));
    const dialog = h("dialog", { class: "modal", "aria-labelledby": "modal-title", "data-testid": "modal" }, form);
    dialog.addEventListener("close", () => {
      const ok = dialog.returnValue === "ok";
      dialog.remove();
      resolve(ok ? Object.fromEntries(Object.entries(inputs).map(([k, el]) => [k, el.value])) : null);
    });
    document.body.append(dialog);
    dialog.showModal();
    (rows[0]?.querySelector("input, textarea, select") || dialog).focus();
  });
}

// A button that disables itself while its action runs and reports failures.
export function actionButton(label, action, attrs = {}) {
  const btn = h("button", { type: "button", ...attrs }, label);
  btn.addEventListener("click", async () => {
    btn.disabled = true;
    try { await action(btn); } catch (err) { toast(err.message || String(err), "error"); } finally { btn.disabled = false; }
  });
  return btn;
}

// replaceChildren that skips null/false and flattens arrays, like h()
export function fill(el, ...children) {
  clear(el);
  append(el, children);
  return el;
}
