"""Settings: key, base URL, backend, uploads and output folder, from explicit arguments, configure() or env."""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import threading
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal, cast
from urllib.parse import urlsplit

from . import _secrets
from ._limits import MEDIA_BYTES, MEDIA_SECONDS
from ._logs import set_log_level
from ._money import LARGEST, usd
from ._urls import canonical_url, shown_url
from .errors import SparkError, UsageError

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

KEY_SOURCES = {"explicit": "api_key=", "configured": "configure(api_key=)", "env": "VTRIX_API_KEY"}


class Secret:
    """The API key: never shows itself in a repr, str, format or pickle, and is checked once, where it enters.

    The ends are stripped; a key with anything but printable ASCII inside (a line break, a space, a control
    character, a curly quote), or shorter than `_secrets.MIN_SECRET_CHARS` (the redaction masks only longer ones),
    is refused by a SparkError naming its source, never showing it. A made Secret's value is remembered for
    redaction (`_secrets`), so no message spark_nb shows or writes can hold it."""

    __slots__ = ("_value",)

    def __init__(self, value: str, source: str = "the key given") -> None:
        value = str(value).strip()
        problem = key_problem(value)
        if problem:
            value = ""  # a refused key is left in no frame's locals (the traceback keeps them)
            raise KeyProblem(source, problem).error()
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


@dataclasses.dataclass(frozen=True)
class KeyProblem:
    """Why a key that was found cannot be used, said without the key: where it came from and what is inside it."""

    source: str
    problem: str

    def error(self) -> SparkError:
        """The SparkError that refuses the key, naming its source and the fix."""
        if self.problem.startswith(_TOO_SHORT):
            return SparkError(
                f"the API key from {self.source} is {self.problem.removeprefix(_TOO_SHORT)} characters long, too "
                "short to be a key, so it was not used (nothing was sent)",
                hint=f"fix {self.source}: copy the whole key from Vtrix's API Key Management page")
        return SparkError(
            f"the API key from {self.source} has {self.problem} inside it, so it was not used (nothing was sent)",
            hint=f"a key is one line of printable ASCII without spaces: fix {self.source} (e.g. `$(cat key.txt)` of "
                 "a file with two lines, a config file with Windows line ends, a key pasted with quotes or a line "
                 "break), or copy the key again from Vtrix's API Key Management page")


_TOO_SHORT = "too short: "  # then the key's length: a problem that is not inside the key (see KeyProblem.error)


def key_problem(value: str) -> str | None:
    """What makes value unusable as a bearer key (said without quoting it), or None when it is one. A key shorter
    than `_secrets.MIN_SECRET_CHARS` is one too: no Vtrix key is, and the redaction masks only longer values."""
    if value.isascii() and value.isprintable() and " " not in value:
        return None if len(value) >= _secrets.MIN_SECRET_CHARS else f"{_TOO_SHORT}{len(value)}"
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

    max_bytes: int = MEDIA_BYTES  # the local server's upload limit; few fetchers take more
    max_seconds: float = MEDIA_SECONDS
    check_urls: bool | None = None

    @property
    def urls_checked(self) -> bool:
        """Whether URL inputs are checked (reachable, of the right kind) before anything is paid."""
        return self.check_urls if self.check_urls is not None else _flag(
            "check_urls", _configured.get("check_urls", os.environ.get("SPARK_NB_CHECK_URLS")), True)


@dataclasses.dataclass(frozen=True)
class Settings:
    """Everything one generation needs to know about where and how to run (see spark_nb.settings()).

    Attributes:
        backend: "cloud" (Vtrix) or "local" (the embedded server).
        base_url: the generation URL (VTRIX_GENERATION_URL; Vtrix's by default).
        api_key: the key, hidden (a Secret: never shown), or None.
        output_dir: where videos are saved.
        uploader: an upload URL or a callable taking a Path, or None.
        s3_bucket: the S3 bucket for uploads, or None.
        s3_prefix: a folder in it.
        s3_endpoint_url: an S3-compatible service's URL, or None for AWS.
        limits: the largest audio or video input, and whether URL inputs are checked first.
        home: the folder of the task journal and the local backend's tasks.
        budget_usd: the spending limit in US dollars, or None.
        key_source: where the key came from (e.g. "VTRIX_API_KEY", "~/.config/vtrix/config.yml"), never the key.
        auto_backend: the backend was chosen by whether a key was found, not set.
        models_url: the spec service for this generation URL, or None when none applies.
        key_problem: a key found in VTRIX_API_KEY or a key store that is malformed (its source and what is inside
            it): the first call that needs the key refuses it.
        notices: what a call with these settings tells its user where it starts, once per process.
    """

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
    budget_usd: Decimal | None = None
    key_source: str | None = None  # where the key came from (e.g. "VTRIX_API_KEY"), never the key
    auto_backend: bool = False  # the backend was chosen by whether a key was found, not set
    models_url: str | None = None  # the spec service for this generation URL (None: none applies)
    key_problem: KeyProblem | None = None  # a malformed key found: refused by the first call that needs the key
    notices: tuple[str, ...] = dataclasses.field(default=(), compare=False)  # said once, where a call starts

    def __repr__(self) -> str:  # any URL setting's password masked (an upload URL's, an S3 endpoint's)
        shown = (f"{f.name}={getattr(self, f.name)!r}" for f in dataclasses.fields(self) if f.repr)
        return _secrets.redact(f"Settings({', '.join(shown)})")


DEFAULT_LIMITS = InputLimits()  # the limits of a call that names none (frozen: one shared instance)
_FIELDS = ("api_key", "backend", "base_url", "output_dir", "uploader", "upload_url", "s3_bucket", "s3_prefix",
           "s3_endpoint_url", "log_level", "max_input_mb", "max_input_seconds", "home", "budget_usd", "check_urls",
           "models_url")
_configured: dict[str, Any] = {}
_lock = threading.Lock()


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
    check_values(options)  # as resolve() reads them: a bad value is refused here, not at every later call
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
    No side effects: the notices are returned (`notices`, said where a call starts: `_notices.begin`), and a malformed
    key from VTRIX_API_KEY or a store is returned as `key_problem`, refused only by a call that needs the key.
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
    api_key, source, problem = _find_key(explicit, search_stores=chosen != "local")
    url = pick("base_url", "VTRIX_GENERATION_URL")
    url_from = None if url is None else "base_url" if pick("base_url") is not None else "VTRIX_GENERATION_URL"
    base_url = canonical_url(str(url or DEFAULT_BASE_URL))  # one spelling per service: the journal's, the budget's
    if chosen is None:
        chosen = "cloud" if api_key or problem else "local"  # a malformed key still says the cloud is meant
    _backend(chosen)
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
            max_bytes=int(_positive("max_input_mb", pick("max_input_mb", "SPARK_NB_MAX_INPUT_MB"),
                                    MEDIA_BYTES / 1024**2) * 1024**2),
            max_seconds=_positive("max_input_seconds", pick("max_input_seconds", "SPARK_NB_MAX_INPUT_SECONDS"),
                                  MEDIA_SECONDS),
            check_urls=_flag("check_urls", pick("check_urls", "SPARK_NB_CHECK_URLS"), True),
        ),
        key_problem=problem,
        notices=_notices_for(chosen, auto, base_url, api_key is not None, source, url_from),
    )


def _notices_for(backend: str, auto: bool, base_url: str, keyed: bool, source: str | None,
                 url_from: str | None) -> tuple[str, ...]:
    """What a call tells its user: the local backend chosen for want of a key (and a generation URL set but unused,
    by the setting that gave it), or the key the cloud uses taken from a store (named)."""
    if backend == "local" and auto:
        return (f"spark_nb: {url_from} is set but there is no API key: using the local backend; set VTRIX_API_KEY "
                "to use it." if url_from else "spark_nb: no Vtrix API key found, using the local backend (set "
                "VTRIX_API_KEY, or SPARK_NB_BACKEND=cloud, for Vtrix).",)
    if backend == "cloud" and keyed and source is not None and source not in KEY_SOURCES.values():
        return (f"spark_nb: using Vtrix ({shown_url(base_url)}) with the API key from {source}.",)
    return ()


def unusable_key(settings: Settings) -> SparkError | None:
    """The error refusing a malformed key (from VTRIX_API_KEY or a store) when these settings need a key (the
    cloud backend); None when the key is usable or not needed (the local backend)."""
    if settings.backend == "cloud" and settings.key_problem is not None:
        return settings.key_problem.error()
    return None


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


def check_values(options: dict[str, Any]) -> None:
    """A UsageError for the first value resolve() could not read (a negative budget, a limit of NaN or 1e999, a
    backend that is neither, a yes/no that is neither), parsed by the very readers resolve() uses; None is unset."""
    _budget(options.get("budget_usd"))
    for name, default in (("max_input_mb", MEDIA_BYTES / 1024**2), ("max_input_seconds", MEDIA_SECONDS)):
        _positive(name, options.get(name), default)
    _flag("check_urls", options.get("check_urls"), True)
    if options.get("backend") is not None:
        _backend(str(options["backend"]).strip().lower())


def _backend(name: str | None) -> None:
    if name not in ("cloud", "local", None):
        raise UsageError(f"unknown backend {name!r}", hint="set SPARK_NB_BACKEND (or backend=) to 'cloud' or 'local'")


def default_home() -> Path:
    """The platform's user data folder for spark-nb (e.g. ~/.local/share/spark-nb on Linux)."""
    import platformdirs

    return Path(platformdirs.user_data_dir("spark-nb", appauthor=False))


def _budget(value: Any) -> Decimal | None:
    """The budget, a Decimal read as a cost is (_money.usd); not an amount, or one over LARGEST, refused by name."""
    amount = None if value is None else usd(value)
    if value is None or amount is not None:
        return amount
    with contextlib.suppress(ArithmeticError, ValueError):  # 1e13 is no budget of $0.00, nor of no limit
        if Decimal(repr(value) if isinstance(value, float) else str(value).strip()) > LARGEST:
            raise UsageError(f"budget_usd of {str(value)[:40]} is over ${LARGEST:,} (the largest amount spark-nb "
                             "reads)", hint="for no spending limit, leave SPARK_NB_BUDGET_USD (or budget_usd=) unset")
    raise UsageError(f"budget_usd must be an amount of US dollars, not {str(value)[:40]!r}",
                     hint="set SPARK_NB_BUDGET_USD (or configure(budget_usd=...)) to e.g. 5, or leave it unset")


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
    raise UsageError(f"{name} must be yes or no, not {str(value)[:40]!r}",
                     hint=f"use 1 or 0 (true/false) for SPARK_NB_{name.upper()}, or True/False for {name}=")


def _positive(name: str, value: Any, default: float) -> float:
    if value is None:
        return float(default)
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = float("nan")
    if not math.isfinite(number) or number <= 0:
        raise UsageError(f"{name} must be a positive number, not {str(value)[:40]!r}",
                         hint=f"set it to e.g. {default:g} (or leave it unset for that default)")
    return number


def hide_key(config: dict[str, Any], source: str = KEY_SOURCES["explicit"]) -> dict[str, Any]:
    """config with a plain-text api_key turned into a Secret (checked, see Secret), in place, so no traceback's
    locals show it; source names where it came from in the error a bad key raises."""
    if config.get("api_key") is not None and not isinstance(config["api_key"], Secret):
        # popped before the check: a refused key is left in no frame's locals (the traceback keeps them)
        config["api_key"] = Secret(str(config.pop("api_key")), source)
    return config


def _find_key(explicit: dict[str, Any], *,
              search_stores: bool) -> tuple[Secret | None, str | None, KeyProblem | None]:
    """The key given (api_key=, configure() or VTRIX_API_KEY), else a store's; where it came from (a KEY_SOURCES
    value, or the store's name); for a malformed key of VTRIX_API_KEY or a store, its problem instead of the key.

    A key given to this call or to configure() becomes a Secret in hide_key, which refuses a malformed one naming the
    source (the value is never bound to a local here, so a refusal's traceback does not hold it).
    """
    for origin, config in (("explicit", explicit), ("configured", _configured)):
        if config.get("api_key") is not None:
            return hide_key(dict(config), KEY_SOURCES[origin])["api_key"], KEY_SOURCES[origin], None
    if os.environ.get("VTRIX_API_KEY", "").strip():
        return _found(os.environ["VTRIX_API_KEY"], KEY_SOURCES["env"])
    if not search_stores:
        return None, None, None
    from . import _keys

    found = _keys.find()
    if found is None:
        return None, None, None
    return _found(found.value, found.source)


def _found(value: str, source: str) -> tuple[Secret | None, str, KeyProblem | None]:
    problem = key_problem(value.strip())
    if problem:
        return None, source, KeyProblem(source, problem)
    return Secret(value, source), source, None


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
