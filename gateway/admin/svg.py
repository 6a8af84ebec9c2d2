"""Server-side SVG charts of the console (no script, no third-party asset).

:func:`line_chart` draws one or more series of a :func:`gateway.store.metrics.series` result
(its ``buckets``) against time: axes, a few gridlines with their values, a legend, and a
``<title>`` per point so a browser shows the exact figure on hover.  Buckets without data
(``None``) break the line instead of drawing it at zero.
"""

from __future__ import annotations

import html
import time

WIDTH, HEIGHT = 440, 170
LEFT, RIGHT, TOP, BOTTOM = 46, 10, 26, 24


def _nice(top: float) -> float:
    """A round upper bound for the y axis (1, 2, 2.5 or 5 times a power of ten)."""
    if top <= 0:
        return 1.0
    power = 10 ** len(str(int(top))) / 10 if top >= 1 else 1.0
    while power > top:
        power /= 10
    for factor in (1, 2, 2.5, 5, 10):
        if factor * power >= top:
            return factor * power
    return 10 * power


def _label(value: float, unit: str) -> str:
    if unit == "%":
        return f"{value:g}%"
    if unit == "s":
        if value == 0:
            return "0"
        return f"{value * 1000:.0f}ms" if value < 1 else f"{value:g}s"
    return f"{value:g}"


def line_chart(
    title: str,
    series: dict,
    lines: list[tuple[str, str, str]],
    *,
    unit: str = "",
    scale: float = 1.0,
    chart_id: str = "",
) -> str:
    """An inline ``<svg>``: ``lines`` are (bucket key, legend, colour) of ``series["buckets"]``;
    values are multiplied by ``scale`` (e.g. 100 for a rate shown in %)."""
    buckets = series["buckets"]
    n = max(1, len(buckets))
    values = [
        [None if b.get(key) is None else float(b[key]) * scale for b in buckets]
        for key, _, _ in lines
    ]
    top = _nice(max([v for vs in values for v in vs if v is not None] or [0.0]))
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def x(i: int) -> float:
        return LEFT + plot_w * (i + 0.5) / n

    def y(v: float) -> float:
        return TOP + plot_h * (1 - v / top)

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
        f'viewBox="0 0 {WIDTH} {HEIGHT}" role="img" class="chart" id="{html.escape(chart_id)}" '
        f'aria-label="{html.escape(title)}">',
        f'<text x="{LEFT}" y="15" font-size="12" font-weight="600">{html.escape(title)}</text>',
    ]
    for k in range(5):
        v = top * k / 4
        yy = y(v)
        parts.append(
            f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{yy:.1f}" y2="{yy:.1f}" '
            f'stroke="#e3e7ee"/><text x="{LEFT - 4}" y="{yy + 4:.1f}" font-size="10" '
            f'text-anchor="end" fill="#667">{_label(v, unit)}</text>'
        )
    start, step = series["start"], series["step_s"]
    for k in range(0, n + 1, max(1, n // 4)):
        at = start + k * step
        xx = LEFT + plot_w * k / n
        anchor = "start" if k == 0 else "end" if k >= n else "middle"
        parts.append(
            f'<text x="{xx:.1f}" y="{HEIGHT - 8}" font-size="10" text-anchor="{anchor}" '
            f'fill="#667">{time.strftime("%H:%M", time.gmtime(at))}</text>'
        )
    parts.append(
        f'<line x1="{LEFT}" x2="{LEFT}" y1="{TOP}" y2="{TOP + plot_h}" stroke="#99a"/>'
        f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{TOP + plot_h}" y2="{TOP + plot_h}" '
        'stroke="#99a"/>'
    )
    legend_x = WIDTH - RIGHT
    for (_key, legend, colour), vs in zip(reversed(lines), reversed(values), strict=True):
        parts.append(
            f'<text x="{legend_x}" y="15" font-size="11" text-anchor="end" fill="{colour}">'
            f"{html.escape(legend)}</text>"
        )
        legend_x -= 8 + 7 * len(legend)
        path, pen = [], "M"
        for i, point in enumerate(vs):
            if point is None:
                pen = "M"
                continue
            path.append(f"{pen}{x(i):.1f},{y(point):.1f}")
            pen = "L"
        if path:
            parts.append(
                f'<path d="{" ".join(path)}" fill="none" stroke="{colour}" stroke-width="1.8"/>'
            )
        for i, point in enumerate(vs):
            if point is not None:
                at = time.strftime("%H:%M", time.gmtime(start + i * step))
                parts.append(
                    f'<circle cx="{x(i):.1f}" cy="{y(point):.1f}" r="2" fill="{colour}">'
                    f"<title>{at} {html.escape(legend)}: {_label(round(point, 3), unit)}</title>"
                    "</circle>"
                )
    parts.append("</svg>")
    return "".join(parts)
