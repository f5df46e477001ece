"""A throw-away PostgreSQL server for shared Optuna studies (tests, and trying ``--storage``).

``python -m qsilicon.search.pgserver start DIR`` initializes a cluster in ``DIR`` with Debian's
``postgresql`` package binaries (``/usr/lib/postgresql/<version>/bin``; the Makefile installs the
package), starts it on a free localhost port with trust authentication, creates the database
``qsilicon`` and prints its URL; ``stop DIR`` stops it.  As root the server runs as the
``postgres`` user (PostgreSQL refuses to run as root).
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

__all__ = ["PostgresError", "find_bin", "start", "stop"]


class PostgresError(RuntimeError):
    """The server cannot be found or started; the message says why and what to do."""


def find_bin() -> Path:
    dirs = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda d: int(Path(d).parent.name))
    if not dirs or not (Path(dirs[-1]) / "initdb").exists():
        raise PostgresError("PostgreSQL server binaries not found in /usr/lib/postgresql/*/bin: install Debian's "
                            "'postgresql' package (make setup does)")
    return Path(dirs[-1])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _as_server_user(cmd: list[str]) -> list[str]:
    if os.geteuid() != 0:
        return cmd
    return ["runuser", "-u", "postgres", "--", *cmd]


def _run(cmd: list[str], what: str) -> None:
    p = subprocess.run(_as_server_user(cmd), capture_output=True, text=True)
    if p.returncode:
        err = (p.stderr or p.stdout).strip().splitlines()
        raise PostgresError(f"{what} failed: {err[-1] if err else 'exit ' + str(p.returncode)}")


def start(directory) -> str:
    """Initialize (if needed) and start a server in ``directory``; return its SQLAlchemy URL."""
    bindir = find_bin()
    d = Path(directory).resolve()
    data = d / "data"
    d.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:
        shutil.chown(d, "postgres", "postgres")
    if not (data / "PG_VERSION").exists():
        _run([str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres", "-E", "UTF8"], "initdb")
    port = _free_port()
    _run([str(bindir / "pg_ctl"), "-D", str(data), "-l", str(d / "server.log"), "-w", "-t", "60",
          "-o", f"-p {port} -k {d} -c listen_addresses=127.0.0.1 -c max_connections=50", "start"], "pg_ctl start")
    (d / "port").write_text(str(port))
    url = f"postgresql://postgres@127.0.0.1:{port}/qsilicon"
    deadline = time.time() + 30
    while True:
        p = subprocess.run(_as_server_user([str(bindir / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U",
                                            "postgres", "qsilicon"]), capture_output=True, text=True)
        if p.returncode == 0 or "already exists" in p.stderr:
            return url
        if time.time() > deadline:
            raise PostgresError(f"createdb failed: {p.stderr.strip()}")
        time.sleep(0.5)


def stop(directory) -> None:
    bindir = find_bin()
    data = Path(directory).resolve() / "data"
    if (data / "postmaster.pid").exists():
        _run([str(bindir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"], "pg_ctl stop")


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 2 or argv[0] not in ("start", "stop"):
        print("usage: python -m qsilicon.search.pgserver {start|stop} DIR", file=sys.stderr)
        return 2
    try:
        if argv[0] == "start":
            print(start(argv[1]))
        else:
            stop(argv[1])
    except PostgresError as e:
        print(f"pgserver: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
