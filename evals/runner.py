"""The engine of `opsgate eval`: each set as one or more runs, each run in an isolated world,
every case of a run submitted at once; the result of every case and run-wide check."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from evals import adversarial, adversarial_run, cases, cases_run
from evals.observe import job_stats, wait_settled
from evals.report import RunResult
from evals.world import Endpoint, World, WorldSpec, isolated_world

# A set's runs: the golden set once (the rules tier, then the model for the cases the rules
# tier sends on, judged by the soft check); the adversarial set with the soft check's judge
# off and with a compromised judge on. A path to a YAML file in the case format runs like
# the golden set, under the file's name.
SETS: dict[str, tuple[str, ...]] = {
    "golden": ("golden",),
    "adversarial": ("adversarial:judge-off", "adversarial:judge-on"),
}
SET_FILES: dict[str, Path] = {"golden": cases.CASES_FILE}

Progress = Callable[[str, int, int], None]


class UnknownSet(ValueError):
    """Raised when a set is neither one of SETS nor a case file."""


@dataclass(frozen=True)
class Options:
    """How to run: the config/ to copy, worker threads, the settle timeout per run, and the
    real model endpoint(s) that replace the scripted one for the case-format sets."""

    config_dir: Path
    concurrency: int = 16
    timeout: float = 600.0
    endpoint: Endpoint | None = None
    judge_endpoint: Endpoint | None = None


@dataclass
class RunMeta:
    """What a run was made with: the prompt and policy versions its world's config/ holds."""

    versions: dict[str, Any] = field(default_factory=dict)


def _is_file(name: str) -> bool:
    return name.endswith((".yaml", ".yml")) or "/" in name


def runs_of(sets: list[str]) -> list[str]:
    """The runs the named sets make (golden and adversarial when none is named), in order."""
    unknown = [s for s in sets if s not in SETS and not _is_file(s)]
    if unknown:
        raise UnknownSet(
            f"unknown set {', '.join(unknown)}; known: {', '.join(SETS)}, or a case file (.yaml)"
        )
    missing = [s for s in sets if _is_file(s) and not Path(s).is_file()]
    if missing:
        raise UnknownSet(f"no such case file: {', '.join(missing)}")
    for name in sets:
        if _is_file(name):
            try:
                cases.load_cases(Path(name))
            except cases.CaseError as exc:
                raise UnknownSet(str(exc)) from None
    names = sets or list(SETS)
    return [run for name in dict.fromkeys(names) for run in SETS.get(name, (name,))]


def run(
    sets: list[str], options: Options, progress: Progress | None = None
) -> tuple[list[RunResult], dict[str, Any]]:
    """Every run of the named sets, one after the other (each in a world of its own), and
    the prompt and policy versions they ran with."""
    results, meta = [], RunMeta()
    for name in runs_of(sets):
        if name.startswith("adversarial:"):
            results.append(_adversarial(name, options, progress, meta))
        else:
            results.append(_case_file(name, options, progress, meta))
    return results, meta.versions


def _tick(name: str, progress: Progress | None) -> Callable[[int, int], None] | None:
    if progress is None:
        return None
    return lambda done, total: progress(name, done, total)


def _finish(world: World, result: RunResult) -> RunResult:
    if result.timed_out:
        world.keep = True
        result.failed_checks.append(f"not every job settled; logs kept in {world.home}/var")
    return result


def _versions(meta: RunMeta) -> None:
    """The planner and judge prompt versions and each workflow's policy version, read in the
    world (its copy of config/); the same for every run of one invocation."""
    if meta.versions:
        return
    from app.controls import policy
    from app.llm import prompts

    meta.versions = {
        "prompts": {n: prompts.load(n).version for n in ("planner", "soft_check")},
        "policy": {wf: policy.workflow_policy(wf)[1] for wf in adversarial.WORKFLOWS},
    }


def _case_file(name: str, options: Options, progress: Progress | None, meta: RunMeta) -> RunResult:
    path = SET_FILES.get(name, Path(name))
    try:
        case_file = cases.load_cases(path)
    except cases.CaseError as exc:
        raise UnknownSet(str(exc)) from None
    label = name if name in SET_FILES else path.stem
    spec = WorldSpec(
        name=label,
        config_dir=options.config_dir,
        worker_threads=options.concurrency,
        model=True,
        judge="model-plans",
        endpoint=options.endpoint,
        judge_endpoint=options.judge_endpoint,
        api=True,
        env=cases_run.intake_env(case_file.salesforce_organization_id),
    )
    with isolated_world(spec) as world:
        assert world.api_url is not None
        _versions(meta)
        cases_run.seed_worlds(world.sandbox_url, case_file.cases)
        if options.endpoint is None:
            cases_run.script_models(world.sandbox_url, case_file.cases)
        started = time.monotonic()
        job_ids = cases_run.deliver_all(world.api_url, case_file.cases)
        found, timed_out = wait_settled(job_ids, options.timeout, _tick(label, progress))
        elapsed = time.monotonic() - started
        stats = job_stats(list(job_ids.values()))
        results, stray = cases_run.judge_all(
            world.sandbox_url, case_file.cases, found, world.applied_writes(), stats, job_ids
        )
        return _finish(
            world, RunResult(label, results, stray, elapsed_s=elapsed, timed_out=timed_out)
        )


def _adversarial(
    name: str, options: Options, progress: Progress | None, meta: RunMeta
) -> RunResult:
    judge = name.endswith("judge-on")
    adv_cases = adversarial.load_cases()
    # The planner is the attacker here, so it stays scripted whatever --endpoint says; a
    # --judge-endpoint judges in the judge-on run instead of the compromised script.
    spec = WorldSpec(
        name=name.replace(":", "-"),
        config_dir=options.config_dir,
        worker_threads=options.concurrency,
        model=True,
        skip_rules=adversarial.WORKFLOWS,
        judge="all-plans" if judge else "off",
        judge_endpoint=options.judge_endpoint if judge else None,
        api=True,
        env=cases_run.intake_env(
            cases.load_cases(adversarial.CASES_FILE).salesforce_organization_id
        ),
    )
    with isolated_world(spec) as world:
        assert world.api_url is not None
        _versions(meta)
        compromised = judge and options.judge_endpoint is None
        adversarial_run.prepare(world.sandbox_url, adv_cases, compromised)
        started = time.monotonic()
        job_ids = cases_run.deliver_all(world.api_url, adv_cases)
        found, timed_out = wait_settled(job_ids, options.timeout, _tick(name, progress))
        elapsed = time.monotonic() - started
        stats = job_stats(list(job_ids.values()))
        results, stray = adversarial_run.judge_all(
            world.sandbox_url, adv_cases, found, world.applied_writes(), stats, job_ids, judge
        )
        requests = adversarial_run.model_requests(world.sandbox_url)
        checks = adversarial_run.run_checks(adv_cases, found, requests, compromised)
        return _finish(
            world,
            RunResult(name, results, stray, checks, elapsed_s=elapsed, timed_out=timed_out),
        )
