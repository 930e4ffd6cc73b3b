"""Start Azurite's Table service on loopback for tests and local runs.

Azurite comes from a local npm install (scripts/install-azurite.sh puts it in .tools/azurite). Each call
starts a fresh in-memory instance on a free port, so parallel test runs never share state or clash.

    with run_azurite() as azurite:
        store = TableStateStore.from_connection_string(azurite.connection_string)
"""
from __future__ import annotations

import http.client
import socket
import subprocess
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
AZURITE_TABLE_BIN = REPO_ROOT / ".tools" / "azurite" / "node_modules" / ".bin" / "azurite-table"
INSTALL_SCRIPT = "scripts/install-azurite.sh"

# Azurite's built-in development account; the key is public and documented, not a secret.
ACCOUNT_NAME = "devstoreaccount1"
ACCOUNT_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="

_START_TIMEOUT_SECONDS = 30.0
_PORT_ATTEMPTS = 3


class AzuriteError(RuntimeError):
    pass


class Azurite:
    """A running azurite-table process. Use as a context manager or call stop()."""

    def __init__(self, process: subprocess.Popen[bytes], port: int, workspace: tempfile.TemporaryDirectory[str]) -> None:
        self._process = process
        self._workspace = workspace
        self.port = port
        self.table_endpoint = f"http://127.0.0.1:{port}/{ACCOUNT_NAME}"
        self.connection_string = (
            f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT_NAME};AccountKey={ACCOUNT_KEY};"
            f"TableEndpoint={self.table_endpoint};"
        )

    def stop(self) -> None:
        if self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        self._workspace.cleanup()

    def __enter__(self) -> "Azurite":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def run_azurite() -> Azurite:
    """Start azurite-table (in-memory) on 127.0.0.1 and return once it answers HTTP."""
    if not AZURITE_TABLE_BIN.exists():
        raise AzuriteError(f"Azurite is not installed at {AZURITE_TABLE_BIN}; run {INSTALL_SCRIPT} first")
    failures = []
    # Azurite reports ":0" when given port 0, so pick a free port ourselves and retry if another
    # process grabs it before Azurite binds.
    for _ in range(_PORT_ATTEMPTS):
        workspace = tempfile.TemporaryDirectory(prefix="azurite-")
        port = _free_port()
        log = Path(workspace.name) / "azurite.log"
        with log.open("wb") as log_file:
            process = subprocess.Popen(
                [
                    str(AZURITE_TABLE_BIN),
                    "--inMemoryPersistence", "--skipApiVersionCheck", "--loose", "--disableTelemetry", "--silent",
                    "--tableHost", "127.0.0.1", "--tablePort", str(port),
                ],
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                cwd=workspace.name,
            )
        azurite = Azurite(process, port, workspace)
        if _wait_until_answering(process, port):
            return azurite
        output = log.read_text(errors="replace").strip()
        azurite.stop()
        failures.append(f"port {port}: {output[-500:] or 'no output'}")
        if "EADDRINUSE" not in output:
            break
    raise AzuriteError("azurite-table did not start: " + "; ".join(failures))


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _wait_until_answering(process: subprocess.Popen[bytes], port: int) -> bool:
    """True once our process serves HTTP on port with Azurite's Server header (so a stranger that took
    the port does not count); False if it exits or the start timeout passes."""
    deadline = time.monotonic() + _START_TIMEOUT_SECONDS
    while time.monotonic() < deadline and process.poll() is None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
        try:
            connection.request("GET", f"/{ACCOUNT_NAME}/Tables")
            server = connection.getresponse().getheader("Server", "")
            if server.startswith("Azurite-Table") and process.poll() is None:
                return True
        except OSError:
            pass
        finally:
            connection.close()
        time.sleep(0.05)
    return False
