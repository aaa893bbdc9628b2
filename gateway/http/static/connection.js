// The one WebSocket to the gateway: subscriptions, reconnects that resume with `since`,
// de-duplication by line id, and a ping that notices a dead connection.
//
// Per stream it keeps the last line id it passed on, and drops any line whose id is not
// newer (ids are "<ms>-<seq>", compared as two numbers); a stream that showed no line yet
// resumes after its `caught_up` point. A minion glob (file:web-*:/path) is subscribed once;
// its member streams (named in its `subscribed` frame) are then kept, and resumed, each on
// its own, their lines passed on under the glob with the member as their source. A line
// link opens a stream `around` one line (a finite query: `complete` ends it), then follows
// it live with `since` if asked. A subscribe sent for a stream
// that is already subscribed replaces its filter and starts a fresh sequence: frames for
// that stream that arrive before the answer belong to the old filter and are held; they
// are discarded on `subscribed` (the view is refilled from `backlog`), or released when
// the server refuses the new filter and keeps the old one.
//
// With the cursor it keeps the epoch of the history that id is from (the `epoch` of the
// lines frame) and sends both on resume, so the gateway can tell when Redis lost the
// history. After a `gap` saying the history was recreated (`reset`) or ends before the
// cursor (`behind`), ids start a new sequence: the next lines are taken whatever their ids.

import { CLOSE, ERROR, GAP } from './codes.js';
import { filterFields, sameFilter } from './filters.js';

const PING_EVERY_MS = 15000;
const PONG_TIMEOUT_MS = 10000;
const RETRY_AFTER_MS = 2000;
const BACKOFF_MS = [250, 500, 1000, 2000, 4000, 8000];
const ABNORMAL_CLOSURE = 1006; // set by the browser when a connection drops; no server sends it
const NEW_SEQUENCE = new Set([GAP.RESET, GAP.BEHIND]);

export function parseId(id) {
  const dash = typeof id === 'string' ? id.indexOf('-') : -1;
  if (dash < 0) return null;
  return [Number(id.slice(0, dash)), Number(id.slice(dash + 1))];
}

/** -1, 0 or 1 comparing two parsed ids; null sorts first. */
export function compareIds(a, b) {
  if (a === null) return b === null ? 0 : -1;
  if (b === null) return 1;
  return a[0] - b[0] || a[1] - b[1];
}

/** The lines of `lines` (in id order) newer than `lastId`. */
export function newer(lastId, lines) {
  if (!Array.isArray(lines) || !lines.length) return [];
  let last = lastId === null ? null : parseId(lastId);
  if (last === null || compareIds(parseId(lines[0].id), last) > 0) return lines;
  const fresh = [];
  for (const line of lines) {
    const id = parseId(line.id);
    if (compareIds(id, last) > 0) {
      fresh.push(line);
      last = id;
    }
  }
  return fresh;
}

export class Connection {
  /**
   * @param {string} url the /ws URL
   * @param {object} on callbacks: state(info), lines(stream, lines, member), notice(frame),
   *   subscribed(stream, {reset, resumedAfter}), error(frame, {rejectedFilter, retrying}), complete(stream)
   */
  constructor(url, on) {
    this.url = url;
    this.on = on;
    this.subs = new Map();
    this.members = new Map(); // a glob's member stream -> {stream, parent, lastId}
    this.ws = null;
    this.attempt = 0;
    this.timer = null;
    this.pingTimer = null;
    this.pingSentAt = 0;
    this.everOpened = false;
    this.state = { state: 'connecting' };
  }

  start() {
    this.connect();
    this.pingTimer = setInterval(() => this.ping(), PING_EVERY_MS);
  }

  setState(info) {
    this.state = info;
    this.on.state(info);
  }

  connect() {
    clearTimeout(this.timer);
    this.timer = null;
    this.setState({ state: this.everOpened ? 'reconnecting' : 'connecting', attempt: this.attempt });
    let ws;
    try {
      ws = new WebSocket(this.url);
    } catch (err) {
      this.lost(`cannot open ${this.url}: ${err.message}`);
      return;
    }
    this.ws = ws;
    let wasOpen = false;
    ws.onopen = () => {
      wasOpen = true;
      this.opened(ws);
    };
    ws.onmessage = (ev) => this.message(ev.data);
    ws.onclose = (ev) => {
      if (this.ws !== ws) return;
      if (ev.code === ABNORMAL_CLOSURE) this.lost(wasOpen ? 'connection dropped' : 'gateway unreachable');
      // The token expired; reconnecting with the same one would be refused, so stop and ask for a new one.
      else if (ev.code === CLOSE.TOKEN_EXPIRED) this.lost('token expired: open the console with a new ?token=', false);
      else this.lost(ev.code ? `${ev.code}${ev.reason ? ` ${ev.reason}` : ''}` : 'closed');
    };
  }

  opened(ws) {
    if (this.ws !== ws) return;
    const resumed = this.everOpened;
    this.everOpened = true;
    this.attempt = 0;
    this.pingSentAt = 0;
    this.setState({ state: 'open', resumed });
    for (const sub of this.subs.values()) {
      sub.active = false;
      sub.held = [];
      if (sub.around && !sub.complete) sub.fresh = true; // a line link not read whole yet: read it again
      if (sub.complete && !sub.follow) continue; // a finished query
      if (sub.members && !sub.fresh) this.resumeMembers(sub);
      else this.sendSubscribe(sub);
    }
  }

  /** A glob after a reconnect: each member resumes on its own after its last line. */
  resumeMembers(sub) {
    sub.awaiting = false;
    sub.active = true;
    for (const member of sub.members.values()) {
      const msg = { op: 'subscribe', stream: member.stream, caught_up: true, ...filterFields(sub.filter) };
      if (member.lastId) {
        msg.since = member.lastId;
        if (member.epoch) msg.epoch = member.epoch;
      } else if (sub.backlog > 0) msg.backlog = sub.backlog;
      this.send(msg);
    }
  }

  lost(reason, retry = true) {
    const ws = this.ws;
    this.ws = null;
    if (ws) {
      ws.onopen = ws.onmessage = ws.onclose = null;
      if (ws.readyState === WebSocket.OPEN || ws.readyState === WebSocket.CONNECTING) ws.close();
    }
    for (const sub of this.subs.values()) {
      clearTimeout(sub.retry);
      sub.awaiting = false;
      sub.active = false;
      sub.held = [];
    }
    if (!retry) {
      this.setState({ state: 'expired', reason });
      return;
    }
    const delay = BACKOFF_MS[Math.min(this.attempt, BACKOFF_MS.length - 1)] * (0.8 + Math.random() * 0.4);
    this.attempt++;
    this.setState({ state: 'down', reason, retryAt: Date.now() + delay, attempt: this.attempt, wasOpen: this.everOpened });
    this.timer = setTimeout(() => this.connect(), delay);
  }

  /** Reconnect now (the user asked), skipping the backoff wait. */
  retryNow() {
    if (!this.ws) this.connect();
  }

  get isOpen() {
    return this.ws !== null && this.ws.readyState === WebSocket.OPEN;
  }

  send(obj) {
    if (!this.isOpen) return false;
    this.ws.send(JSON.stringify(obj));
    return true;
  }

  ping() {
    if (!this.isOpen) return;
    if (this.pingSentAt && Date.now() - this.pingSentAt > PONG_TIMEOUT_MS) {
      this.lost('no answer to ping');
      return;
    }
    if (!this.pingSentAt) this.pingSentAt = Date.now();
    this.send({ op: 'ping' });
  }

  /**
   * Open a stream (or change its filter); `backlog` lines of history come first. `link`
   * ({around, context, follow}): open it on one line with `context` lines either side.
   */
  subscribe(stream, filter, backlog, link = null) {
    let sub = this.subs.get(stream);
    const around = link ? link.around : null;
    if (sub && sameFilter(sub.filter, filter) && !sub.failed && (sub.around || null) === around) return;
    if (!sub) {
      sub = { stream, lastId: null, epoch: null, applied: null, active: false, held: [], awaiting: false, retry: null };
      this.subs.set(stream, sub);
    }
    sub.filter = { ...filter };
    sub.backlog = backlog;
    sub.fresh = true;
    sub.failed = false;
    sub.around = link ? link.around : null;
    sub.context = link ? link.context : 0;
    sub.follow = link ? !!link.follow : true;
    sub.complete = false;
    clearTimeout(sub.retry);
    this.dropMembers(sub);
    this.sendSubscribe(sub);
  }

  /** After a line link's `complete`: go on with every later line, live. */
  follow(stream) {
    const sub = this.subs.get(stream);
    if (!sub || sub.follow) return;
    sub.follow = true;
    if (sub.complete) this.continueLive(sub);
  }

  continueLive(sub) {
    sub.around = null;
    sub.fresh = false;
    sub.lastId = sub.lastId || sub.linkedFrom;
    this.sendSubscribe(sub);
  }

  unsubscribe(stream) {
    const sub = this.subs.get(stream);
    if (!sub) return;
    clearTimeout(sub.retry);
    this.subs.delete(stream);
    this.send({ op: 'unsubscribe', stream });
    this.dropMembers(sub, true);
  }

  dropMembers(sub, tell = false) {
    if (!sub.members) return;
    for (const member of sub.members.keys()) {
      this.members.delete(member);
      if (tell) this.send({ op: 'unsubscribe', stream: member });
    }
    sub.members = null;
  }

  sendSubscribe(sub) {
    const msg = { op: 'subscribe', stream: sub.stream, caught_up: true, ...filterFields(sub.filter) };
    sub.resumeFrom = null;
    if (sub.around && sub.fresh) {
      msg.around = sub.around;
      msg.context = sub.context;
      sub.linkedFrom = sub.around;
    } else if (!sub.fresh && sub.lastId) {
      msg.since = sub.lastId;
      if (sub.epoch) msg.epoch = sub.epoch;
      sub.resumeFrom = sub.lastId;
    } else if (sub.backlog > 0) {
      msg.backlog = sub.backlog;
    }
    sub.awaiting = this.send(msg);
  }

  message(data) {
    let frame;
    try {
      frame = JSON.parse(data);
    } catch (err) {
      console.error('tailgate: a frame that is not JSON', err, data.slice(0, 200));
      return;
    }
    const member = frame.stream !== undefined ? this.members.get(frame.stream) : undefined;
    if (member) return this.memberMessage(member, frame);
    const sub = frame.stream !== undefined ? this.subs.get(frame.stream) : undefined;
    switch (frame.type) {
      case 'caught_up':
        if (sub && sub.lastId === null && typeof frame.after === 'string') {
          sub.lastId = frame.after;
          sub.epoch = frame.epoch ?? null;
        }
        return;
      case 'complete':
        if (!sub) return;
        sub.complete = true;
        this.on.complete(sub.stream);
        if (sub.follow) this.continueLive(sub);
        return;
      case 'lines':
        if (!sub) return;
        if (sub.awaiting) {
          if (sub.active) sub.held.push(frame);
          return;
        }
        this.accept(sub, frame.lines, frame.epoch);
        return;
      case 'subscribed':
        if (sub) this.subscribed(sub, frame.streams);
        return;
      case 'pong':
        this.pingSentAt = 0;
        return;
      case 'unsubscribed':
        return;
      case 'error':
        this.error(frame, sub);
        return;
      case 'gap':
        if (sub && NEW_SEQUENCE.has(frame.reason)) sub.restart = true;
        if (sub) this.on.notice(frame);
        return;
      default:
        if (frame.stream === undefined || sub) this.on.notice(frame);
    }
  }

  accept(sub, lines, epoch) {
    if (!Array.isArray(lines) || !lines.length) return;
    if (sub.restart) {
      sub.restart = false;
      sub.lastId = null;
    }
    const fresh = newer(sub.lastId, lines);
    if (!fresh.length) return;
    sub.lastId = fresh[fresh.length - 1].id;
    sub.epoch = epoch ?? null;
    this.on.lines(sub.stream, fresh);
  }

  /** A frame about one member of a glob: its lines under the glob, its notices as the glob's. */
  memberMessage(member, frame) {
    const sub = this.subs.get(member.parent);
    if (!sub) return;
    if (frame.type === 'lines') {
      const fresh = newer(member.restart ? null : member.lastId, frame.lines);
      member.restart = false;
      if (!fresh.length) return;
      member.lastId = fresh[fresh.length - 1].id;
      member.epoch = frame.epoch ?? null;
      this.on.lines(sub.stream, fresh, member.stream);
    } else if (frame.type === 'caught_up') {
      if (member.lastId === null && typeof frame.after === 'string') {
        member.lastId = frame.after;
        member.epoch = frame.epoch ?? null;
      }
    } else if (frame.type === 'error') {
      this.on.error({ ...frame, stream: sub.stream, message: `${member.stream}: ${frame.message}` }, {});
    } else if (frame.type !== 'subscribed' && frame.type !== 'unsubscribed') {
      if (frame.type === 'gap' && NEW_SEQUENCE.has(frame.reason)) member.restart = true;
      this.on.notice({ ...frame, stream: sub.stream, member: member.stream });
    }
  }

  subscribed(sub, members) {
    if (Array.isArray(members)) {
      this.dropMembers(sub);
      sub.members = new Map();
      for (const stream of members) {
        const member = { stream, parent: sub.stream, lastId: null, epoch: null, restart: false };
        sub.members.set(stream, member);
        this.members.set(stream, member);
      }
    }
    const reset = sub.fresh;
    sub.awaiting = false;
    sub.active = true;
    sub.held = [];
    sub.applied = { ...sub.filter };
    if (reset) {
      sub.fresh = false;
      sub.lastId = null;
      sub.epoch = null;
      sub.restart = false;
    }
    this.on.subscribed(sub.stream, { reset, resumedAfter: sub.resumeFrom });
  }

  error(frame, sub) {
    if (!sub || !sub.awaiting) {
      this.on.error(frame, {});
      return;
    }
    sub.awaiting = false;
    const held = sub.held;
    sub.held = [];
    if (frame.code === ERROR.UNAVAILABLE || frame.code === ERROR.RATE_LIMITED) {
      sub.retry = setTimeout(() => this.sendSubscribe(sub), RETRY_AFTER_MS);
      this.on.error(frame, { retrying: true });
      return;
    }
    if (sub.active && sub.applied) {
      // The server refused the new filter and kept the old subscription going.
      const rejected = sub.filter;
      sub.filter = { ...sub.applied };
      sub.fresh = false;
      for (const f of held) this.accept(sub, f.lines, f.epoch);
      this.on.error(frame, { rejectedFilter: rejected, kept: sub.applied });
      return;
    }
    sub.failed = true;
    this.on.error(frame, {});
  }
}
