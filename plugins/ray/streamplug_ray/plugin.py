"""streamplug plugin module of ``streamplug-ray`` (entry point ``ray``): the ``ray`` runtime.

Every plugin host imports this module (every CLI call, every worker process), so it must
not import Ray itself: that takes about a second. The factory does, when a job asks for
the runtime.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from streamplug.plugin.records import RuntimeSpec
from streamplug.plugins import hookimpl


def _ray_runtime(**options: Any) -> Any:
    from streamplug_ray.runtime import RayRuntime

    return RayRuntime(**options)


@hookimpl
def streamplug_register_runtimes(register: Callable[[RuntimeSpec], None]) -> None:
    register(
        RuntimeSpec(
            "ray",
            _ray_runtime,
            "one Ray actor per worker slot, spread over a Ray cluster (streamplug-ray)",
        )
    )
