// PayShack portal page script: fetch the transactions page, decrypt it, render the table.
// The API answers CryptoJS passphrase-format AES: base64("Salted__" + salt(8) + AES-256-CBC
// ciphertext), key and iv from OpenSSL's EVP_BytesToKey(MD5, passphrase, salt). MD5 is written
// out here (WebCrypto has none); AES-CBC comes from WebCrypto.
"use strict";

function md5(bytes) {
  const S = [7, 12, 17, 22, 5, 9, 14, 20, 4, 11, 16, 23, 6, 10, 15, 21];
  const K = new Uint32Array(64);
  for (let i = 0; i < 64; i++) K[i] = Math.floor(Math.abs(Math.sin(i + 1)) * 4294967296);
  const len = bytes.length;
  const total = (((len + 8) >>> 6) + 1) * 64;
  const buf = new Uint8Array(total);
  buf.set(bytes);
  buf[len] = 0x80;
  const dv = new DataView(buf.buffer);
  dv.setUint32(total - 8, (len * 8) >>> 0, true);
  dv.setUint32(total - 4, Math.floor((len * 8) / 4294967296), true);
  let a0 = 0x67452301, b0 = 0xefcdab89, c0 = 0x98badcfe, d0 = 0x10325476;
  for (let off = 0; off < total; off += 64) {
    let A = a0, B = b0, C = c0, D = d0;
    for (let i = 0; i < 64; i++) {
      let F, g;
      if (i < 16) { F = (B & C) | (~B & D); g = i; }
      else if (i < 32) { F = (D & B) | (~D & C); g = (5 * i + 1) % 16; }
      else if (i < 48) { F = B ^ C ^ D; g = (3 * i + 5) % 16; }
      else { F = C ^ (B | ~D); g = (7 * i) % 16; }
      F = (F + A + K[i] + dv.getUint32(off + g * 4, true)) >>> 0;
      A = D; D = C; C = B;
      const s = S[(i >> 4) * 4 + (i % 4)];
      B = (B + ((F << s) | (F >>> (32 - s)))) >>> 0;
    }
    a0 = (a0 + A) >>> 0; b0 = (b0 + B) >>> 0; c0 = (c0 + C) >>> 0; d0 = (d0 + D) >>> 0;
  }
  const out = new Uint8Array(16);
  const odv = new DataView(out.buffer);
  odv.setUint32(0, a0, true); odv.setUint32(4, b0, true); odv.setUint32(8, c0, true); odv.setUint32(12, d0, true);
  return out;
}

function concat(...parts) {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) { out.set(p, at); at += p.length; }
  return out;
}

function evpBytesToKey(pass, salt, size) {
  let derived = new Uint8Array(0), block = new Uint8Array(0);
  while (derived.length < size) {
    block = md5(concat(block, pass, salt));
    derived = concat(derived, block);
  }
  return derived.slice(0, size);
}

async function decryptCryptoJS(b64, passphrase) {
  const raw = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
  if (new TextDecoder().decode(raw.slice(0, 8)) !== "Salted__") throw new Error("not CryptoJS salted data");
  const salt = raw.slice(8, 16), body = raw.slice(16);
  const keyIv = evpBytesToKey(new TextEncoder().encode(passphrase), salt, 48);
  const key = await crypto.subtle.importKey("raw", keyIv.slice(0, 32), { name: "AES-CBC" }, false, ["decrypt"]);
  const plain = await crypto.subtle.decrypt({ name: "AES-CBC", iv: keyIv.slice(32, 48) }, key, body);
  return JSON.parse(new TextDecoder().decode(plain));
}

async function loadTransactions() {
  const cfg = window.__PS_CFG;
  const params = new URLSearchParams(window.location.search);
  const api = new URL(cfg.api, window.location.origin);
  for (const k of ["page", "page_size", "from", "to"]) if (params.get(k)) api.searchParams.set(k, params.get(k));
  const status = document.getElementById("load-status");
  const resp = await fetch(api, { credentials: "same-origin", headers: { "X-Requested-With": "XMLHttpRequest" } });
  if (resp.status === 401) { window.location.href = "/login?expired=1"; return; }
  if (!resp.ok) { status.textContent = "Could not load transactions (" + resp.status + ")"; return; }
  const body = await resp.json();
  const data = await decryptCryptoJS(body.data, cfg.dataKey);
  const tbody = document.querySelector("#txn-table tbody");
  tbody.textContent = "";
  for (const r of data.rows) {
    const tr = document.createElement("tr");
    for (const k of ["order_id", "transaction_id", "utr", "amount", "paid_amount", "status", "date"]) {
      const td = document.createElement("td");
      td.textContent = r[k] == null ? "" : r[k];
      td.className = "col-" + k;
      tr.appendChild(td);
    }
    tbody.appendChild(tr);
  }
  document.getElementById("page-info").textContent = "Page " + data.page + " of " + data.last_page + " (" + data.total + " transactions)";
  const next = document.getElementById("next-page"), prev = document.getElementById("prev-page");
  const link = (n) => { const p = new URLSearchParams(params); p.set("page", n); return "?" + p.toString(); };
  if (data.page < data.last_page) { next.href = link(data.page + 1); next.hidden = false; }
  if (data.page > 1) { prev.href = link(data.page - 1); prev.hidden = false; }
  status.textContent = "loaded";
  document.body.dataset.loaded = "1";
}

window.addEventListener("DOMContentLoaded", () => {
  loadTransactions().catch((e) => { document.getElementById("load-status").textContent = "error: " + e.message; });
});
