"""Building the msgraph-sdk client: base URL (national clouds are a base URL away), the retry
middleware with a configurable backoff, and the dev-only static-token credential.

In Azure the credential is azure.identity.aio's ManagedIdentityCredential or DefaultAzureCredential;
`StaticTokenCredential` exists for the local emulator and is refused for any non-loopback host."""
from __future__ import annotations

import random
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx
from azure.core.credentials import AccessToken
from azure.core.credentials_async import AsyncTokenCredential
from kiota_authentication_azure.azure_identity_authentication_provider import AzureIdentityAuthenticationProvider
from kiota_http.kiota_client_factory import KiotaClientFactory
from kiota_http.observability_options import ObservabilityOptions
from kiota_http.middleware import RetryHandler
from kiota_http.middleware.options import RetryHandlerOption, UrlReplaceHandlerOption
from msgraph import GraphRequestAdapter, GraphServiceClient
from msgraph._version import VERSION as MSGRAPH_VERSION
from msgraph_core import APIVersion, GraphClientFactory
from msgraph_core.middleware import GraphTelemetryHandler
from msgraph_core.middleware.options import GraphTelemetryHandlerOption

from shared.core.errors import ConfigurationError
from shared.core.loopback import is_loopback_host


@dataclass(frozen=True, slots=True)
class GraphRetryPolicy:
    """kiota retries 429/503/504. A Retry-After header is honoured as sent (a delay of 180 s or more
    is not retried: the error surfaces with retry_after set); otherwise it waits
    backoff_seconds * 2^n plus up to backoff_seconds of jitter."""

    max_retries: int = 3
    backoff_seconds: float = 2.0

    def backoff(self, retry_count: int) -> float:
        """The wait before retry number `retry_count` (from 0) when the server named none."""
        return self.backoff_seconds * 2**retry_count + random.uniform(0, self.backoff_seconds)


# kiota's limit: a Retry-After this long (seconds) or longer is not waited for; the error surfaces.
MAX_RETRY_AFTER_SECONDS = RetryHandlerOption.MAX_DELAY


class _GraphRetryHandler(RetryHandler):
    def __init__(self, policy: GraphRetryPolicy) -> None:
        super().__init__(RetryHandlerOption(delay=0, max_retries=policy.max_retries))
        self._policy = policy

    def get_delay_time(self, retry_count: int, response: httpx.Response | None = None, delay: float = 0.0) -> float:
        retry_after = self._get_retry_after(response)
        if retry_after:
            return retry_after
        return min(self.backoff_max, self._policy.backoff(retry_count))


class StaticTokenCredential(AsyncTokenCredential):
    """Dev only: presents a fixed bearer token, and only to a loopback host (the local emulator).
    A scope for any other host raises ConfigurationError, so it can never leak to real Graph."""

    def __init__(self, token: str) -> None:
        if not token:
            raise ConfigurationError("StaticTokenCredential needs a token")
        self._token = token

    async def get_token(self, *scopes: str, claims: str | None = None, tenant_id: str | None = None,
                        enable_cae: bool = False, **kwargs: Any) -> AccessToken:
        for scope in scopes:
            if not is_loopback_host(urlsplit(scope).hostname):
                raise ConfigurationError("StaticTokenCredential is for a loopback emulator only, not for real Graph")
        return AccessToken(self._token, int(time.time()) + 3600)

    async def close(self) -> None:
        return None

    def __repr__(self) -> str:
        return "StaticTokenCredential(token=<redacted>)"


def build_graph_client(
    base_url: str, credential: AsyncTokenCredential, *, retry: GraphRetryPolicy = GraphRetryPolicy(),
    timeout_seconds: float = 100.0,
) -> GraphServiceClient:
    """A GraphServiceClient for `base_url` (e.g. https://graph.microsoft.com/v1.0 or
    https://graph.microsoft.us/v1.0). Tokens are requested for that host's /.default scope and sent
    to that host only."""
    parts = urlsplit(base_url.rstrip("/"))
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise ConfigurationError(f"Graph base URL must be an absolute https URL, got {base_url!r}")
    loopback = is_loopback_host(parts.hostname)
    if parts.scheme == "http" and not loopback:
        raise ConfigurationError("Graph base URL must use https (plain http is only for a loopback emulator)")
    if isinstance(credential, StaticTokenCredential) and not loopback:
        raise ConfigurationError("StaticTokenCredential is only allowed with a loopback Graph base URL")

    middleware = [
        _GraphRetryHandler(retry) if isinstance(handler, RetryHandler) else handler
        for handler in KiotaClientFactory.get_default_middleware(
            # Its /me rewrite means nothing to an app-only client, and its span records the full URL.
            {UrlReplaceHandlerOption.get_key(): UrlReplaceHandlerOption(enabled=False)}
        )
    ]
    middleware.append(GraphTelemetryHandler(GraphTelemetryHandlerOption(api_version=APIVersion.v1,
                                                                        sdk_version=MSGRAPH_VERSION)))
    http_client = httpx.AsyncClient(timeout=httpx.Timeout(timeout_seconds, connect=min(30.0, timeout_seconds)))
    http_client = GraphClientFactory.create_with_custom_middleware(middleware, client=http_client)
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    auth = AzureIdentityAuthenticationProvider(
        credential, scopes=[f"{parts.scheme}://{host}/.default"], allowed_hosts=[parts.hostname]
    )
    adapter = GraphRequestAdapter(auth, http_client)
    # kiota's spans record full request URLs unless told not to, and those name people
    # (/users/{upn}/sendMail); the distro exports spans to Application Insights.
    adapter.observability_options = ObservabilityOptions(include_euii_attributes=False)
    adapter.base_url = f"{parts.scheme}://{parts.netloc}{parts.path}"
    return GraphServiceClient(request_adapter=adapter)


async def close_graph_client(client: GraphServiceClient) -> None:
    """Close the client's connections. kiota's request adapter holds the httpx client privately, and
    msgraph-core 1.5.2's AsyncGraphTransport has no aclose(), so the transport it wraps is closed here."""
    http_client: httpx.AsyncClient = client.request_adapter._http_client
    wrapped = getattr(http_client._transport, "transport", None)
    await http_client.aclose()
    if isinstance(wrapped, httpx.AsyncBaseTransport):
        await wrapped.aclose()
