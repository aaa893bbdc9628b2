"""Canonical text and strict JSON: the one rule for text entering Tailgate.

The rule (docs/PROTOCOL.md, "Canonical text"), applied to every string (keys included)
and every number of a value:

* a surrogate code point (U+D800-U+DFFF) that is not half of a pair becomes U+FFFD; a
  pair held as two code points becomes the one character it encodes; two object keys
  that become equal keep the last one's value. (A JSON escape such as ``\\ud800``
  decodes to such a code point; UTF-8 cannot carry it.)
* a number JSON cannot hold (NaN, Infinity, -Infinity, which Python's json reads from
  the bare tokens and from a literal too large for a double such as ``1e999``) becomes
  the string ``"NaN"``, ``"Infinity"`` or ``"-Infinity"``;
* a JSON value is nested at most `MAX_DEPTH` levels (producers keep a deeper value as
  text, so every reader can parse what is stored).

Producers apply it where text enters, through the line envelope's encoders (wire/envelope.py),
which every producer uses; the gateway's command parser refuses a lone surrogate instead
(wire/names.py, gateway/http/protocol.py). Applying it to what is already canonical costs
nothing: the strict encoder is tried first, and a value is rewritten only when it refuses.
"""

from __future__ import annotations

import json
import re
from typing import Any

MAX_DEPTH = 64

_SURROGATE = re.compile("[\ud800-\udfff]")
_COMPACT = (",", ":")


def has_lone_surrogate(text: str) -> bool:
    """Whether `text` holds a surrogate code point (which no UTF-8 text can carry)."""
    return not text.isascii() and _SURROGATE.search(text) is not None


def canonical_str(text: str) -> str:
    """`text` with every lone surrogate replaced by U+FFFD and every pair joined."""
    if not has_lone_surrogate(text):
        return text
    return text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")


def canonical(value: Any) -> Any:
    """`value` (anything `json.dumps` takes) with the rule applied to every string and number in it.

    One round trip through the C encoder and decoder, not a walk in Python: surrogates only
    ever stand inside JSON strings, so replacing them in the encoded text is replacing them
    in every string, keys included; the tokens NaN, Infinity and -Infinity read back as strings."""
    text = json.dumps(value, ensure_ascii=False, separators=_COMPACT)
    return json.loads(canonical_str(text), parse_constant=str)


def is_canonical(value: Any) -> bool:
    """Whether the rule would change nothing in `value` (as fast as encoding it once)."""
    try:
        json.dumps(value, ensure_ascii=False, allow_nan=False).encode("utf-8")
    except ValueError:  # NaN or an infinity, or a lone surrogate (UnicodeEncodeError)
        return False
    return True


def json_text(value: Any) -> str:
    """Compact JSON text of `value` with no number JSON cannot hold (per the rule).

    Lone surrogates may remain, as characters: the text cannot be encoded as UTF-8 then,
    which is where `dumpb` and the envelope's encoders notice them."""
    try:
        return json.dumps(value, ensure_ascii=False, separators=_COMPACT, allow_nan=False)
    except ValueError:  # NaN or an infinity somewhere in it
        return json.dumps(canonical(value), ensure_ascii=False, separators=_COMPACT, allow_nan=False)


def utf8(text: str) -> bytes:
    """`text` as UTF-8, lone surrogates replaced per the rule (free when there are none)."""
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        return canonical_str(text).encode("utf-8")


def dumpb(value: Any) -> bytes:
    """Strict, canonical, compact JSON of `value` as UTF-8: what every writer of JSON uses."""
    try:
        return json_text(value).encode("utf-8")
    except UnicodeEncodeError:  # rewrite the value, not the text: two keys may become one
        return json_text(canonical(value)).encode("utf-8")


def nested_deeper(raw: bytes | str, value: Any, limit: int = MAX_DEPTH) -> bool:
    """Whether `value`, parsed from the JSON `raw`, nests containers deeper than `limit`.

    Counting brackets in `raw` (fast, in C) settles it for nearly every value; only a value
    with more brackets than the limit is walked."""
    opening = raw.count(b"{") + raw.count(b"[") if isinstance(raw, bytes) else raw.count("{") + raw.count("[")
    if opening <= limit:
        return False
    level: list[Any] = [value]
    for _ in range(limit):
        level = [
            child
            for item in level
            if isinstance(item, dict | list)
            for child in (item.values() if isinstance(item, dict) else item)
        ]
        if not level:
            return False
    return any(isinstance(item, dict | list) for item in level)
