"""Printing lines (`-o raw|json|pretty`) with a colour per source, and notices on stderr.

`pretty` (the default): ``HH:MM:SS.mmm <source> <text>``, the source left out when one
stream is open, coloured when stdout is a terminal (never with `--no-color` or when
`NO_COLOR` is set). `raw`: the text only. `json`: one object per line, with its stream,
id, ts, text and meta. Notices (gap, dropped, reconnects, a file tail's status) go to
stderr, so stdout holds lines only.
"""

from __future__ import annotations

import json
import sys
from datetime import datetime
from typing import Any, TextIO

# Eight ANSI colours that read on dark and light terminals, given to sources in order.
COLORS = ("36", "33", "35", "32", "34", "91", "96", "93")
FORMATS = ("pretty", "raw", "json")


def label(stream: str) -> str:
    """A short name for a stream: the topic (and sub), or minion:file, or salt:<what>."""
    kind, _, rest = stream.partition(":")
    if kind == "kafka":
        return rest
    if kind == "file":
        minion, _, path = rest.partition(":")
        return f"{minion}:{path.rsplit('/', 1)[-1]}"
    return stream


class Printer:
    """Where lines and notices go, and how they look."""

    def __init__(self, fmt: str, color: bool, sources: bool, out: TextIO | None = None, err: TextIO | None = None):
        self.fmt = fmt
        self.color = color
        self.sources = sources  # several streams (or a glob): say each line's source
        self.out = out or sys.stdout
        self.err = err or sys.stderr
        self._colors: dict[str, str] = {}
        self._width = 0

    def _source(self, stream: str) -> str:
        name = label(stream)
        self._width = max(self._width, min(len(name), 32))
        text = name.ljust(self._width)
        if not self.color:
            return text
        code = self._colors.setdefault(stream, COLORS[len(self._colors) % len(COLORS)])
        return f"\x1b[{code}m{text}\x1b[0m"

    def line(self, stream: str, line: dict[str, Any]) -> None:
        text = line.get("text", "")
        if self.fmt == "raw":
            self.out.write(f"{text}\n")
        elif self.fmt == "json":
            self.out.write(json.dumps({"stream": stream, **line}, ensure_ascii=False) + "\n")
        else:
            ts = line.get("ts")
            stamp = datetime.fromtimestamp(ts).strftime("%H:%M:%S.%f")[:-3] if isinstance(ts, int | float) else "--"
            if self.color:
                stamp = f"\x1b[2m{stamp}\x1b[0m"
            source = f"{self._source(stream)} " if self.sources else ""
            self.out.write(f"{stamp} {source}{text}\n")

    def flush(self) -> None:
        self.out.flush()

    def note(self, text: str) -> None:
        """A notice for the user, on stderr, after the lines printed so far."""
        self.out.flush()
        self.err.write(f"tailgate: {text}\n")
        self.err.flush()
