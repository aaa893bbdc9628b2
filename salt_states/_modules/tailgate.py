"""Salt execution module ``tailgate``: start, stop, drain and check Tailgate's service units.

The ``tailgate`` formula renders one systemd unit per bridge instance
(``tailgate-bridge-<i>``) and per gateway replica (``tailgate-gateway-<port>``). Under
systemd (``manager: systemd``, every real deployment) this module only calls
``systemctl`` with an argument list. Where systemd is not PID 1 (containers, the test
machine) ``manager: process`` runs the very unit file instead: its ``ExecStart``,
``Environment``, ``EnvironmentFile``, ``WorkingDirectory``, ``User`` and ``Group``, in a
session of its own, output to ``<log_dir>/<unit>.log``. Whether such a process runs is
decided by its lock file in ``run_dir`` (``flock``, held by the service through an
inherited descriptor for as long as it lives), never by ``ps``; a zombie or a reused pid
can never look alive. The fallback applies no systemd hardening and restarts nothing on
failure: it is for machines without systemd, not for production.

Nothing here builds a shell command: unit names, URLs and directories are checked, and
every command is an argument list.

    salt web1 tailgate.status tailgate-gateway-8081
    salt web1 tailgate.drain tailgate-gateway-8081 ready_url=http://127.0.0.1:8081/readyz
    salt web1 tailgate.start tailgate-gateway-8081 ready_url=http://127.0.0.1:8081/readyz
"""

from __future__ import annotations

import fcntl
import os
import re
import shlex
import signal
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from typing import Any

from salt.exceptions import CommandExecutionError

__virtualname__ = "tailgate"

UNIT_RE = re.compile(r"tailgate-(gateway|bridge)-[0-9]{1,5}")
MANAGERS = ("systemd", "process")
DEFAULTS = {"unit_dir": "/etc/systemd/system", "run_dir": "/run/tailgate", "log_dir": "/var/log/tailgate"}
POLL = 0.1


def __virtual__() -> str:
    return __virtualname__


def _unit(unit: str) -> str:
    if not isinstance(unit, str) or not UNIT_RE.fullmatch(unit):
        raise CommandExecutionError(
            f"not a Tailgate unit: {unit!r:.80} (tailgate-gateway-<port> or tailgate-bridge-<i>)"
        )
    return unit


def _dir(path: str, what: str) -> str:
    if not isinstance(path, str) or not os.path.isabs(path) or os.path.normpath(path) != path:
        raise CommandExecutionError(f"{what} must be an absolute, normal path: {path!r:.200}")
    return path


def _manager(manager: str) -> str:
    if manager not in MANAGERS:
        raise CommandExecutionError(f"manager must be one of {', '.join(MANAGERS)}, not {manager!r:.40}")
    return manager


def _ready_url(url: str) -> str:
    parts = urllib.parse.urlsplit(url) if isinstance(url, str) else None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname or parts.path != "/readyz":
        raise CommandExecutionError(f"ready_url must be http(s)://<host>:<port>/readyz, not {url!r:.200}")
    return url


def _systemctl(*args: str) -> None:
    done = subprocess.run(["systemctl", *args], capture_output=True, text=True, timeout=120, check=False)
    if done.returncode != 0:
        raise CommandExecutionError(f"systemctl {' '.join(args)}: {done.stderr.strip() or done.stdout.strip()}")


# --- the fallback: run a unit file's service without systemd -----------------------------


def _unquote_env(value: str) -> str:
    value = value.strip()
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
        return re.sub(r"\\(.)", r"\1", value[1:-1])
    return value


def _read_env_file(path: str) -> dict[str, str]:
    optional = path.startswith("-")
    path = path.lstrip("-")
    try:
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
    except FileNotFoundError:
        if optional:
            return {}
        raise CommandExecutionError(f"EnvironmentFile {path} is missing") from None
    env = {}
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith(("#", ";")) and "=" in line:
            key, _, value = line.partition("=")
            env[key.strip()] = _unquote_env(value)
    return env


def _service_section(unit_file: str) -> dict[str, list[str]]:
    """The [Service] keys of a unit file (a key may repeat: Environment=)."""
    try:
        with open(unit_file, encoding="utf-8") as fh:
            lines = fh.read().splitlines()
    except FileNotFoundError:
        raise CommandExecutionError(f"{unit_file} is missing: apply the tailgate formula first") from None
    section, keys = "", {}
    for line in lines:
        line = line.strip()
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
        elif section == "Service" and "=" in line and not line.startswith(("#", ";")):
            key, _, value = line.partition("=")
            keys.setdefault(key.strip(), []).append(value.strip())
    if not keys.get("ExecStart"):
        raise CommandExecutionError(f"{unit_file} has no ExecStart")
    return keys


def _spawn_spec(unit_file: str) -> dict[str, Any]:
    keys = _service_section(unit_file)
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8"}
    for path in keys.get("EnvironmentFile", []):
        env.update(_read_env_file(path))
    for assignments in keys.get("Environment", []):
        for item in shlex.split(assignments):
            name, _, value = item.partition("=")
            env[name] = value
    spec: dict[str, Any] = {"args": shlex.split(keys["ExecStart"][-1]), "env": env, "cwd": "/"}
    if keys.get("WorkingDirectory"):
        spec["cwd"] = keys["WorkingDirectory"][-1]
    user = (keys.get("User") or ["root"])[-1]
    if user != "root":
        spec.update(user=user, group=(keys.get("Group") or [user])[-1], extra_groups=[])
    return spec


def _lock_file(run_dir: str, unit: str) -> str:
    return os.path.join(run_dir, f"{unit}.lock")


def _holder(run_dir: str, unit: str) -> int | None:
    """The pid of the running service, or None when its lock is free."""
    try:
        fd = os.open(_lock_file(run_dir, unit), os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            text = os.pread(fd, 64, 0).decode(errors="replace").strip()
            return int(text) if text.isdigit() else -1
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def _process_start(unit: str, unit_dir: str, run_dir: str, log_dir: str) -> int:
    spec = _spawn_spec(os.path.join(unit_dir, f"{unit}.service"))
    os.makedirs(run_dir, mode=0o750, exist_ok=True)
    os.makedirs(log_dir, mode=0o750, exist_ok=True)
    fd = os.open(_lock_file(run_dir, unit), os.O_RDWR | os.O_CREAT, 0o640)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return _holder(run_dir, unit) or -1
        log_path = os.path.join(log_dir, f"{unit}.log")
        with open(log_path, "ab") as out:
            if "user" in spec:
                os.chown(log_path, *_ids(spec["user"], spec["group"]))
            # The child inherits the locked descriptor: the lock lives exactly as long as it.
            proc = subprocess.Popen(
                **spec, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True, pass_fds=(fd,),
            )  # fmt: skip
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(proc.pid).encode(), 0)
        return proc.pid
    finally:
        os.close(fd)


def _ids(user: str, group: str) -> tuple[int, int]:
    import grp
    import pwd

    return pwd.getpwnam(user).pw_uid, grp.getgrnam(group).gr_gid


def _process_stop(unit: str, run_dir: str, timeout: float) -> int | None:
    pid = _holder(run_dir, unit)
    if pid is None:
        return None
    if pid > 0:
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while _holder(run_dir, unit) is not None:
        if time.monotonic() > deadline:
            if pid > 0:
                os.kill(pid, signal.SIGKILL)
            raise CommandExecutionError(f"{unit} (pid {pid}) did not exit within {timeout:g}s of SIGTERM; killed")
        time.sleep(POLL)
    return pid


# --- the functions ------------------------------------------------------------------------


def status(unit: str, manager: str = "systemd", run_dir: str = DEFAULTS["run_dir"]) -> dict[str, Any]:
    """Whether `unit` runs, and its pid under the fallback.

    CLI Example:

    .. code-block:: bash

        salt '*' tailgate.status tailgate-gateway-8080
    """
    unit = _unit(unit)
    if _manager(manager) == "systemd":
        done = subprocess.run(["systemctl", "is-active", unit], capture_output=True, text=True, check=False)
        return {"unit": unit, "running": done.stdout.strip() == "active"}
    pid = _holder(_dir(run_dir, "run_dir"), unit)
    return {"unit": unit, "running": pid is not None, "pid": pid}


def _log_tail(log_dir: str, unit: str, lines: int = 5) -> str:
    try:
        with open(os.path.join(log_dir, f"{unit}.log"), "rb") as fh:
            fh.seek(max(0, os.fstat(fh.fileno()).st_size - 4096))
            return " | ".join(fh.read().decode(errors="replace").strip().splitlines()[-lines:])
    except OSError as exc:
        return f"(no log: {exc})"


def _exited(unit: str, run_dir: str, log_dir: str) -> Callable[[], str]:
    """Why a fallback service is gone ("" while it runs): it need not be waited for."""

    def why() -> str:
        if _holder(run_dir, unit) is not None:
            return ""
        return f"{unit} exited before it was ready; its log ends: {_log_tail(log_dir, unit)}"

    return why


def _wait_ready(url: str, timeout: float, exited: Callable[[], str] | None = None) -> dict[str, Any]:
    started, last = time.monotonic(), "no answer"
    while True:
        if exited is not None and (why := exited()):
            raise CommandExecutionError(why)
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status == 200:
                    return {"ready": True, "url": url, "seconds": round(time.monotonic() - started, 2)}
                last = f"HTTP {resp.status}"
        except urllib.error.HTTPError as exc:
            last = f"HTTP {exc.code} {exc.read(200).decode(errors='replace')}"
        except (OSError, ValueError) as exc:
            last = str(getattr(exc, "reason", exc))
        if time.monotonic() - started > float(timeout):
            raise CommandExecutionError(f"{url} not ready within {float(timeout):g}s (last answer: {last})")
        time.sleep(POLL)


def wait_ready(ready_url: str, timeout: float = 30) -> dict[str, Any]:
    """Poll `ready_url` (a replica's /readyz) until it answers 200; raise with the last
    answer if it does not within `timeout` seconds.

    CLI Example:

    .. code-block:: bash

        salt web1 tailgate.wait_ready http://127.0.0.1:8081/readyz
    """
    return _wait_ready(_ready_url(ready_url), float(timeout))


def start(
    unit: str,
    manager: str = "systemd",
    ready_url: str = "",
    timeout: float = 30,
    unit_dir: str = DEFAULTS["unit_dir"],
    run_dir: str = DEFAULTS["run_dir"],
    log_dir: str = DEFAULTS["log_dir"],
) -> dict[str, Any]:
    """Start `unit` if it is not running; with `ready_url`, return once it answers 200
    there (raise if it does not within `timeout` seconds).

    CLI Example:

    .. code-block:: bash

        salt '*' tailgate.start tailgate-gateway-8080 ready_url=http://127.0.0.1:8080/readyz
    """
    unit = _unit(unit)
    if ready_url:
        _ready_url(ready_url)
    if _manager(manager) == "systemd":
        _systemctl("daemon-reload")  # the unit file may just have been updated
        _systemctl("start", unit)
        ret: dict[str, Any] = {"unit": unit, "started": True}
    else:
        dirs = (_dir(unit_dir, "unit_dir"), _dir(run_dir, "run_dir"), _dir(log_dir, "log_dir"))
        running = _holder(dirs[1], unit)
        pid = running if running is not None else _process_start(unit, *dirs)
        ret = {"unit": unit, "started": running is None, "pid": pid}
    if not ready_url:
        return ret
    exited = _exited(unit, run_dir, log_dir) if manager == "process" else None
    try:
        ret["ready"] = _wait_ready(ready_url, float(timeout), exited)
    except CommandExecutionError as exc:
        raise CommandExecutionError(f"{unit} did not become ready: {exc}") from None
    return ret


def stop(
    unit: str, manager: str = "systemd", timeout: float = 30, run_dir: str = DEFAULTS["run_dir"]
) -> dict[str, Any]:
    """Stop `unit` (SIGTERM, then wait for it to exit; a gateway drains meanwhile).

    CLI Example:

    .. code-block:: bash

        salt '*' tailgate.stop tailgate-bridge-0
    """
    unit = _unit(unit)
    if _manager(manager) == "systemd":
        _systemctl("stop", unit)
        return {"unit": unit, "stopped": True}
    pid = _process_stop(unit, _dir(run_dir, "run_dir"), float(timeout))
    return {"unit": unit, "stopped": pid is not None, "pid": pid}


def drain(
    unit: str, ready_url: str, manager: str = "systemd", timeout: float = 30, run_dir: str = DEFAULTS["run_dir"]
) -> dict[str, Any]:
    """Take a gateway replica out of service: SIGTERM makes it answer 503 on /readyz (the
    balancer stops sending it clients), close its clients with 1001 (they resume on
    another replica) and exit; return once it has exited and /readyz no longer says ready.

    CLI Example:

    .. code-block:: bash

        salt web1 tailgate.drain tailgate-gateway-8081 ready_url=http://127.0.0.1:8081/readyz
    """
    url, started = _ready_url(ready_url), time.monotonic()
    ret = stop(unit, manager=manager, timeout=timeout, run_dir=run_dir)
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            if resp.status == 200:
                raise CommandExecutionError(
                    f"{unit} stopped but {url} still answers ready: another process holds the port"
                )
    except (OSError, ValueError):
        pass  # refused or 503: out of service, as wanted
    return {**ret, "drained": True, "seconds": round(time.monotonic() - started, 2)}
