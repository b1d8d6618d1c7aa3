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
