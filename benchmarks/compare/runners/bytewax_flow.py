"""Bytewax: ``kafka input`` (reads every partition to its end, ``tail=False``) ->
``map(identity)`` -> ``kafka output``, one worker, no recovery store: Bytewax commits no
offsets and its output is flushed at the end, so the job gives no delivery guarantee
across a crash (compared with the NONE hand loop). Bytewax's default settings."""

from __future__ import annotations

from typing import Any

import _common
import bytewax.operators as op
from bytewax.connectors.kafka import operators as kop
from bytewax.dataflow import Dataflow
from bytewax.testing import run_main


def identity(msg: Any) -> Any:
    return msg


def main() -> None:
    s = _common.spec()
    flow = Dataflow("bench")
    read = kop.input("in", flow, brokers=[s["bootstrap"]], topics=[s["in"]], tail=False)
    mapped = op.map("identity", read.oks, identity)
    kop.output("out", mapped, brokers=[s["bootstrap"]], topic=s["out"])
    window = _common.Window()
    run_main(flow)
    window.report("bytewax")


if __name__ == "__main__":
    main()
