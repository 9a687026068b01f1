// Readable numbers: currency amounts from minor units, thousands separators, rates, and times in
// the time zone the user picked (their browser's by default).

const TZ_KEY = "payops.tz";
export const locale = navigator.language || "en-US";
const cache = new Map();

export const prefs = {
  get tz() { return localStorage.getItem(TZ_KEY) || Intl.DateTimeFormat().resolvedOptions().timeZone || "UTC"; },
  set tz(value) { localStorage.setItem(TZ_KEY, value); },
};

function currencyFormat(currency) {
  const key = `c:${currency}`;
  if (!cache.has(key)) cache.set(key, new Intl.NumberFormat(locale, { style: "currency", currency }));
  return cache.get(key);
}

// The currency's exponent as Intl knows it (XOF 0, USD 2, BHD 3): minor units -> major units.
export function exponent(currency) {
  return currencyFormat(currency).resolvedOptions().maximumFractionDigits;
}

export function money(minor, currency) {
  if (minor === null || minor === undefined || !currency) return "—";
  const e = exponent(currency);
  // BigInt keeps large amounts exact; Intl formats the decimal string itself
  const big = BigInt(minor);
  const sign = big < 0n ? "-" : "";
  const abs = (big < 0n ? -big : big).toString().padStart(e + 1, "0");
  const decimal = e ? `${sign}${abs.slice(0, -e)}.${abs.slice(-e)}` : `${sign}${abs}`;
  return currencyFormat(currency).format(decimal);
}

export function majorToNumber(minor, currency) {
  if (!currency) return Number(minor);  // no currency (an empty breakdown row): nothing to scale by
  return Number(minor) / 10 ** exponent(currency);
}

const integer = new Intl.NumberFormat(locale, { maximumFractionDigits: 0 });
export function count(n) {
  return n === null || n === undefined ? "—" : integer.format(n);
}

const percent = new Intl.NumberFormat(locale, { style: "percent", minimumFractionDigits: 1, maximumFractionDigits: 1 });
export function rate(x) {
  return x === null || x === undefined ? "—" : percent.format(x);
}

export function dateTime(iso, opts = {}) {
  if (!iso) return "—";
  const d = new Date(iso);
  return new Intl.DateTimeFormat(locale, {
    timeZone: prefs.tz, year: "numeric", month: "short", day: "2-digit",
    hour: "2-digit", minute: "2-digit", second: opts.seconds ? "2-digit" : undefined, ...opts.intl,
  }).format(d);
}

export function time(iso) {
  if (!iso) return "—";
  return new Intl.DateTimeFormat(locale, { timeZone: prefs.tz, hour: "2-digit", minute: "2-digit", second: "2-digit" })
    .format(new Date(iso));
}

export function shortLabel(iso, granularity) {
  const d = new Date(iso);
  const opts = granularity === "hour"
    ? { timeZone: prefs.tz, hour: "2-digit", minute: "2-digit", day: "2-digit", month: "short" }
    : { timeZone: prefs.tz, day: "2-digit", month: "short" };
  return new Intl.DateTimeFormat(locale, opts).format(d);
}

// change against the previous window, as a signed percentage (or "new" when it was zero)
export function delta(value, previous) {
  const v = Number(value ?? 0), p = Number(previous ?? 0);
  if (p === 0 && v === 0) return { text: "no change", dir: "flat" };
  if (p === 0) return { text: "new this period", dir: "up" };
  const change = (v - p) / Math.abs(p);
  const text = `${change > 0 ? "+" : ""}${new Intl.NumberFormat(locale, { style: "percent", maximumFractionDigits: 1 }).format(change)} vs previous`;
  return { text, dir: change > 0 ? "up" : change < 0 ? "down" : "flat" };
}

export function timeZones() {
  const zones = typeof Intl.supportedValuesOf === "function" ? Intl.supportedValuesOf("timeZone") : [];
  const wanted = ["UTC", prefs.tz, Intl.DateTimeFormat().resolvedOptions().timeZone, ...zones];
  return [...new Set(wanted.filter(Boolean))];
}
