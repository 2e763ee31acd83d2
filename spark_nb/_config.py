"""Settings: key, base URL, backend, uploads and output folder, from explicit arguments, configure() or env."""

from __future__ import annotations

import dataclasses
import html
import logging
import math
import os
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal, cast, get_args
from urllib.parse import urlsplit

from . import _secrets, _surfaces
from .errors import SparkError, UsageError, safe_text

DEFAULT_BASE_URL = "https://cloud.vtrix.ai"
# Vtrix's model spec service (the official CLI's VTRIX_MODELS_URL). Used by default only with Vtrix's own
# generation URL: its specs describe Vtrix's gateway, not another one (a local server, a test double, a proxy),
# and a test pointed at a local server never reaches it.
DEFAULT_MODELS_URL = "https://cloud-model-spec.vtrix.ai"
VTRIX_HOST = "vtrix.ai"
SPEC_CHECK_ENV = "SPARK_NB_SPEC_CHECK"  # "off": calls do not consult the published specs (the doctor still does)
DEFAULT_OUTPUT_DIR = "spark_outputs"
Backend = Literal["cloud", "local"]
UploaderLike = str | Callable[[Path], str] | None

logger = logging.getLogger("spark_nb")
_HANDLER_NAME = "spark_nb.stderr"  # the handler set_log_level adds, once
KEY_SOURCES = {"explicit": "api_key=", "configured": "configure(api_key=)", "env": "VTRIX_API_KEY"}


class Secret:
    """The API key: never shows itself in a repr, str, format or pickle, and is checked once, where it enters.

    The ends are stripped; a key with anything else than printable ASCII inside (a line break, a space, a control
    character, a curly quote) is refused with a SparkError that names its source and never shows it. A made
    Secret's value is remembered for redaction (`_secrets`), so no message spark_nb shows or writes can hold it.
    """

    __slots__ = ("_value",)

    def __init__(self, value: str, source: str = "the key given") -> None:
        value = str(value).strip()
        problem = key_problem(value)
        if problem:
            value = ""  # a refused key is left in no frame's locals (the traceback keeps them)
            raise SparkError(
                f"the API key from {source} has {problem} inside it, so it was not used (nothing was sent)",
                hint=f"a key is one line of printable ASCII without spaces: fix {source} (e.g. `$(cat key.txt)` of "
                     "a file with two lines, a config file with Windows line ends, a key pasted with quotes or a line "
                     "break), or copy the key again from Vtrix's API Key Management page")
        self._value = value
        _secrets.remember(value)

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


def key_problem(value: str) -> str | None:
    """What makes value unusable as a bearer key (said without quoting it), or None when it is one."""
    if value.isascii() and value.isprintable() and " " not in value:
        return None
    for char in value:
        if char in "\r\n\x0b\x0c\x85\u2028\u2029":
            return "a line break"
        if char.isspace():
            return "a space or a tab"
        if not char.isprintable():
            return "a control character"
        if not char.isascii():
            return "a character that is not ASCII (a curly quote or a look-alike letter?)"
    return None


@dataclasses.dataclass(frozen=True)
class InputLimits:
    """How large an audio or video input may be before it is refused (images: the model's own 5 MB rule), and
    whether URL inputs are checked before anything is paid (None: as configure() or SPARK_NB_CHECK_URLS say)."""

    max_bytes: int = 100 * 1024**2  # the local server's upload limit; few fetchers take more
    max_seconds: float = 600.0  # ten minutes: far above the 15 s the avatar model recommends
    check_urls: bool | None = None

    @property
    def urls_checked(self) -> bool:
        """Whether URL inputs are checked (reachable, of the right kind) before anything is paid."""
        return self.check_urls if self.check_urls is not None else _flag(
            "check_urls", _configured.get("check_urls", os.environ.get("SPARK_NB_CHECK_URLS")), True)


DEFAULT_LIMITS = InputLimits()  # the limits of a call that names none


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
    key_source: str | None = None  # where the key came from (e.g. "VTRIX_API_KEY"), never the key
    auto_backend: bool = False  # the backend was chosen by whether a key was found, not set
    models_url: str | None = None  # the spec service for this generation URL (None: none applies)


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
    "check_urls",
    "models_url",
)
_configured: dict[str, Any] = {}
_lock = threading.Lock()
_notice_shown = False  # the local backend's notice (once per process)
_notices_shown: set[str] = set()  # the other notices, each once per process


def configure(**options: Any) -> None:
    """Set defaults for this process (api_key, backend, base_url, output_dir, uploader, upload_url, s3_*, log_level,
    max_input_mb, max_input_seconds, home, budget_usd, check_urls, models_url).

    Explicit arguments to a call win over these, and these win over the environment.
    Pass None to forget a value.
    """
    hide_key(options, source=KEY_SOURCES["configured"])
    unknown = sorted(set(options) - set(_FIELDS))
    if unknown:
        raise UsageError(f"configure() got unknown option(s) {unknown}; known: {', '.join(_FIELDS)}")
    check_types(options)
    from . import _keys  # here and in _find_key, not at import: `import spark_nb` stays fast

    _keys.forget()  # a configure() call is also the way to have the key stores read again
    with _lock:
        for name, value in options.items():
            if value is None:
                _configured.pop(name, None)
            else:
                _configured[name] = value
    if options.get("log_level"):
        try:
            set_log_level(options["log_level"])
        except (TypeError, ValueError) as exc:
            raise UsageError(f"configure(log_level=...): {exc}",
                             hint="use DEBUG, INFO, WARNING or ERROR (or a logging level number)") from exc


def resolve(**explicit: Any) -> Settings:
    """Settings for one call: explicit arguments, then configure(), then the environment, then defaults.

    The key, in order: api_key=, configure(api_key=), VTRIX_API_KEY, the vtrix CLI's keychain entry and config
    file, Colab's secret VTRIX_API_KEY (see _keys); the stores are not read when the backend is set to local.
    """
    unknown = sorted(set(explicit) - set(_FIELDS))
    if unknown:
        raise UsageError(f"unknown option(s) {unknown}; known: {', '.join(_FIELDS)}")
    check_types(explicit)

    def pick(name: str, env: str | None = None) -> Any:
        if explicit.get(name) is not None:
            return explicit[name]
        if _configured.get(name) is not None:
            return _configured[name]
        return (os.environ.get(env) or None) if env else None

    backend = pick("backend", "SPARK_NB_BACKEND")
    chosen = None if backend is None else str(backend).strip().lower()
    auto = chosen is None
    api_key, source = _find_key(explicit, search_stores=chosen != "local")
    url = pick("base_url", "VTRIX_GENERATION_URL")
    base_url = str(url or DEFAULT_BASE_URL).rstrip("/")
    if chosen is None:
        chosen = "cloud" if api_key else "local"
        if chosen == "local":
            _notice_local_once(url_setting=None if url is None else _url_setting(explicit))
    if chosen not in get_args(Backend):
        raise SparkError(
            f"unknown backend {chosen!r}",
            hint="set SPARK_NB_BACKEND (or backend=) to 'cloud' or 'local'",
        )
    if chosen == "cloud" and source is not None and source not in KEY_SOURCES.values():  # from a store: say which
        notice_once(f"spark_nb: using Vtrix ({base_url}) with the API key from {source}.")
    return Settings(
        backend=cast(Backend, chosen),  # one of Backend's values: checked above
        base_url=base_url,
        api_key=api_key,
        output_dir=Path(pick("output_dir", "SPARK_NB_OUTPUT_DIR") or DEFAULT_OUTPUT_DIR),
        uploader=pick("uploader") or pick("upload_url", "SPARK_NB_UPLOAD_URL"),
        s3_bucket=pick("s3_bucket", "SPARK_NB_S3_BUCKET"),
        s3_prefix=pick("s3_prefix", "SPARK_NB_S3_PREFIX") or "",
        s3_endpoint_url=pick("s3_endpoint_url", "SPARK_NB_S3_ENDPOINT_URL"),
        home=Path(pick("home", "SPARK_NB_HOME") or default_home()).expanduser(),
        budget_usd=_budget(pick("budget_usd", "SPARK_NB_BUDGET_USD")),
        key_source=source, auto_backend=auto,
        models_url=models_url_for(base_url, pick("models_url", "VTRIX_MODELS_URL")) if chosen == "cloud" else None,
        limits=InputLimits(
            max_bytes=int(_positive("max_input_mb", pick("max_input_mb", "SPARK_NB_MAX_INPUT_MB"), 100) * 1024**2),
            max_seconds=_positive("max_input_seconds", pick("max_input_seconds", "SPARK_NB_MAX_INPUT_SECONDS"), 600),
            check_urls=_flag("check_urls", pick("check_urls", "SPARK_NB_CHECK_URLS"), True),
        ),
    )


_PATH_OPTIONS = ("output_dir", "home")
_TEXT_OPTIONS = ("backend", "base_url", "upload_url", "s3_bucket", "s3_prefix", "s3_endpoint_url")


def check_types(options: dict[str, Any]) -> None:
    """UsageError naming the first option of a type it cannot have (a folder given as a number, a URL as a list),
    before anything uses it; None means "not set". Amounts and limits are checked where they are read."""
    for name, value in options.items():
        if value is None:
            continue
        if name in _PATH_OPTIONS and not isinstance(value, (str, os.PathLike)):
            raise UsageError(f"{name} must be a folder (a str or a Path), not {type(value).__name__}",
                             hint=f"pass {name}= a path, or leave it unset")
        if name in _TEXT_OPTIONS and not isinstance(value, str):
            raise UsageError(f"{name} must be text (a str), not {type(value).__name__}")
        if name == "uploader" and not (isinstance(value, str) or callable(value)):
            raise UsageError(f"uploader must be an upload URL or a callable taking a Path, not {type(value).__name__}")


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


def _flag(name: str, value: Any, default: bool) -> bool:
    """A yes/no setting: a bool, or 1/0, true/false, yes/no, on/off in any case (an environment variable's text)."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return default
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise SparkError(f"{name} must be yes or no, not {str(value)[:40]!r}",
                     hint=f"use 1 or 0 (true/false) for SPARK_NB_{name.upper()}, or True/False for {name}=")


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


def hide_key(config: dict[str, Any], source: str = KEY_SOURCES["explicit"]) -> dict[str, Any]:
    """config with a plain-text api_key turned into a Secret (checked, see Secret), in place, so no traceback's
    locals show it; source names where it came from in the error a bad key raises."""
    if config.get("api_key") is not None and not isinstance(config["api_key"], Secret):
        # popped before the check: a refused key is left in no frame's locals (the traceback keeps them)
        config["api_key"] = Secret(str(config.pop("api_key")), source)
    return config


def _find_key(explicit: dict[str, Any], *, search_stores: bool) -> tuple[Secret | None, str | None]:
    """The key given (api_key=, configure() or VTRIX_API_KEY), else a store's; and where it came from (a
    KEY_SOURCES value, or the store's name).

    Every source becomes a Secret here or in hide_key, which refuses a malformed key naming the source (the
    value is never bound to a local here, so a refusal's traceback does not hold it).
    """
    for origin, config in (("explicit", explicit), ("configured", _configured)):
        if config.get("api_key") is not None:
            return hide_key(dict(config), KEY_SOURCES[origin])["api_key"], KEY_SOURCES[origin]
    if os.environ.get("VTRIX_API_KEY", "").strip():
        return Secret(os.environ["VTRIX_API_KEY"], KEY_SOURCES["env"]), KEY_SOURCES["env"]
    if not search_stores:
        return None, None
    from . import _keys

    found = _keys.find()
    if found is None:
        return None, None
    return Secret(found.value, found.source), found.source


def models_url_for(base_url: str, configured: str | None) -> str | None:
    """The spec service for calls to base_url: the one configured (configure(models_url=) or VTRIX_MODELS_URL),
    else Vtrix's own when base_url is Vtrix's, else None (see DEFAULT_MODELS_URL)."""
    if configured and str(configured).strip():
        return str(configured).strip().rstrip("/")
    try:
        host = (urlsplit(base_url).hostname or "").rstrip(".")
    except ValueError:  # not a URL: the client says so when it is made
        return None
    return DEFAULT_MODELS_URL if host == VTRIX_HOST or host.endswith(f".{VTRIX_HOST}") else None


def spec_source(base_url: str) -> tuple[str, Path] | None:
    """For a create call to base_url: the spec service to consult and the folder its answers are cached in, from
    this process's settings (configure(), then the environment); None when no spec applies or checks are off."""
    if os.environ.get(SPEC_CHECK_ENV, "").strip().lower() in ("off", "0", "false", "no"):
        return None
    models_url = models_url_for(base_url, _configured.get("models_url") or os.environ.get("VTRIX_MODELS_URL"))
    if models_url is None:
        return None
    home = _configured.get("home") or os.environ.get("SPARK_NB_HOME") or default_home()
    return models_url, Path(home).expanduser() / "specs"


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
    """Show a one-line notice: a small grey info line in a Jupyter notebook, one plain stderr line elsewhere.

    The text is made safe first (inert, one line, redacted): it may quote a service's words or a file's name. It
    goes to the surface of the call that made it (`_surfaces.take_notice`: a form's notes; the CLI's words)."""
    shown = _surfaces.take_notice(safe_text(text, newlines=False))
    if shown is None:
        return
    text = shown
    if in_jupyter_kernel():
        try:
            from IPython.display import display

            markup = f'<div style="color: #777; font-size: 0.85em; line-height: 1.4">{html.escape(text)}</div>'
            display({"text/plain": text, "text/html": markup}, raw=True)  # type: ignore[no-untyped-call]  # IPython's
            return
        except Exception:  # no display machinery after all: the plain line below
            pass
    print(text, file=sys.stderr)


def set_log_level(level: str | int) -> None:
    """Set the spark_nb logger's level, with a stderr handler so the messages are seen."""
    logger.setLevel(level.upper() if isinstance(level, str) else level)
    if not any(h.get_name() == _HANDLER_NAME for h in logger.handlers):
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
        handler.set_name(_HANDLER_NAME)
        logger.addHandler(handler)


def apply_env_log_level() -> None:
    """Honour SPARK_NB_LOG_LEVEL at import time (and make every spark_nb log record safe, see safe_records)."""
    safe_records()
    level = os.environ.get("SPARK_NB_LOG_LEVEL")
    if level:
        set_log_level(level)


def safe_records() -> None:
    """Make every log record of the spark_nb loggers safe as it is created: its message (and traceback) inert, on
    one line, and redacted, whatever handler then writes it (ours, the root's, a notebook's, pytest's).

    A filter on the `spark_nb` logger would not do: a logger's filters do not see its children's records
    (spark_nb.client, spark_nb.journal, ...). So the record factory is wrapped, once, keeping the previous one.
    """
    previous = logging.getLogRecordFactory()
    if not getattr(previous, "spark_nb_safe", False):  # an attribute, not a type: it survives a reload
        logging.setLogRecordFactory(_SafeRecords(previous))


class _SafeRecords:
    """The record factory safe_records installs: the previous one's records, spark_nb's made safe."""

    spark_nb_safe = True

    def __init__(self, previous: Callable[..., logging.LogRecord]) -> None:
        self._previous = previous

    def __call__(self, *args: Any, **kwargs: Any) -> logging.LogRecord:
        record = self._previous(*args, **kwargs)
        if record.name == "spark_nb" or record.name.startswith("spark_nb."):
            _make_safe(record)
        return record


def _make_safe(record: logging.LogRecord) -> None:
    try:
        message = record.getMessage()
    except Exception:  # arguments that do not fit the format: show the format alone
        message = str(record.msg)
    record.msg, record.args = safe_text(message, newlines=False), None
    if record.exc_info and not record.exc_text:  # formatters use exc_text when it is set
        record.exc_text = safe_text(logging.Formatter().formatException(record.exc_info))
    if record.stack_info:
        record.stack_info = safe_text(record.stack_info)
