"""The Tailgate wire contract in code: stream names, Redis keys, the line envelope, the
atomic history-and-publish step and the history epoch (`wire.epoch`).

Every component (the bridge, the gateway, the tail agent) imports this package and
nothing else writes or names the keys it defines. It depends on the standard library and
redis-py only, so the Salt formula can ship it next to the tail agent.
"""

from wire.envelope import Line, LineId, encode_line, frame_ids, parse_id
from wire.keys import Keys
from wire.names import StreamName, StreamNameError, parse_stream
from wire.publish import Checkpoint, Publisher, PublishPipe, StreamBatch

__all__ = [
    "Checkpoint",
    "Keys",
    "Line",
    "LineId",
    "PublishPipe",
    "Publisher",
    "StreamBatch",
    "StreamName",
    "StreamNameError",
    "encode_line",
    "frame_ids",
    "parse_id",
    "parse_stream",
]
