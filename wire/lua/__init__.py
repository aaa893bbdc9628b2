"""The Lua scripts Redis runs for the wire contract, one ``.lua`` file each.

Each file starts with a comment saying what the script does and names its KEYS and ARGV
as locals at the top. They are package data, read with `importlib.resources`, so they go
wherever the `wire` package goes (the Salt formula deploys them next to the tail agent).
Standard library only.
"""

from __future__ import annotations

from importlib.resources import files

NAMES = ("publish", "advance", "want", "unwant", "wanted", "release")


def script(name: str) -> str:
    """The text of the script `name` (``wire/lua/<name>.lua``)."""
    return files(__name__).joinpath(f"{name}.lua").read_text(encoding="utf-8")
