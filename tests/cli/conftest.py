"""Fixtures of the command's tests: the terminal (tests/cli/terminal.py)."""

from tests.cli.terminal import term

__all__ = ["term"]
