"""What every check may ask: the settings (and which could not be read), the time left, the service's client, what
another check found (its verdict, a fact it noted), and readings that several checks share, made once."""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar, cast

from .._config import Settings, unusable_key
from ..errors import SparkError
from ._report import Verdict
from ._settings import read_settings

if TYPE_CHECKING:
    from .._client import ApiClient

DEADLINE_S = 25.0  # the whole doctor, every check at once: an unreachable URL fails well within 30 s
REQUEST_LIMIT_S = 8.0  # one network request of a check
PROBE_TASK = "spark-nb-doctor-probe-0000"  # a task id no service has: reading it creates nothing and costs nothing
T = TypeVar("T")


@dataclasses.dataclass
class Context:
    """One doctor run's shared state; checks run in threads at once and read it."""

    settings: Settings | None  # None when they cannot be used to reach the service (see problem)
    problem: SparkError | None  # why no settings could be read, or used to reach the service (a malformed key)
    deadline: float
    problems: dict[str, SparkError] = dataclasses.field(default_factory=dict)  # option -> why it cannot be read
    read: Settings | None = None  # the settings as read, a malformed key's too: the checks that need no key use them
    _verdicts: dict[str, Verdict] = dataclasses.field(default_factory=dict)
    _done: dict[str, threading.Event] = dataclasses.field(default_factory=dict)
    _notes: dict[str, Any] = dataclasses.field(default_factory=dict)
    _shared: dict[str, Any] = dataclasses.field(default_factory=dict)
    _shared_locks: dict[str, threading.Lock] = dataclasses.field(default_factory=dict)
    _lock: threading.Lock = dataclasses.field(default_factory=threading.Lock)

    @classmethod
    def make(cls, config: dict[str, Any]) -> Context:
        """The context for these options (as for configure()), the deadline starting now; a setting that cannot
        be read is in problems, set aside (see _settings), not a reason to read none."""
        deadline = time.monotonic() + DEADLINE_S
        settings, problem, problems = read_settings(config)
        if settings is not None and (problem := unusable_key(settings)) is not None:
            return cls(None, problem, deadline, problems, read=settings)  # this machine checked, not the service
        return cls(settings, problem, deadline, problems, read=settings)

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

    def note(self, name: str, value: Any) -> None:
        """Keep a fact a later check may use (noted before the noting check's verdict)."""
        with self._lock:
            self._notes[name] = value

    def noted(self, name: str) -> Any:
        """A fact noted by another check, or None."""
        with self._lock:
            return self._notes.get(name)

    def shared(self, name: str, read: Callable[[], T]) -> T:
        """read(), made once for every check that asks (the others wait for it): e.g. the journal, read once."""
        with self._lock:
            lock = self._shared_locks.setdefault(name, threading.Lock())
        with lock:
            if name not in self._shared:
                self._shared[name] = read()
            return cast(T, self._shared[name])  # each name has one reader: its value is what that reader made
