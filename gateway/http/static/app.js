// The console's entry point: wires the connection, the workspace (sources and views),
// the source picker, the filter bar, the toolbar, keyboard shortcuts and the URL state.

import { getJson, wsUrl } from './api.js';
import { copyText, saveText } from './clipboard.js';
import { Chips } from './chips.js';
import { ERROR, GAP } from './codes.js';
import { Connection } from './connection.js';
import { compileHighlighter, describeFilter, EMPTY_FILTER, sameFilter } from './filters.js';
import { fmtCount, fmtRate, setUtc } from './format.js';
import { installKeys } from './keys.js';
import { loadPrefs, savePrefs } from './prefs.js';
import { DEFAULT_CONTEXT, decodeState, encodeState, shareUrl } from './share.js';
import { SourcePicker } from './sources.js';
import { Workspace } from './workspace.js';

const $ = (id) => document.getElementById(id);
let prefs = loadPrefs();
document.documentElement.dataset.theme = prefs.theme;
setUtc(prefs.utc);
let filter = { ...EMPTY_FILTER };
let highlight = compileHighlighter(filter);
let dropped = 0;
let toastTimer = null;
let link = null; // a line link in force: {stream, id, context, follow}
// What a `gap` note says, by the gateway's reason; an unknown reason reads as the first.
const GAP_NOTES = {
  [GAP.TRIMMED]: 'gap: lines older than the retained history were lost while this page was away',
  [GAP.HISTORY_BYTES]: 'gap: more history than the gateway sends at once (gateway.max_history_bytes); lines left out here',
  [GAP.UNAVAILABLE]: 'gap: history could not be read after a Redis outage; lines left out here',
  [GAP.RESET]: 'gap: Redis lost this stream\'s history (restarted empty or flushed); lines after the one above may be lost',
  [GAP.BEHIND]: 'gap: Redis\'s history ends before the line above (a failover or an older backup); lines after it may be lost',
};

function toast(text, kind = '') {
  const box = $('toast');
  box.textContent = text;
  box.dataset.kind = kind;
  box.hidden = false;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => (box.hidden = true), kind === 'error' ? 6000 : 2500);
}

async function copy(text, what = 'Line') {
  if (await copyText(text)) toast(`${what} copied`, 'info');
  else toast(`The browser refused the clipboard. ${what}: ${text.length > 600 ? `${text.slice(0, 600)}…` : text}`, 'error');
}

const ws = new Workspace($('panes'), {
  maxLines: prefs.maxLines,
  highlight: () => highlight.re,
  emptyText: () => (filter.q ? `No line matching ${describeFilter(filter)} yet` : 'Waiting for lines…'),
  onCopy: (text) => copy(text),
  onLink: (entry) => {
    const target = { id: entry.id, context: DEFAULT_CONTEXT, follow: false };
    copy(shareUrl({ streams: [entry.source || entry.stream], filter, layout: 'merged', link: target }), 'Link');
  },
  onSave: ({ filename, text }) => saveText(filename, text),
  onClose: (stream) => toggleSource(stream),
  onChange: () => scheduleRefresh(),
});

let refreshQueued = false;
/** Coalesce toolbar and URL updates to one per animation frame (lines can arrive 100 times a second). */
function scheduleRefresh() {
  if (refreshQueued) return;
  refreshQueued = true;
  requestAnimationFrame(() => {
    refreshQueued = false;
    refresh();
  });
}

const conn = new Connection(wsUrl(), {
  state: showConnection,
  lines: (stream, lines, member) => ws.lines(stream, lines, member),
  complete(stream) {
    if (!link || link.stream !== stream) return;
    ws.focusTarget();
    if (link.follow) link = null; // it goes on live: a link no more
    else ws.setSourceState(stream, 'linked', 'ok');
    showLink();
    scheduleRefresh();
  },
  subscribed(stream, { reset, resumedAfter }) {
    if (reset) ws.resetStream(stream);
    ws.setSourceState(stream, 'live', 'ok');
    if (resumedAfter) ws.note(stream, `resumed after line ${resumedAfter}`, 'info', '↻', true);
  },
  notice(frame) {
    const s = frame.stream ?? null;
    const of = frame.member ? `${frame.member}: ` : '';
    if (frame.type === 'dropped') {
      dropped += frame.count || 0;
      const text = `${of}${fmtCount(frame.count || 0)} lines dropped: this page fell behind and the gateway skipped them`;
      ws.note(s, text, 'warn', '⚠', true);
    } else if (frame.type === 'gap') {
      ws.note(s, of + (GAP_NOTES[frame.reason] ?? GAP_NOTES[GAP.TRIMMED]), 'warn', '⚠', true);
    } else if (frame.type === 'status') {
      const bad = frame.state === 'failed' || frame.state === 'stopped';
      ws.note(s, `${of}remote tail ${frame.state}${frame.message ? `: ${frame.message}` : ''}`, bad ? 'error' : 'info', bad ? '■' : '●');
      ws.setSourceState(s, frame.state === 'live' ? 'live' : frame.state, bad ? 'bad' : frame.state === 'live' ? 'ok' : 'wait');
    }
  },
  error(frame, { rejectedFilter, kept, retrying }) {
    const s = frame.stream ?? null;
    const text = `${frame.code}: ${frame.message}`;
    if (rejectedFilter) {
      filter = { ...kept };
      highlight = compileHighlighter(filter);
      ws.redraw();
      showFilterNote(`refused by the gateway: ${frame.message} — still showing ${describeFilter(kept)}`, 'bad');
      return;
    }
    if (s !== null && ws.sources.has(s)) {
      ws.note(s, retrying ? `${text} (retrying)` : text, 'error', '✖');
      ws.setSourceState(s, retrying ? 'retrying' : frame.code, retrying ? 'wait' : 'bad');
      if (frame.code === ERROR.BAD_REQUEST && filter.q) showFilterNote(frame.message, 'bad');
    } else {
      ws.note(null, text, 'error', '✖');
      toast(text, 'error');
    }
  },
});

// Connection state -------------------------------------------------------------

let downSince = false;
function showConnection(info) {
  const box = $('conn');
  box.dataset.state = info.state;
  const text = box.querySelector('.conn-text');
  clearInterval(showConnection.timer);
  $('retry').hidden = info.state !== 'down';
  if (info.state === 'open') {
    showConnection.refused = '';
    text.textContent = 'live';
    if (downSince) ws.note(null, 'connected again; resuming each source after its last line', 'info', '↻');
    downSince = false;
    for (const stream of ws.sources.keys()) ws.setSourceState(stream, 'opening', 'wait');
  } else if (info.state === 'down') {
    if (info.wasOpen && !downSince) ws.note(null, `connection lost (${info.reason}); reconnecting`, 'error', '✖');
    downSince = downSince || info.wasOpen;
    for (const stream of ws.sources.keys()) ws.setSourceState(stream, 'offline', 'wait');
    if (info.reason === 'gateway unreachable' && !showConnection.probing) probeRefusal();
    const tick = () => {
      const secs = Math.max(0, Math.ceil((info.retryAt - Date.now()) / 1000));
      const why = showConnection.refused || info.reason;
      text.textContent = `disconnected (${why}) · retry ${secs ? `in ${secs}s` : 'now'} · attempt ${info.attempt}`;
    };
    tick();
    showConnection.timer = setInterval(tick, 500);
  } else if (info.state === 'expired') {
    text.textContent = 'token expired';
    for (const stream of ws.sources.keys()) ws.setSourceState(stream, 'offline', 'wait');
    ws.note(null, 'token expired — paste a new token above, or reload with ?token=…', 'error', '✖');
    askForToken();
  } else {
    text.textContent = info.state === 'reconnecting' ? 'reconnecting…' : 'connecting…';
  }
}

/** The gateway closed the connection because the token expired (CLOSE.TOKEN_EXPIRED): reload with a new one, same view (#hash). */
function askForToken() {
  if ($('token-form')) return;
  const form = document.createElement('form');
  form.id = 'token-form';
  form.className = 'token-form';
  form.innerHTML =
    '<label>token expired — paste a new token <input name="token" type="password" autocomplete="off" spellcheck="false"></label>' +
    '<button class="primary">Reload</button><small>or reload with ?token=…</small>';
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    const token = form.token.value.trim();
    if (!token) return;
    const url = new URL(window.location.href);
    url.searchParams.set('token', token);
    window.location.assign(url.toString());
  });
  $('conn').after(form);
  form.token.focus();
}

/** A browser hides why a WebSocket upgrade failed; an API call tells a refusal (401/403) apart. */
async function probeRefusal() {
  showConnection.probing = true;
  try {
    await getJson('api/streams', 4000);
    showConnection.refused = '';
  } catch (err) {
    showConnection.refused =
      err.status === 401 || err.status === 403 ? `not authorised, HTTP ${err.status}: open the console with ?token=…` : '';
  } finally {
    showConnection.probing = false;
  }
}

// Sources ----------------------------------------------------------------------

/** The line link's subscribe options for `stream`, if a link opened it. */
function linkFor(stream) {
  return link && link.stream === stream ? { around: link.id, context: link.context, follow: link.follow } : null;
}

function subscribeAll() {
  for (const stream of ws.sources.keys()) conn.subscribe(stream, filter, prefs.backlog, linkFor(stream));
}

function showLink() {
  $('link-banner').hidden = !link;
  if (!link) return;
  const around = link.context ? ` with ${fmtCount(link.context)} lines before and after it` : '';
  $('link-text').textContent = `Line ${link.id} of ${link.stream}${around}${link.follow ? ', then live' : ''}`;
  $('link-follow').hidden = link.follow;
}

$('link-follow').addEventListener('click', () => {
  if (!link) return;
  const stream = link.stream;
  link = null;
  showLink();
  conn.follow(stream);
  ws.setSourceState(stream, 'live', 'ok');
  for (const view of ws.views.values()) view.toTail();
  refresh();
});

function toggleSource(stream) {
  if (ws.sources.has(stream)) {
    conn.unsubscribe(stream);
    ws.removeSource(stream);
  } else {
    ws.addSource(stream);
    ws.setSourceState(stream, 'opening', 'wait');
    conn.subscribe(stream, filter, prefs.backlog, linkFor(stream));
  }
  if (link && !ws.sources.has(link.stream)) {
    link = null;
    showLink();
  }
  picker.render();
}

const picker = new SourcePicker($('sources'), {
  isOpen: (s) => ws.sources.has(s),
  toggle: toggleSource,
  colorOf: (s) => ws.sources.get(s)?.color,
});

const chips = new Chips($('chips'), toggleSource);
const renderChips = () => chips.render(ws.sources);

// Filter -----------------------------------------------------------------------

function showFilterNote(text, kind = '') {
  const note = $('filter-note');
  note.textContent = text;
  note.title = text;
  note.dataset.kind = kind;
}

/** The note under normal conditions: what the server filters on, or why nothing is highlighted. */
function describeFilterNote() {
  showFilterNote(highlight.error || (filter.q ? `server filter: ${describeFilter(filter)}` : ''), highlight.error ? 'warn' : '');
}

function applyFilter(next) {
  if (sameFilter(next, filter)) return;
  filter = { ...next };
  highlight = compileHighlighter(filter);
  describeFilterNote();
  subscribeAll();
  ws.redraw();
  refresh();
}

function filterFromInputs() {
  return {
    q: $('filter').value,
    regex: $('mode').getAttribute('aria-pressed') === 'true',
    ignoreCase: $('case').getAttribute('aria-pressed') === 'true',
  };
}

function setFilterInputs(f) {
  $('filter').value = f.q;
  $('mode').setAttribute('aria-pressed', String(!!f.regex));
  $('case').setAttribute('aria-pressed', String(!!f.ignoreCase));
}

let filterTimer = null;
$('filter').addEventListener('input', () => {
  clearTimeout(filterTimer);
  filterTimer = setTimeout(() => applyFilter(filterFromInputs()), 600);
});
$('filter-form').addEventListener('submit', (ev) => {
  ev.preventDefault();
  clearTimeout(filterTimer);
  applyFilter(filterFromInputs());
});
for (const id of ['mode', 'case']) {
  // Clicking a toggle leaves the keyboard in the filter box, so Enter still applies it.
  $(id).addEventListener('mousedown', (ev) => ev.preventDefault());
  $(id).addEventListener('click', () => {
    const b = $(id);
    b.setAttribute('aria-pressed', String(b.getAttribute('aria-pressed') !== 'true'));
    applyFilter(filterFromInputs());
  });
}

// Toolbar ----------------------------------------------------------------------

function setPaused(paused) {
  ws.setPaused(paused);
}

$('pause').addEventListener('click', () => setPaused(!ws.paused));
$('layout-merged').addEventListener('click', () => ws.setLayout('merged'));
$('layout-panes').addEventListener('click', () => ws.setLayout('panes'));
$('clear').addEventListener('click', () => {
  ws.clear();
  dropped = 0;
});
$('download').addEventListener('click', () => {
  const views = [...ws.views.values()];
  if (!views.length) return toast('Nothing to download yet');
  const file = ws.download(views);
  saveText(file.filename, file.text);
});
$('share').addEventListener('click', () => copy(shareUrl(state()), 'Link'));
$('retry').addEventListener('click', () => conn.retryNow());
$('toggle-sources').addEventListener('click', () => {
  const aside = $('sources');
  aside.hidden = !aside.hidden;
  $('toggle-sources').setAttribute('aria-expanded', String(!aside.hidden));
});

const dialog = $('settings');
$('settings-open').addEventListener('click', () => {
  const form = dialog.querySelector('form');
  form.theme.value = prefs.theme;
  form.utc.value = prefs.utc ? 'utc' : 'local';
  form.maxLines.value = prefs.maxLines;
  form.backlog.value = prefs.backlog;
  dialog.showModal();
});
dialog.addEventListener('close', () => {
  if (dialog.returnValue !== 'save') return;
  const form = dialog.querySelector('form');
  prefs = savePrefs({
    theme: form.theme.value,
    utc: form.utc.value,
    maxLines: form.maxLines.value,
    backlog: form.backlog.value,
  });
  document.documentElement.dataset.theme = prefs.theme;
  setUtc(prefs.utc);
  ws.redraw();
  ws.setMaxLines(prefs.maxLines);
  refresh();
});

// Keyboard ---------------------------------------------------------------------

installKeys({
  filter: $('filter'),
  blocked: () => dialog.open,
  togglePause: () => setPaused(!ws.paused),
  leaveFilter: () => {
    setFilterInputs(filter);
    describeFilterNote();
  },
});

// State shown and shared ---------------------------------------------------------

function state() {
  return { streams: [...ws.sources.keys()], filter, layout: ws.layout, link };
}

function refresh() {
  const pending = ws.pendingCount;
  const pause = $('pause');
  pause.textContent = ws.paused ? `▶ Resume · ${fmtCount(pending)} new` : '❚❚ Pause';
  pause.classList.toggle('active', ws.paused);
  const banner = $('paused-banner');
  banner.hidden = !ws.paused;
  banner.textContent = `Paused — ${fmtCount(pending)} new lines held. Press space to resume.`;
  $('layout-merged').setAttribute('aria-pressed', String(ws.layout === 'merged'));
  $('layout-panes').setAttribute('aria-pressed', String(ws.layout === 'panes'));
  $('empty').hidden = ws.sources.size > 0;
  const n = ws.sources.size;
  document.title = `${ws.paused ? '❚❚ ' : ''}Tailgate${n ? ` · ${n === 1 ? ws.sources.values().next().value.label : `${n} sources`}` : ''}`;
  renderChips();
  const hash = encodeState(state());
  if (hash !== window.location.hash && !(hash === '' && window.location.hash === '')) {
    window.history.replaceState(null, '', hash || window.location.pathname + window.location.search);
  }
}

function status() {
  ws.tick();
  let total = 0;
  for (const src of ws.sources.values()) total += src.rate;
  $('status-lines').textContent = `${fmtCount(ws.totalLines())} lines in view (limit ${fmtCount(prefs.maxLines)} per view)`;
  $('status-rate').textContent = `${fmtRate(total)} lines/s`;
  $('status-dropped').textContent = dropped ? `${fmtCount(dropped)} dropped` : '';
  renderChips();
}

function applyState(next) {
  link = next.link ? { stream: next.streams[0], ...next.link } : null;
  ws.target = link ? { stream: link.stream, id: link.id } : null;
  showLink();
  ws.setLayout(next.layout);
  setFilterInputs(next.filter);
  filter = { ...next.filter };
  highlight = compileHighlighter(filter);
  describeFilterNote();
  for (const stream of [...ws.sources.keys()]) if (!next.streams.includes(stream)) toggleSource(stream);
  for (const stream of next.streams) if (!ws.sources.has(stream)) toggleSource(stream);
  subscribeAll();
  refresh();
}

window.addEventListener('hashchange', () => {
  const next = decodeState(window.location.hash);
  const cur = state();
  if (encodeState(next) !== encodeState(cur)) applyState(next);
});

applyState(decodeState(window.location.hash));
conn.start();
picker.start();
setInterval(status, 1000);
