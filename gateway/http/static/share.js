// The shareable state of the console, kept in the URL hash so a link reopens the same
// sources, filter and layout:
//
//   #s=kafka:app-events&s=file:web-01:/var/log/syslog&q=timeout&re=1&i=1&layout=panes
//
// A line link also names one line and how many lines around it to show, and whether to
// follow the stream live after them:  #s=kafka:app-events&at=1764496800123-0&ctx=20&live=1
//
// The hash never reaches the server, and a shared link never carries the `?token=` of
// the page it was copied from.

export const DEFAULT_CONTEXT = 20;

export function encodeState({ streams, filter, layout, link }) {
  const params = new URLSearchParams();
  for (const s of streams) params.append('s', s);
  if (filter && filter.q) {
    params.set('q', filter.q);
    if (filter.regex) params.set('re', '1');
    if (filter.ignoreCase) params.set('i', '1');
  }
  if (layout && layout !== 'merged') params.set('layout', layout);
  if (link) {
    params.set('at', link.id);
    params.set('ctx', String(link.context));
    if (link.follow) params.set('live', '1');
  }
  const text = params.toString().replace(/%3A/gi, ':').replace(/%2F/gi, '/');
  return text ? `#${text}` : '';
}

export function decodeState(hash) {
  const params = new URLSearchParams((hash || '').replace(/^#/, ''));
  const streams = [];
  for (const s of params.getAll('s')) if (s && !streams.includes(s)) streams.push(s);
  const at = params.get('at');
  const ctx = Number(params.get('ctx') ?? DEFAULT_CONTEXT);
  return {
    streams,
    filter: { q: params.get('q') || '', regex: params.get('re') === '1', ignoreCase: params.get('i') === '1' },
    layout: params.get('layout') === 'panes' ? 'panes' : 'merged',
    // a line link opens exactly one stream
    link:
      at && streams.length === 1 && /^\d+-\d+$/.test(at)
        ? { id: at, context: Number.isInteger(ctx) && ctx >= 0 ? Math.min(ctx, 1000) : DEFAULT_CONTEXT, follow: params.get('live') === '1' }
        : undefined,
  };
}

/** The link to share: this page without its query string (no token), with the state. */
export function shareUrl(state, loc = window.location) {
  return `${loc.origin}${loc.pathname}${encodeState(state)}`;
}
