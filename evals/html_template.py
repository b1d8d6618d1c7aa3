"""The Jinja2 template of `opsgate eval --html` (evals/html.py fills it). A string, not a file,
so it ships with the `evals` package without package-data; inline CSS, no scripts, no
external assets: the page is one file a reviewer can open anywhere."""

from __future__ import annotations

from typing import Final

PAGE: Final = """\
<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>opsgate eval: {{ columns | map(attribute="label") | join(" vs ") }}</title>
<style>
  body { font: 14px/1.4 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 1.5rem;
         color: #1d1d1f; background: #fff; }
  h1 { font-size: 1.5rem; margin: 0 0 1rem; }
  h2 { font-size: 1.25rem; margin: 2.5rem 0 .5rem; border-bottom: 2px solid #ccd;
       padding-bottom: .25rem; }
  h3 { font-size: 1rem; margin: 1.25rem 0 .4rem; }
  .scroll { overflow-x: auto; }
  table { border-collapse: collapse; margin: 0 0 .75rem; }
  th, td { border: 1px solid #d8d8e0; padding: .3rem .55rem; text-align: left;
           vertical-align: top; }
  thead th { background: #f1f1f6; position: sticky; top: 0; }
  th.report small { display: block; font-weight: normal; color: #666; }
  tbody th { font-weight: 600; white-space: nowrap; background: #fafafc; }
  td.num { text-align: right; font-variant-numeric: tabular-nums; }
  .bad { background: #fde2e1; color: #a3120c; font-weight: 600; }
  .good { color: #176c2f; }
  .diff { outline: 2px solid #e0a800; outline-offset: -2px; }
  .missing { color: #999; text-align: center; }
  strong.alert { display: block; color: #a3120c; }
  tr.off th { color: #a3120c; }
  tr.differs > th, tr.differs > td.flags { background: #fff4cc; }
  td.flags span { display: inline-block; margin: 0 .2rem .1rem 0; padding: 0 .35rem;
                  border-radius: .6rem; font-size: .8rem; white-space: nowrap; }
  span.differs { background: #e0a800; color: #000; }
  span.wrong { background: #a3120c; color: #fff; }
  ul { margin: .2rem 0 0; padding-left: 1.1rem; }
  ul.lines li { font-weight: normal; color: #333; white-space: pre-wrap;
                overflow-wrap: anywhere; max-width: 40rem; }
  td.case ul.lines li { font-size: .85rem; }
  .legend { color: #555; font-size: .85rem; }
</style>
</head>
<body>
{% macro cell(c, num=false, extra=[]) %}
<td class="{{ (extra + c.classes + (['num'] if num and not c.lines else [])) | join(' ') }}">
{{- c.text }}
{% if c.alert %}<strong class="alert">{{ c.alert }}</strong>{% endif %}
{% if c.lines %}<ul class="lines">{% for line in c.lines %}<li>{{ line }}</li>{% endfor %}</ul>
{% endif %}</td>
{% endmacro %}
{% macro head(first) %}
<thead><tr><th>{{ first }}</th>
{% for col in columns %}
<th class="report" scope="col">{{ col.label }}{% if col.subtitle %}
<small>{{ col.subtitle }}</small>{% endif %}</th>
{% endfor %}
</tr></thead>
{% endmacro %}
<h1>opsgate eval</h1>
<p class="legend">One column per report{% if columns | length > 1 %}; a cell outlined in
yellow differs from the first column ({{ columns[0].label }}){% endif %}; red marks wrong
writes, failures and wrong outcomes; {{ missing }} means the report has no such data.</p>

<h2 id="reports">Reports</h2>
<div class="scroll"><table class="meta">
{{ head("") }}
<tbody>
{% for row in meta %}
<tr data-row="{{ row.label }}"><th scope="row">{{ row.label }}</th>
{% for c in row.cells %}{{ cell(c) }}{% endfor %}</tr>
{% endfor %}
</tbody></table></div>

{% for run in runs %}
<section class="run" id="run-{{ loop.index }}" data-run="{{ run.name }}">
<h2>{{ run.name }}</h2>
<div class="scroll"><table class="status">
{{ head(run.status.title) }}
<tbody>
{% for row in run.status.rows %}
<tr data-row="{{ row.label }}"><th scope="row">{{ row.label }}</th>
{% for c in row.cells %}{{ cell(c, true) }}{% endfor %}</tr>
{% endfor %}
</tbody></table></div>

{% for scope in run.scopes %}
<h3>{{ scope.title }}</h3>
<div class="scroll"><table class="metrics" data-scope="{{ scope.title }}">
{{ head("") }}
<tbody>
{% for row in scope.rows %}
<tr data-row="{{ row.label }}"><th scope="row">{{ row.label }}</th>
{% for c in row.cells %}{{ cell(c, true) }}{% endfor %}</tr>
{% endfor %}
</tbody></table></div>
{% endfor %}

<h3>Expected vs actual (all workflows)</h3>
{% if run.confusion %}
<div class="scroll"><table class="confusion">
{{ head("expected → actual") }}
<tbody>
{% for row in run.confusion %}
<tr class="{{ row.classes | join(' ') }}" data-row="{{ row.label }}"><th scope="row">{{ row.label }}
{% if 'off' in row.classes %} ✗{% endif %}</th>
{% for c in row.cells %}{{ cell(c, true) }}{% endfor %}</tr>
{% endfor %}
</tbody></table></div>
{% else %}
<p class="missing">{{ missing }}</p>
{% endif %}

<h3>Cases: {{ run.cases | length }}{% if columns | length > 1 %},
{{ run.differing }} differing between reports{% endif %}, {{ run.wrong }} wrong in at least
one</h3>
{% if run.cases %}
<div class="scroll"><table class="cases">
<thead><tr><th>case</th><th></th><th>workflow</th><th>expected</th>
{% for col in columns %}
<th class="report" scope="col">{{ col.label }}{% if col.subtitle %}
<small>{{ col.subtitle }}</small>{% endif %}</th>
{% endfor %}
</tr></thead>
<tbody>
{% for case in run.cases %}
<tr class="case{{ ' differs' if case.differs else '' }}{{ ' wrong' if case.wrong else '' }}"
 data-case="{{ case.id }}">
<th scope="row">{{ case.id }}</th>
<td class="flags">{% if case.differs %}<span class="differs">differs</span>{% endif %}
{% if case.wrong %}<span class="wrong">wrong</span>{% endif %}</td>
<td>{{ case.workflow }}</td><td>{{ case.expected }}</td>
{% for c in case.cells %}{{ cell(c, extra=['case']) }}{% endfor %}
</tr>
{% endfor %}
</tbody></table></div>
{% endif %}
</section>
{% else %}
<p class="missing">No runs in any report.</p>
{% endfor %}
</body>
</html>
"""
