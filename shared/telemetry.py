"""Application Insights through the Azure Monitor OpenTelemetry distro, when configured."""
import logging
import os

log = logging.getLogger(__name__)

# HTTP client instrumentations whose dependency spans would record full request URLs, and those URLs
# carry personal data: Salesforce SOQL queries name Usernames, Graph sendMail names the sender
# mailbox. Graph and Salesforce calls are counted by shared.services.metrics instead.
URL_RECORDING_INSTRUMENTATIONS = ("httpx", "httpx2", "requests", "urllib", "urllib3")

# Loggers that log every request URL (httpx at INFO: "HTTP Request: POST .../users/<upn>/sendMail";
# urllib3 at DEBUG: Salesforce's SOQL with Usernames, Aliases and nicknames); the Functions host
# forwards INFO from every logger, DEBUG when an operator turns it on.
URL_LOGGING_LOGGERS = ("httpx", "urllib3")


def configure_telemetry() -> bool:
    """Export logs, traces and metrics when APPLICATIONINSIGHTS_CONNECTION_STRING is set. Safe to call
    at import: it reads one environment variable and does nothing else without it."""
    for name in URL_LOGGING_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    if not os.environ.get("APPLICATIONINSIGHTS_CONNECTION_STRING"):
        return False
    from azure.monitor.opentelemetry import configure_azure_monitor  # imported only when used: ~0.5 s

    configure_azure_monitor(
        logger_name="shared",  # this app's loggers; the host sends its own
        instrumentation_options={name: {"enabled": False} for name in URL_RECORDING_INSTRUMENTATIONS},
    )
    return True
