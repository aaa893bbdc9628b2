"""wire.filepolicy.refusal: the one file-path policy every boundary calls (the gateway's
admission, its Salt client, the execution module, the agent). Every rule that can refuse
a path, in order, with the message the caller shows."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from wire.filepolicy import ALLOWLIST, PATH, SHELL, SYMLINK, Refusal, path_problem, refusal
from wire.names import StreamNameError, check_path

pytestmark = pytest.mark.unit  # nothing here starts a process

GLOBS = ["/var/log/**"]


@pytest.mark.parametrize(
    ("path", "message"),
    [
        (None, "path must be a string"),
        (b"/var/log/a", "path must be a string"),
        ("relative.log", "path must be absolute"),
        ("", "path must be absolute"),
        ("/var/log/" + "a" * 4096, "path must be at most 4096 bytes"),
        ("/var/log/a\x00b", "path must not contain NUL or control characters"),
        ("/var/log/a\x1bb", "path must not contain NUL or control characters"),
        ("/var/log/a\x85b", "path must not contain NUL or control characters"),
        ("/var//log/a", "path must not contain '//'"),
        ("/var/log/../../etc/shadow", "path must not contain '.' or '..' segments"),
        ("/var/log/./a", "path must not contain '.' or '..' segments"),
        ("/var/log/..", "path must not contain '.' or '..' segments"),
        ("/var/log/", "path must name a file, not end with '/'"),
    ],
)
def test_the_contracts_path_rules_refuse_first(path: object, message: str) -> None:
    assert refusal(path, GLOBS) == Refusal(PATH, message)
    assert refusal(path, None) == Refusal(PATH, message)  # with or without an allowlist
    got = refusal(path, GLOBS)
    assert got is not None and not got.outside


@pytest.mark.parametrize("char", [*";|&$`<>()'\"\\*?[]{}!~#", " ", "\u00a0"])
def test_a_shell_metacharacter_or_whitespace_is_refused_whatever_the_allowlist(char: str) -> None:
    # (a tab or newline is a control character: the path rules refuse it first)
    path = f"/var/log/a{char}b.log"
    got = refusal(path, ["/**"], resolve=False)
    assert got == Refusal(SHELL, f"path contains the shell metacharacter {char!r}")
    assert got is not None and not got.outside
    assert refusal(path, None) == got


def test_outside_the_allowlist_names_the_allowlist() -> None:
    got = refusal("/etc/passwd", GLOBS, resolve=False, allowlist="this gateway's file allowlist")
    assert got == Refusal(ALLOWLIST, "/etc/passwd is outside this gateway's file allowlist")
    assert got is not None and got.outside
    assert refusal("/etc/passwd", GLOBS) == Refusal(ALLOWLIST, "/etc/passwd is outside the allowlist")
    assert refusal("/var/log/a.log", [], resolve=False) == Refusal(ALLOWLIST, "/var/log/a.log is outside the allowlist")


def test_an_allowed_path_and_no_allowlist_at_all_pass() -> None:
    assert refusal("/var/log/nginx/access.log", GLOBS, resolve=False) is None
    assert refusal("/var/log/missing-yet.log", GLOBS) is None  # a file that does not exist yet
    assert refusal("/etc/passwd", None) is None  # this boundary checks the path's shape only
    assert refusal("/var/log/a.log", iter(GLOBS)) is None  # any iterable of globs


def test_a_symlink_escaping_the_allowlist_is_refused_once_resolved(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    secret = tmp_path / "secret.txt"
    secret.write_text("x\n")
    (logs / "evil.log").symlink_to(secret)
    (logs / "real.log").write_text("y\n")
    (logs / "inside.log").symlink_to(logs / "real.log")
    globs = [f"{logs}/**"]
    evil = f"{logs}/evil.log"
    got = refusal(evil, globs, allowlist="this minion's allowlist")
    real = os.path.realpath(evil)
    assert got == Refusal(SYMLINK, f"{evil} resolves to {real}, outside this minion's allowlist")
    assert got is not None and got.outside
    # where the file is not (the gateway), the link cannot be resolved: allowed as given
    assert refusal(evil, globs, resolve=False) is None
    # a link that stays inside the allowlist is fine
    assert refusal(f"{logs}/inside.log", globs) is None
    assert refusal(f"{logs}/real.log", globs) is None


def test_the_rules_apply_in_order() -> None:
    # traversal before metacharacters before the allowlist
    assert refusal("/etc/../x;y", GLOBS) is not None and refusal("/etc/../x;y", GLOBS).rule == PATH
    assert refusal("/etc/x;y", GLOBS) is not None and refusal("/etc/x;y", GLOBS).rule == SHELL


def test_check_path_applies_the_same_path_rules() -> None:
    for path in ["relative", "/a//b", "/a/../b", "/a/\x07", "/a/"]:
        message = path_problem(path)
        assert message is not None
        with pytest.raises(StreamNameError, match=message.replace("'", ".").replace("(", ".").replace(")", ".")):
            check_path(path)
    assert path_problem("/var/log/a.log") is None and check_path("/var/log/a.log") == "/var/log/a.log"
