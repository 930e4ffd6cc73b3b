"""Application Insights through the Azure Monitor OpenTelemetry distro, when configured."""
import logging
import os

log = logging.getLogger(__name__)


def configure_telemetry() -> bool:
    """Export logs, traces and metrics when APPLICATIONINSIGHTS_CONNECTION_STRING is set. Safe to call
    at import: it reads one environment variable and does nothing without it."""
    if not os.environ.get("APPLICATIONINSIGHTS_CONNECTION_STRING"):
        return False
    from azure.monitor.opentelemetry import configure_azure_monitor  # imported only when used: ~0.5 s

    configure_azure_monitor(logger_name="shared")  # this app's loggers; the host sends its own
    return True
