// The source picker: Kafka streams and the Salt master's streams (salt:jobs, salt:orch, …;
// failed jobs and steps are error lines, edged in red) from GET /api/streams, minions from GET /api/minions
// and their log files from GET /api/minions/<id>/files, and a manual entry for any
// stream name (or a minion and a path) when a listing is not available.

import { getJson } from './api.js';
import { fmtAgo, fmtRate } from './format.js';
import { checkMinion, checkPath, checkStream } from './names.js';

const REFRESH_MS = 10000;

function el(tag, cls, text) {
  const node = document.createElement(tag);
  if (cls) node.className = cls;
  if (text !== undefined) node.textContent = text;
  return node;
}

/** Minion ids from whatever shape /api/minions answers with (list, or {minions: [...]}). */
export function minionIds(body) {
  const list = Array.isArray(body) ? body : body && Array.isArray(body.minions) ? body.minions : [];
  const ids = [];
  for (const m of list) {
    const id = typeof m === 'string' ? m : m && (m.id || m.minion || m.name);
    if (typeof id === 'string' && id) ids.push({ id, up: m && typeof m === 'object' ? m.up ?? m.online : undefined });
  }
  return ids;
}

/** File paths from /api/minions/<id>/files ({files: [...]}, strings or {path, ...}). */
export function filePaths(body) {
  const list = Array.isArray(body) ? body : body && Array.isArray(body.files) ? body.files : [];
  const out = [];
  for (const f of list) {
    const path = typeof f === 'string' ? f : f && (f.path || f.name);
    const obj = f && typeof f === 'object' ? f : {};
    if (typeof path === 'string' && path) out.push({ path, stream: obj.stream, size: obj.size });
  }
  return out;
}

function fmtSize(n) {
  if (typeof n !== 'number') return '';
  if (n < 1024) return `${n} B`;
  if (n < 1024 ** 2) return `${(n / 1024).toFixed(0)} KB`;
  if (n < 1024 ** 3) return `${(n / 1024 ** 2).toFixed(1)} MB`;
  return `${(n / 1024 ** 3).toFixed(1)} GB`;
}

export class SourcePicker {
  /** @param {object} on isOpen(stream), toggle(stream), colorOf(stream) -> index|undefined */
  constructor(root, on) {
    this.root = root;
    this.on = on;
    this.streams = [];
    this.streamsError = '';
    this.minions = null;
    this.minionsError = '';
    this.files = new Map();
    this.expanded = new Set();
    this.query = '';
    this.build();
  }

  build() {
    this.search = el('input', 'search');
    this.search.type = 'search';
    this.search.placeholder = 'Find a source…';
    this.search.setAttribute('aria-label', 'Find a source');
    this.search.addEventListener('input', () => {
      this.query = this.search.value.trim().toLowerCase();
      this.render();
    });
    this.kafkaList = el('div', 'list');
    this.saltList = el('div', 'list');
    this.minionList = el('div', 'list');
    const kafkaHead = el('h3', '', 'Streams');
    this.kafkaNote = el('span', 'hint');
    kafkaHead.append(this.kafkaNote);
    const minionHead = el('h3', '', 'Minions');
    this.minionNote = el('div', 'hint block');
    this.manual = this.buildManual();
    this.saltHead = el('h3', '', 'Salt master');
    this.root.replaceChildren(
      this.search, kafkaHead, this.kafkaList, this.saltHead, this.saltList,
      minionHead, this.minionNote, this.minionList, this.manual,
    );
  }

  buildManual() {
    const box = el('details', 'manual');
    box.append(el('summary', '', 'Open by name'));
    const fileForm = el('form', 'manual-form');
    const minion = el('input');
    minion.name = 'minion';
    minion.placeholder = 'minion id';
    minion.setAttribute('aria-label', 'minion id');
    const path = el('input');
    path.name = 'path';
    path.placeholder = '/var/log/syslog';
    path.setAttribute('aria-label', 'file path on the minion');
    const fileErr = el('div', 'form-error');
    const fileBtn = el('button', '', 'Tail file');
    fileForm.append(el('label', '', 'File on a minion'), minion, path, fileBtn, fileErr);
    fileForm.addEventListener('submit', (ev) => {
      ev.preventDefault();
      const m = minion.value.trim();
      const p = path.value.trim();
      const why = checkMinion(m) || checkPath(p);
      fileErr.textContent = why;
      if (!why) this.open(`file:${m}:${p}`);
    });
    const nameForm = el('form', 'manual-form');
    const name = el('input');
    name.name = 'stream';
    name.placeholder = 'kafka:topic, salt:orch, file:minion:/path or file:web-*:/path';
    name.setAttribute('aria-label', 'stream name');
    const nameErr = el('div', 'form-error');
    nameForm.append(el('label', '', 'Any stream'), name, el('button', '', 'Open'), nameErr);
    nameForm.addEventListener('submit', (ev) => {
      ev.preventDefault();
      const s = name.value.trim();
      const why = checkStream(s);
      nameErr.textContent = why;
      if (!why) this.open(s);
    });
    box.append(fileForm, nameForm);
    this.manualMinion = minion;
    return box;
  }

  open(stream) {
    if (!this.on.isOpen(stream)) this.on.toggle(stream);
  }

  start() {
    this.refresh();
    this.timer = setInterval(() => {
      if (!document.hidden && !this.root.closest('[hidden]')) this.refresh();
    }, REFRESH_MS);
  }

  async refresh() {
    const [streams, minions] = await Promise.allSettled([getJson('api/streams'), getJson('api/minions')]);
    if (streams.status === 'fulfilled') {
      this.streams = Array.isArray(streams.value.streams) ? streams.value.streams : [];
      this.streamsError = '';
    } else {
      this.streamsError = streams.reason.message;
    }
    if (minions.status === 'fulfilled' && minions.value && minions.value.enabled === false) {
      this.minions = [];
      this.minionsError = 'file streams are off on this gateway';
    } else if (minions.status === 'fulfilled') {
      this.minions = minionIds(minions.value);
      this.minionsError = '';
    } else {
      this.minions = null;
      const status = minions.reason.status;
      this.minionsError =
        status === 404
          ? 'no minion listing on this gateway'
          : status === 503
            ? 'Salt is not available right now'
            : minions.reason.message;
    }
    this.render();
  }

  async loadFiles(minion) {
    this.files.set(minion, { loading: true });
    this.render();
    try {
      this.files.set(minion, { list: filePaths(await getJson(`api/minions/${encodeURIComponent(minion)}/files`, 30000)) });
    } catch (err) {
      this.files.set(minion, { error: err.status === 404 ? 'no file listing for this minion' : err.message });
    }
    this.render();
  }

  sourceRow(stream, label, extra, title) {
    const row = el('button', 'source');
    row.type = 'button';
    row.dataset.stream = stream;
    row.title = title || stream;
    const open = this.on.isOpen(stream);
    row.classList.toggle('open', open);
    row.setAttribute('aria-pressed', String(open));
    const dot = el('span', 'swatch');
    const color = this.on.colorOf(stream);
    if (open && color !== undefined) dot.style.background = `var(--c${color})`;
    row.append(dot, el('span', 'name', label), el('span', 'extra', extra || ''));
    row.addEventListener('click', () => this.on.toggle(stream));
    return row;
  }

  matches(text) {
    return !this.query || text.toLowerCase().includes(this.query);
  }

  render() {
    const now = Date.now() / 1000;
    const rows = [];
    const salt = [];
    for (const s of this.streams) {
      if (!s || typeof s.stream !== 'string' || s.kind === 'file' || !this.matches(s.stream)) continue;
      const live = s.rate > 0 ? `${fmtRate(s.rate)}/s` : s.last_seen ? fmtAgo(s.last_seen, now) : 'idle';
      const row = this.sourceRow(s.stream, s.stream.replace(/^kafka:/, ''), live, `${s.stream}\n${s.lines ?? 0} lines`);
      (s.kind === 'salt' ? salt : rows).push(row);
    }
    this.saltHead.hidden = !salt.length;
    this.saltList.replaceChildren(...salt);
    this.kafkaNote.textContent = this.streamsError || (this.streams.length ? '' : 'none yet');
    this.kafkaNote.classList.toggle('bad', !!this.streamsError);
    this.kafkaList.replaceChildren(...rows);
    this.renderMinions();
  }

  renderMinions() {
    const items = [];
    this.minionNote.textContent = this.minionsError || (this.minions && !this.minions.length ? 'none' : '');
    this.minionNote.classList.toggle('bad', !!this.minionsError && !/^(no minion|file streams are off)/.test(this.minionsError));
    if (this.minionsError) {
      const help = el('div', 'hint block', 'Use “Open by name” below to tail a file on a minion directly.');
      items.push(help);
      if (!this.manualShown) this.manual.open = true;
      this.manualShown = true;
    }
    // Files open from manual entry or a shared link show up even without a listing.
    const recent = this.streams.filter((s) => s && s.kind === 'file' && this.matches(s.stream));
    for (const m of this.minions || []) {
      const filesOf = this.files.get(m.id);
      const head = el('button', 'minion');
      head.type = 'button';
      head.setAttribute('aria-expanded', String(this.expanded.has(m.id)));
      head.append(el('span', 'caret', this.expanded.has(m.id) ? '▾' : '▸'), el('span', 'name', m.id));
      if (m.up === false) head.append(el('span', 'extra', 'down'));
      head.addEventListener('click', () => {
        if (this.expanded.has(m.id)) this.expanded.delete(m.id);
        else {
          this.expanded.add(m.id);
          if (!filesOf || filesOf.error) this.loadFiles(m.id);
        }
        this.manualMinion.value = m.id;
        this.render();
      });
      const anyFileMatches = filesOf && filesOf.list && filesOf.list.some((f) => this.matches(`${m.id}:${f.path}`));
      if (!this.matches(m.id) && !anyFileMatches) continue;
      items.push(head);
      if (!this.expanded.has(m.id)) continue;
      if (!filesOf || filesOf.loading) items.push(el('div', 'hint block indent', 'asking Salt for the files…'));
      else if (filesOf.error) {
        const line = el('div', 'hint block indent bad', `${filesOf.error} `);
        const retry = el('button', 'ghost small', 'retry');
        retry.type = 'button';
        retry.addEventListener('click', () => this.loadFiles(m.id));
        line.append(retry);
        items.push(line);
      }
      else if (!filesOf.list.length) items.push(el('div', 'hint block indent', 'no log files offered'));
      else
        for (const f of filesOf.list) {
          const stream = typeof f.stream === 'string' ? f.stream : `file:${m.id}:${f.path}`;
          const row = this.sourceRow(stream, f.path, fmtSize(f.size));
          row.classList.add('indent');
          items.push(row);
        }
    }
    for (const s of recent) {
      if (items.some((n) => n.dataset && n.dataset.stream === s.stream)) continue;
      items.push(this.sourceRow(s.stream, s.stream.replace(/^file:/, ''), s.rate > 0 ? `${fmtRate(s.rate)}/s` : ''));
    }
    this.minionList.replaceChildren(...items);
  }
}
