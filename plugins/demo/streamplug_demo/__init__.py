"""The ``streamplug demo`` command and the functions its pipelines (and the example
pipeline files) use."""

from streamplug_demo.demo import DemoCheck, DemoResult, DemoSettings, check_output, run_demo
from streamplug_demo.transforms import enrich, is_large, make_event, only_currency, split_items

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
