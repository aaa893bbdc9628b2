"""The Lua scripts in wire/lua/: each loads through importlib.resources, starts with a
comment saying what it does, and names its KEYS and ARGV as locals at its top; the
Python names callers use are those files' text."""

from __future__ import annotations

import re
from importlib.resources import files

import pytest

from wire import lifecycle, publish
from wire.lua import NAMES, script

pytestmark = pytest.mark.unit  # nothing here starts a process

LUA = files("wire.lua")
INDEXED = re.compile(r"\b(KEYS|ARGV)\[(\d+)\]")


def test_every_lua_file_is_named_and_every_name_has_a_file() -> None:
    on_disk = sorted(p.name[: -len(".lua")] for p in LUA.iterdir() if p.name.endswith(".lua"))
    assert on_disk == sorted(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_each_script_loads_with_a_header_and_names_its_keys_and_argv_at_the_top(name: str) -> None:
    text = script(name)
    assert text == LUA.joinpath(f"{name}.lua").read_text(encoding="utf-8")
    lines = text.splitlines()
    assert lines[0].startswith(f"-- {name}: "), "a header comment saying what the script does"
    header = 0
    while lines[header].startswith("--"):
        header += 1
    # the locals block: right after the header, until the first blank line
    end = lines.index("", header)
    top = lines[header:end]
    assert top and all(line.startswith("local ") for line in top), top
    assert any("KEYS[1]" in line for line in top)
    # every literal KEYS[n] / ARGV[n] is read once, in that block, into a named local
    body = "\n".join(lines[end:])
    assert not INDEXED.search(body), INDEXED.search(body)
    for line in top:
        for match in INDEXED.finditer(line):
            assert re.match(rf"local [\w, ]*=.*{re.escape(match.group(0))}", line), line
    uses = [m.group(0) for m in INDEXED.finditer("\n".join(top))]
    assert len(uses) == len(set(uses)), "each KEYS/ARGV slot is named once"


def test_the_python_names_are_the_files_text() -> None:
    assert script("publish") == publish.PUBLISH_LUA
    assert script("want") == lifecycle.WANT_LUA
    assert script("unwant") == lifecycle.UNWANT_LUA
    assert script("wanted") == lifecycle.WANTED_LUA
    assert script("release") == lifecycle.RELEASE_LUA
