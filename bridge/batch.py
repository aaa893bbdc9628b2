"""Turning one poll's records into publish calls (pure; the hot path of the bridge).

Each partition's records become one or more atomic publish calls, each with the
partition's checkpoint, so Redis records the newest offset in the same step that writes
the lines. A call is closed at a message boundary once it holds `max_lines` lines: all
lines of one message share its offset, so a message is never split across two calls
(the second would be skipped as already published).
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field

from bridge.kafkaclient import Record, TopicPartition
from bridge.route import Route
from wire import Checkpoint, StreamBatch
from wire.envelope import JSON_ESCAPED, encode_lines, encode_text, verbatim_prefix

Call = tuple[list[StreamBatch], Checkpoint]


@dataclass
class Work:
    """What one poll produced: the publish calls plus what the metrics need."""

    calls: list[Call] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)
    messages_in: Counter[str] = field(default_factory=Counter)  # per topic
    bytes_in: Counter[str] = field(default_factory=Counter)  # per topic
    lines_in: Counter[str] = field(default_factory=Counter)  # per topic
    # (topic, partition) -> (first offset, last offset, oldest and newest record timestamp in s)
    spans: dict[tuple[str, int], tuple[int, int, float, float]] = field(default_factory=dict)
    # partitions whose log started over or was truncated -> the offset their Redis checkpoint is lowered to
    resets: dict[TopicPartition, int] = field(default_factory=dict)
    # False once published when no replica acknowledged it in time (redis.min_replicas_acked)
    acked: bool = True

    def lines_out(self) -> tuple[Counter[str], Counter[str]]:
        """Lines and bytes bound for each stream."""
        lines: Counter[str] = Counter()
        size: Counter[str] = Counter()
        for batches, _ in self.calls:
            for b in batches:
                lines[b.stream] += len(b.lines)
                size[b.stream] += sum(len(frag) for _, frag in b.lines)
        return lines, size


def _timestamp(ms: int) -> float:
    return ms / 1000.0 if ms >= 0 else time.time()


def add_partition(
    work: Work, route: Route, group: str, topic: str, partition: int, records: list[Record], max_lines: int
) -> None:
    """Decode, route and encode one partition's records into `work`.

    The commonest record, one ASCII line needing no JSON escape, goes into its fragment
    as raw bytes (`verbatim_prefix`): no escape means no newline or ``\r``, and no
    quote, so it cannot be a JSON object for ``auto``. Anything else takes the decoder.
    Inlined rather than a function call per record: this loop is most of the bridge's
    own CPU time."""
    errors = work.errors
    decoder = route.decoder
    decode = decoder.decode
    plain_line = decoder.plain_line
    verbatim = decoder.format != "json"
    max_bytes, escaped = decoder.max_bytes, JSON_ESCAPED
    prefix_ms, prefix = None, b""
    streams_for = route.streams
    plain = not route.split_by
    whole = route.whole
    checkpoint = Checkpoint(group, topic, partition)
    batches: dict[str, StreamBatch] = {}  # split routes: per stream
    whole_batch = StreamBatch(whole)  # unsplit routes: the one stream
    whole_lines = whole_batch.lines
    in_call = 0
    lines_in = bytes_in = 0
    for rec in records:
        value = rec.value
        if value is not None:
            bytes_in += len(value)
        ms = rec.timestamp
        if (
            verbatim
            and value
            and ms >= 0
            and value.isascii()
            and len(value) <= max_bytes
            and len(value.translate(None, escaped)) == len(value)
        ):
            if ms != prefix_ms:
                prefix_ms, prefix = ms, verbatim_prefix(ms / 1000.0)
            meta = None
            one = (rec.offset, prefix + value + b'"')
            count = 1
        elif (text := plain_line(value)) is not None:  # one plain line, encoded without a list
            meta = None
            one = (rec.offset, encode_text(ms / 1000.0 if ms >= 0 else time.time(), text))
            count = 1
        else:
            texts, meta = decode(value, errors)
            if not texts:
                continue
            offset = rec.offset
            fragments = encode_lines(ms / 1000.0 if ms >= 0 else time.time(), texts, meta)
            if len(fragments) == 1:
                one = (offset, fragments[0])
            else:
                one = None
                encoded = [(offset, f) for f in fragments]
            count = len(texts)
        lines_in += count
        if plain:
            if one is not None:
                whole_lines.append(one)
            else:
                whole_lines.extend(encoded)
        else:
            for stream in streams_for(rec.key, meta, errors):
                batch = batches.get(stream)
                if batch is None:
                    batch = batches[stream] = StreamBatch(stream)
                if one is not None:
                    batch.lines.append(one)
                else:
                    batch.lines.extend(encoded)
        in_call += count
        if in_call >= max_lines:
            work.calls.append(([whole_batch] if plain else list(batches.values()), checkpoint))
            whole_batch = StreamBatch(whole)
            whole_lines = whole_batch.lines
            batches = {}
            in_call = 0
    if plain and whole_lines:
        work.calls.append(([whole_batch], checkpoint))
    elif batches:
        work.calls.append((list(batches.values()), checkpoint))
    work.messages_in[topic] += len(records)
    work.bytes_in[topic] += bytes_in
    work.lines_in[topic] += lines_in
    first, last = records[0], records[-1]
    work.spans[(topic, partition)] = (
        first.offset,
        last.offset,
        _timestamp(first.timestamp),
        _timestamp(last.timestamp),
    )
