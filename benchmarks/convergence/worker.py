"""A provisioning worker in a process of its own, so that the scenario can kill it: the local Functions
host's queue trigger calling the registered provision_user function, as in Azure, until the process
ends. Its audit records go to the JSON-lines file named on the command line.

    python -m benchmarks.convergence.worker AUDIT_FILE   (settings from the environment)"""
from __future__ import annotations

import asyncio
import json
import logging
import os
import sys

from cli.demo import max_concurrent_calls
from emulators.functions_host import QueueTriggerHost, registered_functions
from shared.services import audit


class _AuditFile(logging.Handler):
    """Writes each audit record as one flushed line, so a kill loses at most the line being written."""

    def __init__(self, path: str) -> None:
        super().__init__(level=logging.INFO)
        self._file = open(path, "a", encoding="utf-8")

    def emit(self, record: logging.LogRecord) -> None:
        fields = audit.audit_fields(record)
        if fields is not None:
            self._file.write(json.dumps(fields) + "\n")
            self._file.flush()


async def main(audit_path: str) -> None:
    import function_app

    audit.audit_log.addHandler(_AuditFile(audit_path))
    audit.audit_log.setLevel(logging.INFO)
    provision = registered_functions(function_app.app)["provision_user"]
    host = QueueTriggerHost(os.environ["ServiceBusConnection"], os.environ["SERVICEBUS_QUEUE_NAME"], provision,
                            max_concurrent_calls=max_concurrent_calls())
    await host.run()


def read_audit_file(path: str | os.PathLike) -> list[dict]:
    """The records a (possibly killed) worker wrote; a line cut short by the kill is skipped."""
    records = []
    try:
        with open(path, encoding="utf-8") as lines:
            for line in lines:
                try:
                    records.append(json.loads(line))
                except ValueError:
                    continue
    except FileNotFoundError:
        return []
    return records


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING)
    asyncio.run(main(sys.argv[1]))
