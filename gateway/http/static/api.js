// HTTP and WebSocket addresses of the gateway, relative to the page (so the console works
// behind a path-prefixing proxy), carrying the page's `?token=` when it has one.

const pageToken = new URLSearchParams(window.location.search).get('token');

export function withToken(url) {
  if (!pageToken) return url;
  url.searchParams.set('token', pageToken);
  return url;
}

export function apiUrl(path) {
  return withToken(new URL(path, window.location.href));
}

export function wsUrl() {
  const url = new URL('ws', window.location.href);
  url.protocol = url.protocol === 'https:' ? 'wss:' : 'ws:';
  return withToken(url).toString();
}

/** Error carrying the HTTP status (0 when the gateway could not be reached). */
export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

/** GET a JSON document; raises ApiError with a message fit to show. */
export async function getJson(path, timeoutMs = 8000) {
  const ctrl = new AbortController();
  const timer = setTimeout(() => ctrl.abort(), timeoutMs);
  let resp;
  try {
    resp = await fetch(apiUrl(path), { signal: ctrl.signal, headers: { Accept: 'application/json' } });
  } catch (err) {
    throw new ApiError(0, err.name === 'AbortError' ? 'the gateway did not answer in time' : 'cannot reach the gateway');
  } finally {
    clearTimeout(timer);
  }
  if (!resp.ok) {
    let detail = '';
    try {
      const body = await resp.json();
      detail = body.message || body.error || body.status || '';
    } catch {
      detail = '';
    }
    throw new ApiError(resp.status, `HTTP ${resp.status}${detail ? `: ${detail}` : ''}`);
  }
  return resp.json();
}
