"""streamplug-ray: the ``ray`` runtime, each worker slot of a job a Ray actor.

    env.set_runtime("ray")                                # RAY_ADDRESS, else a local Ray
    env.set_runtime("ray", address="ray://head:10001", placement="PACK")

Importing this package does not import Ray; ``RayRuntime`` does, on first use.
"""

from __future__ import annotations

from typing import Any

__all__ = ["RayRuntime"]


def __getattr__(name: str) -> Any:
    if name == "RayRuntime":
        from streamplug_ray.runtime import RayRuntime

        return RayRuntime
    raise AttributeError(name)
