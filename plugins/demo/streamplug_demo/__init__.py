"""The ``streamplug demo`` command and the functions its pipelines (and the example
pipeline files) use.

The demo runner (``run_demo`` and its result types) is imported on first use: the
``streamplug`` command loads this package's plugin module at every start, and pipelines
import ``streamplug_demo.transforms``, neither of which should pay for the runner's imports.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from streamplug_demo.transforms import enrich, is_large, make_event, only_currency, split_items

if TYPE_CHECKING:
    from streamplug_demo.demo import DemoCheck, DemoResult, DemoSettings, check_output, run_demo

__all__ = [
    "DemoCheck",
    "DemoResult",
    "DemoSettings",
    "check_output",
    "enrich",
    "is_large",
    "make_event",
    "only_currency",
    "run_demo",
    "split_items",
]

_RUNNER = {"DemoCheck", "DemoResult", "DemoSettings", "check_output", "run_demo"}


def __getattr__(name: str) -> Any:
    if name in _RUNNER:
        from streamplug_demo import demo

        return getattr(demo, name)
    raise AttributeError(f"module 'streamplug_demo' has no attribute {name!r}")
