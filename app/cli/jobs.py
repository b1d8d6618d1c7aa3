"""Working with jobs: submit, list, show; the escalation queue."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.table import Table
from sqlalchemy import select

from app.cli.common import (
    emit_json,
    prepare_database,
    prepare_services,
    setup_logging,
    through_api,
)
from app.core.db import session_scope
from app.errors import InputError
from app.human.decisions import REJECT_REASONS
from app.intake import submissions as intake
from app.jobs.views import (
    escalation_view,
    job_detail,
    job_summary,
    latest_escalation,
    require_job,
)
from app.models import Escalation, EscalationStatus, Job
from app.settings import cli_actor, get_settings


def read_submissions(path: Path) -> list[Any]:
    """A file holding one JSON submission or a list of them."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror}") from exc
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"{path} is not valid JSON: {exc.msg} at line {exc.lineno}") from exc
    items = data if isinstance(data, list) else [data]
    if not items:
        raise InputError(f"{path} holds no submissions")
    return items


def submit_via_api(raw: dict[str, Any]) -> dict[str, Any]:
    """POST one submission to the jobs API (the key is the caller's identity)."""
    body: dict[str, Any] = {k: raw[k] for k in ("workflow", "external_id", "input") if k in raw}
    body["requester"] = raw.get("requester") or cli_actor()
    answer = through_api("/v1/jobs", body)
    assert answer is not None  # the caller checked that the API is configured
    return {"job_id": answer["job_id"], "created": answer["created"]}


@click.command()
@click.argument("file", type=click.Path(path_type=Path, dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def submit(file: Path, as_json: bool) -> None:
    """Submit the job(s) in FILE: {"workflow", "external_id", "input", ...} or a list."""
    setup_logging()
    raw_items = read_submissions(file)
    # Validate everything first: one bad entry enqueues nothing.
    for i, raw in enumerate(raw_items):
        try:
            intake.parse_submission(raw)
        except InputError as exc:
            where = f" (entry {i + 1})" if len(raw_items) > 1 else ""
            raise InputError(f"{file}{where}: {exc}") from exc
    settings = get_settings()
    if settings.api_url and settings.api_key:
        results = [submit_via_api(raw) for raw in raw_items]
    else:
        prepare_services()
        actor = cli_actor()
        results = []
        for raw in raw_items:
            job_id, created = intake.submit(raw, submitted_by=actor)
            results.append({"job_id": job_id, "created": created})
    if as_json:
        emit_json(results)
        return
    for r in results:
        click.echo(
            f"{r['job_id']}  {'queued' if r['created'] else 'duplicate (already submitted)'}"
        )


@click.group("jobs")
def jobs_group() -> None:
    """List and inspect jobs."""


@jobs_group.command("list")
@click.option("--status", help="Only jobs in this status.")
@click.option("--workflow", help="Only jobs of this workflow.")
@click.option("--source", help="Only jobs from this source.")
@click.option(
    "--incidents", is_flag=True, help="Only incidents: writes a read-back did not confirm."
)
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 10_000))
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def jobs_list(
    status: str | None,
    workflow: str | None,
    source: str | None,
    incidents: bool,
    limit: int,
    as_json: bool,
) -> None:
    """List the newest jobs."""
    setup_logging()
    prepare_database()
    with session_scope() as session:
        query = select(Job).order_by(Job.created_at.desc()).limit(limit)
        if incidents:
            query = query.where(Job.incident.is_(True))
        for column, value in ((Job.status, status), (Job.workflow, workflow), (Job.source, source)):
            if value:
                query = query.where(column == value)
        rows = [job_summary(j, latest_escalation(session, j.id)) for j in session.scalars(query)]
    if as_json:
        emit_json(rows)
        return
    table = Table("id", "workflow", "source", "external id", "status", "reason")
    for r in rows:
        table.add_row(
            r["id"],
            r["workflow"],
            r["source"],
            r["external_id"],
            r["status"] + (" [red](incident)[/]" if r["incident"] else ""),
            r["escalation_reason"] or "",
        )
    Console().print(table)


@jobs_group.command("show")
@click.argument("job_id")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def jobs_show(job_id: str, as_json: bool) -> None:
    """Show a job: status, plan steps, events and escalation."""
    setup_logging()
    prepare_database()
    with session_scope() as session:
        job = require_job(session, job_id)
        detail = job_detail(session, job)
    if as_json:
        emit_json(detail)
        return
    _print_detail(detail)


def _print_detail(d: dict[str, Any]) -> None:
    console = Console()
    incident = "  [bold red]INCIDENT: a write was not confirmed by read-back[/]"
    console.print(
        f"[bold]{d['id']}[/]  {d['workflow']}  [bold]{d['status']}[/]"
        + (incident if d.get("incident") else "")
    )
    console.print(
        f"source {d['source']}:{d['external_id']}  requester {d['requester']}  "
        f"submitted by {d['submitted_by']}"
    )
    if d["plan"]["summary"]:
        console.print(
            f"plan ({d['plan']['tier']}, confidence {d['plan']['confidence']}): "
            f"{d['plan']['summary']}"
        )
    steps = Table("step", "tool", "status", "attempts", "idempotency key", "result")
    for s in d["steps"]:
        steps.add_row(
            s["step_id"],
            s["tool"],
            s["status"],
            str(s["attempts"]),
            s["idempotency_key"],
            s["result_id"] or "",
        )
    if d["steps"]:
        console.print(steps)
    if d["model_calls"]:
        models = Table("tier", "model", "prompt", "outcome", "cache", "tokens in/out", "cost USD")
        for m in d["model_calls"]:
            models.add_row(
                m["tier"],
                m["model"],
                m["prompt_version"],
                m["outcome"],
                "hit" if m["cache_hit"] else "",
                f"{m['input_tokens']}/{m['output_tokens']}",
                m["cost_usd"],
            )
        console.print(models)
    console.print(f"model cost: {d['cost_usd']} USD")
    events = Table("at", "from", "to", "actor", "reason")
    for e in d["events"]:
        events.add_row(e["at"], e["from"] or "", e["to"], e["actor"], e["reason"] or "")
    console.print(events)
    if d["escalation"]:
        esc = d["escalation"]
        console.print(f"[bold]escalation[/] {esc['reason']}: {esc['detail']}")
        console.print(json.dumps(esc["evidence"], indent=2, default=str))


def _operate(job_id: str, action: str, reason: str) -> None:
    remote = through_api(f"/v1/jobs/{job_id}/{action}", {"reason": reason})
    if remote is not None:
        click.echo(f"{job_id}  {remote['status']}")
        return
    from app.jobs import outbox
    from app.jobs.operations import perform

    prepare_services()
    with session_scope() as session:
        job = require_job(session, job_id)
        status = perform(session, job, action, actor=cli_actor(), reason=reason)
        session.commit()
        full_id = job.id
    outbox.publish_for_job(full_id)
    click.echo(f"{full_id}  {status}")


@jobs_group.command("cancel")
@click.argument("job_id")
@click.option("--reason", required=True, help="Why the job is stopped (recorded).")
def jobs_cancel(job_id: str, reason: str) -> None:
    """Cancel a job that has not finished; nothing more is written for it."""
    setup_logging()
    _operate(job_id, "cancel", reason)


@jobs_group.command("retry")
@click.argument("job_id")
def jobs_retry(job_id: str) -> None:
    """Run a failed job (or one escalated for a transient reason) again where it stopped."""
    setup_logging()
    _operate(job_id, "retry", "")


@jobs_group.command("resume")
@click.argument("job_id")
def jobs_resume(job_id: str) -> None:
    """Send a paused job back to its stage now."""
    setup_logging()
    _operate(job_id, "resume", "")


@click.group("escalations")
def escalations_group() -> None:
    """The human queue."""


@escalations_group.command("list")
@click.option("--all", "show_all", is_flag=True, help="Include decided escalations.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def escalations_list(show_all: bool, as_json: bool) -> None:
    """List open escalations, oldest first."""
    setup_logging()
    prepare_database()
    with session_scope() as session:
        query = select(Escalation).order_by(Escalation.id)
        if not show_all:
            query = query.where(Escalation.status == EscalationStatus.OPEN)
        rows = [escalation_view(e) for e in session.scalars(query)]
    if as_json:
        emit_json(rows)
        return
    table = Table("id", "job", "reason", "detail", "status")
    for r in rows:
        table.add_row(str(r["id"]), r["job_id"], r["reason"], r["detail"], r["status"])
    Console().print(table)


def _decide(escalation_id: int, body: dict[str, Any]) -> None:
    from app.human import decisions

    result = through_api(f"/v1/escalations/{escalation_id}/decision", body)
    if result is None:
        from app.jobs import outbox

        prepare_services()
        with session_scope() as session:
            esc = session.get(Escalation, escalation_id)
            if esc is None:
                raise InputError(f"no escalation {escalation_id}")
            result = decisions.decide(session, esc, decisions.Decision(**body), cli_actor())
            session.commit()
            job_id = esc.job_id
        outbox.publish_for_job(job_id)
    if result.get("awaiting"):
        click.echo(f"escalation {escalation_id}: approval recorded; a second reviewer must approve")
    else:
        click.echo(
            f"escalation {escalation_id}: {result['decision']} -> job {result['job_status']}"
        )


@escalations_group.command("claim")
@click.argument("escalation_id", type=int)
def escalations_claim(escalation_id: int) -> None:
    """Take an escalation for yourself (others cannot decide it while the claim holds)."""
    from app.human import decisions

    setup_logging()
    result = through_api(f"/v1/escalations/{escalation_id}/claim", {})
    if result is None:
        prepare_services(redis=False)
        with session_scope() as session:
            esc = session.get(Escalation, escalation_id)
            if esc is None:
                raise InputError(f"no escalation {escalation_id}")
            result = decisions.claim(session, esc, cli_actor())
            session.commit()
    click.echo(
        f"escalation {escalation_id} claimed by {result['claimed_by']} until "
        f"{result['claimed_until']}"
    )


@click.command("approve")
@click.argument("escalation_id", type=int)
@click.option("--note", default="", help="Recorded with the decision.")
@click.option(
    "--args",
    "edited",
    default=None,
    help="Approve with these arguments instead (JSON object: the step's whole set); the "
    "edited step is a new revision with a new key, verified again before it runs.",
)
def approve(escalation_id: int, note: str, edited: str | None) -> None:
    """Approve an escalated action (or a shadow proposal): it gets a signed token."""
    setup_logging()
    if edited is None:
        _decide(escalation_id, {"decision": "approve", "note": note})
        return
    try:
        args = json.loads(edited)
    except json.JSONDecodeError as exc:
        raise InputError(f"--args is not JSON: {exc}") from exc
    if not isinstance(args, dict):
        raise InputError("--args must be a JSON object")
    _decide(escalation_id, {"decision": "edit", "args": args, "note": note})


@click.command("reject")
@click.argument("escalation_id", type=int)
@click.option(
    "--reason",
    "reason_code",
    required=True,
    type=click.Choice(REJECT_REASONS),
    help="Why (recorded).",
)
@click.option("--note", default="", help="Free text recorded with the reason.")
def reject(escalation_id: int, reason_code: str, note: str) -> None:
    """Reject an escalation: the job ends `rejected`, nothing more is written."""
    setup_logging()
    _decide(escalation_id, {"decision": "reject", "reason_code": reason_code, "note": note})
