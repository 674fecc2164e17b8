"""Quix Streams: topic -> ``apply(identity)`` -> ``to_topic``, at-least-once or exactly-once
(``mode``), commit interval 1 s, Quix's own consumer and producer settings. Quix streams
forever; ``app.run(count=records)`` stops it after that many outputs, with its final commit."""

from __future__ import annotations

import uuid
from typing import Any

import _common
from quixstreams import Application


def identity(value: Any) -> Any:
    return value


def main() -> None:
    s = _common.spec()
    app = Application(
        broker_address=s["bootstrap"],
        consumer_group=f"bench-quix-{uuid.uuid4().hex}",
        auto_offset_reset="earliest",
        processing_guarantee="exactly-once" if s["mode"] == "EXACTLY_ONCE" else "at-least-once",
        commit_interval=s.get("checkpoint_ms", 1000) / 1000,
        loglevel="WARNING",
        use_changelog_topics=False,
        state_dir=s["workdir"],
    )
    source = app.topic(s["in"], value_deserializer="bytes", key_deserializer="bytes")
    sink = app.topic(s["out"], value_serializer="bytes", key_serializer="bytes")
    sdf = app.dataframe(source)
    sdf = sdf.apply(identity)
    sdf.to_topic(sink)
    window = _common.Window()
    app.run(count=int(s["records"]), collect=False)
    window.report("quixstreams")


if __name__ == "__main__":
    main()
