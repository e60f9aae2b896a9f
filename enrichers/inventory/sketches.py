"""DDSketch helpers: persistence as base64 protobuf, quantiles in milliseconds.

(Each enricher package keeps its own copy: enrichers share data only through State.)
"""

from __future__ import annotations

import base64
from typing import Any

from ddsketch.pb.ddsketch_pb2 import DDSketch as DDSketchMessage
from ddsketch.pb.proto import DDSketchProto


def sketch_dump(s: Any) -> str:
    return base64.b64encode(DDSketchProto.to_proto(s).SerializeToString()).decode()


def sketch_load(text: str) -> Any:
    msg = DDSketchMessage()
    msg.ParseFromString(base64.b64decode(text))
    return DDSketchProto.from_proto(msg)


def quantile_ms(s: Any, q: float) -> float | None:
    """Quantile ``q`` of a sketch of seconds, in milliseconds; ``None`` when empty."""
    if s.count == 0:
        return None
    v = s.get_quantile_value(q)
    return None if v is None else round(v * 1000.0, 3)
