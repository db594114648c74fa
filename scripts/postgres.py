#!/usr/bin/env python3
"""A real PostgreSQL server for development and tests, started with the server's own `initdb`
and `pg_ctl` (Debian's `postgresql` package; found on PATH or in /usr/lib/postgresql/*/bin).

    python3 scripts/postgres.py up   [--dir .postgres]   # prints the history store URL
    python3 scripts/postgres.py down [--dir .postgres]

Each folder gets its own cluster on a free loopback port (trust authentication, user
`eventflow`, loopback only), `url` (an SQLAlchemy URL for `EVENTFLOW_HISTORY_URL`) and
`server.log`. PostgreSQL refuses to run as root: as root the cluster lives in a folder owned by
the `postgres` user (or `nobody`) under the system's temporary folder, recorded in `datadir`.
Standard library only.
"""

from __future__ import annotations

import argparse
import glob
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import IO

USER = "eventflow"


def binary(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), reverse=True)
        found = candidates[0] if candidates else None
    if found is None:
        sys.exit(f"postgres: `{name}` is not installed (apt-get install postgresql)")
    return found


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def runner() -> pwd.struct_passwd | None:
    """The unprivileged account to run the server as when we are root; None otherwise."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    sys.exit("postgres: running as root and no `postgres` or `nobody` account to run the server")


def run(args: list[str], account: pwd.struct_passwd | None, out: IO[bytes] | None = None) -> int:
    """Run a server tool, as `account` when given, its output to `out` (else dropped); returns
    its exit status."""
    done = subprocess.run(
        args,
        stdin=subprocess.DEVNULL,
        stdout=out if out is not None else subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
        user=account.pw_uid if account is not None else None,
        group=account.pw_gid if account is not None else None,
        extra_groups=[] if account is not None else None,
    )
    return done.returncode


def datadir(folder: Path) -> Path:
    recorded = folder / "datadir"
    if recorded.exists():
        return Path(recorded.read_text().strip())
    return folder / "data"


def up(folder: Path, timeout: float) -> str:
    folder = folder.resolve()
    folder.mkdir(parents=True, exist_ok=True)
    account = runner()
    data = datadir(folder)
    pg_ctl = binary("pg_ctl")
    if (folder / "url").exists() and run([pg_ctl, "status", "-D", str(data)], account) == 0:
        return (folder / "url").read_text().strip()
    if not (data / "PG_VERSION").exists():
        if account is not None:
            data = Path(tempfile.mkdtemp(prefix="eventflow-postgres-")) / "data"
            os.chown(data.parent, account.pw_uid, account.pw_gid)
            (folder / "datadir").write_text(f"{data}\n")
        log = folder / "initdb.log"
        with open(log, "wb") as out:
            status = run(
                [
                    binary("initdb"),
                    "-D",
                    str(data),
                    "-U",
                    USER,
                    "--auth=trust",
                    "-E",
                    "UTF8",
                    "--no-sync",
                ],
                account,
                out,
            )
        if status != 0:
            sys.exit(f"postgres: initdb failed:\n{log.read_text(errors='replace')[-3000:]}")
    port = free_port()
    server_log = data.parent / "server.log" if account is not None else folder / "server.log"
    options = (
        f"-c listen_addresses=127.0.0.1 -p {port} -c unix_socket_directories={data} "
        "-c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200"
    )
    status = run(
        [
            pg_ctl,
            "start",
            "-D",
            str(data),
            "-l",
            str(server_log),
            "-w",
            "-t",
            str(int(timeout)),
            "-o",
            options,
        ],
        account,
    )
    if status != 0:
        tail = server_log.read_text(errors="replace")[-3000:] if server_log.exists() else ""
        sys.exit(f"postgres: the server did not start:\n{tail}")
    url = f"postgresql+asyncpg://{USER}@127.0.0.1:{port}/postgres"
    (folder / "url").write_text(f"{url}\n")
    return url


def down(folder: Path) -> None:
    folder = folder.resolve()
    account = runner()
    data = datadir(folder)
    if (data / "postmaster.pid").exists():
        run([binary("pg_ctl"), "stop", "-D", str(data), "-m", "fast", "-w"], account)
    if (folder / "datadir").exists():
        shutil.rmtree(data.parent, ignore_errors=True)
    shutil.rmtree(folder, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("command", choices=["up", "down"])
    parser.add_argument("--dir", type=Path, default=Path(".postgres"), help="server folder")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for ready")
    args = parser.parse_args()
    if args.command == "up":
        print(up(args.dir, args.timeout))
    else:
        down(args.dir)


if __name__ == "__main__":
    main()
