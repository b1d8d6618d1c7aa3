"""The engine of `opsgate eval`: each set as one or more runs, each run in an isolated world,
every case of a run submitted at once; the result of every case and run-wide check."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from evals import adversarial, adversarial_run, correctness, correctness_run
from evals.observe import job_stats, wait_settled
from evals.report import RunResult
from evals.world import World, WorldSpec, isolated_world

# A set's runs: correctness once (rules tier, no model); the adversarial set with the soft
# check's judge off and with a compromised judge on.
SETS: dict[str, tuple[str, ...]] = {
    "correctness": ("correctness",),
    "adversarial": ("adversarial:judge-off", "adversarial:judge-on"),
}

Progress = Callable[[str, int, int], None]


class UnknownSet(ValueError):
    """Raised when a set name is not one of SETS."""


@dataclass(frozen=True)
class Options:
    """How to run: the config/ to copy, worker threads, and the settle timeout per run."""

    config_dir: Path
    concurrency: int = 16
    timeout: float = 600.0


def runs_of(sets: list[str]) -> list[str]:
    """The runs the named sets make (all sets when none is named), in order."""
    unknown = [s for s in sets if s not in SETS]
    if unknown:
        raise UnknownSet(f"unknown set {', '.join(unknown)}; known: {', '.join(SETS)}")
    names = sets or list(SETS)
    return [run for name in dict.fromkeys(names) for run in SETS[name]]


def run(sets: list[str], options: Options, progress: Progress | None = None) -> list[RunResult]:
    """Every run of the named sets, one after the other (each in a world of its own)."""
    results = []
    for name in runs_of(sets):
        if name == "correctness":
            results.append(_correctness(options, progress))
        else:
            results.append(_adversarial(name, options, progress))
    return results


def _tick(name: str, progress: Progress | None) -> Callable[[int, int], None] | None:
    if progress is None:
        return None
    return lambda done, total: progress(name, done, total)


def _finish(world: World, result: RunResult) -> RunResult:
    if result.timed_out:
        world.keep = True
        result.failed_checks.append(f"not every job settled; logs kept in {world.home}/var")
    return result


def _correctness(options: Options, progress: Progress | None) -> RunResult:
    case_file = correctness.load_cases()
    cases = case_file.cases
    spec = WorldSpec(
        name="correctness",
        config_dir=options.config_dir,
        worker_threads=options.concurrency,
        api=True,
        env=correctness_run.intake_env(case_file.salesforce_organization_id),
    )
    with isolated_world(spec) as world:
        assert world.api_url is not None
        correctness_run.seed_worlds(world.sandbox_url, cases)
        started = time.monotonic()
        job_ids = correctness_run.deliver_all(world.api_url, cases)
        found, timed_out = wait_settled(job_ids, options.timeout, _tick("correctness", progress))
        elapsed = time.monotonic() - started
        stats = job_stats(list(job_ids.values()))
        results, stray = correctness_run.judge_all(
            world.sandbox_url, cases, found, world.applied_writes(), stats, job_ids
        )
        return _finish(
            world,
            RunResult("correctness", results, stray, elapsed_s=elapsed, timed_out=timed_out),
        )


def _adversarial(name: str, options: Options, progress: Progress | None) -> RunResult:
    judge = name.endswith("judge-on")
    cases = adversarial.load_cases()
    spec = WorldSpec(
        name=name.replace(":", "-"),
        config_dir=options.config_dir,
        worker_threads=options.concurrency,
        model=True,
        skip_rules=adversarial.WORKFLOWS,
        judge=judge,
    )
    with isolated_world(spec) as world:
        adversarial_run.prepare(world.sandbox_url, cases, judge)
        started = time.monotonic()
        job_ids = adversarial_run.submit_all(cases)
        found, timed_out = wait_settled(job_ids, options.timeout, _tick(name, progress))
        elapsed = time.monotonic() - started
        stats = job_stats(list(job_ids.values()))
        results, stray = adversarial_run.judge_all(
            cases, found, world.applied_writes(), stats, job_ids, judge
        )
        requests = adversarial_run.model_requests(world.sandbox_url)
        checks = adversarial_run.run_checks(cases, found, requests, judge)
        return _finish(
            world,
            RunResult(name, results, stray, checks, elapsed_s=elapsed, timed_out=timed_out),
        )
