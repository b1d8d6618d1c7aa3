"""`opsgate audit show|verify|export|checkpoint` and `opsgate data erase|purge`."""

from __future__ import annotations

import json
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any, TextIO

import click
from rich.console import Console
from rich.table import Table
from sqlalchemy import func, select

from app.api.privacy import as_data
from app.audit import checkpoints, verify
from app.audit.story import Story, story
from app.cli.common import emit_json, prepare_database, setup_logging, through_api
from app.core.db import session_scope
from app.core.timespec import parse_since
from app.errors import InputError
from app.jobs.views import require_job
from app.models import AuditCheckpoint, AuditEvent
from app.privacy import erasure
from app.settings import cli_actor


@click.group("audit")
def audit_group() -> None:
    """The tamper-evident audit trail: tell a job's story, verify, export."""


@audit_group.command("show")
@click.argument("job_id")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def audit_show(job_id: str, as_json: bool) -> None:
    """Who asked, which agent acted, what data it saw, what it proposed, who allowed it,
    what changed where under which identity, and what it cost."""
    setup_logging()
    prepare_database()
    with session_scope() as session:
        job = require_job(session, job_id)
        told = story(session, job)
    if as_json:
        emit_json(told)
        return
    _print_story(told)


def _print_story(t: Story) -> None:
    c = Console(width=max(Console().width, 120))
    job, who = t["job"], t["who_asked"]
    incident = "  [bold red]INCIDENT[/]" if job["incident"] else ""
    c.print(f"[bold]job {job['id']}[/]  {job['workflow']}  [bold]{job['status']}[/]{incident}")
    c.print("\n[bold]Who asked[/]")
    c.print(
        f"  {who['requester']} (ref {who['requester_ref']}), vouched for by "
        f"{who['submitted_by']}, via {who['source']} {who['external_id']}"
    )
    c.print("\n[bold]Which agent runtime acted[/]")
    c.print("  " + (", ".join(t["agent_runtimes"]) or "none (nothing ran)"))
    c.print("\n[bold]What data it saw[/]")
    for d in t["data_seen"]:
        if "tool" in d:
            c.print(f"  {d['tool']} as {d['service_identity']} ({d['stage']}): {d['outcome']}")
        else:
            c.print(
                f"  model {d['model']} ({d['tier']}, {d['prompt_version']}), policy passages "
                f"{', '.join(d['passages']) or 'none'}: {d['outcome']}"
            )
    p = t["proposed"]
    c.print(f"\n[bold]What it proposed[/] (tier {p['tier']}, confidence {p['confidence']})")
    c.print(f"  {p['summary']}")
    for s in p["steps"]:
        c.print(
            f"  {s['step_id']} r{s['revision']} {s['tool']} {json.dumps(s['args'])}: {s['status']}"
        )
    c.print("\n[bold]Which rules and people allowed it[/]")
    for a in t["allowed_by"]:
        c.print(f"  #{a['seq']} {a['what']}  ({a['actor']})")
    if t["escalations"]:
        for e in t["escalations"]:
            decided = f", {e['decision']} by {e['decided_by']}" if e["decision"] else ""
            c.print(f"  escalated: {e['reason']}: {e['detail']} [{e['status']}{decided}]")
    c.print("\n[bold]What changed[/]")
    for ch in t["changed"] or []:
        c.print(
            f"  {ch['step']} {ch['tool']} in {ch['system']} as {ch['service_identity']} "
            f"(agent {ch['agent']}, for requester ref {ch['requester_ref']}): {ch['result_id']}"
            + (f", approval {ch['approval_id']}" if ch["approval_id"] else "")
        )
    if not t["changed"]:
        c.print("  nothing was written")
    cost = t["cost"]
    c.print(
        f"\n[bold]What it cost[/]  {cost['model_usd']} USD in {cost['model_calls']} model "
        f"call(s) ({cost['input_tokens']}+{cost['output_tokens']} tokens), "
        f"{cost['tool_calls']} tool call(s)"
    )
    table = Table("#", "at", "kind", "actor", "what", title="timeline", title_justify="left")
    for ev in t["timeline"]:
        table.add_row(str(ev["seq"]), (ev["at"] or "")[:19], ev["kind"], ev["actor"], ev["what"])
    c.print(table)
    chain = t["chain"]
    if chain["verified"]:
        c.print(f"[green]chain verified[/]: {chain['events']} events")
    else:
        for b in chain["breaks"]:
            c.print(f"[bold red]chain broken[/]: {b['chain']} at {b['seq']}: {b['problem']}")


@audit_group.command("verify")
@click.option("--job", "job_id", help="Verify one job's chain (and the checkpoints) only.")
@click.option(
    "--anchor",
    "anchors",
    multiple=True,
    help="A checkpoint hash kept outside the database (e.g. from the logs) that must be there.",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def audit_verify(job_id: str | None, anchors: tuple[str, ...], as_json: bool) -> None:
    """Recompute every chain and the checkpoints; name the first broken link of each.
    Exit 1 on any break."""
    setup_logging()
    prepare_database()
    with session_scope() as session:
        if job_id is not None:
            job = require_job(session, job_id)
            breaks = verify.one_job(session, job.id)
            chains = 1
        else:
            breaks = verify.whole_trail(session)
            chains = session.scalar(select(func.count(func.distinct(AuditEvent.job_id)))) or 0
        anchored, _ = checkpoints.replay(session)
        events = session.scalar(select(func.count()).select_from(AuditEvent)) or 0
        newest = session.scalar(select(func.max(AuditCheckpoint.seq))) or 0
    missing = [a for a in anchors if a not in anchored.hashes]
    result = {
        "chains": chains,
        "events": events,
        "checkpoints": newest,
        "anchored_chains": len(anchored.heads),
        "breaks": [{"chain": b.job_id, "seq": b.seq, "problem": b.problem} for b in breaks],
        "missing_anchors": missing,
        "ok": not breaks and not missing,
    }
    if as_json:
        emit_json(result)
    else:
        for b in breaks:
            click.echo(f"BROKEN {b.job_id} at {b.seq}: {b.problem}")
        for a in missing:
            click.echo(f"BROKEN checkpoints: anchor {a} is not in the checkpoint chain")
        verdict = "verified" if result["ok"] else "NOT verified"
        click.echo(
            f"{verdict}: {chains} chain(s), {events} event(s), {newest} checkpoint(s) "
            f"anchoring {len(anchored.heads)} chain(s)"
        )
    if not result["ok"]:
        sys.exit(1)


@audit_group.command("export")
@click.option("--job", "job_id", help="Only this job's chain.")
@click.option("--since", help="Only events at or after this time (ISO date/time, or 24h, 7d).")
@click.option(
    "--output", type=click.Path(dir_okay=False, path_type=Path), help="Write to FILE, not stdout."
)
def audit_export(job_id: str | None, since: str | None, output: Path | None) -> None:
    """Every audit event as JSON lines, oldest first, for a SIEM (checkpoints included)."""
    setup_logging()
    prepare_database()
    start = parse_since(since) if since else None
    with session_scope() as session:
        query = select(AuditEvent).order_by(AuditEvent.id)
        if job_id is not None:
            job = require_job(session, job_id)
            query = query.where(AuditEvent.job_id == job.id)
        if start is not None:
            query = query.where(AuditEvent.at >= start)
        stream: TextIO = output.open("w") if output else sys.stdout
        try:
            written = 0
            for ev in session.scalars(query.execution_options(yield_per=500)):
                stream.write(
                    json.dumps(
                        {
                            "type": "event",
                            "chain": ev.job_id,
                            "seq": ev.seq,
                            "kind": ev.kind,
                            "actor": ev.actor,
                            "payload": ev.payload,
                            "prev_hash": ev.prev_hash,
                            "hash": ev.hash,
                        },
                        default=str,
                    )
                    + "\n"
                )
                written += 1
            if job_id is None:
                for point in session.scalars(select(AuditCheckpoint).order_by(AuditCheckpoint.seq)):
                    stream.write(
                        json.dumps(
                            {
                                "type": "checkpoint",
                                "seq": point.seq,
                                "heads": point.heads,
                                "prev_hash": point.prev_hash,
                                "hash": point.hash,
                            }
                        )
                        + "\n"
                    )
        finally:
            if output:
                stream.close()
    if output:
        click.echo(f"wrote {written} event(s) to {output}", err=True)


@audit_group.command("checkpoint")
def audit_checkpoint() -> None:
    """Anchor every chain whose head moved now (beat does this every minute)."""
    setup_logging()
    prepare_database()
    with session_scope() as session:
        point = checkpoints.take(session)
        session.commit()
        if point is None:
            click.echo("nothing moved since the last checkpoint")
        else:
            click.echo(f"checkpoint {point.seq} {point.hash} anchors {len(point.heads)} chain(s)")


@click.group("data")
def data_group() -> None:
    """Personal data: erase a data subject, purge what is past retention."""


@data_group.command("erase")
@click.argument("subject")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def data_erase(subject: str, yes: bool, as_json: bool) -> None:
    """Erase SUBJECT (an e-mail address, a login, a requester id) from every store of
    personal data; the audit chains keep verifying (they hold references only)."""
    setup_logging()
    if not yes and not click.confirm(f"erase every trace of {subject!r}?", err=True):
        raise InputError("not confirmed; nothing erased")
    remote = through_api("/v1/privacy/erasures", {"subject": subject})
    if remote is not None:
        _report(remote, as_json)
        return
    prepare_database()
    with session_scope() as session:
        try:
            result = erasure.erase_subject(session, subject, actor=cli_actor())
        except ValueError as exc:
            raise InputError(str(exc)) from exc
        session.commit()
    _report(as_data(result), as_json)


@data_group.command("purge")
@click.option(
    "--older-than",
    "days",
    type=click.IntRange(min=1),
    help="Retention in days (default OPSGATE_RETENTION_DAYS).",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def data_purge(days: int | None, as_json: bool) -> None:
    """Scrub personal data of jobs settled before the retention window (beat runs this hourly)."""
    from app.settings import get_settings

    setup_logging()
    window = days if days is not None else get_settings().retention_days
    remote = through_api("/v1/privacy/purges", {"older_than_days": window})
    if remote is not None:
        _report(remote, as_json)
        return
    prepare_database()
    with session_scope() as session:
        result = erasure.purge_expired(
            session, older_than=timedelta(days=window), actor=cli_actor()
        )
        session.commit()
    _report(as_data(result), as_json)


def _report(data: dict[str, Any], as_json: bool) -> None:
    if as_json:
        emit_json(data)
        return
    click.echo(
        f"scrubbed {data['jobs']} job(s), {data['tool_calls']} tool call(s), "
        f"{data['model_calls']} model call(s), {data['deliveries']} delivery(ies), "
        f"{data['escalations']} escalation(s)"
    )
    skipped = data["skipped_unfinished"]
    if skipped:
        click.echo(
            f"not yet: {len(skipped)} unfinished job(s) "
            f"({', '.join(j[:8] for j in skipped)}); erase again once they settle"
        )
