"""Salt runner ``tailgate``: Tailgate from the master's command line.

    salt-run tailgate.tail kafka:payments grep=ERROR        # follow a stream
    salt-run tailgate.tail web1:/var/log/nginx/error.log    # a file on a minion
    salt-run tailgate.tail salt:orch                        # the master's orchestrations
    salt-run tailgate.streams                               # what is publishing
    salt-run tailgate.token alice allow='kafka:*,salt:*' ttl=8h

Everything goes through a gateway (``gateway_url``), never straight to Redis, so the
runner gets exactly what a viewer gets: the contract's name checks, the access rules of
its token, file tails started through Salt with their status, ``gap`` and ``dropped``
notices, and a reconnect that resumes with ``since`` when a replica drains. With
authentication on, the runner signs its own short-lived token (``runner_streams``,
``runner_ttl``) with the gateway's secret from ``secrets_file``; ``token`` mints one for a
viewer with the gateway's own ``python -m gateway token`` (an argument list, no shell).

Configured in the master's config (the ``tailgate.master`` state writes it)::

    tailgate:
      gateway_url: http://127.0.0.1:8080
      python: /opt/tailgate/venv/bin/python
      app_dir: /opt/tailgate/app
      config_file: /etc/tailgate/tailgate.yaml
      secrets_file: /etc/tailgate/secrets.env
      runner_streams: ["kafka:*", "salt:*", "file:*"]
      runner_ttl: 1h
"""

from __future__ import annotations

import asyncio
import getpass
import json
import os
import re
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime
from typing import Any

from salt.exceptions import CommandExecutionError, SaltInvocationError

__virtualname__ = "tailgate"

TTL_RE = re.compile(r"[0-9]{1,7}[smhd]?")
MINION_RE = re.compile(r"[A-Za-z0-9._-]{1,253}")
KINDS = ("kafka:", "salt:", "file:")
RESUMABLE = (1001, 1006, 1013)  # draining, connection lost, too slow: resume elsewhere
MAX_RECONNECTS = 10


def __virtual__() -> str:
    return __virtualname__


def _conf() -> dict[str, Any]:
    conf = __opts__.get("tailgate") or {}  # noqa: F821 - injected by Salt's loader
    if not isinstance(conf, dict) or not conf.get("gateway_url"):
        raise CommandExecutionError(
            "no `tailgate: gateway_url` in the master's config: apply the tailgate.master state"
        )
    return conf


def _secrets(conf: dict[str, Any]) -> dict[str, str]:
    """TAILGATE_* variables from the formula's secrets file (root-only on the master)."""
    path = conf.get("secrets_file")
    env: dict[str, str] = {}
    if not path or not os.path.exists(path):
        return env
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            name, eq, value = line.strip().partition("=")
            if eq and name.startswith("TAILGATE_"):
                value = value.strip()
                if len(value) >= 2 and value[0] == value[-1] == '"':
                    value = re.sub(r"\\(.)", r"\1", value[1:-1])
                env[name] = value
    return env


def _check_patterns(allow: Any) -> list[str]:
    patterns = [p.strip() for p in allow.split(",")] if isinstance(allow, str) else list(allow or [])
    if not patterns:
        raise SaltInvocationError("allow: at least one stream pattern, e.g. allow='kafka:*,salt:*'")
    for p in patterns:
        if not isinstance(p, str) or not p.startswith(KINDS) or not p.isprintable() or len(p) > 4200:
            raise SaltInvocationError(f"allow: {p!r:.80} grants nothing: patterns start with kafka:, salt: or file:")
    return patterns


def _mint(conf: dict[str, Any], sub: str, allow: list[str], ttl: str, url: str = "") -> dict[str, str]:
    """`python -m gateway token` with the gateway's settings and secret; its output parsed."""
    if not isinstance(sub, str) or not sub.strip() or not sub.isprintable() or len(sub) > 200:
        raise SaltInvocationError("sub: a printable user name of at most 200 characters")
    if not TTL_RE.fullmatch(str(ttl)):
        raise SaltInvocationError(f"ttl: like 90s, 30m, 8h or 1d, not {ttl!r:.20}")
    python, app_dir = conf.get("python"), conf.get("app_dir")
    if not python or not app_dir:
        raise CommandExecutionError("`tailgate: python` and `app_dir` are needed to mint tokens")
    argv = [python, "-m", "gateway", "token", "--sub", sub, "--ttl", str(ttl)]
    for pattern in allow:
        argv += ["--allow", pattern]
    if conf.get("config_file"):
        argv += ["--config", conf["config_file"]]
    if url:
        argv += ["--url", url]
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "PYTHONPATH": app_dir, **_secrets(conf)}
    done = subprocess.run(argv, capture_output=True, text=True, env=env, cwd=app_dir, timeout=60, check=False)
    lines = done.stdout.split()
    if done.returncode != 0 or len(lines) < 2:
        raise CommandExecutionError(f"minting a token failed: {done.stderr.strip()[-500:]}")
    return {"token": lines[0], "link": lines[1], "note": done.stderr.strip()}


def _runner_token(conf: dict[str, Any]) -> str:
    """A short-lived token for the runner's own requests; "" with authentication off."""
    if not _secrets(conf).get("TAILGATE_AUTH_SECRET"):
        return ""
    user = os.environ.get("SUDO_USER") or getpass.getuser()
    allow = _check_patterns(conf.get("runner_streams") or ["kafka:*", "salt:*", "file:*"])
    return _mint(conf, f"salt-run:{user}", allow, str(conf.get("runner_ttl", "1h")))["token"]


def _stream_of(target: Any) -> str:
    """A stream name as given, or `<minion>:<path>` as the file stream it names."""
    if not isinstance(target, str) or not target or not target.isprintable():
        raise SaltInvocationError("give a stream (kafka:<topic>, salt:<what>, file:<minion>:<path>) or <minion>:<path>")
    if target.startswith(KINDS):
        return target
    minion, colon, path = target.partition(":")
    if colon and MINION_RE.fullmatch(minion) and path.startswith("/"):
        return f"file:{minion}:{path}"
    raise SaltInvocationError(f"not a stream or <minion>:<path>: {target!r:.200}")


def _note(text: str) -> None:
    print(f"# {text}", file=sys.stderr, flush=True)


async def _follow(url: str, token: str, request: dict[str, Any], count: int, seconds: float) -> dict[str, Any]:
    from tornado.httpclient import HTTPRequest
    from tornado.websocket import websocket_connect

    headers = {"Authorization": f"Bearer {token}"} if token else {}
    deadline = time.monotonic() + seconds if seconds else None
    stream, since, printed, reconnects = request["stream"], None, 0, 0
    while True:
        conn = await websocket_connect(HTTPRequest(url, headers=headers, connect_timeout=10))
        await conn.write_message(json.dumps({**request, "since": since} if since else request))
        while True:
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                conn.close()
                return {"stream": stream, "lines": printed, "ended": "timeout"}
            try:
                raw = await asyncio.wait_for(conn.read_message(), left)
            except TimeoutError:
                continue
            if raw is None:
                break
            frame = json.loads(raw)
            kind = frame.get("type")
            if kind == "lines":
                for line in frame["lines"]:
                    ts = datetime.fromtimestamp(line.get("ts", 0), UTC).isoformat(timespec="milliseconds")
                    print(f"{ts} {line.get('text', '')}", flush=True)
                    since, printed = line["id"], printed + 1
                    if count and printed >= count:
                        conn.close()
                        return {"stream": stream, "lines": printed, "ended": "count"}
            elif kind == "error":
                conn.close()
                raise CommandExecutionError(f"{stream}: {frame.get('code')}: {frame.get('message', '')}")
            elif kind == "status":
                _note(f"{stream}: {frame.get('state')} {frame.get('message', '')}".rstrip())
                if frame.get("state") == "failed":
                    conn.close()
                    raise CommandExecutionError(f"{stream}: failed: {frame.get('message', '')}")
            elif kind in ("gap", "dropped"):
                _note(f"{stream}: {kind} {frame.get('count', '')}".rstrip())
        code = conn.close_code or 1006
        if code not in RESUMABLE or reconnects >= MAX_RECONNECTS:
            raise CommandExecutionError(
                f"{stream}: the gateway closed the connection ({code} {conn.close_reason or ''})"
            )
        reconnects += 1
        _note(f"connection closed ({code}); resuming after {since or 'the backlog'}")
        await asyncio.sleep(min(5.0, 0.2 * reconnects))


def _run(coro: Any) -> Any:
    """Run `coro` on an event loop of its own thread (salt-run may hold one already);
    Ctrl-C ends the follow and returns what was printed."""
    result: dict[str, Any] = {}

    def target() -> None:
        try:
            result["value"] = asyncio.run(coro)
        except Exception as exc:  # noqa: BLE001 - handed to the caller's thread below
            result["error"] = exc

    thread = threading.Thread(target=target, name="tailgate-tail", daemon=True)
    thread.start()
    try:
        while thread.is_alive():
            thread.join(0.2)
    except KeyboardInterrupt:
        return {"ended": "interrupted"}
    if "error" in result:
        raise result["error"]
    return result["value"]


def tail(
    target: str,
    grep: str = "",
    regex: str = "",
    ignore_case: bool = False,
    backlog: int = 10,
    count: int = 0,
    timeout: float = 0,
) -> dict[str, Any]:
    """Print a stream's lines as they come: the last `backlog` lines, then live.

    target
        ``kafka:<topic>``, ``salt:<what>``, ``file:<minion>:<path>`` or ``<minion>:<path>``
    grep, regex, ignore_case
        the gateway's filter: a keyword, an RE2 pattern (both: a line matches both)
    count, timeout
        stop after that many lines, or seconds (0: follow until Ctrl-C)

    CLI Example:

    .. code-block:: bash

        salt-run tailgate.tail kafka:app-events grep=ERROR count=100
    """
    conf = _conf()
    request: dict[str, Any] = {"op": "subscribe", "stream": _stream_of(target), "backlog": int(backlog)}
    if grep:
        request["keyword"] = str(grep)
    if regex:
        request["regex"] = str(regex)
    if ignore_case:
        request["ignore_case"] = True
    url = conf["gateway_url"].rstrip("/").replace("http", "ws", 1) + "/ws"
    return _run(_follow(url, _runner_token(conf), request, int(count), float(timeout)))


def streams() -> list[dict[str, Any]]:
    """The streams the gateway lists (configured topics, and whatever published lately),
    with their line counts and rates.

    CLI Example:

    .. code-block:: bash

        salt-run tailgate.streams
    """
    conf = _conf()
    token = _runner_token(conf)
    req = urllib.request.Request(
        conf["gateway_url"].rstrip("/") + "/api/streams", headers={"Authorization": f"Bearer {token}"} if token else {}
    )
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return json.load(resp)["streams"]
    except (OSError, ValueError, KeyError) as exc:
        raise CommandExecutionError(f"{conf['gateway_url']}/api/streams: {exc}") from None


def token(sub: str, allow: Any, ttl: str = "8h", url: str = "") -> dict[str, str]:
    """Mint a viewer token (and a console link carrying it) with the gateway's secret.

    CLI Example:

    .. code-block:: bash

        salt-run tailgate.token alice allow='kafka:payments*,salt:*' ttl=8h
    """
    return _mint(_conf(), sub, _check_patterns(allow), ttl, url)
