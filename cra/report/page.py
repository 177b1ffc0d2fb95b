"""The report as one self-contained HTML page: plotly.js inlined once, no request out.

Every string from the workspace is escaped before it reaches the page: in HTML text with
`html.escape`, and in the chart data too (plotly reads its labels as a subset of HTML,
so `<a href>` in a reason would otherwise become a link). The figures travel as JSON in a
`<script type="application/json">` block with `<`, `>` and `&` written as \\u escapes, and
a Content-Security-Policy of `default-src 'none'` stops any request the page might try.
"""

from __future__ import annotations

import html
import json
from typing import Any

from cra.report.model import Cell, Chart, Report, Section, Series, Table

MAX_ROWS = 200

CSP = (
    "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
    "img-src data:; font-src data:"
)

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 1100px; color: #222; }
h1 { font-size: 1.6rem; } h2 { border-bottom: 1px solid #ccc; margin-top: 2.5rem; }
table { border-collapse: collapse; margin: 1rem 0; font-size: 0.85rem; }
td, th { border: 1px solid #ddd; padding: 0.2rem 0.5rem; text-align: left; vertical-align: top; }
caption { text-align: left; font-weight: 600; padding: 0.3rem 0; }
.empty { color: #777; font-style: italic; } .chart { min-height: 380px; }
section.separate { border: 2px dashed #bbb; padding: 0 1rem 1rem; margin-top: 2.5rem; }
"""

# Draw every figure, then mark the body so a headless browser knows the page is done.
DRAW = """
(function () {
  var figures = JSON.parse(document.getElementById("cra-figures").textContent);
  var drawn = figures.map(function (f) {
    return Plotly.newPlot(f.id, f.figure.data, f.figure.layout, {staticPlot: false,
      displaylogo: false, responsive: true});
  });
  Promise.all(drawn).then(function () { document.body.setAttribute("data-rendered",
    String(figures.length)); });
})();
"""


def _e(value: Cell) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def _safe(value: Cell) -> Cell:
    """A value as plotly may show it: strings escaped, numbers as they are."""
    return html.escape(value, quote=True) if isinstance(value, str) else value


def _trace(series: Series) -> dict[str, Any]:
    trace: dict[str, Any] = {
        "name": html.escape(series.name, quote=True),
        "x": [_safe(x) for x in series.x],
        "y": list(series.y),
        "type": "bar" if series.kind == "bar" else "scatter",
    }
    if series.kind == "line":
        trace["mode"] = "lines+markers"
    if series.text:
        trace["text"] = [html.escape(t, quote=True) for t in series.text]
    return trace


def figure(chart: Chart) -> dict[str, Any]:
    """The chart as a plotly figure (data and layout), every string escaped."""
    import plotly.graph_objects as go

    fig = go.Figure(data=[_trace(s) for s in chart.series])
    fig.update_layout(
        title=html.escape(chart.title),
        xaxis_title=html.escape(chart.x_title),
        yaxis_title=html.escape(chart.y_title),
        barmode="stack" if chart.stacked else "group",
        template="plotly_white",
        margin={"t": 60, "b": 60},
    )
    if _categorical(chart):
        fig.update_xaxes(type="category")
    return json.loads(fig.to_json())


def _categorical(chart: Chart) -> bool:
    """Whether the x values are labels (repositories, stages, eras), not numbers or times."""
    return any(s.kind == "bar" for s in chart.series)


def script_json(value: object) -> str:
    """`value` as JSON that cannot end or alter the `<script>` element holding it."""
    text = json.dumps(value, separators=(",", ":"))
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _table(table: Table) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in table.headers)
    shown = table.rows[:MAX_ROWS]
    body = "".join("<tr>" + "".join(f"<td>{_e(c)}</td>" for c in row) + "</tr>" for row in shown)
    more = len(table.rows) - len(shown)
    note = f'<p class="empty">{more} more rows not shown</p>' if more > 0 else ""
    return (
        f"<table><caption>{_e(table.caption)}</caption><thead><tr>{head}</tr></thead>"
        f"<tbody>{body}</tbody></table>{note}"
    )


def _chart_div(chart: Chart) -> str:
    points = _e(json.dumps(list(chart.points)))
    return f'<div class="chart" id="{_e(chart.id)}" data-points="{points}"></div>'


def _section(section: Section) -> str:
    css = ' class="separate"' if section.key == "loop" else ""
    parts = [f'<section id="{_e(section.key)}"{css}><h2>{_e(section.title)}</h2>']
    parts += [f"<p>{_e(n)}</p>" for n in section.notes]
    if section.is_empty and not section.notes:
        parts.append(
            f'<p class="empty">Nothing recorded yet: run <code>{_e(section.empty)}</code>.</p>'
        )
    parts += [_chart_div(c) for c in section.charts]
    parts += [_table(t) for t in section.tables]
    parts.append("</section>")
    return "\n".join(parts)


def render(report: Report, plotly_js: str) -> str:
    """The report as one HTML document embedding `plotly_js` once."""
    figures = [{"id": c.id, "figure": figure(c)} for c in report.charts()]
    sections = "\n".join(_section(s) for s in report.sections)
    library = plotly_js.replace("</script", "<\\/script")  # the library's text stays whole
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{CSP}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>cra report</title><style>{STYLE}</style>
<script>{library}</script>
</head><body>
<h1>cra report</h1>
<p>Workspace <code>{_e(report.workspace)}</code>, generated {_e(report.generated_at)}.</p>
{sections}
<script type="application/json" id="cra-figures">{script_json(figures)}</script>
<script>{DRAW}</script>
</body></html>
"""
