// The filter: what the server is asked to match (keyword terms, excluded terms and meta
// fields, or an RE2 regex; case toggle) and the keyword terms highlighted in the page.
//
// The server decides which lines are sent; the page only marks where they match. JS
// regular expressions are close to RE2 for common patterns; RE2's inline `(?i)` and
// `(?P<name>...)` are translated, and a pattern JS cannot compile is simply not
// highlighted (the server's verdict on it still stands).

export const EMPTY_FILTER = Object.freeze({ q: '', regex: false, ignoreCase: false });

const FIELD = /^([A-Za-z_][A-Za-z0-9_.-]*):(.+)$/;

/** The filter box's words (keyword mode), quotes grouping words: `"a b"`, `-"a b"`, `k:"a b"`. */
function words(text) {
  const out = [];
  const re = /(-?)(?:"([^"]*)"?|(\S+?:)"([^"]*)"?|(\S+))/g;
  let m;
  while ((m = re.exec(text)) !== null) {
    if (m[2] !== undefined) out.push({ neg: m[1], text: m[2], quoted: true });
    else if (m[3] !== undefined) out.push({ neg: m[1], text: m[3] + m[4], quotedValue: true });
    else out.push({ neg: m[1], text: m[5] });
  }
  return out;
}

/**
 * The filter box in keyword mode, read as the contract's fields: words are keyword terms
 * (all must be in the line), `-word` excludes, `key:value` is a meta field (`level:warn`,
 * `http.status:500`), `"two words"` is one term. `{ keywords, exclude, fields }`.
 */
export function parseQuery(text) {
  const keywords = [];
  const exclude = [];
  const fields = {};
  for (const w of words(text || '')) {
    const field = !w.quoted && !w.neg ? FIELD.exec(w.text) : null;
    if (field && !field[1].split('.').includes('')) fields[field[1]] = field[2];
    else if (w.neg && w.text) exclude.push(w.text);
    else if (w.neg) keywords.push('-');
    else if (w.text) keywords.push(w.text);
  }
  return { keywords, exclude, fields };
}

/** The subscribe fields for a filter, per the contract. */
export function filterFields(filter) {
  if (!filter || !filter.q) return {};
  const out = {};
  if (filter.regex) out.regex = filter.q;
  else {
    const { keywords, exclude, fields } = parseQuery(filter.q);
    if (keywords.length) out.keyword = keywords.length === 1 ? keywords[0] : keywords;
    if (exclude.length) out.exclude = exclude;
    if (Object.keys(fields).length) out.fields = fields;
  }
  if (filter.ignoreCase) out.ignore_case = true;
  return out;
}

export function sameFilter(a, b) {
  const qa = (a && a.q) || '';
  const qb = (b && b.q) || '';
  if (!qa && !qb) return true;
  return qa === qb && !!a.regex === !!b.regex && !!a.ignoreCase === !!b.ignoreCase;
}

/** What the server is asked, in words: `"error" · not "healthz" · level = "warn"`. */
export function describeFilter(filter) {
  if (!filter || !filter.q) return 'no filter';
  const fold = filter.ignoreCase ? ' (ignoring case)' : '';
  if (filter.regex) return `regex ${JSON.stringify(filter.q)}${fold}`;
  const { keywords, exclude, fields } = parseQuery(filter.q);
  const parts = [
    ...keywords.map((k) => JSON.stringify(k)),
    ...exclude.map((x) => `not ${JSON.stringify(x)}`),
    ...Object.entries(fields).map(([k, v]) => `${k} = ${JSON.stringify(v)}`),
  ];
  return `${parts.join(' · ') || 'no filter'}${fold}`;
}

function escapeRegExp(text) {
  return text.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');
}

/**
 * A highlighter for a filter: `{ re, error }`. `re` is a global RegExp, or null when there
 * is nothing to highlight or JS cannot compile the pattern (then `error` says why).
 */
export function compileHighlighter(filter) {
  if (!filter || !filter.q) return { re: null, error: '' };
  let flags = 'g';
  let source;
  let ignoreCase = filter.ignoreCase;
  if (filter.regex) {
    source = filter.q;
    if (source.startsWith('(?i)')) {
      source = source.slice(4);
      ignoreCase = true;
    }
    source = source.replace(/\(\?P</g, '(?<');
  } else {
    const { keywords } = parseQuery(filter.q);
    if (!keywords.length) return { re: null, error: '' };
    source = keywords.map(escapeRegExp).join('|');
  }
  if (ignoreCase) flags += 'i';
  try {
    return { re: new RegExp(source, flags), error: '' };
  } catch (err) {
    return { re: null, error: `highlighting off: ${err.message}` };
  }
}

const MAX_MARKS = 64;

/** Non-overlapping [start, end) ranges where `re` matches `text` (empty matches skipped). */
export function matchRanges(text, re) {
  const out = [];
  if (!re || !text) return out;
  re.lastIndex = 0;
  let m;
  while (out.length < MAX_MARKS && (m = re.exec(text)) !== null) {
    if (m[0].length === 0) {
      re.lastIndex++;
      if (re.lastIndex > text.length) break;
      continue;
    }
    out.push([m.index, m.index + m[0].length]);
  }
  return out;
}

/** Append `text` to `parent` with the ranges wrapped in <mark>; never uses innerHTML. */
export function appendHighlighted(parent, text, re) {
  const ranges = matchRanges(text, re);
  if (!ranges.length) {
    parent.append(text);
    return;
  }
  let at = 0;
  for (const [start, end] of ranges) {
    if (start > at) parent.append(text.slice(at, start));
    const mark = document.createElement('mark');
    mark.textContent = text.slice(start, end);
    parent.append(mark);
    at = end;
  }
  if (at < text.length) parent.append(text.slice(at));
}
