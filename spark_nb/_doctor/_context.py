"""What every check may ask: the settings (or why they could not be read), the time left, the service's client, and
the verdicts of the checks it follows."""

from __future__ import annotations

import dataclasses
import threading
import time
from typing import TYPE_CHECKING, Any

from .._config import Settings, hide_key, resolve
from ..errors import SparkError
from ._report import Verdict

if TYPE_CHECKING:
    from .._client import ApiClient

DEADLINE_S = 25.0  # the whole doctor, every check at once: an unreachable URL fails well within 30 s
REQUEST_LIMIT_S = 8.0  # one network request of a check
PROBE_TASK = "spark-nb-doctor-probe-0000"  # a task id no service has: reading it creates nothing and costs nothing


@dataclasses.dataclass
class Context:
    """One doctor run's shared state; checks run in threads at once and read it."""

    settings: Settings | None
    problem: SparkError | None  # why the settings could not be read (a malformed key, an unknown backend...)
    deadline: float
    _verdicts: dict[str, Verdict] = dataclasses.field(default_factory=dict)
    _done: dict[str, threading.Event] = dataclasses.field(default_factory=dict)
    _lock: threading.Lock = dataclasses.field(default_factory=threading.Lock)

    @classmethod
    def make(cls, config: dict[str, Any]) -> Context:
        """The context for these options (as for configure()), the deadline starting now."""
        deadline = time.monotonic() + DEADLINE_S
        try:
            return cls(resolve(**hide_key(config)), None, deadline)
        except SparkError as exc:
            return cls(None, exc, deadline)

    @property
    def local(self) -> bool:
        """True on the local backend (the embedded server)."""
        return self.settings is not None and self.settings.backend == "local"

    def left(self, cap: float = REQUEST_LIMIT_S) -> float:
        """Seconds one request may take: cap, or less when the doctor's deadline is nearer (at least 0.1)."""
        return max(0.1, min(cap, self.deadline - time.monotonic() - 0.5))

    def client(self) -> ApiClient:
        """The client calls would use (on the local backend, the embedded server's: started if need be)."""
        from .._backends import api_client

        assert self.settings is not None
        return api_client(self.settings)

    def base_url(self) -> str:
        """The generation URL calls would use (on the local backend, the embedded server's)."""
        assert self.settings is not None
        return self.client().base_url if self.local else self.settings.base_url

    def models_url(self) -> str | None:
        """The spec service for these settings (on the local backend, the embedded server serves the specs)."""
        assert self.settings is not None
        return self.base_url() if self.local else self.settings.models_url

    # -- checks that follow others --------------------------------------------------------------------------

    def expect(self, name: str) -> None:
        """Make name a check whose verdict others may wait for."""
        self._done[name] = threading.Event()

    def finished(self, name: str, verdict: Verdict) -> None:
        """Record name's verdict."""
        with self._lock:
            self._verdicts[name] = verdict
        self._done[name].set()

    def verdict(self, name: str, *, wait: bool = True) -> Verdict | None:
        """name's verdict, waited for until the deadline when wait; None if it has none by then."""
        if wait:
            self._done[name].wait(max(0.0, self.deadline - time.monotonic()))
        with self._lock:
            return self._verdicts.get(name)
