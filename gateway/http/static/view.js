// One log view (a pane): a bounded line buffer drawn with virtual scrolling.
//
// Only the rows on screen (plus a few either side) exist in the DOM; they are reused
// from a small pool and redrawn at most once per animation frame, however fast lines
// arrive. Lines that arrive between frames wait in `incoming` and are merged into the
// buffer in one step. The view follows the tail until the user scrolls up; then it keeps
// the line under the user's eyes in place while lines are added above or evicted.
// A clicked line opens in place to show its id, time, full text and JSON `meta`.

import { LineBuffer } from './buffer.js';
import { fmtCount } from './format.js';
import { buildPane, drawRow, paneHeader } from './rows.js';

const OVERSCAN = 8;
const MAX_OPEN = 20;
const FLUSH_AT = 5000;

export class LogView {
  /**
   * @param {object} opts
   *   order: 'seq' (one stream) or 'ts' (merged); cap: max lines; merged: show source labels;
   *   sources: Map stream -> {label, color}; highlight: () => RegExp|null;
   *   onCopy(text), onAction(name, view) for pane buttons; title, stream (single-stream pane)
   */
  constructor(opts) {
    this.opts = opts;
    this.stream = opts.stream || null;
    this.buffer = new LineBuffer(opts.cap, opts.order, opts.entries || []);
    this.incoming = [];
    this.open = new Map();
    this.follow = true;
    this.anchor = null;
    this.setTop = -1;
    this.dirty = true;
    this.restyle = 0;
    this.newBelow = 0;
    this.rowH = opts.rowHeight;
    this.build();
  }

  build() {
    Object.assign(this, buildPane(this.stream, this.opts.tools, (name) => this.opts.onAction(name, this)));
    this.jump.addEventListener('click', () => this.toTail());
    this.rows = [];
    this.scroller.addEventListener('scroll', () => this.onScroll(), { passive: true });
    this.layer.addEventListener('click', (ev) => this.onClick(ev));
    this.viewportH = 0;
    this.resizer = new ResizeObserver(() => {
      this.viewportH = this.scroller.clientHeight;
      this.dirty = true;
    });
    this.resizer.observe(this.scroller);
    this.setHeader();
  }

  destroy() {
    this.resizer.disconnect();
    this.root.remove();
  }

  setHeader() {
    paneHeader(this, this.stream, this.opts.sources);
  }

  setState(text, kind) {
    this.stateEl.textContent = text;
    this.stateEl.dataset.kind = kind || '';
  }

  // Data ------------------------------------------------------------------------

  add(entries) {
    for (let i = 0; i < entries.length; i++) this.incoming.push(entries[i]);
    if (!this.follow) this.newBelow += entries.length;
    this.dirty = true;
    if (this.incoming.length >= FLUSH_AT) this.flush();
  }

  flush() {
    if (!this.incoming.length) return;
    const batch = this.incoming;
    this.incoming = [];
    this.buffer.insert(batch);
  }

  /** A stream's lines are replaced (new filter): keep the place by time until refilled. */
  resetStream(stream) {
    this.flush();
    if (!this.follow && this.anchor) this.timeAnchor = { ts: this.anchor.entry.ts, until: performance.now() + 2000 };
    this.buffer.removeStream(stream);
    this.anchor = null;
    this.newBelow = 0;
    this.redrawAll();
  }

  clear() {
    this.buffer.clear();
    this.incoming = [];
    this.open.clear();
    this.anchor = null;
    this.newBelow = 0;
    this.follow = true;
    this.redrawAll();
  }

  setCap(cap) {
    this.flush();
    this.buffer.setCap(cap);
    this.dirty = true;
  }

  entries() {
    this.flush();
    return this.buffer.toArray();
  }

  get count() {
    return this.buffer.length + this.incoming.length;
  }

  redrawAll() {
    this.restyle++;
    this.dirty = true;
  }

  // Scrolling -------------------------------------------------------------------

  /** Stop following and bring the first entry `match` accepts to the middle of the view,
   * once it is there (lines may still be arriving). */
  focus(match) {
    this.focusOn = match;
    this.dirty = true;
  }

  toTail() {
    this.follow = true;
    this.timeAnchor = null;
    this.anchor = null;
    this.newBelow = 0;
    this.dirty = true;
  }

  onScroll() {
    const top = this.scroller.scrollTop;
    if (Math.abs(top - this.setTop) <= 1) return;
    this.setTop = -1;
    this.timeAnchor = null;
    const bottom = this.scroller.scrollHeight - this.viewportH;
    if (top >= bottom - this.rowH / 2) {
      if (!this.follow) this.toTail();
    } else {
      this.follow = false;
      this.anchor = this.anchorAt(top);
    }
    this.dirty = true;
  }

  scrollTo(top) {
    const max = Math.max(0, this.sizerH - this.viewportH);
    const t = Math.max(0, Math.min(max, Math.round(top)));
    if (Math.abs(this.scroller.scrollTop - t) > 1) {
      this.setTop = t;
      this.scroller.scrollTop = t;
    }
    return t;
  }

  // Layout: row i sits at i * rowH plus the heights of opened rows above it.

  opened() {
    const out = [];
    for (const [entry, extra] of this.open) {
      const i = this.buffer.indexOf(entry);
      if (i < 0) this.open.delete(entry);
      else out.push([i, extra]);
    }
    out.sort((a, b) => a[0] - b[0]);
    this.openList = out;
    return out;
  }

  topOf(i) {
    let y = i * this.rowH;
    for (const [j, extra] of this.openList) {
      if (j < i) y += extra;
      else break;
    }
    return y;
  }

  indexAt(y) {
    let acc = 0;
    for (const [j, extra] of this.openList) {
      const rowTop = j * this.rowH + acc;
      if (y < rowTop) break;
      if (y < rowTop + this.rowH + extra) return j;
      acc += extra;
    }
    return Math.max(0, Math.floor((y - acc) / this.rowH));
  }

  anchorAt(top) {
    if (!this.openList) this.opened();
    const i = Math.min(this.indexAt(top), this.buffer.length - 1);
    if (i < 0) return null;
    return { entry: this.buffer.at(i), offset: top - this.topOf(i) };
  }

  // Drawing ---------------------------------------------------------------------

  render(force) {
    if (!this.dirty && !force) return;
    this.dirty = false;
    this.flush();
    const buf = this.buffer;
    const n = buf.length;
    const open = this.opened();
    let extraTotal = 0;
    for (const [, extra] of open) extraTotal += extra;
    const total = n * this.rowH + extraTotal;
    if (total !== this.sizerH) {
      this.sizerH = total;
      this.sizer.style.height = `${total}px`;
    }
    const viewH = this.viewportH || this.scroller.clientHeight;
    if (this.focusOn) {
      let i = 0;
      while (i < n && !this.focusOn(buf.at(i))) i++;
      if (i < n) {
        this.focusOn = null;
        this.follow = false;
        this.timeAnchor = null;
        this.anchor = { entry: buf.at(i), offset: -Math.max(0, Math.floor((viewH - this.rowH) / 2)) };
      }
    }
    let top;
    if (this.follow) {
      top = this.scrollTo(total - viewH);
      this.newBelow = 0;
    } else if (this.timeAnchor && performance.now() < this.timeAnchor.until) {
      let i = 0;
      while (i < n && !(buf.at(i).ts >= this.timeAnchor.ts)) i++;
      top = this.scrollTo(this.topOf(Math.min(i, Math.max(0, n - 1))));
      this.dirty = true;
    } else if (this.anchor) {
      const i = buf.indexOf(this.anchor.entry);
      top = i >= 0 ? this.scrollTo(this.topOf(i) + this.anchor.offset) : this.scrollTo(0);
    } else {
      top = this.scroller.scrollTop;
    }
    if (this.reveal && (this.open.get(this.reveal) || 0) > 1) {
      const i = buf.indexOf(this.reveal);
      const bottom = i >= 0 ? this.topOf(i) + this.rowH + this.open.get(this.reveal) : 0;
      if (bottom > top + viewH) top = this.scrollTo(bottom - viewH);
      this.reveal = null;
    }
    const first = Math.max(0, this.indexAt(top) - OVERSCAN);
    const last = Math.min(n, this.indexAt(top + viewH) + 1 + OVERSCAN);
    this.layer.style.transform = `translateY(${this.topOf(first)}px)`;
    const highlight = this.opts.highlight();
    let k = 0;
    for (let i = first; i < last; i++, k++) {
      let row = this.rows[k];
      if (!row) {
        row = document.createElement('div');
        this.rows.push(row);
        this.layer.append(row);
      }
      this.bind(row, buf.at(i), highlight);
    }
    for (let j = this.rows.length - 1; j >= k; j--) {
      this.rows[j].remove();
      this.rows.pop();
    }
    if (!this.follow) this.anchor = n ? this.anchorAt(top) : null;
    this.empty.hidden = n > 0;
    if (!n) this.empty.textContent = this.opts.emptyText();
    this.jump.hidden = this.follow;
    if (!this.follow) this.jump.textContent = this.newBelow ? `↓ Tail · ${fmtCount(this.newBelow)} new` : '↓ Back to tail';
    this.measureOpen();
  }

  bind(row, entry, highlight) {
    const isOpen = this.open.has(entry);
    if (row._entry === entry && row._style === this.restyle && row._open === isOpen) return;
    row._entry = entry;
    row._style = this.restyle;
    row._open = isOpen;
    drawRow(row, entry, { merged: this.opts.merged, sources: this.opts.sources, highlight, isOpen });
  }

  measureOpen() {
    let changed = false;
    for (const row of this.rows) {
      if (!row._open) continue;
      const box = row.querySelector('.details');
      const h = box ? box.offsetHeight : 0;
      if (h && this.open.get(row._entry) !== h) {
        this.open.set(row._entry, h);
        changed = true;
      }
    }
    if (changed) this.dirty = true;
  }

  onClick(ev) {
    const row = ev.target.closest('.row');
    if (!row || !row._entry) return;
    const entry = row._entry;
    const detail = ev.target.closest('[data-detail]');
    if (detail) {
      const action = detail.dataset.detail;
      if (action === 'copy') this.opts.onCopy(entry.text);
      else if (action === 'copy-json') {
        const { id, ts, text, meta } = entry;
        const stream = entry.source || entry.stream;
        this.opts.onCopy(JSON.stringify(meta ? { stream, id, ts, text, meta } : { stream, id, ts, text }));
      } else if (action === 'link') this.opts.onLink(entry);
      else if (action === 'collapse') this.toggle(entry);
      return;
    }
    if (ev.target.closest('.copy')) {
      this.opts.onCopy(entry.text);
      return;
    }
    if (ev.target.closest('.details')) return;
    const selection = window.getSelection();
    if (selection && selection.toString()) return;
    if (entry.kind === 'line') this.toggle(entry);
  }

  toggle(entry) {
    if (this.open.has(entry)) this.open.delete(entry);
    else {
      if (this.open.size >= MAX_OPEN) this.open.delete(this.open.keys().next().value);
      this.open.set(entry, 1);
      this.reveal = entry;
      if (this.follow) {
        this.follow = false;
        this.anchor = this.anchorAt(this.scroller.scrollTop);
      }
    }
    this.dirty = true;
  }
}
