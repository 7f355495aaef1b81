"""Bar charts drawn on the server as SVG: this module computes the geometry, the template
`admin/chat/bar_chart.html` draws it. No script and no inline style, so the strict CSP
holds; colours come from classes in static/supportdesk/admin-reports.css."""

import math
from dataclasses import dataclass, field

from django.utils.formats import number_format

WIDTH = 720
HEIGHT = 220
LEFT = 44  # room for the value axis labels
BOTTOM = 24  # room for the category labels
TOP = 10


@dataclass(frozen=True)
class Segment:
    """One coloured part of a bar (bars stack their segments bottom up)."""

    y: float
    height: float
    css: str


@dataclass(frozen=True)
class Bar:
    x: float
    width: float
    center: float
    label: str  # under the bar, or "" to skip (dense axes label every few bars)
    title: str  # the tooltip: what the bar counts, in words
    segments: tuple[Segment, ...]


@dataclass(frozen=True)
class Tick:
    y: float
    label: str


@dataclass
class BarChart:
    title: str
    bars: list[Bar] = field(default_factory=list)
    ticks: list[Tick] = field(default_factory=list)
    width: int = WIDTH
    height: int = HEIGHT
    left: int = LEFT
    baseline: float = HEIGHT - BOTTOM
    label_y: float = HEIGHT - 6
    legend: list[tuple[str, str]] = field(default_factory=list)  # (css class, label)


def nice_step(top: float, steps: int = 5) -> float:
    """A round gridline spacing (1, 2 or 5 times a power of ten) giving about `steps`
    lines up to `top`."""
    if top <= 0:
        return 1
    raw = top / steps
    power = 10 ** math.floor(math.log10(raw))
    for multiple in (1, 2, 5, 10):
        if raw <= multiple * power:
            return max(multiple * power, 1)
    return 10 * power


def bar_chart(
    title: str,
    categories: list[str],
    series: list[tuple[str, str, list[int]]],
    *,
    label_every: int = 1,
    describe=None,
    width: int = WIDTH,
) -> BarChart:
    """Stacked bars, one per category. `series` is (css class, legend label, values),
    bottom segment first. `describe(index)` gives each bar's tooltip. Draw half-width
    charts with a smaller `width`, so their text is not scaled down."""
    chart = BarChart(title=title, width=width, legend=[(css, label) for css, label, _ in series])
    totals = [sum(values[i] for _, _, values in series) for i in range(len(categories))]
    step = nice_step(max(totals, default=0))
    top = max(step * math.ceil(max(totals, default=0) / step), step)
    plot_height = chart.baseline - TOP
    scale = plot_height / top
    value = 0
    while value <= top:
        chart.ticks.append(
            Tick(
                y=round(chart.baseline - value * scale, 1),
                label=number_format(value, force_grouping=True),
            )
        )
        value += step
    slot = (chart.width - chart.left) / max(len(categories), 1)
    gap = min(slot * 0.2, 6)
    for i, category in enumerate(categories):
        y = chart.baseline
        segments = []
        for css, _, values in series:
            height = values[i] * scale
            y -= height
            if height > 0:
                segments.append(Segment(y=round(y, 1), height=round(height, 1), css=css))
        x = chart.left + i * slot + gap / 2
        chart.bars.append(
            Bar(
                x=round(x, 1),
                width=round(slot - gap, 1),
                center=round(x + (slot - gap) / 2, 1),
                label=category if i % label_every == 0 else "",
                title=describe(i) if describe else f"{category}: {totals[i]}",
                segments=tuple(segments),
            )
        )
    return chart
