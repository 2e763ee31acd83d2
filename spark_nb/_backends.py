"""Which server a call talks to: Vtrix in the cloud, or the embedded local server on loopback."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from ._config import Secret, Settings, unusable_key
from .errors import AuthenticationError

if TYPE_CHECKING:
    from ._client import ApiClient

# A process that runs job notebooks (spark-nb batch) shares its embedded server with their kernels through
# these variables, so a task created in one process can be resumed in another. The server answers only its key;
# the key goes to the kernels in their environment (readable by the same user only, /proc/PID/environ), never
# in a command line, a papermill parameter or a file.
SHARED_LOCAL_SERVER = "SPARK_NB_LOCAL_SERVER"
SHARED_LOCAL_SERVER_KEY = "SPARK_NB_LOCAL_SERVER_KEY"


def api_client(settings: Settings) -> ApiClient:
    """The ApiClient for these settings, starting the embedded local server when the backend is local."""
    from ._client import client_for  # httpx loads with the first call, not with `import spark_nb`

    if settings.backend == "local":
        shared, key = os.environ.get(SHARED_LOCAL_SERVER), os.environ.get(SHARED_LOCAL_SERVER_KEY)
        if shared and key:  # the server of the process that started this one (without its key: our own)
            return client_for(shared, Secret(key), local=True)
        from .local._embedded import embedded_server

        server = embedded_server(settings.home, settings.limits.max_bytes, settings.limits.max_seconds)
        return client_for(server.url, server.token, local=True)
    if (problem := unusable_key(settings)) is not None:  # a malformed key found: refused before any request
        raise problem
    if settings.api_key is None:
        raise AuthenticationError(
            "the cloud backend needs an API key and none is set",
            hint="set VTRIX_API_KEY (or spark_nb.configure(api_key=...)), or use SPARK_NB_BACKEND=local",
        )
    return client_for(settings.base_url, settings.api_key)


def kernel_environment(settings: Settings) -> dict[str, str]:
    """The environment for child processes (job kernels): this process's, plus its journal, input limits and local
    server.

    Given to each child at its start, never written into this process's os.environ: a variable left there would
    outlive the server it names (a later configure(home=...), a test's server) and be inherited by unrelated
    children, which would then knock on a stopped server's port, or on another server's, with the wrong key."""
    env = {**os.environ, "SPARK_NB_HOME": str(settings.home)}  # the journal this process uses
    # the input limits this process checks rows with (configure() too), so a kernel's own checks agree
    env["SPARK_NB_MAX_INPUT_MB"] = repr(settings.limits.max_bytes / 1024**2)  # exact: a power of two
    env["SPARK_NB_MAX_INPUT_SECONDS"] = repr(settings.limits.max_seconds)
    if settings.backend == "local" and not (env.get(SHARED_LOCAL_SERVER) and env.get(SHARED_LOCAL_SERVER_KEY)):
        from .local._embedded import embedded_server

        server = embedded_server(settings.home, settings.limits.max_bytes, settings.limits.max_seconds)
        env[SHARED_LOCAL_SERVER] = server.url
        env[SHARED_LOCAL_SERVER_KEY] = server.token.reveal()
    return env
