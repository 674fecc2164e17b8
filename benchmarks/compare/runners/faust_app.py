"""Faust (faust-streaming): an agent on the input topic that sends each (key, value) on to
the output topic, raw bytes, ``processing_guarantee`` at_least_once or exactly_once
(``mode``), commit interval 1 s, Faust's own consumer and producer (aiokafka). Faust
streams forever; after ``records`` the agent stops the app, which flushes the producer and
commits, and the run ends."""

from __future__ import annotations

import asyncio
import os
import uuid
from typing import Any

import _common
import faust


def main() -> None:
    s = _common.spec()
    records = int(s["records"])
    app = faust.App(
        f"bench-faust-{uuid.uuid4().hex[:12]}",
        broker=f"kafka://{s['bootstrap']}",
        processing_guarantee=("exactly_once" if s["mode"] == "EXACTLY_ONCE" else "at_least_once"),
        broker_commit_interval=s.get("checkpoint_ms", 1000) / 1000,
        consumer_auto_offset_reset="earliest",
        key_serializer="raw",
        value_serializer="raw",
        topic_allow_declare=False,
        topic_disable_leader=True,
        web_enabled=False,
        store="memory://",
        datadir=s["workdir"],
    )
    source = app.topic(s["in"], key_type=bytes, value_type=bytes)
    sink = app.topic(s["out"], key_type=bytes, value_type=bytes)
    seen = [0]
    window: list[_common.Window] = []

    @app.agent(source)
    async def forward(stream: Any) -> None:
        async for key, value in stream.items():
            await sink.send(key=key, value=value)
            seen[0] += 1
            if seen[0] == records:
                asyncio.get_event_loop().call_soon(stop)

    pending: list[asyncio.Future[None]] = []

    def stop() -> None:
        pending.append(asyncio.ensure_future(finish()))

    async def finish() -> None:
        # The app's stop flushes the producer and commits; the worker around it would
        # then wait for a signal, so the run ends here.
        await app.stop()
        window[0].report("faust-streaming", processed=seen[0])
        os._exit(0)

    worker = faust.Worker(app, loglevel=os.environ.get("FAUST_LOGLEVEL", "WARNING"), quiet=True)
    window.append(_common.Window())
    worker.execute_from_commandline()
    raise SystemExit("the Faust worker ended before the records were processed")


if __name__ == "__main__":
    main()
