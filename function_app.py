"""The Function App: create it, register the blueprints, set up telemetry. Nothing else.

Clients are built lazily on first use (shared.bootstrap), never at import: import time is when the
worker indexes the app, and a failure there would take every function down."""
import azure.functions as func

from functions import (detect_changes, graph_lifecycle, graph_notifications, manage_subscriptions, notify_failures,
                       provision_on_demand, provision_user)
from shared.telemetry import configure_telemetry

configure_telemetry()

app = func.FunctionApp()
for blueprint_module in (detect_changes, provision_user, notify_failures, graph_notifications, provision_on_demand,
                         manage_subscriptions, graph_lifecycle):
    app.register_functions(blueprint_module.bp)
