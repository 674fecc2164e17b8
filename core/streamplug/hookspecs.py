"""Former home of the hookspecs, kept for code that imports them from here; they live in
``streamplug.plugin.spec``."""

from streamplug.plugin.spec import (
    streamplug_checkpoint_aborted,
    streamplug_checkpoint_completed,
    streamplug_checkpoint_started,
    streamplug_configure_client,
    streamplug_job_finished,
    streamplug_job_restarting,
    streamplug_job_started,
    streamplug_register_commands,
    streamplug_register_connectors,
    streamplug_register_formats,
    streamplug_register_offsets_initializers,
    streamplug_register_partitioners,
    streamplug_register_runtimes,
)

__all__ = [
    "streamplug_checkpoint_aborted",
    "streamplug_checkpoint_completed",
    "streamplug_checkpoint_started",
    "streamplug_configure_client",
    "streamplug_job_finished",
    "streamplug_job_restarting",
    "streamplug_job_started",
    "streamplug_register_commands",
    "streamplug_register_connectors",
    "streamplug_register_formats",
    "streamplug_register_offsets_initializers",
    "streamplug_register_partitioners",
    "streamplug_register_runtimes",
]
