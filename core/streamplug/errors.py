"""The errors streamplug raises on purpose. Each names the thing, the value and the fix."""

from __future__ import annotations

from typing import Any


class StreamplugError(Exception):
    """Base of every error streamplug raises on purpose."""


class ConfigError(StreamplugError, ValueError):
    """A setting is missing, malformed or inconsistent.

    ``option`` names the setting; the message says what to do instead. Never put a secret's
    value into one: pass ``value=None`` for secret options.
    """

    def __init__(self, message: str, *, option: str | None = None) -> None:
        self.option = option
        super().__init__(message)

    # A worker process reports it to the driver pickled; the option must survive the trip.
    def __reduce__(self) -> tuple[Any, ...]:
        return (_config_error, (str(self), self.option), self.__dict__)


def _config_error(message: str, option: str | None) -> ConfigError:
    return ConfigError(message, option=option)


class PluginError(StreamplugError):
    """A plugin failed to load, or two plugins claim one name, or a name is unknown."""


class UnknownNameError(PluginError, LookupError):
    """A component name no installed plugin registers."""

    def __init__(self, kind: str, name: str, valid: list[str]) -> None:
        self.kind = kind
        self.name = name
        self.valid = valid
        names = ", ".join(sorted(valid)) or "(none installed)"
        super().__init__(f"no {kind} named {name!r} is installed; valid names: {names}")


class DuplicateNameError(PluginError):
    """Two or more installed plugins register one name of one kind."""

    def __init__(self, kind: str, name: str, *claimed_by: str) -> None:
        self.kind = kind
        self.name = name
        self.claimed_by = claimed_by
        both = "both " if len(claimed_by) == 2 else ""
        super().__init__(
            f"{kind} name {name!r} is registered by {both}{' and '.join(claimed_by)}; "
            f"uninstall all but one of them or disable the others with "
            f"STREAMPLUG_DISABLED_PLUGINS=<entry point name>"
        )


class JobFailedError(StreamplugError):
    """The job failed and its restart strategy gave up; ``__cause__`` is the last failure."""


class CheckpointError(StreamplugError):
    """A checkpoint could not be taken, written, committed or read."""


class JobCancelledError(StreamplugError):
    """The job was cancelled before it finished."""
