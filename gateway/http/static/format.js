// Small formatting helpers shared by the console's modules: numbers, times, colours.

const NUMBER = new Intl.NumberFormat('en-US');

/** "1,204" */
export function fmtCount(n) {
  return NUMBER.format(n);
}

/** Lines per second, compact: "0", "3.2", "48", "5.1k". */
export function fmtRate(r) {
  if (!r) return '0';
  if (r < 10) return r.toFixed(1).replace(/\.0$/, '');
  if (r < 1000) return String(Math.round(r));
  return (r / 1000).toFixed(1).replace(/\.0$/, '') + 'k';
}

const pad2 = (n) => String(n).padStart(2, '0');

let utc = false;

/** Show line times in UTC (true) or the browser's local time (false). */
export function setUtc(on) {
  utc = !!on;
}

/** Wall-clock time of an epoch-seconds timestamp, with milliseconds (local or UTC). */
export function fmtTime(ts) {
  if (typeof ts !== 'number' || !Number.isFinite(ts)) return '--:--:--.---';
  const d = new Date(ts * 1000);
  const [h, m, s] = utc ? [d.getUTCHours(), d.getUTCMinutes(), d.getUTCSeconds()] : [d.getHours(), d.getMinutes(), d.getSeconds()];
  return `${pad2(h)}:${pad2(m)}:${pad2(s)}.${String(d.getMilliseconds()).padStart(3, '0')}`;
}

/** ISO 8601 (UTC) form of an epoch-seconds timestamp, for downloads and details. */
export function fmtIso(ts) {
  if (typeof ts !== 'number' || !Number.isFinite(ts)) return '';
  return new Date(ts * 1000).toISOString();
}

/** "12s ago", "4m ago", "3h ago" for a last-seen epoch time. */
export function fmtAgo(ts, now = Date.now() / 1000) {
  if (!ts) return '';
  const s = Math.max(0, now - ts);
  if (s < 60) return `${Math.round(s)}s ago`;
  if (s < 3600) return `${Math.round(s / 60)}m ago`;
  return `${Math.round(s / 3600)}h ago`;
}

/** Eight colours that stay apart on dark and light backgrounds (CSS variables hold the values). */
export const PALETTE_SIZE = 8;

/** A short label for a stream: the topic (and sub) or the minion and file name. */
export function shortLabel(stream) {
  if (stream.startsWith('kafka:')) return stream.slice(6);
  if (stream.startsWith('file:')) {
    const rest = stream.slice(5);
    const colon = rest.indexOf(':');
    const minion = rest.slice(0, colon);
    const path = rest.slice(colon + 1);
    return `${minion}:${path.slice(path.lastIndexOf('/') + 1)}`;
  }
  return stream;
}
