"""Settings: key, base URL, backend, uploads and output folder, from explicit arguments, configure() or env."""

from __future__ import annotations

import dataclasses
import html
import logging
import math
import os
import re
import sys
import threading
from pathlib import Path
from typing import Any, Callable, Literal, Union

from .errors import SparkError, UsageError

DEFAULT_BASE_URL = "https://cloud.vtrix.ai"
DEFAULT_OUTPUT_DIR = "spark_outputs"
Backend = Literal["cloud", "local"]
UploaderLike = Union[str, Callable[[Path], str], None]

logger = logging.getLogger("spark_nb")
_BEARER = re.compile(r"(bearer\s+)[^\s\"',;]+", re.IGNORECASE)


class Secret:
    """A string that never shows itself in a repr, str, format or pickle."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        """The secret itself, for the one place that sends it."""
        return self._value

    def __repr__(self) -> str:
        return "Secret('********')"

    __str__ = __repr__

    def __format__(self, spec: str) -> str:
        return repr(self)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __reduce__(self) -> Any:
        raise TypeError("a Secret cannot be pickled, so it never lands in a file")

    @staticmethod
    def redact(text: str, secret: "Secret | None") -> str:
        """text with the secret, and anything sent as a bearer token, replaced by asterisks."""
        if secret is not None and len(secret._value) >= 4:
            text = text.replace(secret._value, "********")
        return _BEARER.sub(r"\1********", text)


@dataclasses.dataclass(frozen=True)
class InputLimits:
    """How large a local audio or video input may be before it is refused (images: the model's own 5 MB rule)."""

    max_bytes: int = 100 * 1024**2  # the local server's upload limit; few fetchers take more
    max_seconds: float = 600.0  # ten minutes: far above the 15 s the avatar model recommends


@dataclasses.dataclass(frozen=True)
class Settings:
    """Everything one generation needs to know about where and how to run."""

    backend: Backend
    base_url: str
    api_key: Secret | None = dataclasses.field(repr=False)
    output_dir: Path
    uploader: UploaderLike = None
    s3_bucket: str | None = None
    s3_prefix: str = ""
    s3_endpoint_url: str | None = None
    limits: InputLimits = InputLimits()
    home: Path = Path(".spark_nb_home")  # the journal and the local backend's tasks live here
    budget_usd: float | None = None


_FIELDS = (
    "api_key",
    "backend",
    "base_url",
    "output_dir",
    "uploader",
    "upload_url",
    "s3_bucket",
    "s3_prefix",
    "s3_endpoint_url",
    "log_level",
    "max_input_mb",
    "max_input_seconds",
    "home",
    "budget_usd",
)
_configured: dict[str, Any] = {}
_lock = threading.Lock()
_notice_shown = False  # the local backend's notice (once per process)
_notices_shown: set[str] = set()  # the other notices, each once per process


def configure(**options: Any) -> None:
    """Set defaults for this process (api_key, backend, base_url, output_dir, uploader, upload_url, s3_*, log_level,
    max_input_mb, max_input_seconds, home, budget_usd).

    Explicit arguments to a call win over these, and these win over the environment.
    Pass None to forget a value.
    """
    hide_key(options)
    unknown = sorted(set(options) - set(_FIELDS))
    if unknown:
        raise UsageError(f"configure() got unknown option(s) {unknown}; known: {', '.join(_FIELDS)}")
    from . import _keys  # here and in _find_key, not at import: `import spark_nb` stays fast

    _keys.forget()  # a configure() call is also the way to have the key stores read again
    with _lock:
        for name, value in options.items():
            if value is None:
                _configured.pop(name, None)
            else:
                _configured[name] = value
    if options.get("log_level"):
        set_log_level(options["log_level"])


def resolve(**explicit: Any) -> Settings:
    """Settings for one call: explicit arguments, then configure(), then the environment, then defaults.

    The key, in order: api_key=, configure(api_key=), VTRIX_API_KEY, the vtrix CLI's keychain entry and config
    file, Colab's secret VTRIX_API_KEY (see _keys); the stores are not read when the backend is set to local.
    """
    unknown = sorted(set(explicit) - set(_FIELDS))
    if unknown:
        raise UsageError(f"unknown option(s) {unknown}; known: {', '.join(_FIELDS)}")

    def pick(name: str, env: str | None = None) -> Any:
        if explicit.get(name) is not None:
            return explicit[name]
        if _configured.get(name) is not None:
            return _configured[name]
        return (os.environ.get(env) or None) if env else None

    backend = pick("backend", "SPARK_NB_BACKEND")
    chosen = None if backend is None else str(backend).strip().lower()
    api_key, source = _find_key(pick("api_key", "VTRIX_API_KEY"), search_stores=chosen != "local")
    url = pick("base_url", "VTRIX_GENERATION_URL")
    base_url = str(url or DEFAULT_BASE_URL).rstrip("/")
    if chosen is None:
        chosen = "cloud" if api_key else "local"
        if chosen == "local":
            _notice_local_once(url_setting=None if url is None else _url_setting(explicit))
    if chosen not in ("cloud", "local"):
        raise SparkError(
            f"unknown backend {chosen!r}",
            hint="set SPARK_NB_BACKEND (or backend=) to 'cloud' or 'local'",
        )
    if chosen == "cloud" and source is not None:
        notice_once(f"spark_nb: using Vtrix ({base_url}) with the API key from {source}.")
    return Settings(
        backend=chosen,  # type: ignore[arg-type]
        base_url=base_url,
        api_key=api_key,
        output_dir=Path(pick("output_dir", "SPARK_NB_OUTPUT_DIR") or DEFAULT_OUTPUT_DIR),
        uploader=pick("uploader") or pick("upload_url", "SPARK_NB_UPLOAD_URL"),
        s3_bucket=pick("s3_bucket", "SPARK_NB_S3_BUCKET"),
        s3_prefix=pick("s3_prefix", "SPARK_NB_S3_PREFIX") or "",
        s3_endpoint_url=pick("s3_endpoint_url", "SPARK_NB_S3_ENDPOINT_URL"),
        home=Path(pick("home", "SPARK_NB_HOME") or default_home()).expanduser(),
        budget_usd=_budget(pick("budget_usd", "SPARK_NB_BUDGET_USD")),
        limits=InputLimits(
            max_bytes=int(_positive("max_input_mb", pick("max_input_mb", "SPARK_NB_MAX_INPUT_MB"), 100) * 1024**2),
            max_seconds=_positive("max_input_seconds", pick("max_input_seconds", "SPARK_NB_MAX_INPUT_SECONDS"), 600),
        ),
    )


def default_home() -> Path:
    """The platform's user data folder for spark-nb (e.g. ~/.local/share/spark-nb on Linux)."""
    import platformdirs

    return Path(platformdirs.user_data_dir("spark-nb", appauthor=False))


def _budget(value: Any) -> float | None:
    if value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = float("nan")
    if not math.isfinite(number) or number < 0:
        raise SparkError(f"budget_usd must be an amount of US dollars, not {str(value)[:40]!r}",
                         hint="set SPARK_NB_BUDGET_USD (or configure(budget_usd=...)) to e.g. 5, or leave it unset")
    return number


def _positive(name: str, value: Any, default: float) -> float:
    if value is None:
        return float(default)
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = float("nan")
    if not math.isfinite(number) or number <= 0:
        raise SparkError(f"{name} must be a positive number, not {str(value)[:40]!r}",
                         hint=f"set it to e.g. {default:g} (or leave it unset for that default)")
    return number


def hide_key(config: dict[str, Any]) -> dict[str, Any]:
    """config with a plain-text api_key turned into a Secret, in place, so no traceback's locals show it."""
    key = config.get("api_key")
    if key is not None and not isinstance(key, Secret):
        config["api_key"] = Secret(str(key).strip())
    return config


def _find_key(given: Any, *, search_stores: bool) -> tuple[Secret | None, str | None]:
    """The key given (api_key=, configure() or VTRIX_API_KEY), else a store's; and which store it came from."""
    if given is not None:
        return (given if isinstance(given, Secret) else Secret(str(given).strip())), None
    if not search_stores:
        return None, None
    from . import _keys

    found = _keys.find()
    if found is None:
        return None, None
    return Secret(found.value), found.source


def _url_setting(explicit: dict[str, Any]) -> str:
    if explicit.get("base_url") is not None or _configured.get("base_url") is not None:
        return "base_url"
    return "VTRIX_GENERATION_URL"


def _notice_local_once(url_setting: str | None = None) -> None:
    global _notice_shown
    if not _notice_shown:
        _notice_shown = True
        if url_setting:
            notify(f"spark_nb: {url_setting} is set but there is no API key: using the local backend; "
                   "set VTRIX_API_KEY to use it.")
        else:
            notify("spark_nb: no Vtrix API key found, using the local backend "
                   "(set VTRIX_API_KEY, or SPARK_NB_BACKEND=cloud, for Vtrix).")


def notice_once(text: str) -> None:
    """notify(text), unless this process has already shown that very text."""
    with _lock:
        if text in _notices_shown:
            return
        _notices_shown.add(text)
    notify(text)


def in_jupyter_kernel() -> bool:
    """True inside a Jupyter kernel (an IPython shell with a kernel); IPython is not imported to find out."""
    ipython = sys.modules.get("IPython")
    if ipython is None:
        return False
    try:
        shell = ipython.get_ipython()
    except Exception:
        return False
    return shell is not None and getattr(shell, "kernel", None) is not None


def notify(text: str) -> None:
    """Show a one-line notice: a small grey info line in a Jupyter notebook, one plain stderr line elsewhere."""
    if in_jupyter_kernel():
        try:
            from IPython.display import display

            markup = f'<div style="color: #777; font-size: 0.85em; line-height: 1.4">{html.escape(text)}</div>'
            display({"text/plain": text, "text/html": markup}, raw=True)
            return
        except Exception:  # no display machinery after all: the plain line below
            pass
    print(text, file=sys.stderr)


def set_log_level(level: str | int) -> None:
    """Set the spark_nb logger's level, with a stderr handler so the messages are seen."""
    logger.setLevel(level.upper() if isinstance(level, str) else level)
    if not any(getattr(h, "_spark_nb", False) for h in logger.handlers):
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
        handler._spark_nb = True  # type: ignore[attr-defined]
        logger.addHandler(handler)


def apply_env_log_level() -> None:
    """Honour SPARK_NB_LOG_LEVEL at import time."""
    level = os.environ.get("SPARK_NB_LOG_LEVEL")
    if level:
        set_log_level(level)
