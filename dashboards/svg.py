"""Small, dependency-free SVG charts (time series and bars) and value formatting for the report.

Inline SVG only: the report must open on an offline machine, so no JavaScript and no
CDN. Colours follow Grafana's classic palette on its dark theme; a series may be given
its own colour (severity: high is red). Every chart is drawn in a ``viewBox`` of the
size it is laid out at and scales with the page (``width="100%"``), so the report
reflows from a 1,280 px laptop to a wide screen or a printed page.

>>> format_value(0.0687, "percentunit", 1)
'6.9%'
>>> format_value(12.26, "m")
'12.3 min'
>>> format_value(1507, "short")
'1,507'
>>> nice_ticks(0, 93)
[0.0, 20.0, 40.0, 60.0, 80.0, 100.0]
>>> [axis_label(t, "percentunit", 0.02) for t in nice_ticks(0, 0.071)]
['0%', '2%', '4%', '6%', '8%']
>>> nice_ticks(0, 3, integer=True)
[0.0, 1.0, 2.0, 3.0]
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta, tzinfo
from html import escape

PALETTE = ("#73BF69", "#F2CC0C", "#8AB8FF", "#FF780A", "#F2495C", "#5794F2", "#B877D9", "#705DA0", "#37872D")
# Grafana's named colours, as the panels' fixed-colour overrides and thresholds name them.
NAMED_COLORS = {
    "green": "#73BF69",
    "yellow": "#FADE2A",
    "orange": "#FF9830",
    "red": "#F2495C",
    "blue": "#5794F2",
    "purple": "#B877D9",
}
TEXT = "#ccccdc"
MUTED = "#8e8e9e"
GRID = "#2c3235"
FONT = "Inter, Helvetica, Arial, sans-serif"
CHAR_PX = 6.6  # mean advance of a 12 px sans-serif character: lays out labels and legends

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


def color_of(name: str) -> str:
    """A Grafana colour name (or any CSS colour) as the hex the report draws."""
    return NAMED_COLORS.get(name, name)


def nice_ticks(low: float, high: float, count: int = 5, *, integer: bool = False) -> list[float]:
    """Round axis ticks covering [low, high]: steps of 1, 2 or 5 times a power of ten
    (never 2.5, whose ticks print as 2, 5, 8 once rounded); at least 1 for counts."""
    if high <= low:
        high = low + 1
    raw = (high - low) / max(count, 1)
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw * 0.999)
    if integer:
        step = max(step, 1.0)
    start = math.floor(low / step) * step
    ticks = []
    value = start
    while value < high + step * 0.999:
        ticks.append(round(value, 10))
        value += step
    return [float(t) for t in ticks]


def axis_label(value: float, unit: str, step: float) -> str:
    """A tick's label with as many decimals as the step between ticks needs."""
    scaled, scaled_step = (value * 100, step * 100) if unit == "percentunit" else (value, step)
    decimals = max(0, -math.floor(math.log10(scaled_step) + 1e-9)) if scaled_step > 0 else 0
    text = f"{scaled:,.{decimals}f}"
    return text + {"percentunit": "%", "m": " min", "d": " d"}.get(unit, "")


def _time_label(moment: datetime, span: timedelta) -> str:
    if span <= timedelta(days=2):
        return moment.strftime("%H:%M")
    if span <= timedelta(days=10):
        return moment.strftime("%a %d %H:%M") if moment.hour or moment.minute else moment.strftime("%a %d")
    return moment.strftime("%b %d")


def _time_ticks(start: datetime, end: datetime, count: int, zone: tzinfo) -> list[datetime]:
    """Ticks at round wall-clock times of ``zone`` (local midnight, whole hours), not of UTC."""
    span = end - start
    steps = [timedelta(minutes=m) for m in (15, 30, 60, 120, 180, 360, 720)] + [
        timedelta(days=d) for d in (1, 2, 7, 14, 30, 61, 91)
    ]
    step = next((s for s in steps if span / s <= count), steps[-1])
    local_start, local_end = start.astimezone(zone), end.astimezone(zone)
    midnight = local_start.replace(hour=0, minute=0, second=0, microsecond=0)
    ticks = []
    moment = midnight
    # Wall-clock arithmetic (naive local time, then the zone again): a tick stays at
    # 08:00 across a DST change instead of sliding to 07:00.
    while moment <= local_end:
        if moment >= local_start:
            ticks.append(moment)
        moment = (moment.replace(tzinfo=None) + step).replace(tzinfo=zone)
    return ticks


def _legend_layout(names: Sequence[str], width: float, left: float) -> list[list[tuple[str, float]]]:
    """Legend items in rows that fit the chart's width: [(name, x), ...] per row."""
    rows: list[list[tuple[str, float]]] = [[]]
    x = left
    for name in names:
        item = 32 + CHAR_PX * len(name)
        if rows[-1] and x + item > width:
            rows.append([])
            x = left
        rows[-1].append((name, x))
        x += item
    return rows if names else []


def _legend(rows: list[list[tuple[str, float]]], colors: Mapping[str, str], bottom: float) -> str:
    parts = []
    for number, row in enumerate(rows):
        y = bottom - 8 - 16 * (len(rows) - 1 - number)
        for name, x in row:
            parts.append(
                f'<rect class="key" x="{x:.1f}" y="{y - 8:.1f}" width="14" height="4" rx="1" '
                f'fill="{colors[name]}"/>'
                f'<text x="{x + 19:.1f}" y="{y:.1f}" fill="{TEXT}" font-size="12">{escape(name)}</text>'
            )
    return "".join(parts)


def _colors(names: Sequence[str], fixed: Mapping[str, str] | None) -> dict[str, str]:
    return {
        name: color_of((fixed or {}).get(name, "")) or PALETTE[index % len(PALETTE)]
        for index, name in enumerate(names)
    }


def _svg(width: int, height: int, body: str) -> str:
    # Scales with its panel: the viewBox keeps the proportions and the text readable.
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" width="100%" '
        f'height="100%" font-family="{FONT}" role="img">{body}</svg>'
    )


def _shorten(text: str, chars: int) -> str:
    return text if len(text) <= chars else text[: max(chars - 1, 1)] + "…"


def _wrapped(text: str, chars: int) -> list[str]:
    """A category label in at most two lines of ``chars`` characters, split at spaces."""
    if len(text) <= chars or " " not in text:
        return [_shorten(text, chars)]
    words = text.split(" ")
    first = words[0]
    for index in range(1, len(words)):
        if len(first) + 1 + len(words[index]) > chars:
            return [first, _shorten(" ".join(words[index:]), chars)]
        first += " " + words[index]
    return [first]


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
    zone: tzinfo = UTC,
    colors: Mapping[str, str] | None = None,
) -> str:
    """A time series chart over [start, end], times labelled in ``zone``; lines break
    where points are ``gap`` apart."""
    names = list(series)
    palette = _colors(names, colors)
    legend = _legend_layout(names, width - 12, 54)
    left, right, top, bottom = 54, 12, 10, 28 + 16 * len(legend)
    plot_w, plot_h = width - left - right, height - top - bottom
    values = [v for vs in series.values() for v in vs if v is not None]
    low = min(0.0, min(values, default=0.0))
    integer = unit == "short" and all(float(v).is_integer() for v in values)
    ticks = nice_ticks(low, max(values, default=1.0) or 1.0, integer=integer)
    y_low, y_high = ticks[0], ticks[-1]
    step = ticks[1] - ticks[0] if len(ticks) > 1 else 1.0
    span = (end - start).total_seconds() or 1.0

    def x_of(moment: datetime) -> float:
        # A bucket that starts before the range ($__timeInterval rounds down) holds data
        # of the range: drawn at its start, not off the chart.
        return left + plot_w * min(max((moment - start).total_seconds() / span, 0.0), 1.0)

    def y_of(value: float) -> float:
        return top + plot_h * (1 - (value - y_low) / ((y_high - y_low) or 1))

    parts = []
    for tick in ticks:
        y = y_of(tick)
        parts.append(f'<line x1="{left}" x2="{width - right}" y1="{y:.1f}" y2="{y:.1f}" stroke="{GRID}"/>')
        parts.append(f'<text x="{left - 6}" y="{y + 4:.1f}" fill="{MUTED}" font-size="11" text-anchor="end">'
                     f"{escape(axis_label(tick, unit, step))}</text>")
    for moment in _time_ticks(start, end, max(plot_w // 90, 2), zone):
        x = x_of(moment)
        parts.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{top}" y2="{top + plot_h}" stroke="{GRID}"/>')
        parts.append(f'<text x="{x:.1f}" y="{top + plot_h + 16}" fill="{MUTED}" font-size="11" text-anchor="middle">'
                     f"{escape(_time_label(moment, end - start))}</text>")
    if bars and times:
        interval = min((b - a for a, b in zip(times, times[1:]) if b > a), default=end - start)
        slot = plot_w * interval.total_seconds() / span * 0.8
        bar_w = max(slot / max(len(names), 1), 0.8)
        for index, name in enumerate(names):
            for moment, value in zip(times, series[name]):
                if value is None:
                    continue
                x = x_of(moment) + index * bar_w
                y = y_of(max(value, 0))
                parts.append(f'<rect class="mark" x="{x:.1f}" y="{y:.1f}" width="{bar_w:.1f}" '
                             f'height="{max(y_of(0) - y, 0):.1f}" fill="{palette[name]}" fill-opacity="0.8"/>')
    else:
        for name in names:
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
                    parts.append(f'<circle class="mark" cx="{cx}" cy="{cy}" r="3.5" fill="{palette[name]}"/>')
                else:
                    parts.append(f'<polyline class="mark" points="{" ".join(points)}" fill="none" '
                                 f'stroke="{palette[name]}" stroke-width="2" stroke-linejoin="round"/>')
    parts.append(_legend(legend, palette, height))
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
    colors: Mapping[str, str] | None = None,
) -> str:
    """Grouped (or stacked) bars, one group per category."""
    names = list(series)
    palette = _colors(names, colors)
    if stacked:
        totals = [sum(v or 0 for v in values) for values in zip(*series.values())] if names else []
        top_value = max(totals, default=1.0)
    else:
        top_value = max((v for vs in series.values() for v in vs if v is not None), default=1.0)
    values = [v for vs in series.values() for v in vs if v is not None]
    integer = unit == "short" and all(float(v).is_integer() for v in values)
    ticks = nice_ticks(0, top_value or 1.0, integer=integer)
    high = ticks[-1] or 1.0
    step = ticks[1] - ticks[0] if len(ticks) > 1 else 1.0
    legend = _legend_layout(names, width - 12, 12 if horizontal else 54)
    parts = []
    if horizontal:
        label_chars = int(width / 3 / CHAR_PX)
        labels = [_shorten(c, label_chars) for c in categories]
        label_w = max((len(label) for label in labels), default=4) * CHAR_PX + 12
        left, right, top, bottom = label_w, 16, 8, 28 + 16 * len(legend)
        plot_w, plot_h = width - left - right, height - top - bottom
        band = plot_h / max(len(categories), 1)
        for tick in ticks:
            x = left + plot_w * tick / high
            parts.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{top}" y2="{top + plot_h}" stroke="{GRID}"/>')
            parts.append(f'<text x="{x:.1f}" y="{top + plot_h + 15}" fill="{MUTED}" font-size="11" '
                         f'text-anchor="middle">{escape(axis_label(tick, unit, step))}</text>')
        for row, label in enumerate(labels):
            y0 = top + row * band
            parts.append(f'<text x="{left - 8}" y="{y0 + band / 2 + 4:.1f}" fill="{TEXT}" font-size="12" '
                         f'text-anchor="end">{escape(label)}</text>')
            offset = 0.0
            for index, name in enumerate(names):
                value = series[name][row] or 0
                thickness = band * 0.7 if stacked else band * 0.7 / len(names)
                y = y0 + band * 0.15 + (0 if stacked else index * thickness)
                length = plot_w * value / high
                if length > 0:
                    parts.append(f'<rect class="mark" x="{left + offset:.1f}" y="{y:.1f}" width="{length:.1f}" '
                                 f'height="{thickness:.1f}" fill="{palette[name]}" fill-opacity="0.85"/>')
                if stacked:
                    offset += length
    else:
        band_w = (width - 66) / max(len(categories), 1)
        label_chars = max(int(band_w / (CHAR_PX * 11 / 12)) - 1, 3)  # 11 px category labels
        wrapped = [_wrapped(c, label_chars) for c in categories]
        lines = max((len(label) for label in wrapped), default=1)
        left, right, top, bottom = 54, 12, 18, 30 + 14 * lines + 16 * len(legend)
        plot_w, plot_h = width - left - right, height - top - bottom
        band = plot_w / max(len(categories), 1)
        for tick in ticks:
            y = top + plot_h * (1 - tick / high)
            parts.append(f'<line x1="{left}" x2="{width - right}" y1="{y:.1f}" y2="{y:.1f}" stroke="{GRID}"/>')
            parts.append(f'<text x="{left - 6}" y="{y + 4:.1f}" fill="{MUTED}" font-size="11" text-anchor="end">'
                         f"{escape(axis_label(tick, unit, step))}</text>")
        thickness = band * 0.7 if stacked else band * 0.7 / max(len(names), 1)
        # A value above each bar only where it fits: 10 px digits over a bar at least that wide.
        show_values = not stacked and thickness >= 5.5 * max(
            (len(format_value(v, unit)) for v in values), default=1)
        for column, label_lines in enumerate(wrapped):
            x0 = left + column * band
            for number, line in enumerate(label_lines):
                parts.append(f'<text x="{x0 + band / 2:.1f}" y="{top + plot_h + 16 + 14 * number}" fill="{TEXT}" '
                             f'font-size="11" text-anchor="middle">{escape(line)}</text>')
            base = 0.0
            for index, name in enumerate(names):
                maybe = series[name][column]
                if maybe is None:
                    continue
                value = float(maybe)
                x = x0 + band * 0.15 + (0 if stacked else index * thickness)
                bar_h = plot_h * value / high
                y = top + plot_h - bar_h - (plot_h * base / high if stacked else 0)
                if bar_h > 0:
                    parts.append(f'<rect class="mark" x="{x:.1f}" y="{y:.1f}" width="{thickness:.1f}" '
                                 f'height="{bar_h:.1f}" fill="{palette[name]}" fill-opacity="0.85"/>')
                if show_values:
                    parts.append(f'<text x="{x + thickness / 2:.1f}" y="{y - 4:.1f}" fill="{TEXT}" font-size="10" '
                                 f'text-anchor="middle">{escape(format_value(value, unit))}</text>')
                if stacked:
                    base += value
    parts.append(_legend(legend, palette, height))
    return _svg(width, height, "".join(parts))
