// The DOM of a pane (header, scroller, jump button) and of one row of a view: a log line (time, source label in merged views, text with
// the filter's matches marked, a meta badge, a copy button, and when opened the details:
// id, ISO time, full text, pretty JSON meta, copy buttons), or an inline notice.
// Text is only ever set as text, never parsed as HTML.

import { appendHighlighted } from './filters.js';
import { fmtIso, fmtTime, shortLabel } from './format.js';

function span(cls, text) {
  const node = document.createElement('span');
  node.className = cls;
  if (text !== undefined) node.textContent = text;
  return node;
}

function button(cls, label, title) {
  const b = document.createElement('button');
  b.type = 'button';
  if (cls) b.className = cls;
  b.textContent = label;
  if (title) b.title = title;
  return b;
}

const LEVEL = /\b(FATAL|CRIT(?:ICAL)?|ERROR|ERR|SEVERE|WARN(?:ING)?)\b/;

/** 'error', 'warn' or '' for a line, from its meta `level` or a level word near its start; cached. */
function levelOf(entry) {
  if (entry.lvl === undefined) {
    const fromMeta = entry.meta && typeof entry.meta.level === 'string' ? entry.meta.level.toUpperCase() : '';
    const word = fromMeta || (LEVEL.exec(entry.text.slice(0, 160)) || [])[1] || '';
    entry.lvl = word.startsWith('WARN') ? 'warn' : word && LEVEL.test(word) ? 'error' : '';
  }
  return entry.lvl;
}

/** Redraw `row` for `entry`. opts: merged, sources (Map), highlight (RegExp|null), isOpen. */
export function drawRow(row, entry, { merged, sources, highlight, isOpen }) {
  row.replaceChildren();
  const info = entry.stream ? sources.get(entry.stream) : null;
  const label = entry.source ? shortLabel(entry.source) : info ? info.label : entry.stream ? shortLabel(entry.stream) : '';
  if (entry.kind === 'note') {
    row.className = `row note ${entry.level || 'info'}`;
    const who = merged && entry.stream ? `${label}: ` : '';
    row.append(span('txt', `${fmtTime(entry.ts)}  ${entry.icon || '•'} ${who}${entry.text}`));
    return;
  }
  const level = levelOf(entry);
  row.className = `row line${isOpen ? ' open' : ''}${level ? ` lvl-${level}` : ''}${entry.target ? ' target' : ''}`;
  row.append(span('ts', fmtTime(entry.ts)));
  if (merged || entry.source) {
    const src = span('src', label);
    src.title = entry.source || entry.stream;
    if (info) src.style.color = `var(--c${info.color})`;
    row.append(src);
  }
  const text = span('txt');
  appendHighlighted(text, entry.text, highlight);
  row.append(text);
  if (entry.meta) {
    const badge = span('has-meta', '{…}');
    badge.title = 'has JSON meta: click the line to expand';
    row.append(badge);
  }
  row.append(button('copy', 'copy', 'Copy this line'));
  if (isOpen) row.append(details(entry, highlight));
}

function details(entry, highlight) {
  const box = document.createElement('div');
  box.className = 'details';
  const facts = document.createElement('div');
  facts.className = 'facts';
  facts.textContent = `${entry.source || entry.stream}  ·  id ${entry.id}  ·  ${fmtIso(entry.ts)}`;
  const full = document.createElement('pre');
  full.className = 'full';
  appendHighlighted(full, entry.text, highlight);
  box.append(facts, full);
  if (entry.meta) {
    const meta = document.createElement('pre');
    meta.className = 'meta-json';
    meta.textContent = JSON.stringify(entry.meta, null, 2);
    box.append(meta);
  }
  const actions = document.createElement('div');
  actions.className = 'details-actions';
  for (const [action, label] of [
    ['copy', 'Copy text'],
    ['copy-json', 'Copy as JSON'],
    ['link', 'Copy link'],
    ['collapse', 'Close'],
  ]) {
    const b = button('', label);
    b.dataset.detail = action;
    actions.append(b);
  }
  box.append(actions);
  return box;
}

/** The elements of a pane; `onTool(name)` is called by its header buttons. */
export function buildPane(stream, tools, onTool) {
  const el = (tag, cls, text) => {
    const node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text !== undefined) node.textContent = text;
    return node;
  };
  const root = el('section', 'pane');
  root.dataset.stream = stream || '*';
  const head = el('div', 'pane-head');
  const parts = {
    root,
    swatch: el('span', 'swatch'),
    title: el('span', 'pane-title'),
    meta: el('span', 'pane-meta'),
    stateEl: el('span', 'pane-state'),
    scroller: el('div', 'scroller'),
    sizer: el('div', 'sizer'),
    layer: el('div', 'layer'),
    empty: el('div', 'pane-empty', 'Waiting for lines…'),
    jump: button('jump', ''),
  };
  const toolbox = el('span', 'pane-tools');
  for (const [name, label, tip] of tools) {
    const b = button(`icon ${name}`, label, tip);
    b.dataset.action = name;
    b.addEventListener('click', () => onTool(name));
    toolbox.append(b);
  }
  head.append(parts.swatch, parts.title, parts.stateEl, parts.meta, toolbox);
  parts.scroller.tabIndex = 0;
  parts.scroller.append(parts.sizer, parts.layer);
  parts.jump.hidden = true;
  root.append(head, parts.scroller, parts.empty, parts.jump);
  return parts;
}

/** Colour swatch and title of a pane: one source, or all of them (merged). */
export function paneHeader(parts, stream, sources) {
  if (stream) {
    const info = sources.get(stream);
    parts.swatch.style.background = info ? `var(--c${info.color})` : '';
    parts.title.textContent = info ? info.label : stream;
    parts.title.title = stream;
  } else {
    parts.swatch.className = 'swatch merged';
    parts.title.textContent = sources.size === 1 ? [...sources.keys()][0] : `All sources (${sources.size})`;
    parts.title.title = [...sources.keys()].join('\n');
  }
}
