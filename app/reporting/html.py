"""`opsgate report --html`: the KPI report as one self-contained HTML page whose charts are
inline SVG drawn here. No scripts, fonts or styles from elsewhere, so it opens offline and
travels as one attachment; the markup is also well-formed XML, so tools can read it back."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from html import escape
from typing import Any

from app.reporting import kpis as kpi

WIDTH = 760
BAR_H = 16
GROUP_GAP = 12
LEGEND_H = 22
CHAR_W = 7  # a generous average glyph width at 12px, to size the label and text columns
PALETTE = ("#3366cc", "#ff9900", "#109618", "#990099", "#dc3912", "#0099c6", "#dd4477")
STATUS_COLORS = {
    "completed": "#109618",
    "escalated": "#ff9900",
    "rejected": "#dc3912",
    "failed": "#8b0000",
    "cancelled": "#999999",
    "paused": "#b8860b",
}
ACTIVE_COLOR = "#3366cc"


@dataclass(frozen=True)
class Series:
    """One set of bars: a value (None: not defined) and its printed text per label."""

    name: str
    color: str
    values: list[float | None]
    texts: list[str]


def _attr(value: object) -> str:
    return escape(str(value), quote=True)


def _svg_open(kpi_name: str, title: str, height: int) -> list[str]:
    return [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" data-kpi="{_attr(kpi_name)}" '
        f'role="img" aria-label="{_attr(title)}" width="{WIDTH}" height="{height}" '
        f'viewBox="0 0 {WIDTH} {height}">',
        f"<title>{escape(title)}</title>",
    ]


def _columns(labels: list[str], texts: list[str]) -> tuple[int, float]:
    """The width of the label column and of the bar area, leaving room for the texts."""
    label_w = min(260, max(80, CHAR_W * max(map(len, labels), default=0) + 16))
    text_w = CHAR_W * max(map(len, texts), default=0) + 14
    return label_w, max(160.0, WIDTH - label_w - text_w)


def _legend(items: list[tuple[str, str]], left: int) -> tuple[list[str], int]:
    """Legend swatches in rows across the chart; returns the markup and its height."""
    out, x, y = [], left, 4
    for name, color in items:
        width = 22 + CHAR_W * len(name) + 16
        if x + width > WIDTH and x > left:
            x, y = left, y + LEGEND_H - 4
        out.append(f'<rect x="{x}" y="{y}" width="12" height="12" fill="{color}"/>')
        out.append(f'<text x="{x + 16}" y="{y + 10}" class="legend">{escape(name)}</text>')
        x += width
    return out, (y + LEGEND_H if items else 0)


def _empty(kpi_name: str, title: str) -> str:
    parts = _svg_open(kpi_name, title, 40)
    parts.append('<text x="10" y="24" class="none">no data in the window</text>')
    return "\n".join([*parts, "</svg>"])


def bar_chart(
    kpi_name: str, title: str, labels: list[str], series: list[Series], scale: float | None = None
) -> str:
    """Horizontal bars, one group per label and one bar per series, with the text beside;
    `scale` is the value of a full bar (1.0 for rates), else the largest value."""
    if not labels:
        return _empty(kpi_name, title)
    left, area = _columns(labels, [t for s in series for t in s.texts])
    top_values = [v for s in series for v in s.values if v is not None]
    full = scale if scale is not None else max(top_values, default=0.0) or 1.0
    legend, legend_h = (
        _legend([(s.name, s.color) for s in series], left) if len(series) > 1 else ([], 0)
    )
    group_h = len(series) * (BAR_H + 2) - 2
    height = legend_h + len(labels) * (group_h + GROUP_GAP) + 8
    parts = [*_svg_open(kpi_name, title, height), *legend]
    if scale is not None:
        parts.append(
            f'<line x1="{left + area:.1f}" y1="{legend_h}" x2="{left + area:.1f}" '
            f'y2="{height - 4}" class="full"/>'
        )
    for i, label in enumerate(labels):
        y0 = legend_h + 6 + i * (group_h + GROUP_GAP)
        parts.append(
            f'<text x="{left - 8}" y="{y0 + group_h / 2 + 4:.1f}" text-anchor="end" '
            f'class="label">{escape(label)}</text>'
        )
        for j, s in enumerate(series):
            y = y0 + j * (BAR_H + 2)
            value = s.values[i]
            width = 0.0 if not value else max(1.0, min(value / full, 1.0) * area)
            if width:
                parts.append(
                    f'<rect x="{left}" y="{y}" width="{width:.1f}" height="{BAR_H}" '
                    f'fill="{s.color}"><title>{escape(f"{label} {s.name}: {s.texts[i]}")}</title>'
                    "</rect>"
                )
            parts.append(
                f'<text x="{left + width + 6:.1f}" y="{y + BAR_H - 4}" class="value">'
                f"{escape(s.texts[i])}</text>"
            )
    parts.append(f'<line x1="{left}" y1="{legend_h}" x2="{left}" y2="{height - 4}" class="axis"/>')
    return "\n".join([*parts, "</svg>"])


def stacked_chart(
    kpi_name: str, title: str, labels: list[str], segments: list[tuple[str, str, list[int]]]
) -> str:
    """One bar per label split into counted segments (statuses, workflows), total beside."""
    totals = [sum(seg[2][i] for seg in segments) for i in range(len(labels))]
    if not labels or not any(totals):
        return _empty(kpi_name, title)
    full = max(totals)
    left, area = _columns(labels, [str(t) for t in totals])
    legend, legend_h = _legend([(name, color) for name, color, _ in segments], left)
    height = legend_h + len(labels) * (BAR_H + GROUP_GAP) + 8
    parts = [*_svg_open(kpi_name, title, height), *legend]
    for i, label in enumerate(labels):
        y = legend_h + 6 + i * (BAR_H + GROUP_GAP)
        parts.append(
            f'<text x="{left - 8}" y="{y + BAR_H - 4}" text-anchor="end" class="label">'
            f"{escape(label)}</text>"
        )
        x = float(left)
        for name, color, counts in segments:
            if not counts[i]:
                continue
            width = counts[i] / full * area
            parts.append(
                f'<rect x="{x:.1f}" y="{y}" width="{width:.1f}" height="{BAR_H}" fill="{color}">'
                f"<title>{escape(f'{label} {name}: {counts[i]}')}</title></rect>"
            )
            x += width
        parts.append(f'<text x="{x + 6:.1f}" y="{y + BAR_H - 4}" class="value">{totals[i]}</text>')
    return "\n".join([*parts, "</svg>"])


def _figure(chart: str, caption: str, note: str) -> str:
    return (
        f"<figure>\n<figcaption><strong>{escape(caption)}</strong> "
        f'<span class="note">{escape(note)}</span></figcaption>\n{chart}\n</figure>'
    )


def _num(value: Any) -> float | None:
    return None if value is None else float(Decimal(str(value)))


def _series(cols: list[dict[str, Any]], name: str, color: str, get: Any, text: Any) -> Series:
    return Series(name, color, [get(k) for k in cols], [text(k) for k in cols])


def _rate(
    cols: list[dict[str, Any]], family: str, field: str, color: str, name: str = "rate"
) -> list[Series]:
    return [
        _series(cols, name, color, lambda k: k[family][field], lambda k: kpi.ratio_text(k, family))
    ]


def _schema(cols: list[dict[str, Any]]) -> list[Series]:
    """Adherence over all tiers, then per tier."""
    out = _rate(cols, "schema", "adherence", PALETTE[0], "all tiers")
    for i, tier in enumerate(sorted({t for k in cols for t in k["schema"]["by_tier"]}), start=1):
        out.append(
            _series(
                cols,
                tier,
                PALETTE[i % len(PALETTE)],
                lambda k, t=tier: (k["schema"]["by_tier"].get(t) or {}).get("adherence"),
                lambda k, t=tier: _tier_text(k["schema"]["by_tier"].get(t)),
            )
        )
    return out


def _tier_text(tier: dict[str, Any] | None) -> str:
    return kpi.DASH if tier is None else kpi.fmt_ratio(tier["ok"], tier["answered"])


def _cost_text(k: dict[str, Any]) -> str:
    cost = k["cost"]
    return (
        f"{kpi.fmt_usd(cost['per_completed_usd'])} per task, {kpi.fmt_usd(cost['total_usd'])} spent"
    )


def _retries_text(k: dict[str, Any]) -> str:
    per_run = kpi.fmt_number(k["retries"]["per_run"])
    return (
        per_run
        if per_run == kpi.DASH
        else f"{per_run} ({k['retries']['retried_tool_calls']} tool calls retried)"
    )


def charts(data: dict[str, Any]) -> list[str]:
    """One figure per KPI family: (chart, caption, what it measures)."""
    cols = list(data["workflows"])
    if len(cols) > 1:
        cols.append(data["total"])
    labels = [k["workflow"] for k in cols]
    statuses = sorted({s for k in cols for s in k["jobs"]["by_status"]})
    reasons = data["escalation_reasons"]
    workflows = [k["workflow"] for k in data["workflows"]]
    ttd = [
        _series(
            cols,
            q,
            color,
            lambda k, q=q: k["time_to_done"][f"{q}_s"],
            lambda k, q=q: f"{q} {kpi.fmt_duration(k['time_to_done'][f'{q}_s'])}",
        )
        for q, color in (("p50", PALETTE[0]), ("p95", PALETTE[4]))
    ]
    figures = [
        (
            stacked_chart(
                "jobs",
                "Jobs by status",
                labels,
                [
                    (
                        s,
                        STATUS_COLORS.get(s, ACTIVE_COLOR),
                        [k["jobs"]["by_status"].get(s, 0) for k in cols],
                    )
                    for s in statuses
                ],
            ),
            "Jobs by status",
            "jobs created in the window, by their status now",
        ),
        (
            bar_chart(
                "cost",
                "Cost per completed task",
                labels,
                [
                    _series(
                        cols,
                        "cost per completed task",
                        PALETTE[0],
                        lambda k: _num(k["cost"]["per_completed_usd"]),
                        _cost_text,
                    )
                ],
            ),
            "Cost per completed task",
            "model spend of the window's jobs / completed jobs",
        ),
        (
            bar_chart(
                "escalation",
                "Escalation rate",
                labels,
                _rate(cols, "escalation", "rate", PALETTE[1]),
                1.0,
            ),
            "Escalation rate",
            "settled jobs ever escalated (shadow proposals aside) / settled jobs",
        ),
        (
            stacked_chart(
                "escalation_reasons",
                "Escalations by reason",
                [r["reason"] for r in reasons],
                [
                    (wf, PALETTE[i % len(PALETTE)], [r["by_workflow"].get(wf, 0) for r in reasons])
                    for i, wf in enumerate(workflows)
                ],
            ),
            "Escalations by reason",
            "escalations (each a human decision), by reason and workflow",
        ),
        (
            bar_chart(
                "tool_calls",
                "Tool-call success rate",
                labels,
                _rate(cols, "tool_calls", "success_rate", PALETTE[2]),
                1.0,
            ),
            "Tool-call success rate",
            "downstream calls answered ok / all downstream calls",
        ),
        (
            bar_chart(
                "retries",
                "Retries per run",
                labels,
                [
                    _series(
                        cols,
                        "retries per run",
                        PALETTE[3],
                        lambda k: k["retries"]["per_run"],
                        _retries_text,
                    )
                ],
            ),
            "Retries per run",
            "transient-error retries per job (mean)",
        ),
        (
            bar_chart("schema", "Schema adherence", labels, _schema(cols), 1.0),
            "Schema adherence",
            "model answers that validated / model answers (ok, invalid, refused)",
        ),
        (
            bar_chart("time_to_done", "Time to done", labels, ttd),
            "Time to done",
            "job created to completed, completed jobs only",
        ),
        (
            bar_chart(
                "shadow",
                "Shadow-mode agreement",
                labels,
                _rate(cols, "shadow", "agreement_rate", PALETTE[5]),
                1.0,
            ),
            "Shadow-mode agreement",
            "proposals approved as proposed / proposals decided",
        ),
    ]
    return [_figure(chart, caption, note) for chart, caption, note in figures]


def _table(head: list[str], rows: list[list[str]], caption: str) -> str:
    out = [f"<table>\n<caption>{escape(caption)}</caption>\n<thead><tr>"]
    out += [f"<th>{escape(h)}</th>" for h in head]
    out.append("</tr></thead>\n<tbody>")
    for row in rows:
        cells = "".join(
            f"<th>{escape(c)}</th>" if i == 0 else f"<td>{escape(c)}</td>"
            for i, c in enumerate(row)
        )
        out.append(f"<tr>{cells}</tr>")
    out.append("</tbody>\n</table>")
    return "\n".join(out)


DEFINITIONS = (
    (
        "cost per completed task",
        "model spend (every model call of the window's jobs, whatever "
        "their outcome) divided by the completed jobs",
    ),
    (
        "escalation rate",
        "settled jobs (completed, rejected, failed, cancelled or waiting in the "
        "human queue) that were escalated at least once, shadow proposals aside, / settled jobs",
    ),
    (
        "tool-call success",
        "downstream calls with outcome ok / all downstream calls, retries included",
    ),
    (
        "retries per run",
        "transient-error retries the jobs spent, per job; and the tool calls "
        "made on a retried delivery",
    ),
    (
        "schema adherence",
        "model answers that validated / model answers that came back (ok, "
        "invalid, refused); unavailable models, API errors and cache hits are left out",
    ),
    (
        "time to done",
        "from the job's creation to its transition into completed, completed "
        "jobs only; p50 and p95 by linear interpolation",
    ),
    (
        "shadow agreement",
        "shadow proposals approved as proposed / proposals decided (approved, edited, rejected)",
    ),
)

PAGE_STYLE = """
body { font-family: system-ui, -apple-system, Segoe UI, Helvetica, Arial, sans-serif;
       margin: 2rem; color: #222; max-width: 70rem; }
"""
# The report's own rules, apart from the page's: the console serves these as a stylesheet
# for the report it shows inside its pages.
STYLE = """
h1 { margin-bottom: 0.2rem; }
.meta, .note { color: #666; font-size: 0.9rem; }
table { border-collapse: collapse; margin: 1rem 0 2rem; }
caption { text-align: left; font-weight: bold; padding-bottom: 0.4rem; }
th, td { border-bottom: 1px solid #ddd; padding: 0.3rem 0.7rem; text-align: right; }
th:first-child, thead th { text-align: left; }
figure { margin: 1.5rem 0; }
figcaption { margin-bottom: 0.4rem; }
svg.chart text { font-size: 12px; fill: #222; }
svg.chart text.none { fill: #666; }
svg.chart .axis { stroke: #999; }
svg.chart .full { stroke: #ccc; stroke-dasharray: 4 3; }
dt { font-weight: bold; margin-top: 0.5rem; }
"""


def body(data: dict[str, Any]) -> str:
    """The report itself: the KPI table, the charts, the reasons, the definitions."""
    columns, rows = kpi.kpi_rows(data)
    parts = [
        "<h1>opsgate KPIs</h1>",
        f'<p class="meta">{escape(kpi.window_text(data))}; generated at '
        f"{escape(data['generated_at'])}</p>",
        _table(["KPI", *columns], [[label, *cells] for label, cells in rows], "KPIs per workflow"),
        "<h2>Charts</h2>",
        *charts(data),
    ]
    if data["escalation_reasons"]:
        parts.append(_table(*kpi.reason_rows(data), "Escalations by reason"))
    if data["shadow"]:
        parts.append(_table(*kpi.shadow_rows(data), "Shadow-mode agreement per tool"))
    parts.append("<h2>How each KPI is computed</h2>\n<dl>")
    for term, meaning in DEFINITIONS:
        parts.append(f"<dt>{escape(term)}</dt><dd>{escape(meaning)}</dd>")
    parts.append(f'</dl>\n<p class="note">A rate with nothing to divide by is {kpi.DASH}.</p>')
    return "\n".join(parts)


def render(data: dict[str, Any]) -> str:
    """The whole page."""
    return "\n".join(
        [
            "<!DOCTYPE html>",
            '<html lang="en">',
            "<head>",
            '<meta charset="utf-8"/>',
            '<meta name="viewport" content="width=device-width, initial-scale=1"/>',
            f"<title>opsgate KPIs: {escape(kpi.window_text(data))}</title>",
            f"<style>{PAGE_STYLE}{STYLE}</style>",
            "</head>",
            "<body>",
            body(data),
            "</body>",
            "</html>",
            "",
        ]
    )
