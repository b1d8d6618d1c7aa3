"""A PostgreSQL server of a test's own (initdb and pg_ctl on a free port), which the test may
stop and restart: the chaos case of a database restarted under load."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import psycopg

from tests.support.processes import free_port


def postgres_bin_dir() -> Path | None:
    """Where initdb, pg_ctl and postgres are: on PATH, or the newest /usr/lib/postgresql/*."""
    found = shutil.which("pg_ctl")
    if found and shutil.which("initdb"):
        return Path(found).parent
    dirs = sorted(
        Path("/usr/lib/postgresql").glob("*/bin"),
        key=lambda d: int(d.parent.name) if d.parent.name.isdigit() else 0,
    )
    return next((d for d in reversed(dirs) if (d / "pg_ctl").exists()), None)


class PostgresServer:
    """A PostgreSQL server of the test's own on a free port, which the test may stop and
    restart; its data directory survives a restart (unlike RedisServer's)."""

    def __init__(self, bin_dir: Path, workdir: Path, as_user: str | None) -> None:
        self.bin_dir, self.workdir, self.as_user = bin_dir, workdir, as_user
        self.data = workdir / "data"
        self.port = free_port()
        self.admin_url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/opsgate"

    def _run(self, tool: str, *args: str) -> None:
        # PostgreSQL refuses to run as root: as root, its binaries run as the server's user.
        prefix = ["runuser", "-u", self.as_user, "--"] if self.as_user else []
        done = subprocess.run(
            [*prefix, str(self.bin_dir / tool), *args], capture_output=True, text=True
        )
        if done.returncode != 0:
            log = self.workdir / "server.log"
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            raise AssertionError(f"{tool} {args[:3]} failed: {done.stderr}{done.stdout}{tail}")

    def init(self) -> None:
        """Make the cluster (trust auth, superuser `postgres`) and the `opsgate` database."""
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8")
        self.start()
        with psycopg.connect(self.admin_url, autocommit=True, connect_timeout=5) as conn:
            conn.execute("CREATE DATABASE opsgate")

    def start(self) -> None:
        """Start (or restart) the server on the same port; returns once it accepts connections."""
        options = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 "
            f"-c unix_socket_directories={self.workdir} -c fsync=off"
        )
        self._run(
            "pg_ctl",
            "start",
            "-D",
            str(self.data),
            "-l",
            str(self.workdir / "server.log"),
            "-o",
            options,
            "-w",
            "-t",
            "60",
        )

    def stop(self, mode: str = "fast") -> None:
        """Stop the server (`fast`: open connections are cut, transactions rolled back)."""
        if (self.data / "postmaster.pid").exists():
            self._run("pg_ctl", "stop", "-D", str(self.data), "-m", mode, "-w", "-t", "60")
