"""The pure parts of file tailing: path policy, the Salt call guard, the follower."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import pytest

from gateway.tails.salt import check_call
from tests.support import ROOT
from wire import filepolicy
from wire.filepolicy import SPECIAL, SYMLINK, Refused, allowed, glob_base, open_checked, shell_meta

pytestmark = pytest.mark.unit  # nothing here starts a process


def load_agent():
    spec = importlib.util.spec_from_file_location("logtail_agent", ROOT / "salt_states/logtail/files/logtail_agent.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look the module up there
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(
    ("path", "globs", "ok"),
    [
        ("/var/log/syslog", ["/var/log/**"], True),
        ("/var/log/nginx/access.log", ["/var/log/**"], True),
        ("/var/logger/x", ["/var/log/**"], False),
        ("/etc/passwd", ["/var/log/**"], False),
        ("/var/log/nginx/access.log", ["/var/log/*.log"], False),
        ("/var/log/app.log", ["/var/log/*.log"], True),
        ("/srv/app/logs/a.log", ["/var/log/**", "/srv/*/logs/*.log"], True),
        ("/var/log/a.log", ["relative/**"], False),
        ("/var/log/a.log", [], False),
    ],
)
def test_allowlist_globs(path: str, globs: list[str], ok: bool) -> None:
    assert allowed(path, globs) is ok


@pytest.mark.parametrize("text", ["a;b", "a|b", "a&b", "$(x)", "`x`", "a b", "a\tb", "a>b", "a*b", "a'b", 'a"b'])
def test_shell_metacharacters_are_found(text: str) -> None:
    assert shell_meta(text) is not None


def test_plain_paths_have_no_metacharacters() -> None:
    assert shell_meta("/var/log/nginx/access-2024.01.log") is None


def test_glob_base() -> None:
    assert glob_base("/var/log/**") == "/var/log"
    assert glob_base("/srv/*/logs/*.log") == "/srv"
    assert glob_base("/**") == "/"


@pytest.mark.parametrize(
    ("minion", "fun", "path"),
    [
        ("web1", "cmd.run", None),
        ("web1", "logtail.start", None),
        ("web*", "logtail.status", None),
        ("web1 web2", "logtail.status", None),
        ("web1", "logtail.start", "relative.log"),
        ("web1", "logtail.start", "/var/log/../etc/shadow"),
        ("web1", "logtail.start", "/var/log/a;b"),
    ],
)
def test_salt_calls_are_fixed_functions_with_valid_arguments(minion: str, fun: str, path: str | None) -> None:
    with pytest.raises(ValueError):
        check_call(minion, fun, path)


def test_salt_call_passes_the_path_as_a_keyword() -> None:
    assert check_call("web1", "logtail.start", "/var/log/syslog") == {"path": "/var/log/syslog"}
    assert check_call("web1", "logtail.list_files", None) == {}


def test_follower_reads_the_last_lines_then_follows_rotation_and_truncation(tmp_path: Path) -> None:
    agent = load_agent()
    path = tmp_path / "a.log"
    path.write_bytes(b"".join(b"line %d\n" % i for i in range(10)) + b"partial")
    follower = agent.Follower(str(path), 3, 100, [f"{tmp_path}/**"], 60.0)
    assert follower.poll() == ["line 8", "line 9"]  # like tail -n 3: the unfinished line is the third
    with path.open("ab") as fh:
        fh.write(b" end\r\n" + b"y" * 150 + b"\n")
    assert follower.poll() == ["partial end", "y" * 100 + " …[truncated 50 bytes]"]
    os.rename(path, tmp_path / "a.log.1")
    with (tmp_path / "a.log.1").open("ab") as fh:
        fh.write(b"late in old\n")
    assert follower.poll() == ["late in old"]  # the new file does not exist yet
    path.write_bytes(b"new 1\nnew 2\n")
    assert follower.poll() == ["new 1", "new 2"]
    path.write_bytes(b"rewritten, and longer than before\n")  # truncated and refilled past our offset
    assert follower.poll() == ["rewritten, and longer than before"]
    follower.close()


@pytest.fixture
def planted(tmp_path: Path) -> Path:
    """An allowed directory holding a log, links in and out, a FIFO; a secret outside it."""
    logs = tmp_path / "logs"
    logs.mkdir()
    (tmp_path / "secret").write_text("secret\n")
    (logs / "a.log").write_text("a\n")
    (logs / "in.log").symlink_to(logs / "a.log")
    (logs / "out.log").symlink_to(tmp_path / "secret")
    (logs / "null.log").symlink_to("/dev/null")
    os.mkfifo(logs / "fifo.log")
    return logs


def test_open_checked_opens_only_regular_files_the_allowlist_permits(planted: Path) -> None:
    globs = [f"{planted}/**"]
    for name in ("a.log", "in.log"):  # a link that stays inside the allowlist is followed
        fd = open_checked(str(planted / name), globs)
        assert os.read(fd, 10) == b"a\n"
        os.close(fd)
    for name, rule in (("out.log", SYMLINK), ("null.log", SYMLINK), ("fifo.log", SPECIAL)):
        with pytest.raises(Refused) as refused:
            open_checked(str(planted / name), globs)
        assert refused.value.refusal.rule == rule, name
    with pytest.raises(FileNotFoundError):
        open_checked(str(planted / "missing.log"), globs)


def test_open_checked_checks_the_file_it_opened_not_only_the_name(
    planted: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A link planted between the name check and the open: the descriptor is refused."""
    monkeypatch.setattr(filepolicy, "refusal", lambda *args, **kwargs: None)  # the name checked before the swap
    globs = [f"{planted}/**"]
    with pytest.raises(Refused) as refused:
        open_checked(str(planted / "out.log"), globs, allowlist="this minion's allowlist")
    assert refused.value.refusal == (
        SYMLINK,
        f"{planted}/out.log led to {planted.parent}/secret when opened, outside this minion's allowlist",
    )
    with pytest.raises(Refused) as refused:
        open_checked(str(planted / "fifo.log"), globs)  # returns at once: a FIFO is never opened
    assert refused.value.refusal.rule == SPECIAL


def test_follower_drains_the_old_file_then_stops_on_a_link_out(tmp_path: Path) -> None:
    agent = load_agent()
    (tmp_path / "logs").mkdir()
    (tmp_path / "secret").write_text("secret\n")
    path = tmp_path / "logs" / "a.log"
    path.write_text("one\n")
    follower = agent.Follower(str(path), 10, 100, [f"{tmp_path}/logs/**"], 60.0)
    assert follower.poll() == ["one"]
    os.rename(path, tmp_path / "logs" / "a.log.1")
    with (tmp_path / "logs" / "a.log.1").open("a") as fh:
        fh.write("two\n")
    path.symlink_to(tmp_path / "secret")
    assert follower.poll() == ["two"]  # what the old file still had
    assert follower.poll() == []  # then the new one, refused
    reason = f"{path} resolves to {tmp_path}/secret, outside this minion's allowlist"
    assert follower.stopped == ("not_allowed", reason)
    assert follower.poll() == []
    follower.close()
