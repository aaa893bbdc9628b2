// Stream names as the wire contract defines them (PROTOCOL.md, "Streams"), checked in the
// page so a typo is explained before it is sent; the gateway checks them again.

const TOPIC = /^[A-Za-z0-9._-]{1,249}$/;
const MINION = /^[A-Za-z0-9._-]{1,253}$/;
const MINION_GLOB = /^[A-Za-z0-9._*?-]{1,253}$/; // file:web-*:/path opens the file on every matching minion
const SALT = /^[a-z][a-z0-9_-]{0,63}$/;
// eslint-disable-next-line no-control-regex
const CONTROL = /[\u0000-\u001f\u007f-\u009f]/;

export function checkPath(path) {
  if (!path.startsWith('/')) return 'the path must be absolute (start with /)';
  if (new TextEncoder().encode(path).length > 4096) return 'the path must be at most 4096 bytes';
  if (CONTROL.test(path)) return 'the path must not contain control characters';
  if (path.includes('//')) return "the path must not contain '//'";
  if (path.split('/').some((seg) => seg === '.' || seg === '..')) return "the path must not contain '.' or '..'";
  if (path !== '/' && path.endsWith('/')) return 'the path must name a file, not a directory';
  return '';
}

/** '' for a minion id, or a minion glob (with * or ?: every matching minion), else why not. */
export function checkMinion(minion) {
  if (/[*?]/.test(minion)) return MINION_GLOB.test(minion) ? '' : 'a minion glob is 1-253 of A-Z a-z 0-9 . _ - * ?';
  return MINION.test(minion) ? '' : 'a minion id is 1-253 of A-Z a-z 0-9 . _ -';
}

/** '' when `name` is a valid stream name (or a minion glob's file:<glob>:<path>), else why not. */
export function checkStream(name) {
  if (!name) return 'empty stream name';
  const colon = name.indexOf(':');
  const kind = colon < 0 ? '' : name.slice(0, colon);
  const rest = name.slice(colon + 1);
  if (kind === 'kafka') {
    const slash = rest.indexOf('/');
    const topic = slash < 0 ? rest : rest.slice(0, slash);
    if (!TOPIC.test(topic)) return 'a topic is 1-249 of A-Z a-z 0-9 . _ -';
    if (slash >= 0) {
      const sub = rest.slice(slash + 1);
      if (!sub || sub.length > 200 || sub.startsWith('/') || CONTROL.test(sub)) return 'invalid sub-stream name';
    }
    return '';
  }
  if (kind === 'file') {
    const c = rest.indexOf(':');
    if (c < 0) return 'a file stream is file:<minion>:<absolute path>';
    return checkMinion(rest.slice(0, c)) || checkPath(rest.slice(c + 1));
  }
  if (kind === 'salt') return SALT.test(rest) ? '' : 'a Salt stream is salt:<what>, e.g. salt:jobs or salt:orch';
  return "a stream name starts with 'kafka:', 'salt:' or 'file:'";
}
