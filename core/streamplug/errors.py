"""The errors streamplug raises on purpose. Each names the thing, the value and the fix."""

from __future__ import annotations

from typing import Any


class StreamplugError(Exception):
    """Base of every error streamplug raises on purpose."""


class UnrecoverableError(StreamplugError):
    """A failure no restart can fix: rejected credentials, a denied permission, invalid
    configuration, a topic that does not exist. The job fails at once, whatever its
    restart strategy; the message says what to change.

    Connectors raise a subclass (or chain one as ``__cause__``) when they know a retry
    would only fail the same way; transient failures stay plain exceptions and restart.
    """


class ConfigError(UnrecoverableError, ValueError):
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


class AuthorizationError(UnrecoverableError):
    """The brokers (or another service) denied an operation to the configured principal:
    restarting with the same identity is denied the same way."""


class MissingResourceError(UnrecoverableError):
    """A topic (or another resource a job needs) does not exist and will not be created
    for it: create it, or enable automatic creation, then start the job again."""


def unrecoverable_cause(error: BaseException) -> BaseException | None:
    """The first failure in ``error``'s chain (``__cause__`` and ``__context__``) that no
    restart can fix, or None: an ``UnrecoverableError``, or an ``ImportError`` (a package
    missing from the environment stays missing). Wrappers such as a checkpoint failure keep
    the verdict of the failure they wrap."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        if isinstance(current, (UnrecoverableError, ImportError)):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


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
