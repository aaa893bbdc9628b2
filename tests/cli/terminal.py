"""A real terminal for the `tailgate` command's tests: a tmux server of the test's own
(its own socket, so nobody else's tmux is touched), typed into with `send-keys` and read
with `capture-pane` (with `-e`, the colours as the terminal got them)."""

from __future__ import annotations

import re
import shutil
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.support import ROOT

EXIT = re.compile(r"^(?:\^C)?exit=(\d+)$", re.MULTILINE)  # what `run` has the shell print after a command


class Terminal:
    """One tmux pane running bash, 200 columns wide, keeping 200,000 lines of scrollback."""

    def __init__(self, env: dict[str, str], workdir: Path) -> None:
        if shutil.which("tmux") is None:
            raise RuntimeError("tmux is missing: run scripts/setup.sh --test (installs Debian's tmux)")
        self.socket = f"tailgate-test-{uuid.uuid4().hex[:8]}"
        conf = workdir / "tmux.conf"
        conf.write_text("set -g history-limit 200000\nset -g default-terminal xterm-256color\n")
        self.env = dict(env, PATH=f"{ROOT / '.venv' / 'bin'}:{env.get('PATH', '/usr/bin:/bin')}")
        self.env.pop("TMUX", None)
        self._tmux("-f", str(conf), "new-session", "-d", "-x", "200", "-y", "50", "bash --norc --noprofile")

    def _tmux(self, *args: str) -> str:
        done = subprocess.run(
            ["tmux", "-L", self.socket, *args], env=self.env, capture_output=True, text=True, timeout=20, check=True
        )
        return done.stdout

    def run(self, command: str) -> None:
        """Type `command` and Enter, then a line saying its exit status once it ends."""
        self._tmux("send-keys", "-l", f'{command}; echo "exit=$?"')
        self._tmux("send-keys", "Enter")

    def interrupt(self) -> None:
        self._tmux("send-keys", "C-c")

    def screen(self, colours: bool = False) -> str:
        """Everything the pane shows and scrolled past, wrapped lines joined."""
        return self._tmux("capture-pane", "-p", "-J", "-S", "-", *(["-e"] if colours else []))

    def lines(self) -> list[str]:
        return [line.rstrip() for line in self.screen().splitlines()]

    def exit_status(self, timeout: float = 20.0) -> int:
        """The exit status of the last command typed (waits for its `exit=` line)."""
        found = self.wait_for(lambda text: EXIT.findall(text), timeout, "the command's exit status")
        return int(found[-1])  # type: ignore[index]

    def wait_for(self, check: Callable[[str], object], timeout: float = 20.0, what: str = "") -> object:
        deadline = time.monotonic() + timeout
        while True:
            text = self.screen()
            value = check(text)
            if value:
                return value
            if time.monotonic() > deadline:
                raise TimeoutError(f"timed out waiting for {what or check}; the terminal shows:\n{text[-3000:]}")
            time.sleep(0.05)

    def clear(self) -> None:
        self._tmux("send-keys", "clear", "Enter")
        self.wait_for(lambda text: len([ln for ln in text.splitlines() if ln.strip()]) <= 1, 5, "a cleared screen")
        self._tmux("clear-history")

    def close(self) -> None:
        subprocess.run(["tmux", "-L", self.socket, "kill-server"], env=self.env, capture_output=True, check=False)


def terminal(env: dict[str, str], tmp_path: Path) -> Iterator[Terminal]:
    term = Terminal(env, tmp_path)
    yield term
    term.close()


@pytest.fixture
def term(tmp_path: Path) -> Iterator[Terminal]:
    """A terminal whose `tailgate` reads no config of the machine's user."""
    home = tmp_path / "home"
    home.mkdir()
    env = {"HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config"), "LANG": "C.UTF-8", "TZ": "UTC"}
    env["PATH"] = "/usr/local/bin:/usr/bin:/bin"
    yield from terminal(env, tmp_path)
