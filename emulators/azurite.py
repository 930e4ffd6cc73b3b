"""Start Azurite's Table service on loopback for tests and local runs.

Azurite comes from a local npm install (scripts/install-azurite.sh puts it in .tools/azurite). Each call
starts a fresh in-memory instance on a free port, so parallel test runs never share state or clash.

    with run_azurite() as azurite:
        store = TableStateStore.from_connection_string(azurite.connection_string)

run_azurite(tls=True) serves HTTPS with a throwaway CA (its PEM at .ca_file) and accepts OAuth bearer
tokens (Azurite's "basic" check: issuer, audience and lifetime, no signature), the way Azure is reached
with a managed identity and no shared key.
"""
from __future__ import annotations

import http.client
import socket
import ssl
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

    def __init__(
        self, process: subprocess.Popen[bytes], port: int, workspace: tempfile.TemporaryDirectory[str], ca_file: Path | None
    ) -> None:
        self._process = process
        self._workspace = workspace
        self.port = port
        self.ca_file = ca_file
        scheme = "https" if ca_file else "http"
        self.table_endpoint = f"{scheme}://127.0.0.1:{port}/{ACCOUNT_NAME}"
        self.connection_string = (
            f"DefaultEndpointsProtocol={scheme};AccountName={ACCOUNT_NAME};AccountKey={ACCOUNT_KEY};"
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


def run_azurite(*, tls: bool = False) -> Azurite:
    """Start azurite-table (in-memory) on 127.0.0.1 and return once it answers HTTP(S)."""
    if not AZURITE_TABLE_BIN.exists():
        raise AzuriteError(f"Azurite is not installed at {AZURITE_TABLE_BIN}; run {INSTALL_SCRIPT} first")
    failures = []
    # Azurite reports ":0" when given port 0, so pick a free port ourselves and retry if another
    # process grabs it before Azurite binds.
    for _ in range(_PORT_ATTEMPTS):
        workspace = tempfile.TemporaryDirectory(prefix="azurite-")
        port = _free_port()
        log = Path(workspace.name) / "azurite.log"
        ca_file = _write_tls_identity(Path(workspace.name)) if tls else None
        tls_options = ["--cert", str(ca_file.with_name("server.pem")), "--key", str(ca_file.with_name("server.key")),
                       "--oauth", "basic"] if ca_file else []
        with log.open("wb") as log_file:
            process = subprocess.Popen(
                [
                    str(AZURITE_TABLE_BIN),
                    "--inMemoryPersistence", "--skipApiVersionCheck", "--loose", "--disableTelemetry", "--silent",
                    "--tableHost", "127.0.0.1", "--tablePort", str(port), *tls_options,
                ],
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                cwd=workspace.name,
            )
        azurite = Azurite(process, port, workspace, ca_file)
        if _wait_until_answering(process, port, ca_file):
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


def _write_tls_identity(directory: Path) -> Path:
    """A throwaway CA and a server certificate for 127.0.0.1; returns the CA's PEM path."""
    import trustme  # a development dependency, needed only for TLS runs

    authority = trustme.CA()
    server = authority.issue_cert("127.0.0.1")
    server.cert_chain_pems[0].write_to_path(str(directory / "server.pem"))
    server.private_key_pem.write_to_path(str(directory / "server.key"))
    authority.cert_pem.write_to_path(str(directory / "ca.pem"))
    return directory / "ca.pem"


def _wait_until_answering(process: subprocess.Popen[bytes], port: int, ca_file: Path | None) -> bool:
    """True once our process serves HTTP on port with Azurite's Server header (so a stranger that took
    the port does not count); False if it exits or the start timeout passes."""
    deadline = time.monotonic() + _START_TIMEOUT_SECONDS
    while time.monotonic() < deadline and process.poll() is None:
        connection = (
            http.client.HTTPSConnection("127.0.0.1", port, timeout=2, context=ssl.create_default_context(cafile=ca_file))
            if ca_file
            else http.client.HTTPConnection("127.0.0.1", port, timeout=2)
        )
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
