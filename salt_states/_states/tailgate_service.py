"""Salt state module ``tailgate_service``: a Tailgate unit running (or not) without systemd.

The ``tailgate`` formula uses ``service.running`` where systemd is PID 1 and these states
with ``manager: process`` elsewhere; both run the same rendered unit file (see the
``tailgate`` execution module). Neither restarts a running gateway when its files
change: gateways are restarted one at a time by the ``tailgate.orch.deploy``
orchestration, never all at once.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from salt.exceptions import CommandExecutionError

__virtualname__ = "tailgate_service"


def __virtual__() -> str:
    return __virtualname__


def _ret(name: str) -> dict[str, Any]:
    return {"name": name, "result": True, "changes": {}, "comment": ""}


def _converge(name: str, want_running: bool, run_dir: str, act: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """Leave `name` alone when it already is as wanted; else `act` (not in test mode)."""
    ret = _ret(name)
    verb = "started" if want_running else "stopped"
    try:
        if __salt__["tailgate.status"](name, manager="process", run_dir=run_dir)["running"] == want_running:  # noqa: F821
            ret["comment"] = f"{name} is {'running' if want_running else 'not running'}"
            return ret
        if __opts__["test"]:  # noqa: F821
            ret.update(result=None, comment=f"{name} would be {verb}")
            return ret
        done = act()
    except CommandExecutionError as exc:
        ret.update(result=False, comment=str(exc))
        return ret
    ret.update(changes={verb: done}, comment=f"{name} {verb}" + (f" (pid {done['pid']})" if done.get("pid") else ""))
    return ret


def running(
    name: str,
    unit_dir: str = "/etc/systemd/system",
    run_dir: str = "/run/tailgate",
    log_dir: str = "/var/log/tailgate",
    ready_url: str = "",
    timeout: float = 30,
) -> dict[str, Any]:
    """`name` (a unit) runs; started (and, with `ready_url`, ready) when it did not."""
    dirs = {"unit_dir": unit_dir, "run_dir": run_dir, "log_dir": log_dir}
    start = __salt__["tailgate.start"]  # noqa: F821 - injected by Salt's loader
    return _converge(
        name, True, run_dir, lambda: start(name, manager="process", ready_url=ready_url, timeout=timeout, **dirs)
    )


def mod_watch(name: str, sfun: str = "", **kwargs: Any) -> dict[str, Any]:
    """A watched file changed: restart `name` (stop, then `running`)."""
    if sfun != "running":
        return {**_ret(name), "result": False, "comment": f"tailgate_service.{sfun} cannot watch"}
    stopped = dead(name, run_dir=kwargs.get("run_dir", "/run/tailgate"))
    if stopped["result"] is False:
        return stopped
    args = {k: v for k, v in kwargs.items() if k in ("unit_dir", "run_dir", "log_dir", "ready_url", "timeout")}
    return running(name, **args)


def dead(name: str, timeout: float = 30, run_dir: str = "/run/tailgate") -> dict[str, Any]:
    """`name` (a unit) is not running; stopped with SIGTERM when it was."""
    stop = __salt__["tailgate.stop"]  # noqa: F821 - injected by Salt's loader
    return _converge(name, False, run_dir, lambda: stop(name, manager="process", timeout=timeout, run_dir=run_dir))
