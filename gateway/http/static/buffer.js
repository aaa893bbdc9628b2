// A bounded, ordered buffer of console entries (log lines and inline notices).
//
// Every entry carries `seq`, a number given on arrival that only grows. A buffer keeps
// its entries sorted by `seq` (one stream: the server's order) or by (`ts`, `seq`) (the
// merged view: time order across sources, arrival order for equal times). Appending in
// order is the fast path; a batch that belongs earlier is merged in. When the buffer is
// over its capacity the oldest entries go. Lookup of an entry's position is a binary
// search, which is what lets a view keep its place while lines come and go.

const bySeq = (a, b) => a.seq - b.seq;
const byTs = (a, b) => a.ts - b.ts || a.seq - b.seq;

export class LineBuffer {
  constructor(cap, order = 'seq', entries = []) {
    this.cap = cap;
    this.order = order;
    this.cmp = order === 'ts' ? byTs : bySeq;
    this.items = entries.slice().sort(this.cmp);
    this.head = 0;
    this.evicted = 0;
    this.trim();
  }

  get length() {
    return this.items.length - this.head;
  }

  at(i) {
    return this.items[this.head + i];
  }

  last() {
    return this.length ? this.items[this.items.length - 1] : undefined;
  }

  /** Insert a batch of entries (any order); returns how many old entries were evicted. */
  insert(batch) {
    if (!batch.length) return 0;
    batch.sort(this.cmp);
    const items = this.items;
    const last = this.last();
    if (last === undefined || this.cmp(batch[0], last) > 0) {
      for (let i = 0; i < batch.length; i++) items.push(batch[i]);
    } else {
      const p = this.upperBound(batch[0]);
      const tail = items.splice(this.head + p);
      let i = 0;
      let j = 0;
      while (i < tail.length && j < batch.length) {
        items.push(this.cmp(tail[i], batch[j]) <= 0 ? tail[i++] : batch[j++]);
      }
      while (i < tail.length) items.push(tail[i++]);
      while (j < batch.length) items.push(batch[j++]);
    }
    return this.trim();
  }

  /** Relative index of the first entry ordered after `entry`. */
  upperBound(entry) {
    let lo = this.head;
    let hi = this.items.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.cmp(this.items[mid], entry) <= 0) lo = mid + 1;
      else hi = mid;
    }
    return lo - this.head;
  }

  /** Relative index of `entry`, or -1 when it is no longer held. */
  indexOf(entry) {
    let lo = this.head;
    let hi = this.items.length - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >>> 1;
      const c = this.cmp(this.items[mid], entry);
      if (c === 0) return this.items[mid] === entry ? mid - this.head : -1;
      if (c < 0) lo = mid + 1;
      else hi = mid - 1;
    }
    return -1;
  }

  /** Drop the oldest entries beyond capacity; returns how many went. */
  trim() {
    const excess = this.length - this.cap;
    if (excess <= 0) return 0;
    this.head += excess;
    this.evicted += excess;
    if (this.head > 4096 && this.head * 2 > this.items.length) {
      this.items = this.items.slice(this.head);
      this.head = 0;
    }
    return excess;
  }

  setCap(cap) {
    this.cap = cap;
    return this.trim();
  }

  /** Remove every entry of one stream (a filter change refills it from history). */
  removeStream(stream) {
    this.items = this.items.slice(this.head).filter((e) => e.stream !== stream);
    this.head = 0;
  }

  clear() {
    this.items = [];
    this.head = 0;
  }

  toArray() {
    return this.items.slice(this.head);
  }
}
