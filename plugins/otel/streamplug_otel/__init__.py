"""streamplug-otel: OpenTelemetry trace context and messaging spans through streamplug
jobs. Installed, it takes part in every job through its entry point (``otel``); its
options come from ``configure(...)`` or the ``STREAMPLUG_OTEL`` environment variable."""

from streamplug_otel.options import ENV, OtelOptions, configure, current

__all__ = ["ENV", "OtelOptions", "configure", "current"]
