"""Small, dependency-free SVG charts (time series and bars) and value formatting for the report.

Inline SVG only: the report must open on an offline machine, so no JavaScript and no
CDN. Colours follow Grafana's classic palette on its dark theme.

>>> format_value(0.0687, "percentunit", 1)
'6.9%'
>>> format_value(12.26, "m")
'12.3 min'
>>> format_value(1507, "short")
'1,507'
>>> nice_ticks(0, 93)
[0.0, 20.0, 40.0, 60.0, 80.0, 100.0]
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from html import escape

PALETTE = ("#73BF69", "#F2CC0C", "#8AB8FF", "#FF780A", "#F2495C", "#5794F2", "#B877D9", "#705DA0", "#37872D")
TEXT = "#ccccdc"
MUTED = "#8e8e9e"
GRID = "#2c3235"
FONT = "Inter, Helvetica, Arial, sans-serif"

Number = float | int | None


def format_value(value: Number, unit: str = "short", decimals: int | None = None) -> str:
    """A value as Grafana would print it for the panel's unit."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if unit == "percentunit":
        return f"{value * 100:.{1 if decimals is None else decimals}f}%"
    if unit in ("m", "d"):
        digits = 1 if decimals is None else decimals
        label = "min" if unit == "m" else ("day" if round(value, digits) == 1 else "days")
        return f"{value:,.{digits}f} {label}"
    if decimals is not None:
        return f"{value:,.{decimals}f}"
    if isinstance(value, int) or float(value).is_integer():
        return f"{int(value):,}"
    return f"{value:,.2f}" if abs(value) < 100 else f"{value:,.0f}"


def nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    """Round axis ticks covering [low, high]."""
    if high <= low:
        high = low + 1
    raw = (high - low) / max(count, 1)
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    start = math.floor(low / step) * step
    ticks = []
    value = start
    while value < high + step * 0.999:
        ticks.append(round(value, 10))
        value += step
    return [float(t) for t in ticks]


def _axis_label(value: float, unit: str) -> str:
    if unit == "percentunit":
        return f"{value * 100:.0f}%"
    text = f"{value:,.0f}" if abs(value) >= 10 or float(value).is_integer() else f"{value:,.1f}"
    return text + (" min" if unit == "m" else "")


def _time_label(moment: datetime, span: timedelta) -> str:
    if span <= timedelta(days=2):
        return moment.strftime("%H:%M")
    if span <= timedelta(days=10):
        return moment.strftime("%a %d %H:%M") if moment.hour or moment.minute else moment.strftime("%a %d")
    return moment.strftime("%b %d")


def _time_ticks(start: datetime, end: datetime, count: int) -> list[datetime]:
    span = end - start
    steps = [timedelta(minutes=m) for m in (15, 30, 60, 120, 180, 360, 720)] + [
        timedelta(days=d) for d in (1, 2, 7, 14, 30, 61, 91)
    ]
    step = next((s for s in steps if span / s <= count), steps[-1])
    seconds = step.total_seconds()
    first = datetime.fromtimestamp(math.ceil(start.timestamp() / seconds) * seconds, start.tzinfo)
    ticks = []
    moment = first
    while moment <= end:
        ticks.append(moment)
        moment += step
    return ticks


def _legend(names: Sequence[str], x: float, y: float) -> str:
    parts = []
    for index, name in enumerate(names):
        color = PALETTE[index % len(PALETTE)]
        parts.append(
            f'<rect x="{x:.1f}" y="{y - 8:.1f}" width="14" height="4" rx="1" fill="{color}"/>'
            f'<text x="{x + 19:.1f}" y="{y:.1f}" fill="{TEXT}" font-size="12">{escape(name)}</text>'
        )
        x += 32 + 7 * len(name)
    return "".join(parts)


def _svg(width: int, height: int, body: str) -> str:
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" width="{width}" '
        f'height="{height}" font-family="{FONT}" role="img">{body}</svg>'
    )


def line_chart(
    times: Sequence[datetime],
    series: Mapping[str, Sequence[Number]],
    *,
    start: datetime,
    end: datetime,
    width: int = 700,
    height: int = 240,
    unit: str = "short",
    bars: bool = False,
    gap: timedelta | None = None,
) -> str:
    """A time series chart over [start, end]; lines break where points are ``gap`` apart."""
    left, right, top, bottom = 54, 12, 10, 44
    plot_w, plot_h = width - left - right, height - top - bottom
    values = [v for vs in series.values() for v in vs if v is not None]
    low = min(0.0, min(values, default=0.0))
    ticks = nice_ticks(low, max(values, default=1.0) or 1.0)
    y_low, y_high = ticks[0], ticks[-1]
    span = (end - start).total_seconds() or 1.0

    def x_of(moment: datetime) -> float:
        return left + plot_w * (moment - start).total_seconds() / span

    def y_of(value: float) -> float:
        return top + plot_h * (1 - (value - y_low) / ((y_high - y_low) or 1))

    parts = []
    for tick in ticks:
        y = y_of(tick)
        parts.append(f'<line x1="{left}" x2="{width - right}" y1="{y:.1f}" y2="{y:.1f}" stroke="{GRID}"/>')
        parts.append(f'<text x="{left - 6}" y="{y + 4:.1f}" fill="{MUTED}" font-size="11" text-anchor="end">'
                     f"{escape(_axis_label(tick, unit))}</text>")
    for moment in _time_ticks(start, end, max(plot_w // 110, 2)):
        x = x_of(moment)
        parts.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{top}" y2="{top + plot_h}" stroke="{GRID}"/>')
        parts.append(f'<text x="{x:.1f}" y="{top + plot_h + 16}" fill="{MUTED}" font-size="11" text-anchor="middle">'
                     f"{escape(_time_label(moment, end - start))}</text>")
    names = list(series)
    if bars and times:
        step = min((b - a for a, b in zip(times, times[1:]) if b > a), default=end - start)
        slot = plot_w * step.total_seconds() / span * 0.8
        bar_w = max(slot / max(len(names), 1), 0.8)
        for index, name in enumerate(names):
            color = PALETTE[index % len(PALETTE)]
            for moment, value in zip(times, series[name]):
                if value is None:
                    continue
                x = x_of(moment) + index * bar_w
                y = y_of(max(value, 0))
                parts.append(f'<rect x="{x:.1f}" y="{y:.1f}" width="{bar_w:.1f}" '
                             f'height="{max(y_of(0) - y, 0):.1f}" fill="{color}" fill-opacity="0.8"/>')
    else:
        for index, name in enumerate(names):
            color = PALETTE[index % len(PALETTE)]
            segments: list[list[str]] = []
            previous: datetime | None = None
            for moment, value in zip(times, series[name]):
                if value is None:
                    previous = None
                    continue
                if previous is None or (gap is not None and moment - previous > gap):
                    segments.append([])
                segments[-1].append(f"{x_of(moment):.1f},{y_of(value):.1f}")
                previous = moment
            for points in segments:
                if len(points) == 1:
                    cx, cy = points[0].split(",")
                    parts.append(f'<circle cx="{cx}" cy="{cy}" r="2" fill="{color}"/>')
                else:
                    parts.append(f'<polyline points="{" ".join(points)}" fill="none" stroke="{color}" '
                                 'stroke-width="2" stroke-linejoin="round"/>')
    parts.append(_legend(names, left, height - 8))
    return _svg(width, height, "".join(parts))


def bar_chart(
    categories: Sequence[str],
    series: Mapping[str, Sequence[Number]],
    *,
    width: int = 700,
    height: int = 240,
    unit: str = "short",
    horizontal: bool = False,
    stacked: bool = False,
) -> str:
    """Grouped (or stacked) bars, one group per category."""
    names = list(series)
    if stacked:
        totals = [sum(v or 0 for v in values) for values in zip(*series.values())] if names else []
        top_value = max(totals, default=1.0)
    else:
        top_value = max((v for vs in series.values() for v in vs if v is not None), default=1.0)
    ticks = nice_ticks(0, top_value or 1.0)
    high = ticks[-1] or 1.0
    parts = []
    if horizontal:
        label_w = min(max((len(c) for c in categories), default=4) * 7 + 12, width // 3)
        left, right, top, bottom = label_w, 16, 8, 44
        plot_w, plot_h = width - left - right, height - top - bottom
        band = plot_h / max(len(categories), 1)
        for tick in ticks:
            x = left + plot_w * tick / high
            parts.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{top}" y2="{top + plot_h}" stroke="{GRID}"/>')
            parts.append(f'<text x="{x:.1f}" y="{top + plot_h + 15}" fill="{MUTED}" font-size="11" '
                         f'text-anchor="middle">{escape(_axis_label(tick, unit))}</text>')
        for row, category in enumerate(categories):
            y0 = top + row * band
            parts.append(f'<text x="{left - 8}" y="{y0 + band / 2 + 4:.1f}" fill="{TEXT}" font-size="12" '
                         f'text-anchor="end">{escape(category)}</text>')
            offset = 0.0
            for index, name in enumerate(names):
                value = series[name][row] or 0
                color = PALETTE[index % len(PALETTE)]
                thickness = band * 0.7 if stacked else band * 0.7 / len(names)
                y = y0 + band * 0.15 + (0 if stacked else index * thickness)
                length = plot_w * value / high
                parts.append(f'<rect x="{left + offset:.1f}" y="{y:.1f}" width="{length:.1f}" '
                             f'height="{thickness:.1f}" fill="{color}" fill-opacity="0.85"/>')
                if stacked:
                    offset += length
    else:
        left, right, top, bottom = 54, 12, 18, 58
        plot_w, plot_h = width - left - right, height - top - bottom
        band = plot_w / max(len(categories), 1)
        for tick in ticks:
            y = top + plot_h * (1 - tick / high)
            parts.append(f'<line x1="{left}" x2="{width - right}" y1="{y:.1f}" y2="{y:.1f}" stroke="{GRID}"/>')
            parts.append(f'<text x="{left - 6}" y="{y + 4:.1f}" fill="{MUTED}" font-size="11" text-anchor="end">'
                         f"{escape(_axis_label(tick, unit))}</text>")
        show_values = not stacked and len(categories) * len(names) <= 16
        for column, category in enumerate(categories):
            x0 = left + column * band
            parts.append(f'<text x="{x0 + band / 2:.1f}" y="{top + plot_h + 16}" fill="{TEXT}" font-size="12" '
                         f'text-anchor="middle">{escape(category)}</text>')
            base = 0.0
            for index, name in enumerate(names):
                maybe = series[name][column]
                if maybe is None:
                    continue
                value = float(maybe)
                color = PALETTE[index % len(PALETTE)]
                thickness = band * 0.7 if stacked else band * 0.7 / len(names)
                x = x0 + band * 0.15 + (0 if stacked else index * thickness)
                bar_h = plot_h * value / high
                y = top + plot_h - bar_h - (plot_h * base / high if stacked else 0)
                parts.append(f'<rect x="{x:.1f}" y="{y:.1f}" width="{thickness:.1f}" height="{bar_h:.1f}" '
                             f'fill="{color}" fill-opacity="0.85"/>')
                if show_values:
                    parts.append(f'<text x="{x + thickness / 2:.1f}" y="{y - 4:.1f}" fill="{TEXT}" font-size="10" '
                                 f'text-anchor="middle">{escape(format_value(value, unit))}</text>')
                if stacked:
                    base += value
    parts.append(_legend(names, 12 if horizontal else left, height - 8))
    return _svg(width, height, "".join(parts))
