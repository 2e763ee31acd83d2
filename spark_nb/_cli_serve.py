"""`spark-nb serve`: the local server from the shell, on the address it checked (loopback, or the network with a
key), with the key it requires read as every key is, until SIGINT or SIGTERM."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from .errors import SparkError

SERVER_KEY_ENV = "SPARK_NB_SERVER_API_KEY"
MAX_KEY_FILE_BYTES = 4096  # a key is a line; a larger file is not one


def serve(args: argparse.Namespace) -> int:
    """Serve until SIGINT or SIGTERM, then stop renders and children and remove the storage within seconds."""
    import signal

    from .local import LocalServer

    key = _server_key(args)
    host, loopback = _bind_address(args.host)
    network = not loopback
    if network and key is None:
        raise SparkError(f"--host {args.host} makes the server reachable from the network (127.0.0.1 keeps it on "
                         f"this machine), so it must require a key: pass --api-key-file FILE or set "
                         f"${SERVER_KEY_ENV}")
    server = LocalServer(host, args.port, latency=args.latency, faults=args.faults, fault_seed=args.fault_seed,
                         api_key=key, longest_side=args.render_size, cost_per_second=args.cost_per_second,
                         render_workers=max(1, args.render_workers), spec_drift=args.spec_drift)
    try:
        server.start()
    except SparkError as exc:
        raise SparkError(_listen_failure(exc, host, args.port)) from None

    def stop(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)  # also when started in the background, where SIGINT comes ignored
    reach = "reachable from the network, requests need the key; " if network else ""
    print(f"spark-nb local server on {server.url} ({reach}Ctrl-C to stop)", flush=True)
    print(f"to use it from another shell: export VTRIX_GENERATION_URL={server.url} "
          f"VTRIX_API_KEY={_key_word(args, key)} SPARK_NB_UPLOAD_URL={server.url}/api/v1/storage/files", flush=True)
    try:
        while server.running:
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        server.stop()
    return 0


def _key_word(args: argparse.Namespace, key: str | None) -> str:
    """How the printed exports spell the key this server requires, never the key itself (any key without one)."""
    import shlex

    if key is None:
        return "anything"
    if args.api_key_file:
        return f'"$(cat {shlex.quote(args.api_key_file)})"'
    return f'"${SERVER_KEY_ENV}"' if not args.api_key else "THE_KEY_PASSED_TO_--api-key"


def _bind_address(host: str) -> tuple[str, bool]:
    """The address `serve --host host` binds, and whether that keeps the server on this machine. The name is
    normalised once (spaces, [brackets], a final dot, case) and what is bound is what was checked: an address as
    it is; a name resolved here, loopback only when every address it resolves to is, its first IPv4 address bound
    (else its first). A name that does not resolve is not loopback (binding it then fails, saying so)."""
    import ipaddress
    import socket

    name = host.strip()
    name = name[1:-1] if name.startswith("[") and name.endswith("]") else name
    name = name.rstrip(".").lower() if name not in ("", ".") else name
    if not name:  # every interface
        return "0.0.0.0", False
    try:
        return name, ipaddress.ip_address(name.split("%")[0]).is_loopback
    except ValueError:
        pass
    try:
        addresses = [str(info[4][0]) for info in socket.getaddrinfo(name, None, type=socket.SOCK_STREAM)]
    except (OSError, UnicodeError):
        return name, False
    loopback = all(ipaddress.ip_address(address.split("%")[0]).is_loopback for address in addresses)
    return next((a for a in addresses if ":" not in a), addresses[0]), loopback


def _listen_failure(exc: SparkError, host: str, port: int) -> str:
    """One line for a server that cannot listen: which port, and what to do (a taken port named as such)."""
    import errno

    cause = exc.__cause__
    if isinstance(cause, OSError) and cause.errno == errno.EADDRINUSE:
        return (f"cannot listen on {host}:{port}: port {port} is in use; pass --port N (0 picks a free one) "
                f"or stop the other server")
    return f"{exc.headline}; {exc.hint}" if exc.hint else exc.headline


def _server_key(args: argparse.Namespace) -> str | None:
    """The key `serve` requires, checked as every key is (`_config.Secret`: one line of printable ASCII, naming its
    source when refused): from --api-key-file, then $SPARK_NB_SERVER_API_KEY, then --api-key (warned)."""
    import os

    from ._config import Secret

    if args.api_key_file:
        return Secret(_key_file_text(args.api_key_file), source=f"the key file {args.api_key_file}").reveal()
    if os.environ.get(SERVER_KEY_ENV):
        return Secret(os.environ[SERVER_KEY_ENV], source=f"${SERVER_KEY_ENV}").reveal()
    if args.api_key:
        print(f"spark-nb serve: warning: --api-key is visible to every user of this machine (ps); use "
              f"--api-key-file or ${SERVER_KEY_ENV} instead", file=sys.stderr)
        return Secret(args.api_key, source="--api-key").reveal()
    return None


def _key_file_text(path: str) -> str:
    """The text of a key file, read as every configuration file is (`_keys.read_small_file`: a regular file, small,
    never blocking: a FIFO, a device or a directory is refused unopened), UTF-8, not empty."""
    from ._keys import read_small_file

    fix = f"write the key alone into {path}, on one line (at most {MAX_KEY_FILE_BYTES} bytes, UTF-8)"
    try:
        text = read_small_file(Path(path), MAX_KEY_FILE_BYTES).decode("utf-8")
    except OSError as exc:
        raise SparkError(f"cannot read the key file {path}: {exc.strerror or exc}", hint=fix) from None
    except UnicodeDecodeError:
        raise SparkError(f"the key file {path} is not UTF-8 text", hint=fix) from None
    except ValueError as exc:  # not a regular file, or too large
        raise SparkError(f"the key file {path} is {exc}: it was not read", hint=fix) from None
    if not text.strip():
        raise SparkError(f"the key file {path} is empty", hint=fix)
    return text
