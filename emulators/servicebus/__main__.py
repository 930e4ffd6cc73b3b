"""Run the Service Bus stand-in on its own for local work:

    python -m emulators.servicebus --queue provision-users --port 5672

prints the connection string to put in `ServiceBusConnection` and runs until interrupted or terminated."""
from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading

from .entities import QueueConfig
from .server import run_servicebus_emulator


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m emulators.servicebus", description=__doc__.splitlines()[0])
    parser.add_argument("--queue", action="append", required=True, help="a queue to create (repeatable)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--max-delivery-count", type=int, default=10)
    parser.add_argument("--lock-duration", type=float, default=30.0, help="seconds")
    parser.add_argument("--duplicate-detection-window", type=float, default=600.0, help="seconds; 0 turns it off")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    queues = [
        QueueConfig(name, args.max_delivery_count, args.lock_duration, args.duplicate_detection_window or None)
        for name in args.queue
    ]
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # leave the `with` block: stop cleanly
    with run_servicebus_emulator(queues, host=args.host, port=args.port) as bus:
        print(bus.connection_string, flush=True)
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
