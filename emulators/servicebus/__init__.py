"""A wire-level AMQP 1.0 stand-in for Azure Service Bus queues, for local runs and tests (not deployed).

    with run_servicebus_emulator(queues=["reconcile"]) as bus:
        ServiceBusClient.from_connection_string(bus.connection_string)
"""
from .entities import QueueConfig, SeenMessage
from .server import ServiceBusEmulator, run_servicebus_emulator

__all__ = ["QueueConfig", "SeenMessage", "ServiceBusEmulator", "run_servicebus_emulator"]
