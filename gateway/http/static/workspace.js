// The open sources and the views showing them: colours and labels per source, the
// merged or side-by-side layout, routing of lines and notices to views, pause (lines
// held and counted), per-source rates, clear and download.

import { LineBuffer } from './buffer.js';
import { fmtCount, fmtIso, fmtRate, PALETTE_SIZE, shortLabel } from './format.js';
import { LogView } from './view.js';

const MERGED_TOOLS = [
  ['clear', 'clear', 'Clear this view'],
  ['download', 'save', 'Download the lines in this view'],
];
const PANE_TOOLS = [...MERGED_TOOLS, ['close', '×', 'Close this source']];

export class Workspace {
  constructor(root, opts) {
    this.root = root;
    this.opts = opts; // { maxLines, highlight(), emptyText(), onCopy(text), onLink(entry), onSave({filename, text}), onClose(stream), onChange() }
    this.target = null; // {stream, id}: the line a line link opened
    this.sources = new Map(); // stream -> {label, color, counted, rate, state, kind}
    this.layout = 'merged';
    this.views = new Map(); // '*' or stream -> LogView
    this.paused = false;
    this.pending = [];
    this.pendingOverflow = 0;
    this.seq = 0;
    this.rowHeight = parseFloat(getComputedStyle(document.documentElement).getPropertyValue('--row-h')) || 18;
    this.lastTick = performance.now();
    this.loop = () => {
      for (const view of this.views.values()) view.render();
      requestAnimationFrame(this.loop);
    };
    requestAnimationFrame(this.loop);
  }

  // Sources ---------------------------------------------------------------------

  colorFor() {
    const used = new Set([...this.sources.values()].map((s) => s.color));
    for (let i = 0; i < PALETTE_SIZE; i++) if (!used.has(i)) return i;
    return this.sources.size % PALETTE_SIZE;
  }

  addSource(stream) {
    if (this.sources.has(stream)) return;
    this.sources.set(stream, { label: shortLabel(stream), color: this.colorFor(), counted: 0, rate: 0, state: 'opening', kind: '' });
    this.relayout();
  }

  removeSource(stream) {
    if (!this.sources.delete(stream)) return;
    this.pending = this.pending.filter((e) => e.stream !== stream);
    this.relayout(stream);
  }

  setSourceState(stream, state, kind = '') {
    const src = this.sources.get(stream);
    if (!src) return;
    src.state = state;
    src.kind = kind;
    const view = this.views.get(this.layout === 'merged' ? '*' : stream);
    if (view && this.layout === 'panes') view.setState(state, kind);
    this.opts.onChange();
  }

  // Views -----------------------------------------------------------------------

  makeView(stream, entries) {
    const merged = stream === null;
    return new LogView({
      stream,
      merged: merged && this.sources.size > 1,
      order: merged ? 'ts' : 'seq',
      cap: this.opts.maxLines,
      entries,
      sources: this.sources,
      rowHeight: this.rowHeight,
      highlight: this.opts.highlight,
      emptyText: this.opts.emptyText,
      onCopy: this.opts.onCopy,
      onLink: this.opts.onLink,
      tools: merged ? MERGED_TOOLS : PANE_TOOLS,
      onAction: (name, view) => this.paneAction(name, view),
    });
  }

  /** Rebuild the views for the current layout and sources, keeping every line held. */
  relayout(removed) {
    const all = new Set();
    for (const view of this.views.values()) for (const e of view.entries()) all.add(e);
    const keep = [...all].filter((e) => e.stream !== removed || removed === undefined);
    for (const view of this.views.values()) view.destroy();
    this.views.clear();
    if (this.sources.size === 0) {
      this.root.dataset.layout = 'empty';
    } else if (this.layout === 'merged') {
      this.root.dataset.layout = 'merged';
      this.views.set('*', this.makeView(null, keep.filter((e) => e.stream === null || this.sources.has(e.stream))));
    } else {
      this.root.dataset.layout = 'panes';
      for (const stream of this.sources.keys()) {
        const view = this.makeView(stream, keep.filter((e) => e.stream === stream || e.stream === null));
        this.views.set(stream, view);
        const src = this.sources.get(stream);
        view.setState(src.state, src.kind);
      }
    }
    this.root.style.setProperty('--panes', String(Math.max(1, this.views.size)));
    this.root.replaceChildren(...[...this.views.values()].map((v) => v.root));
    this.opts.onChange();
  }

  setLayout(layout) {
    if (layout === this.layout) return;
    this.layout = layout;
    this.relayout();
  }

  viewsFor(stream) {
    if (this.layout === 'merged') return this.views.has('*') ? [this.views.get('*')] : [];
    if (stream === null) return [...this.views.values()];
    const view = this.views.get(stream);
    return view ? [view] : [];
  }

  paneAction(name, view) {
    if (name === 'clear') view.clear();
    else if (name === 'download') this.opts.onSave(this.download(view.stream ? [view] : [...this.views.values()]));
    else if (name === 'close' && view.stream) this.opts.onClose(view.stream);
  }

  // Lines -----------------------------------------------------------------------

  /** Lines of `stream`; `member`: the stream they came from, when `stream` is a minion glob. */
  lines(stream, lines, member) {
    const src = this.sources.get(stream);
    if (!src) return;
    src.counted += lines.length;
    const lastTs = lines[lines.length - 1].ts;
    if (typeof lastTs === 'number') src.lastTs = lastTs;
    const entries = new Array(lines.length);
    const target = this.target;
    for (let i = 0; i < lines.length; i++) {
      const l = lines[i];
      const e = { seq: ++this.seq, kind: 'line', stream, id: l.id, ts: l.ts, text: l.text, meta: l.meta };
      if (member) e.source = member;
      if (target && l.id === target.id && (member || stream) === target.stream) e.target = true;
      entries[i] = e;
    }
    this.route(entries);
  }

  /** Bring the linked line (`target`) into the middle of every view showing it. */
  focusTarget() {
    for (const view of this.views.values()) view.focus((e) => e.target === true);
  }

  /**
   * An inline notice. `afterLast`: it is about what comes next on this stream (resumed,
   * gap, dropped), so in a view ordered by time it sits right after the stream's last line
   * rather than at its arrival time (the lines it precedes can carry older timestamps).
   */
  note(stream, text, level = 'info', icon = '•', afterLast = false) {
    const src = stream === null ? null : this.sources.get(stream);
    if (stream !== null && !src) return;
    const ts = afterLast && src && src.lastTs !== undefined ? src.lastTs : Date.now() / 1000;
    this.route([{ seq: ++this.seq, kind: 'note', stream, ts, text, level, icon }]);
  }

  route(entries) {
    if (this.paused) {
      for (const e of entries) this.pending.push(e);
      const excess = this.pending.length - this.opts.maxLines;
      if (excess > 0) {
        const gone = this.pending.splice(0, excess);
        this.pendingOverflow += gone.filter((e) => e.kind === 'line').length;
        for (const e of gone) if (e.kind === 'reset') this.pending.unshift(e);
      }
      this.opts.onChange();
      return;
    }
    const stream = entries[0].stream;
    for (const view of this.viewsFor(stream)) view.add(entries);
  }

  /** A filter change: this stream's lines go; history refills them under the new filter.
   * While paused the screen stays as it is: the reset waits in line with the held lines. */
  resetStream(stream) {
    this.pending = this.pending.filter((e) => e.stream !== stream);
    if (this.paused) this.pending.push({ kind: 'reset', stream });
    else for (const view of this.viewsFor(stream)) view.resetStream(stream);
  }

  setPaused(paused) {
    if (paused === this.paused) return;
    this.paused = paused;
    if (!paused) {
      const held = this.pending;
      const overflow = this.pendingOverflow;
      this.pending = [];
      this.pendingOverflow = 0;
      if (overflow) {
        this.note(null, `${fmtCount(overflow)} lines that arrived while paused were discarded (more than the ${fmtCount(this.opts.maxLines)}-line limit)`, 'warn', '⚠');
      }
      let i = 0;
      while (i < held.length) {
        if (held[i].kind === 'reset') {
          for (const view of this.viewsFor(held[i].stream)) view.resetStream(held[i].stream);
          i++;
          continue;
        }
        let j = i + 1;
        while (j < held.length && held[j].stream === held[i].stream && held[j].kind !== 'reset') j++;
        this.route(held.slice(i, j));
        i = j;
      }
    }
    this.opts.onChange();
  }

  get pendingCount() {
    return this.pending.reduce((n, e) => n + (e.kind === 'line' ? 1 : 0), 0) + this.pendingOverflow;
  }

  /** Empty the views. Lines held by a pause are newer than anything shown: they stay. */
  clear() {
    for (const view of this.views.values()) view.clear();
    this.opts.onChange();
  }

  setMaxLines(n) {
    this.opts.maxLines = n;
    for (const view of this.views.values()) view.setCap(n);
  }

  redraw() {
    for (const view of this.views.values()) view.redrawAll();
  }

  // Numbers ---------------------------------------------------------------------

  /** Once a second: lines per second per source, shown in pane headers and chips. */
  tick() {
    const now = performance.now();
    const secs = Math.max(0.001, (now - this.lastTick) / 1000);
    this.lastTick = now;
    for (const src of this.sources.values()) {
      src.rate = src.counted / secs;
      src.counted = 0;
    }
    for (const view of this.views.values()) {
      const rate = view.stream
        ? this.sources.get(view.stream)?.rate || 0
        : [...this.sources.values()].reduce((r, s) => r + s.rate, 0);
      view.meta.textContent = `${fmtCount(view.count)} lines · ${fmtRate(rate)}/s`;
    }
  }

  totalLines() {
    let n = 0;
    for (const view of this.views.values()) n += view.count;
    return n;
  }

  // Download --------------------------------------------------------------------

  download(views) {
    const seen = new Set();
    const rows = [];
    for (const view of views) for (const e of view.entries()) if (!seen.has(e)) seen.add(e) && rows.push(e);
    const ordered = new LineBuffer(Infinity, views.length > 1 ? 'ts' : views[0]?.buffer.order || 'seq', rows).toArray();
    const many = this.sources.size > 1;
    const text = ordered
      .map((e) => (e.kind === 'note' ? `# ${fmtIso(e.ts)} ${e.stream ? `${e.stream} ` : ''}${e.text}` : `${fmtIso(e.ts)} ${many || e.source ? `${e.source || e.stream} ` : ''}${e.text}`))
      .join('\n');
    const names = views.length === 1 && views[0].stream ? [views[0].stream] : [...this.sources.keys()];
    const slug = names.map((s) => shortLabel(s).replace(/[^A-Za-z0-9._-]+/g, '_')).join('+').slice(0, 80) || 'tailgate';
    const stamp = new Date().toISOString().replace(/[:.]/g, '-').slice(0, 19);
    return { filename: `tailgate-${slug}-${stamp}.log`, text: text ? `${text}\n` : '' };
  }
}
