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

export function badge(status) {
  return h("span", { class: `badge ${String(status || "").replace(/[^a-z_]/gi, "")}`, "data-status": status }, status || "—");
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
