// The viewer's own preferences, kept in this browser (localStorage): theme, local or UTC
// times, how many lines a view keeps, how many lines of history a newly opened source
// starts with.

const KEY = 'tailgate.prefs';
export const LIMITS = {
  maxLines: { min: 1000, max: 500000, def: 20000 },
  backlog: { min: 0, max: 10000, def: 500 },
};

function clamp(value, { min, max, def }) {
  const n = Math.round(Number(value));
  return Number.isFinite(n) ? Math.min(max, Math.max(min, n)) : def;
}

export function loadPrefs() {
  let saved = {};
  try {
    saved = JSON.parse(localStorage.getItem(KEY) || '{}') || {};
  } catch {
    saved = {};
  }
  return {
    theme: saved.theme === 'light' ? 'light' : 'dark',
    utc: saved.utc === true,
    maxLines: clamp(saved.maxLines ?? LIMITS.maxLines.def, LIMITS.maxLines),
    backlog: clamp(saved.backlog ?? LIMITS.backlog.def, LIMITS.backlog),
  };
}

export function savePrefs(prefs) {
  const clean = {
    theme: prefs.theme === 'light' ? 'light' : 'dark',
    utc: prefs.utc === true || prefs.utc === 'utc',
    maxLines: clamp(prefs.maxLines, LIMITS.maxLines),
    backlog: clamp(prefs.backlog, LIMITS.backlog),
  };
  try {
    localStorage.setItem(KEY, JSON.stringify(clean));
  } catch {
    // Storage can be full or disabled (private mode); preferences then last for this page only.
  }
  return clean;
}
