"""One file on many minions (``file:<minion glob>:<path>``) through the real salt-master and
two minion ids: a second salt-minion process on this machine, with a config directory and
logtail pillar of its own (so its agents keep their own locks), next to the session's.

The glob is expanded by the gateway, its members' agents are started with ONE Salt job
listing the matched minion ids, access is decided per minion, and the lines of both
minions reach one view (the command's) with the minion as each line's source.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from embedded.salt import SaltError
from tests.conftest import SaltSession
from tests.salt.test_tail import MINION, new_log, start_gateway
from tests.support import ROOT, SECRET, Service, WsClient, service_env, token

SECOND = "tailgate-test-minion2"
GLOB = "tailgate-test-minion*"


@pytest.fixture(scope="module")
def two_minions(salt_session: SaltSession) -> Iterator[SaltSession]:
    base = salt_session.run_dir.parent.parent / "minion2"
    own = {"install_dir": f"{base}/agent", "config_file": f"{base}/etc/logtail.json"}
    own |= {"run_dir": f"{base}/run", "log_dir": f"{base}/log"}
    pair = salt_session.pair
    pair.add_minion(SECOND, own)
    try:
        pair.apply("logtail", minion=SECOND)
        yield salt_session
    finally:
        with contextlib.suppress(SaltError):  # its agents also end on their own, unwanted
            pair.call("logtail.stop_all", timeout=10, minion=SECOND)
        pair.remove_minion(SECOND)


def start_jobs(session: SaltSession, path: Path) -> list[dict]:
    return [job for job in session.pair.jobs("logtail.start") if str(path) in json.dumps(job.get("Arguments"))]


async def test_a_glob_opens_the_file_on_every_matching_minion_with_one_salt_job(
    two_minions: SaltSession, services: list[Service], tmp_path: Path
) -> None:
    session = two_minions
    path = new_log(session)
    gw = start_gateway(session, services, tmp_path)
    glob = f"file:{GLOB}:{path}"
    members = [f"file:{MINION}:{path}", f"file:{SECOND}:{path}"]
    client = await WsClient.connect(gw.ws_url)
    await client.subscribe(glob)
    assert client.of_type("subscribed")[0] == {"type": "subscribed", "stream": glob, "streams": members}
    for member in members:
        await client.wait_for(
            lambda m=member: any(f.get("state") == "live" and f["stream"] == m for f in client.of_type("status")),
            timeout=30,
            what=f"{member} live",
        )
    with path.open("a") as fh:
        fh.write("from every minion\n")
    for member in members:
        await client.wait_for(lambda m=member: "from every minion" in client.texts(m), timeout=10, what=member)
    jobs = await asyncio.to_thread(start_jobs, session, path)
    assert len(jobs) == 1, f"one Salt job for both minions, not one each: {jobs}"
    assert sorted(jobs[0].get("Target")) == sorted([MINION, SECOND]) and jobs[0].get("Target-type") == "list"

    # the command shows both minions' lines in one view, each with its minion
    argv = ["--url", gw.base, "tail", glob, "--no-color", "--backlog", "5"]
    out = await asyncio.to_thread(
        command_until, argv, lambda lines: sum(ln.endswith("every minion") for ln in lines) >= 2
    )
    sources = sorted(line.split()[1] for line in out if line.endswith("from every minion"))
    assert sources == sorted([f"{MINION}:{path.name}", f"{SECOND}:{path.name}"]), out
    listed = await asyncio.to_thread(command_until, ["--url", gw.base, "minions"], lambda lines: len(lines) >= 2)
    assert sorted(listed) == sorted([MINION, SECOND])
    files = await asyncio.to_thread(
        command_until, ["--url", gw.base, "files", SECOND], lambda lines: any(str(path) in ln for ln in lines)
    )
    assert any(ln.split()[0] == str(path) and ln.split()[-1] == f"file:{SECOND}:{path}" for ln in files), files

    await client.send({"op": "unsubscribe", "stream": glob})
    await client.wait_for(lambda: client.of_type("unsubscribed"), what="unsubscribed")
    await client.close()


def command_until(argv: list[str], enough: Callable[[list[str]], bool]) -> list[str]:
    """Run `python -m tailgate <argv>` until the lines it printed are `enough`; those lines."""
    cmd = [sys.executable, "-m", "tailgate", *argv]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=service_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines: list[str] = []
    try:
        assert proc.stdout is not None
        while not enough(lines):
            line = proc.stdout.readline()
            if not line:
                raise AssertionError(f"the command ended: {lines} {proc.stderr.read() if proc.stderr else ''}")
            lines.append(line.rstrip("\n"))
    finally:
        proc.terminate()
        proc.wait(10)
    return lines


async def test_access_is_decided_per_minion_and_a_glob_matching_nothing_is_not_found(
    two_minions: SaltSession, services: list[Service], tmp_path: Path
) -> None:
    session = two_minions
    path = new_log(session)
    gw = start_gateway(session, services, tmp_path, TAILGATE_AUTH_SECRET=SECRET)
    glob = f"file:{GLOB}:{path}"
    only_second = await WsClient.connect(f"{gw.ws_url}?token={token((f'file:{SECOND}:{session.logs}/*',))}")
    await only_second.subscribe(glob)
    assert only_second.of_type("subscribed")[0]["streams"] == [f"file:{SECOND}:{path}"]
    await only_second.subscribe(f"file:{GLOB}:/var/log/syslog")  # a path the token does not cover
    assert only_second.of_type("error")[-1]["code"] == "forbidden"
    await only_second.subscribe(f"file:nothing-like-it-*:{path}")
    assert only_second.of_type("error")[-1]["code"] == "not_found"
    kafka_only = await WsClient.connect(f"{gw.ws_url}?token={token(('kafka:*',))}")
    await kafka_only.subscribe(glob)
    assert kafka_only.of_type("error")[0]["code"] == "forbidden"
    for c in (only_second, kafka_only):
        await c.close()

    # the command says not found with its own exit status
    argv = [sys.executable, "-m", "tailgate", "--url", gw.base, "--token", token(("file:*",)), "tail"]
    argv.append(f"file:nothing-like-it-*:{path}")
    done = await asyncio.to_thread(subprocess.run, argv, cwd=ROOT, env=service_env(), capture_output=True)
    assert done.returncode == 6 and b"no minion you may open matches" in done.stderr, done
