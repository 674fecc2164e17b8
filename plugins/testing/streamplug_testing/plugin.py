"""streamplug plugin module of ``streamplug-testing`` (entry point ``testing``).

Registers the ``streamplug broker`` command. Everything else in this distribution is a
library (launcher, mock cluster, pytest fixtures) used directly.
"""

from __future__ import annotations

from collections.abc import Callable

from streamplug.plugin import CommandSpec, hookimpl
from streamplug_testing import cli


@hookimpl
def streamplug_register_commands(register: Callable[[CommandSpec], None]) -> None:
    register(
        CommandSpec(
            name="broker",
            help="run a local Kafka cluster for development (real Kafka or --embedded mock)",
            configure=cli.configure,
            run=cli.run,
        )
    )
