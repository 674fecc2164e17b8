"""streamplug plugin module of ``streamplug-kafka-common`` (entry point ``kafka_common``).

Registers the ``streamplug broker`` command. Everything else in this distribution is a
library (launcher, mock cluster, admin helpers, pytest fixtures) used directly.
"""

from __future__ import annotations

from collections.abc import Callable

from streamplug.plugins import CommandSpec, hookimpl
from streamplug_kafka_common import cli


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
