"""Which server a call talks to: Vtrix in the cloud, or the embedded local server on loopback."""

from __future__ import annotations

from .client import ApiClient, client_for
from .config import Settings
from .errors import AuthenticationError


def api_client(settings: Settings) -> ApiClient:
    """The ApiClient for these settings, starting the embedded local server when the backend is local."""
    if settings.backend == "local":
        from .local.embedded import embedded_server

        server = embedded_server()
        return client_for(server.url, server.token)
    if settings.api_key is None:
        raise AuthenticationError(
            "the cloud backend needs an API key and none is set",
            hint="set VTRIX_API_KEY (or spark_nb.configure(api_key=...)), or use SPARK_NB_BACKEND=local",
        )
    return client_for(settings.base_url, settings.api_key)
