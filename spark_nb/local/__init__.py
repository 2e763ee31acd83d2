"""The local backend: a server on loopback that speaks the Vtrix protocol and renders real videos.

    from spark_nb.local import LocalServer
    with LocalServer(latency=2.0, faults="poll:500:0.3") as server:
        ...  # point VTRIX_GENERATION_URL (or base_url=) at server.url

Importing this package loads Starlette and the renderer; `import spark_nb` never does.
"""

from .._boundary import guard_public
from ._embedded import embedded_server
from ._faults import Fault, FaultPlan
from ._listen import LocalServer
from ._server import ServerOptions

__all__ = ["Fault", "FaultPlan", "LocalServer", "ServerOptions", "embedded_server"]
guard_public(globals())  # every name in __all__ behind the public boundary: only a SparkError leaves it
