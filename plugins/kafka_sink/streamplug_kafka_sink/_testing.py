"""Private; kept only for benchmarks/bench_sink.py, which still imports this name. Tests
and benchmarks should use the runtime's own context, ``streamplug.testing.sink_context``;
delete this module once nothing imports it."""

from __future__ import annotations

from streamplug.testing import sink_context

StandaloneSinkContext = sink_context
