// The filter: what the server is asked to match (keyword or RE2 regex, case toggle) and
// the same match highlighted in the page.
//
// The server decides which lines are sent; the page only marks where they match. JS
// regular expressions are close to RE2 for common patterns; RE2's inline `(?i)` and
// `(?P<name>...)` are translated, and a pattern JS cannot compile is simply not
// highlighted (the server's verdict on it still stands).

export const EMPTY_FILTER = Object.freeze({ q: '', regex: false, ignoreCase: false });

/** The subscribe fields for a filter, per the contract. */
export function filterFields(filter) {
  if (!filter || !filter.q) return {};
  const fields = filter.regex ? { regex: filter.q } : { keyword: filter.q };
  if (filter.ignoreCase) fields.ignore_case = true;
  return fields;
}

export function sameFilter(a, b) {
  const qa = (a && a.q) || '';
  const qb = (b && b.q) || '';
  if (!qa && !qb) return true;
  return qa === qb && !!a.regex === !!b.regex && !!a.ignoreCase === !!b.ignoreCase;
}

export function describeFilter(filter) {
  if (!filter || !filter.q) return 'no filter';
  return `${filter.regex ? 'regex' : 'keyword'} ${JSON.stringify(filter.q)}${filter.ignoreCase ? ' (ignoring case)' : ''}`;
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
    source = escapeRegExp(filter.q);
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
