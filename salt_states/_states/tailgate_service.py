"""Salt state module ``tailgate_service``: a Tailgate unit running (or not) without systemd.

The ``tailgate`` formula uses ``service.running`` where systemd is PID 1 and these states
with ``manager: process`` elsewhere; both run the same rendered unit file (see the
``tailgate`` execution module). Neither restarts a running gateway when its files
change: gateways are restarted one at a time by the ``tailgate.orch.deploy``
orchestration, never all at once.
"""

from __future__ import annotations

from typing import Any

from salt.exceptions import CommandExecutionError

__virtualname__ = "tailgate_service"


def __virtual__() -> str:
    return __virtualname__


def _ret(name: str) -> dict[str, Any]:
    return {"name": name, "result": True, "changes": {}, "comment": ""}


def running(
    name: str,
    unit_dir: str = "/etc/systemd/system",
    run_dir: str = "/run/tailgate",
    log_dir: str = "/var/log/tailgate",
    ready_url: str = "",
    timeout: float = 30,
) -> dict[str, Any]:
    """`name` (a unit) runs; started (and, with `ready_url`, ready) when it did not."""
    ret = _ret(name)
    salt = __salt__  # noqa: F821 - injected by Salt's loader
    try:
        if salt["tailgate.status"](name, manager="process", run_dir=run_dir)["running"]:
            ret["comment"] = f"{name} is running"
            return ret
        if __opts__["test"]:  # noqa: F821
            ret.update(result=None, comment=f"{name} would be started")
            return ret
        dirs = {"unit_dir": unit_dir, "run_dir": run_dir, "log_dir": log_dir}
        started = salt["tailgate.start"](name, manager="process", ready_url=ready_url, timeout=timeout, **dirs)
    except CommandExecutionError as exc:
        ret.update(result=False, comment=str(exc))
        return ret
    ret["changes"] = {"started": started}
    ret["comment"] = f"{name} started (pid {started['pid']})"
    return ret


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
    ret = _ret(name)
    salt = __salt__  # noqa: F821 - injected by Salt's loader
    try:
        if not salt["tailgate.status"](name, manager="process", run_dir=run_dir)["running"]:
            ret["comment"] = f"{name} is not running"
            return ret
        if __opts__["test"]:  # noqa: F821
            ret.update(result=None, comment=f"{name} would be stopped")
            return ret
        stopped = salt["tailgate.stop"](name, manager="process", timeout=timeout, run_dir=run_dir)
    except CommandExecutionError as exc:
        ret.update(result=False, comment=str(exc))
        return ret
    ret["changes"] = {"stopped": stopped}
    ret["comment"] = f"{name} stopped"
    return ret
