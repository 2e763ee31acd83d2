"""Where an API key is found when no argument, configure() or VTRIX_API_KEY gives one.

In this order: the official vtrix CLI's OS keychain entry (service `vtrix-cli`, account `api_key`, through
`keyring` when it is installed and VTRIX_NO_KEYCHAIN is not set), its config file
(`~/.config/vtrix/config.yml`, YAML key `api_key`), then Google Colab's secret `VTRIX_API_KEY` when running in
Colab. No lookup raises, hangs or logs the key: a failure is "no key here" and a debug line naming the source.
Results are cached: the file by its mtime and size, the keychain and Colab for a minute (`forget()` clears).
"""

from __future__ import annotations

import dataclasses
import importlib.util
import logging
import math
import os
import re
import stat as stat_module
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

logger = logging.getLogger("spark_nb")

KEYCHAIN_SERVICE = "vtrix-cli"
KEYCHAIN_ACCOUNT = "api_key"
COLAB_SECRET = "VTRIX_API_KEY"
NO_KEYCHAIN_ENV = "VTRIX_NO_KEYCHAIN"
KEYCHAIN_TIMEOUT_S = 3.0  # a locked keychain may ask its owner; we never wait longer than this
RECHECK_S = 60.0  # how long a keychain or Colab answer (key or none) is trusted before asking again
MAX_FILE_BYTES = 64 * 1024
_TOP_LEVEL_KEY = re.compile(r"^api_key[ \t]*:(.*)$")


@dataclasses.dataclass(frozen=True)
class FoundKey:
    """A key and where it was found: the source may be shown, the value never (it is kept out of the repr)."""

    value: str = dataclasses.field(repr=False)
    source: str

    def __reduce__(self) -> Any:
        raise TypeError("a found key cannot be pickled, so it never lands in a file")


_lock = threading.Lock()
_file_cache: dict[Path, tuple[tuple[int, int, int], FoundKey | None]] = {}
_timed: dict[str, tuple[float, FoundKey | None]] = {}  # source name -> (valid until, answer)
_keychain_pending: threading.Thread | None = None


def find() -> FoundKey | None:
    """The first key in the vtrix CLI's keychain entry, its config file, or Colab's secrets; None if none has one."""
    for lookup in (_keychain, _config_file, _colab):
        found = lookup()
        if found is not None:
            return found
    return None


def forget() -> None:
    """Drop every cached answer, so the next find() asks each store again."""
    with _lock:
        _file_cache.clear()
        _timed.clear()


# -- the vtrix CLI's config file ---------------------------------------------------------------------------


def config_paths() -> list[Path]:
    """Where the vtrix CLI's config file may be: $XDG_CONFIG_HOME/vtrix/config.yml (when set), then ~/.config."""
    paths = []
    xdg = os.environ.get("XDG_CONFIG_HOME", "").strip()
    if xdg and os.path.isabs(xdg):
        paths.append(Path(xdg) / "vtrix" / "config.yml")
    try:
        paths.append(Path.home() / ".config" / "vtrix" / "config.yml")
    except (RuntimeError, KeyError):  # no home directory at all
        pass
    return list(dict.fromkeys(paths))


def _config_file() -> FoundKey | None:
    for path in config_paths():
        found = _read_config(path)
        if found is not None:
            return found
    return None


def _read_config(path: Path) -> FoundKey | None:
    try:
        stat = path.stat()  # follows a symlink (dotfile managers link it); a loop is an OSError
    except OSError:
        return None  # no file: the common case, nothing to say
    stamp = (stat.st_mtime_ns, stat.st_size, stat.st_ino)
    with _lock:
        cached = _file_cache.get(path)
    if cached is not None and cached[0] == stamp:
        return cached[1]
    found = None
    shown = _display_path(path)
    try:
        value = _api_key_in(read_small_file(path, MAX_FILE_BYTES).decode("utf-8"))
        if value:
            found = FoundKey(value, shown)
        else:
            logger.debug("no api_key in %s", shown)
    except Exception as exc:  # not a file, too large, not UTF-8, not YAML: no key here. The message may quote it.
        logger.debug("cannot read an API key from %s (%s)", shown, type(exc).__name__)
    with _lock:
        _file_cache[path] = (stamp, found)
    return found


def read_small_file(path: Path, max_bytes: int) -> bytes:
    """The bytes of path if it is a regular file of at most max_bytes, read without ever blocking; else OSError
    or ValueError.

    A FIFO, a device or a directory in its place is refused before it is opened (stat), and again after (fstat of
    what was opened, in case it was swapped in between); the open itself never waits (O_NONBLOCK: a FIFO with no
    writer would block an ordinary open forever) and never takes a terminal as the controlling one (O_NOCTTY).
    """
    if not stat_module.S_ISREG(os.stat(path).st_mode):
        raise ValueError("not a regular file")
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_CLOEXEC", 0)
    descriptor = os.open(path, flags)
    with os.fdopen(descriptor, "rb", buffering=0) as handle:
        opened = os.fstat(descriptor)
        if not stat_module.S_ISREG(opened.st_mode):
            raise ValueError("not a regular file")
        if opened.st_size > max_bytes:
            raise ValueError(f"larger than {max_bytes} bytes")
        data = handle.read(max_bytes + 1)
    if len(data) > max_bytes:  # it grew while being read
        raise ValueError(f"larger than {max_bytes} bytes")
    return data


def _api_key_in(text: str) -> str | None:
    """The top-level `api_key` string of a YAML document (PyYAML's safe loader when installed, else a line scan)."""
    if yaml_available():
        import yaml

        data = yaml.safe_load(text)
        value = data.get("api_key") if isinstance(data, dict) else None
        return (value.strip() or None) if isinstance(value, str) else None
    for line in text.splitlines():
        match = _TOP_LEVEL_KEY.match(line)
        if match:
            return _scalar(match.group(1))
    return None


def yaml_available() -> bool:
    """True when PyYAML is installed (it is imported only when a config file is read)."""
    return importlib.util.find_spec("yaml") is not None


def _scalar(raw: str) -> str | None:
    """A one-line YAML scalar: quoted ('…' or "…") or plain up to a comment; None for anything else."""
    raw = raw.strip()
    if raw[:1] in ("'", '"'):
        quote = raw[0]
        end = raw.find(quote, 1)
        if end < 0 or raw[end + 1:].strip()[:1] not in ("", "#"):
            return None
        value = raw[1:end]
    else:
        value = re.split(r"\s#", raw, maxsplit=1)[0].strip()
        if value[:1] in ("|", ">", "[", "{", "&", "*", "!", "#"):  # blocks, collections, anchors, tags: not ours
            return None
    value = value.strip()
    return value or None


def _display_path(path: Path) -> str:
    try:
        return "~/" + path.relative_to(Path.home()).as_posix()
    except (ValueError, RuntimeError, KeyError):
        return str(path)


# -- the OS keychain -----------------------------------------------------------------------------------------


def keychain_disabled() -> bool:
    """True when VTRIX_NO_KEYCHAIN is set (as the vtrix CLI reads it: the file only), or keyring is not installed."""
    if os.environ.get(NO_KEYCHAIN_ENV, "").strip().lower() not in ("", "0", "false", "no"):
        return True
    return importlib.util.find_spec("keyring") is None


def _keychain() -> FoundKey | None:
    global _keychain_pending
    if keychain_disabled():
        return None
    with _lock:
        cached = _timed.get("keychain")
        if cached is not None and cached[0] > time.monotonic():
            return cached[1]
        if _keychain_pending is not None and _keychain_pending.is_alive():
            return None  # still waiting on the keychain (a prompt?): its answer lands in the cache when it comes
        done = threading.Event()
        thread = threading.Thread(target=_ask_keychain, args=(done,), name="spark-nb-keychain", daemon=True)
        _keychain_pending = thread
    thread.start()
    if not done.wait(KEYCHAIN_TIMEOUT_S):
        logger.debug("the OS keychain did not answer within %.0f s; going on without it", KEYCHAIN_TIMEOUT_S)
        return None
    with _lock:
        cached = _timed.get("keychain")
    return cached[1] if cached is not None else None


def _ask_keychain(done: threading.Event) -> None:
    found = None
    try:
        import keyring

        value = _stored_value(keyring.get_password(KEYCHAIN_SERVICE, KEYCHAIN_ACCOUNT))
        if value:
            found = FoundKey(value, f"the OS keychain ({KEYCHAIN_SERVICE})")
    except Exception as exc:  # no backend, locked, denied, D-Bus trouble: no key here
        logger.debug("no API key from the OS keychain (%s: %s)", type(exc).__name__, _short(exc))
    finally:
        with _lock:
            _timed["keychain"] = (time.monotonic() + RECHECK_S, found)
        done.set()


def _stored_value(value: Any) -> str | None:
    """The key a keychain entry holds, as the vtrix CLI's go-keyring wrote it: as it is, or (newer go-keyring
    versions) as `go-keyring-base64:<base64>` or `go-keyring-encoded:<hex>` of its UTF-8 bytes, decoded here.
    A value that does not decode is no key (said at DEBUG, never quoted)."""
    import base64
    import binascii

    if not isinstance(value, str) or not value.strip():
        return None
    value = value.strip()
    for prefix, decode in (("go-keyring-base64:", lambda text: base64.b64decode(text, validate=True)),
                           ("go-keyring-encoded:", bytes.fromhex)):
        if value.startswith(prefix):
            try:
                value = decode(value[len(prefix):].strip()).decode("utf-8").strip()
            except (binascii.Error, ValueError):  # UnicodeDecodeError is a ValueError
                logger.debug("the OS keychain entry (%s) is marked %s but does not decode: no key there",
                             KEYCHAIN_SERVICE, prefix.rstrip(":"))
                return None
            break
    return value or None


# -- Google Colab ------------------------------------------------------------------------------------------


def in_colab() -> bool:
    """True when google.colab is importable (running in Colab); nothing is imported to find out."""
    if "google.colab" in sys.modules:
        return True
    try:
        return importlib.util.find_spec("google.colab") is not None
    except (ImportError, ValueError):
        return False


def _colab() -> FoundKey | None:
    if not in_colab():
        return None
    with _lock:
        cached = _timed.get("colab")
    if cached is not None and cached[0] > time.monotonic():
        return cached[1]
    found = None
    until = time.monotonic() + RECHECK_S
    try:
        from google.colab import userdata

        get: Callable[[str], Any] = userdata.get
        value = get(COLAB_SECRET)
        if isinstance(value, str) and value.strip():
            found = FoundKey(value.strip(), f"Colab's secret {COLAB_SECRET}")
    except Exception as exc:  # SecretNotFoundError, NotebookAccessError, anything else: no key here
        logger.debug("no API key from Colab's secrets (%s)", type(exc).__name__)
        if type(exc).__name__ == "NotebookAccessError":
            until = math.inf  # the user said no to this notebook: do not ask again in this process
    with _lock:
        _timed["colab"] = (until, found)
    return found


def _short(exc: BaseException) -> str:
    return str(exc).splitlines()[0][:200] if str(exc) else ""
