"""Turning a Kafka message value into log lines.

A value is one line or a chunk of lines (split on newlines): bad UTF-8 becomes
replacement characters and over-long lines are truncated with a visible marker.
Empty values and tombstones yield no lines and are counted by the caller.
"""

from __future__ import annotations

from wire.envelope import clean_text


def split_lines(value: bytes | None, max_line_bytes: int) -> list[str]:
    """The display lines in a message value (a single line or a newline-separated chunk)."""
    if not value:
        return []
    parts = value.split(b"\n")
    if parts and parts[-1] == b"":
        parts.pop()
    return [clean_text(p[:-1] if p.endswith(b"\r") else p, max_line_bytes) for p in parts]
