"""Serve an EmulatedOrg over TLS on 127.0.0.1 (an ephemeral port) from a background thread.

    with run_salesforce_emulator(EmulatedOrg()) as sf:
        client = simple_salesforce.Salesforce(instance_url=sf.instance_url, session_id=sf.token, session=...)

The certificate comes from a throwaway CA made with trustme; `ca_path` is its PEM, for `verify=`."""
from __future__ import annotations

import asyncio
import socket
import ssl
import tempfile
import threading
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import trustme
from aiohttp import web

from .org import EmulatedOrg
from .server import MAX_URI_BYTES, STOPPING_KEY, build_app


@dataclass
class EmulatorHandle:
    instance_url: str
    ca_path: str
    org: EmulatedOrg
    _stop: threading.Event = field(repr=False)
    _thread: threading.Thread = field(repr=False)

    @property
    def token(self) -> str:
        """The org's dev session token (Authorization: Bearer <token>)."""
        return self.org.dev_token

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


def _tls(directory: Path) -> tuple[ssl.SSLContext, str]:
    ca = trustme.CA()
    ca_path = directory / "salesforce-emulator-ca.pem"
    ca.cert_pem.write_to_path(str(ca_path))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(context)
    return context, str(ca_path)


def start_salesforce_emulator(
    org: EmulatedOrg | None = None, *, host: str = "127.0.0.1", port: int = 0, cert_dir: str | None = None
) -> EmulatorHandle:
    """Start serving in a daemon thread and return once the socket listens. Call `.stop()` when done."""
    org = org or EmulatedOrg()
    directory = Path(cert_dir or tempfile.mkdtemp(prefix="sf-emulator-"))
    context, ca_path = _tls(directory)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    bound_port = sock.getsockname()[1]
    ready, stop = threading.Event(), threading.Event()
    failure: list[BaseException] = []

    async def serve() -> None:
        # No access log (URLs carry usernames); request lines up to 2x the URI limit so 414 is ours to give.
        app = build_app(org)
        runner = web.AppRunner(
            app, handle_signals=False, access_log=None, shutdown_timeout=0, max_line_size=2 * MAX_URI_BYTES
        )
        await runner.setup()
        try:
            await web.SockSite(runner, sock, ssl_context=context).start()
            ready.set()
            while not stop.is_set():
                await asyncio.sleep(0.05)
        finally:
            app[STOPPING_KEY].set()
            await runner.cleanup()

    def run() -> None:
        try:
            asyncio.run(serve())
        except BaseException as exc:  # surfaced to the starting thread below
            failure.append(exc)
            ready.set()

    thread = threading.Thread(target=run, name=f"salesforce-emulator-{bound_port}", daemon=True)
    thread.start()
    ready.wait(timeout=30)
    if failure or not ready.is_set():
        raise RuntimeError("the Salesforce emulator did not start") from (failure[0] if failure else None)
    return EmulatorHandle(f"https://{host}:{bound_port}", ca_path, org, stop, thread)


@contextmanager
def run_salesforce_emulator(org: EmulatedOrg | None = None) -> Iterator[EmulatorHandle]:
    handle = start_salesforce_emulator(org)
    try:
        yield handle
    finally:
        handle.stop()
