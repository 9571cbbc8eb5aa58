"""Line charts as inline SVG, drawn on the server for the admin's metrics page: no script, no CDN.

Pure functions of plain values. Every text in a chart is escaped; the colours are the caller's.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime

from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

WIDTH, HEIGHT = 560, 170
LEFT, RIGHT, TOP, BOTTOM = 60, 12, 12, 26


@dataclass(frozen=True)
class Line:
    label: str
    color: str
    values: tuple[float | None, ...]  # one per bin; None: no data in that bin (the line breaks)


def nice_ceiling(value: float) -> float:
    """The axis' top: 1, 2, 2.5 or 5 times a power of ten, at or above `value`."""
    if value <= 0:
        return 1.0
    power = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 2.5, 5, 10):
        if value <= step * power:
            return step * power
    return 10 * power


def fmt(value: float | None, unit: str = "") -> str:
    """A figure for an axis or a tile: 0.0042 s is "4.2 ms", 1,234 is "1,234"; None (no data) is "-"."""
    if value is None:
        return "-"
    if unit == "s":
        if value == 0:
            return "0 s"
        if value < 1:
            return f"{value * 1000:.3g} ms"
        if value < 120:
            return f"{value:.3g} s"
        return f"{value / 60:.3g} min"
    if unit == "%":
        return f"{value:.3g}%"
    if value >= 1000:
        return f"{value:,.0f}"
    return f"{value:.3g}"


def line_chart(*, title: str, lines: list[Line], starts: list[datetime], unit: str = "", time_format: str = "%H:%M"):
    """An SVG line chart of `lines` over the bins starting at `starts`, with its legend."""
    bins = len(starts)
    peak = max((v for line in lines for v in line.values if v is not None), default=0.0)
    top = nice_ceiling(peak)
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def x(i: int) -> float:
        return LEFT + (plot_w * (i + 0.5) / bins if bins else 0)

    def y(value: float) -> float:
        return TOP + plot_h * (1 - value / top)

    parts = [
        f'<svg class="cf-chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{escape(title)}">',
        f"<title>{escape(title)}</title>",
    ]
    for fraction in (0, 0.5, 1):  # the grid and the y axis
        value = top * fraction
        parts.append(
            f'<line class="cf-grid" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y(value):.1f}" y2="{y(value):.1f}"/>'
        )
        parts.append(
            f'<text class="cf-axis" x="{LEFT - 4}" y="{y(value) + 4:.1f}" text-anchor="end">'
            f"{escape(fmt(value, unit))}</text>"
        )
    for i in _ticks(bins):
        parts.append(
            f'<text class="cf-axis" x="{x(i):.1f}" y="{HEIGHT - 6}" text-anchor="middle">'
            f"{escape(starts[i].strftime(time_format))}</text>"
        )
    for line in lines:
        for segment in _segments(line.values):
            points = " ".join(f"{x(i):.1f},{y(v):.1f}" for i, v in segment)
            if len(segment) == 1:
                i, v = segment[0]
                parts.append(f'<circle cx="{x(i):.1f}" cy="{y(v):.1f}" r="2" fill="{escape(line.color)}"/>')
            else:
                parts.append(
                    f'<polyline fill="none" stroke="{escape(line.color)}" stroke-width="1.8" points="{points}"/>'
                )
    parts.append("</svg>")
    legend = "".join(
        f'<span class="cf-legend-item"><i style="background:{escape(line.color)}"></i>{escape(line.label)}</span>'
        for line in lines
    )
    return mark_safe(f'<figure class="cf-figure"><figcaption>{escape(title)}</figcaption>{"".join(parts)}'  # noqa: S308
                     f'<div class="cf-legend">{legend}</div></figure>')  # fmt: skip


def _ticks(bins: int, count: int = 6) -> list[int]:
    if bins <= 0:
        return []
    step = max(1, bins // count)
    return list(range(0, bins, step))


def _segments(values: tuple[float | None, ...]) -> list[list[tuple[int, float]]]:
    """Runs of consecutive known values: a bin without data breaks the line instead of drawing a zero."""
    segments: list[list[tuple[int, float]]] = []
    current: list[tuple[int, float]] = []
    for i, value in enumerate(values):
        if value is None:
            if current:
                segments.append(current)
            current = []
        else:
            current.append((i, value))
    if current:
        segments.append(current)
    return segments


def empty(title: str) -> SafeString:
    caption = f"<figcaption>{escape(title)}</figcaption>"
    return mark_safe(f'<figure class="cf-figure">{caption}<p class="cf-empty">No data in this range.</p></figure>')  # noqa: S308
