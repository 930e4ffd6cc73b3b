"""Sending simple-salesforce's login requests to the emulator. simple-salesforce builds login URLs as
https://{domain}.salesforce.com and nothing else, so a test or the canary mounts this transport on a
requests session for the login hosts it expects; the requests keep their path and TLS verification."""
from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter

from .runner import EmulatorHandle


class ToEmulator(HTTPAdapter):
    """simple-salesforce builds login URLs as https://{domain}.salesforce.com and nothing else; this
    transport sends those requests to the emulator instead (same path, same TLS verification)."""

    def __init__(self, emulator_url: str, seen: list[requests.PreparedRequest]) -> None:
        super().__init__()
        self.emulator_url = emulator_url
        self.seen = seen

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        self.seen.append(request.copy())
        parts = urlsplit(request.url or "")
        request.url = self.emulator_url + parts.path + (f"?{parts.query}" if parts.query else "")
        return super().send(request, **kwargs)


def login_session(emulator: EmulatorHandle, *login_hosts: str,
                  seen: list[requests.PreparedRequest] | None = None) -> requests.Session:
    """A session whose requests to the login hosts reach the emulator; `seen` collects those requests."""
    session = requests.Session()
    session.trust_env = False
    session.verify = emulator.ca_path
    for host in login_hosts:
        session.mount(f"https://{host}/", ToEmulator(emulator.instance_url, seen if seen is not None else []))
    return session
