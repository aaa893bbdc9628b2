"""Salt execution module ``logtail``: start, stop and list Tailgate tail agents on this minion.

The only way Tailgate reaches a minion. Whatever the caller sent, every path is checked
here again by the deployed ``wire/filepolicy.py``: the contract's path rules, the shell
metacharacter rule and this minion's own pillar allowlist, on the path as given and
with its symlinks resolved; `start` then reaches the file as the agent will
(``open_checked``: a regular file whose real path the allowlist permits). A file that
does not exist yet is accepted (the agent waits ``late_file_wait`` seconds for it),
unless the last agent for that path stopped refused less than ``late_file_wait``
seconds ago: then that agent's reason is the answer. At most ``max_agents`` agents run
on the minion, those still waiting for their file included; starts are serialised so
the count holds. Agents are started detached, with an argument list and no shell;
whether one runs is decided by its lock file (flock), never by ``ps``.

Every function returns a dict with ``ok``; failures carry ``error`` (one of
``refused``, ``not_allowed``, ``unreadable``, ``limit``, ``not_installed``, ``failed``)
and ``message``:

    salt web1 logtail.start /var/log/nginx/access.log
    salt web1 logtail.stop /var/log/nginx/access.log
    salt web1 logtail.status
    salt web1 logtail.list_files
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import importlib.util
import json
import logging
import os
import signal
import stat
import subprocess
import sys
import time
from typing import Any

log = logging.getLogger(__name__)

__virtualname__ = "logtail"

DEFAULT_CONFIG = "/etc/tailgate/logtail.json"
EXIT_ALREADY_RUNNING = 3
START_GUARD = "start.guard"  # flock held while one start counts agents and starts one (no .lock suffix: not an agent)
START_WAIT = 5.0
STOP_WAIT = 5.0
LIST_LIMIT = 1000
LIST_DEPTH = 6
CONFIG_KEYS = ("python", "install_dir", "run_dir", "log_dir", "allowlist", "max_agents", "late_file_wait")


def __virtual__() -> str:
    return __virtualname__


def _config() -> dict[str, Any] | None:
    path = __salt__["pillar.get"]("logtail:config_file", DEFAULT_CONFIG)  # noqa: F821
    try:
        with open(path, encoding="utf-8") as fh:
            conf = json.load(fh)
    except (OSError, ValueError) as exc:
        log.warning("logtail: cannot read agent config %s: %s", path, exc)
        return None
    missing = [key for key in CONFIG_KEYS if key not in conf] if isinstance(conf, dict) else CONFIG_KEYS
    if missing:
        log.warning("logtail: agent config %s lacks %s (rendered by an older formula)", path, ", ".join(missing))
        return None
    conf["config_file"] = path
    return conf


def _not_installed() -> dict[str, Any]:
    return _err("not_installed", "the logtail agent is not installed on this minion (state.apply logtail)")


def _load_policy(conf: dict[str, Any]) -> Any:
    """Load the deployed ``wire/filepolicy.py`` (standard library only) on its own."""
    path = os.path.join(conf["install_dir"], "wire", "filepolicy.py")
    spec = importlib.util.spec_from_file_location("tailgate_logtail_wire_filepolicy", path)
    if spec is None or spec.loader is None:
        raise ImportError(path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # NamedTuple and dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def _err(error: str, message: str, **extra: Any) -> dict[str, Any]:
    return {"ok": False, "error": error, "message": message, **extra}


def _allowlist(conf: dict[str, Any]) -> list[str]:
    pillar = __salt__["pillar.get"]("logtail:allowlist", None)  # noqa: F821
    globs = pillar if isinstance(pillar, list) else conf.get("allowlist", [])
    return [g for g in globs if isinstance(g, str)]


def _check(path: Any, need_allowed: bool = True) -> tuple[dict[str, Any], Any, dict[str, Any] | None]:
    """(config, the loaded policy module, None) when `path` may be used here, else an error dict last."""
    conf = _config()
    if conf is None:
        return {}, None, _not_installed()
    try:
        policy = _load_policy(conf)
    except (OSError, ImportError, SyntaxError) as exc:
        return conf, None, _err("not_installed", f"the deployed wire package cannot be loaded: {exc}")
    globs = _allowlist(conf) if need_allowed else None
    refused = policy.refusal(path, globs, allowlist="this minion's allowlist")
    if refused is not None:
        return conf, policy, _err(refused.code, refused.message)
    return conf, policy, None


def _lock_path(conf: dict[str, Any], path: str) -> str:
    name = hashlib.sha256(path.encode("utf-8", "surrogateescape")).hexdigest()[:32]
    return os.path.join(conf["run_dir"], name + ".lock")


def _holder(lock_file: str) -> dict[str, Any] | None:
    """The record of the agent holding `lock_file`, or None when no agent holds it."""
    held, record = _lock_state(lock_file)
    return record if held else None


def _lock_state(lock_file: str) -> tuple[bool, dict[str, Any]]:
    """Whether an agent holds `lock_file`, and the record in it (the last agent's, if none)."""
    try:
        fd = os.open(lock_file, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return False, {}
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            held = True
        else:
            held = False
            fcntl.flock(fd, fcntl.LOCK_UN)
        try:
            record = json.loads(os.pread(fd, 4096, 0) or b"{}")
        except ValueError:
            record = {}
        return held, record if isinstance(record, dict) else {}
    finally:
        os.close(fd)


def _file_problem(conf: dict[str, Any], policy: Any, path: str, lock_file: str) -> dict[str, Any] | None:
    """Why the file `path` leads to may not be tailed now, reached as the agent will reach it."""
    try:
        os.close(policy.open_checked(path, _allowlist(conf), allowlist="this minion's allowlist"))
    except policy.Refused as exc:
        return _err(exc.refusal.code, exc.refusal.message)
    except FileNotFoundError:
        return _refused_lately(conf, lock_file)  # else followed like tail -F once it appears
    except OSError as exc:
        return _err("unreadable", f"cannot open {path}: {exc.strerror}")
    return None


def _refused_lately(conf: dict[str, Any], lock_file: str) -> dict[str, Any] | None:
    """Why the path's last agent stopped, if it was refused (or gave up waiting for the
    file) less than `late_file_wait` seconds ago: a missing file is waited for, but not
    again straight after an agent stopped on it, so that agent's reason is the answer."""
    held, last = _lock_state(lock_file)
    stopped, error = last.get("stopped"), last.get("error")
    recent = isinstance(stopped, (int, float)) and time.time() - stopped < float(conf["late_file_wait"])
    if held or not recent or not isinstance(error, str):
        return None
    return _err(error, str(last.get("message", "")))


def _log_tail(log_file: str, limit: int = 600) -> str:
    try:
        with open(log_file, "rb") as fh:
            fh.seek(max(0, os.fstat(fh.fileno()).st_size - limit))
            return fh.read().decode("utf-8", "replace").strip()
    except OSError:
        return ""


def start(path: str) -> dict[str, Any]:
    """Start the tail agent for `path` unless one already runs; idempotent.

    CLI Example:

    .. code-block:: bash

        salt '*' logtail.start /var/log/syslog
    """
    conf, policy, error = _check(path, need_allowed=False)  # the path's shape; the allowlist with the file below
    if error is not None:
        return error
    lock_file = _lock_path(conf, path)
    problem = _file_problem(conf, policy, path, lock_file)
    if problem is not None:
        return problem
    running = _holder(lock_file)
    if running is not None:
        return {"ok": True, "state": "running", "pid": running.get("pid"), "path": path, "already": True}
    agent = os.path.join(conf["install_dir"], "logtail_agent.py")
    if not os.path.isfile(agent):
        return _err("not_installed", f"{agent} is missing (state.apply logtail)")
    limit = __salt__["pillar.get"]("logtail:max_agents", conf["max_agents"])  # noqa: F821
    if not isinstance(limit, int) or isinstance(limit, bool) or limit < 0:
        return _err("refused", f"logtail:max_agents must be a whole number, not {limit!r}")
    guard = _take_start_guard(conf)
    if guard is None:
        return _err("failed", f"other agents were being started on this minion for {START_WAIT:.0f}s", path=path)
    try:
        return _start_counted(conf, path, lock_file, agent, limit)
    finally:
        os.close(guard)


def _take_start_guard(conf: dict[str, Any]) -> int | None:
    """Hold this minion's start guard (a descriptor to close), or None after START_WAIT."""
    os.makedirs(conf["run_dir"], mode=0o750, exist_ok=True)
    fd = os.open(os.path.join(conf["run_dir"], START_GUARD), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o640)
    deadline = time.monotonic() + START_WAIT
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return fd
        except BlockingIOError:
            if time.monotonic() > deadline:
                os.close(fd)
                return None
            time.sleep(0.02)


def _start_counted(conf: dict[str, Any], path: str, lock_file: str, agent: str, limit: int) -> dict[str, Any]:
    """Start the agent unless the minion runs `limit` already; the caller holds the start
    guard, and keeps it until the new agent holds its lock, so no other start counts
    before this agent is there to be counted."""
    running = _holder(lock_file)  # started by the start that held the guard before us
    if running is not None:
        return {"ok": True, "state": "running", "pid": running.get("pid"), "path": path, "already": True}
    count = len(_agents(conf))
    if count >= limit:
        return _err(
            "limit",
            f"this minion already runs {count} tail agents, its limit (pillar logtail:max_agents is {limit}); "
            "try again once one of them has ended",
            path=path,
        )
    os.makedirs(conf["log_dir"], mode=0o750, exist_ok=True)
    log_file = os.path.join(conf["log_dir"], os.path.basename(lock_file)[:-5] + ".log")
    argv = [conf["python"], agent, "--config", conf["config_file"], "--minion-id", __opts__["id"], "--path", path]  # noqa: F821
    with open(log_file, "ab") as out:
        proc = subprocess.Popen(  # an argument list, no shell: nothing the caller sent is ever interpreted
            argv,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd="/",
            close_fds=True,
            start_new_session=True,
        )
    deadline = time.monotonic() + START_WAIT
    while time.monotonic() < deadline:
        code = proc.poll()
        if code is not None:
            if code == EXIT_ALREADY_RUNNING:
                running = _holder(lock_file) or {}
                return {"ok": True, "state": "running", "pid": running.get("pid"), "path": path, "already": True}
            return _err("failed", f"agent exited with {code}: {_log_tail(log_file)}", path=path)
        holder = _holder(lock_file)
        if holder is not None and holder.get("pid") == proc.pid:
            return {"ok": True, "state": "started", "pid": proc.pid, "path": path, "already": False}
        time.sleep(0.02)
    return _err("failed", f"agent pid {proc.pid} did not take its lock within {START_WAIT:.0f}s", path=path)


def _is_agent(pid: int, conf: dict[str, Any]) -> bool:
    """Guard against a recycled pid: the process must be running our agent file."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            args = fh.read().split(b"\0")
    except OSError:
        return False
    agent = os.path.join(conf["install_dir"], "logtail_agent.py").encode()
    return agent in args


def _signal_and_wait(conf: dict[str, Any], lock_file: str, record: dict[str, Any]) -> dict[str, Any]:
    pid = record.get("pid")
    path = record.get("path")
    if not isinstance(pid, int) or pid <= 1 or not _is_agent(pid, conf):
        return _err("failed", f"lock holder pid {pid!r} is not a logtail agent; not signalled", path=path)
    try:
        os.kill(pid, signal.SIGTERM)
    except OSError as exc:
        if exc.errno != errno.ESRCH:
            return _err("failed", f"cannot signal pid {pid}: {exc.strerror}", path=path)
    deadline = time.monotonic() + STOP_WAIT
    while time.monotonic() < deadline:
        if _holder(lock_file) is None:
            return {"ok": True, "state": "stopped", "pid": pid, "path": path}
        time.sleep(0.02)
    return _err("failed", f"agent pid {pid} did not stop within {STOP_WAIT:.0f}s", path=path)


def stop(path: str) -> dict[str, Any]:
    """Stop the tail agent for `path` (found through its lock file), if one runs.

    CLI Example:

    .. code-block:: bash

        salt '*' logtail.stop /var/log/syslog
    """
    conf, _, error = _check(path, need_allowed=False)
    if error is not None:
        return error
    lock_file = _lock_path(conf, path)
    record = _holder(lock_file)
    if record is None:
        return {"ok": True, "state": "not_running", "path": path}
    return _signal_and_wait(conf, lock_file, record)


def _agents(conf: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    try:
        names = sorted(os.listdir(conf["run_dir"]))
    except FileNotFoundError:
        return []
    found = []
    for name in names:
        if name.endswith(".lock"):
            lock_file = os.path.join(conf["run_dir"], name)
            record = _holder(lock_file)
            if record is not None:
                found.append((lock_file, record))
    return found


def status() -> dict[str, Any]:
    """The agents running on this minion: path, pid, start time.

    CLI Example:

    .. code-block:: bash

        salt '*' logtail.status
    """
    conf = _config()
    if conf is None:
        return _not_installed()
    agents = [{"path": r.get("path"), "pid": r.get("pid"), "started": r.get("started")} for _, r in _agents(conf)]
    return {"ok": True, "agents": agents}


def stop_all() -> dict[str, Any]:
    """Stop every running agent (used by the formula's clean state).

    CLI Example:

    .. code-block:: bash

        salt '*' logtail.stop_all
    """
    conf = _config()
    if conf is None:
        return {"ok": True, "stopped": []}
    results = [_signal_and_wait(conf, lock_file, record) for lock_file, record in _agents(conf)]
    return {"ok": all(r["ok"] for r in results), "stopped": results}


def list_files() -> dict[str, Any]:
    """The regular, readable files this minion's allowlist lets Tailgate tail.

    CLI Example:

    .. code-block:: bash

        salt '*' logtail.list_files
    """
    conf = _config()
    if conf is None:
        return _not_installed()
    try:
        policy = _load_policy(conf)
    except (OSError, ImportError, SyntaxError) as exc:
        return _err("not_installed", f"the deployed wire package cannot be loaded: {exc}")
    globs = _allowlist(conf)
    found: dict[str, dict[str, Any]] = {}
    truncated = False
    for glob in globs:
        base = policy.glob_base(glob)
        depth0 = base.rstrip("/").count("/")
        for root, dirs, files in os.walk(base):
            if root.count("/") - depth0 >= LIST_DEPTH:
                dirs[:] = []
            dirs.sort()
            for name in sorted(files):
                path = os.path.join(root, name)
                if path in found or policy.refusal(path, globs) is not None:
                    continue
                try:
                    st = os.stat(path)
                except OSError:
                    continue
                if not stat.S_ISREG(st.st_mode) or not os.access(path, os.R_OK):
                    continue
                if len(found) >= LIST_LIMIT:
                    truncated = True
                    break
                found[path] = {"path": path, "size": st.st_size, "mtime": round(st.st_mtime, 3)}
            if truncated:
                break
    return {"ok": True, "files": sorted(found.values(), key=lambda f: f["path"]), "truncated": truncated}
