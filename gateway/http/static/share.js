// The shareable state of the console, kept in the URL hash so a link reopens the same
// sources, filter and layout:
//
//   #s=kafka:app-events&s=file:web-01:/var/log/syslog&q=timeout&re=1&i=1&layout=panes
//
// The hash never reaches the server, and a shared link never carries the `?token=` of
// the page it was copied from.

export function encodeState({ streams, filter, layout }) {
  const params = new URLSearchParams();
  for (const s of streams) params.append('s', s);
  if (filter && filter.q) {
    params.set('q', filter.q);
    if (filter.regex) params.set('re', '1');
    if (filter.ignoreCase) params.set('i', '1');
  }
  if (layout && layout !== 'merged') params.set('layout', layout);
  const text = params.toString().replace(/%3A/gi, ':').replace(/%2F/gi, '/');
  return text ? `#${text}` : '';
}

export function decodeState(hash) {
  const params = new URLSearchParams((hash || '').replace(/^#/, ''));
  const streams = [];
  for (const s of params.getAll('s')) if (s && !streams.includes(s)) streams.push(s);
  return {
    streams,
    filter: { q: params.get('q') || '', regex: params.get('re') === '1', ignoreCase: params.get('i') === '1' },
    layout: params.get('layout') === 'panes' ? 'panes' : 'merged',
  };
}

/** The link to share: this page without its query string (no token), with the state. */
export function shareUrl(state, loc = window.location) {
  return `${loc.origin}${loc.pathname}${encodeState(state)}`;
}
