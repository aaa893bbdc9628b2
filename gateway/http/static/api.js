// HTTP and WebSocket addresses of the gateway, relative to the page (so the console works
// behind a path-prefixing proxy, e.g. under /tailgate/).
//
// A token never travels in a URL past the first load. A console link carries `?token=`;
// the response to that very page set the token cookie (HttpOnly, SameSite=Strict), so the
// token is taken out of the address bar before anything else runs (out of the session
// history, bookmarks, screenshots, links copied from the bar), and every API call and the
// WebSocket authenticate with the cookie instead of a query string.

const loaded = new URL(window.location.href);
if (loaded.searchParams.has('token')) {
  loaded.searchParams.delete('token');
  window.history.replaceState(window.history.state, '', loaded.toString());
}

export function apiUrl(path) {
  return new URL(path, window.location.href);
}

export function wsUrl() {
  const url = new URL('ws', window.location.href);
  url.protocol = url.protocol === 'https:' ? 'wss:' : 'ws:';
  return url.toString();
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
