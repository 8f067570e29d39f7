"""Server-rendered SVG charts: no script, no library, nothing from elsewhere.

Each function returns the ``<svg>`` markup (every text escaped) for a page to embed.
Colours are presentation attributes, so the page's CSP (no inline styles) allows them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import date

from markupsafe import Markup, escape

COLOURS = {
    "sent": "#1a56db",
    "pending": "#9fb3c8",
    "retry": "#f0a202",
    "bounced": "#e4572e",
    "failed": "#b42318",
    "suppressed": "#7c5cc4",
}
_INK = "#52667a"
_GRID = "#e4ebf2"
_WIDTH = 720
_HEIGHT = 260
_NARROW = 480
_FONT = 14
_LEFT, _RIGHT, _TOP, _BOTTOM = 44, 14, 22, 36


def _scale(value: int) -> tuple[int, int]:
    """A round axis maximum at or above ``value``, and its tick step (1, 2, 5 × 10^n)."""
    if value <= 4:
        return max(value, 1), 1
    magnitude = 10 ** math.floor(math.log10(value / 4))
    step = next(s * magnitude for s in (1, 2, 5, 10) if s * magnitude * 4 >= value)
    return step * math.ceil(value / step), step


def _open(label: str, width: int = _WIDTH, height: int = _HEIGHT) -> list[str]:
    return [
        f'<svg class="chart" viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="{escape(label)}" xmlns="http://www.w3.org/2000/svg" '
        'font-family="-apple-system, BlinkMacSystemFont, Segoe UI, Roboto, Arial, sans-serif">',
        f"<title>{escape(label)}</title>",
    ]


def _axis(parts: list[str], scale: tuple[int, int], plot_height: float, width: int) -> None:
    top, step = scale
    for tick in range(0, top + 1, step):
        y = _TOP + plot_height - plot_height * tick / top
        parts.append(
            f'<line x1="{_LEFT}" x2="{width - _RIGHT}" y1="{y:.1f}" y2="{y:.1f}" '
            f'stroke="{_GRID}" stroke-width="1"/>'
        )
        parts.append(
            f'<text x="{_LEFT - 8}" y="{y + 5:.1f}" text-anchor="end" font-size="{_FONT}" '
            f'fill="{_INK}">{tick}</text>'
        )


def _day_label(day: date) -> str:
    return f"{day.day} {day.strftime('%b')}"


def _empty(parts: list[str], message: str, width: int = _WIDTH) -> Markup:
    parts.append(
        f'<text x="{width / 2}" y="{_HEIGHT / 2}" text-anchor="middle" font-size="15" '
        f'fill="{_INK}">{escape(message)}</text></svg>'
    )
    return Markup("".join(parts))  # noqa: S704 - every value in it is escaped or numeric


def deliveries_chart(series: Sequence[tuple[date, dict[str, int]]]) -> Markup:
    """Stacked bars: one per edition day, one segment per outcome."""
    parts = _open("Deliveries per edition day, by outcome")
    if not series or not any(sum(counts.values()) for _, counts in series):
        return _empty(parts, "No deliveries yet")
    scale = _scale(max(sum(counts.values()) for _, counts in series))
    top = scale[0]
    plot_width = _WIDTH - _LEFT - _RIGHT
    plot_height = _HEIGHT - _TOP - _BOTTOM
    _axis(parts, scale, plot_height, _WIDTH)
    slot = plot_width / max(len(series), 1)
    bar = min(56.0, slot * 0.7)
    label_every = max(1, math.ceil(len(series) / 10))
    for index, (day, counts) in enumerate(series):
        x = _LEFT + slot * index + (slot - bar) / 2
        y: float = _TOP + plot_height
        total = sum(counts.values())
        for outcome, colour in COLOURS.items():
            count = counts.get(outcome, 0)
            if not count:
                continue
            height = plot_height * count / top
            y -= height
            parts.append(
                f'<rect class="bar" data-outcome="{outcome}" data-count="{count}" '
                f'x="{x:.1f}" y="{y:.1f}" width="{bar:.1f}" height="{height:.1f}" '
                f'fill="{colour}"><title>{_day_label(day)}: {count} {outcome}</title></rect>'
            )
        parts.append(
            f'<text x="{x + bar / 2:.1f}" y="{y - 5:.1f}" text-anchor="middle" font-size="{_FONT}" '
            f'font-weight="600" fill="#102a43">{total}</text>'
        )
        if index % label_every == 0 or index == len(series) - 1:
            parts.append(
                f'<text x="{x + bar / 2:.1f}" y="{_HEIGHT - 12}" text-anchor="middle" '
                f'font-size="{_FONT}" fill="{_INK}">{_day_label(day)}</text>'
            )
    parts.append("</svg>")
    return Markup("".join(parts))  # noqa: S704 - every value in it is escaped or numeric


def subscribers_chart(series: Sequence[tuple[date, int]]) -> Markup:
    """An area line of active, confirmed subscribers per day."""
    width = _NARROW
    parts = _open("Active subscribers over the last 30 days", width=width)
    if not series:
        return _empty(parts, "No subscribers yet", width)
    scale = _scale(max(count for _, count in series))
    top = scale[0]
    plot_width = width - _LEFT - _RIGHT
    plot_height = _HEIGHT - _TOP - _BOTTOM
    _axis(parts, scale, plot_height, width)
    step = plot_width / max(len(series) - 1, 1)
    points = [
        (_LEFT + step * index, _TOP + plot_height - plot_height * count / top)
        for index, (_, count) in enumerate(series)
    ]
    line = " ".join(f"{x:.1f},{y:.1f}" for x, y in points)
    base = _TOP + plot_height
    parts.append(
        f'<polygon points="{points[0][0]:.1f},{base:.1f} {line} {points[-1][0]:.1f},{base:.1f}" '
        'fill="#e8f0fe"/>'
    )
    parts.append(
        f'<polyline points="{line}" fill="none" stroke="#1a56db" stroke-width="2.5" '
        'stroke-linejoin="round"/>'
    )
    label_every = max(1, math.ceil(len(series) / 4))
    last = len(series) - 1
    labelled = {i for i in range(0, len(series), label_every) if last - i >= label_every / 2}
    labelled.add(last)
    for index, ((day, count), (x, y)) in enumerate(zip(series, points, strict=True)):
        parts.append(
            f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3" fill="#1a56db">'
            f"<title>{_day_label(day)}: {count} subscribers</title></circle>"
        )
        if index in labelled:
            anchor = "end" if index == last else "start" if index == 0 else "middle"
            parts.append(
                f'<text x="{x:.1f}" y="{_HEIGHT - 12}" text-anchor="{anchor}" font-size="{_FONT}" '
                f'fill="{_INK}">{_day_label(day)}</text>'
            )
    last_x, last_y = points[-1]
    parts.append(
        f'<text class="last-value" x="{last_x - 6:.1f}" y="{last_y - 10:.1f}" '
        f'text-anchor="end" font-size="{_FONT}" font-weight="700" fill="#102a43">'
        f"{series[-1][1]}</text>"
    )
    parts.append("</svg>")
    return Markup("".join(parts))  # noqa: S704 - every value in it is escaped or numeric


def topics_chart(topics: Sequence[tuple[str, str, int]]) -> Markup:
    """Horizontal bars: the most followed topics, with their follower counts."""
    row = 46
    width = _NARROW
    if not topics:
        return _empty(
            _open("Most followed topics", width=width), "Nobody follows a topic yet", width
        )
    height = len(topics) * row + 4
    parts = _open("Most followed topics", width=width, height=height)
    plot_width = width - 48
    top = max(count for _, _, count in topics)
    for index, (code, name, count) in enumerate(topics):
        y = index * row
        length = max(plot_width * count / top, 3)
        title = f"{code} · {name}"
        shown = title if len(title) <= 52 else title[:51] + "…"
        parts.append(
            f'<text x="0" y="{y + 16}" font-size="{_FONT}" fill="#1f2933">'
            f"{escape(shown)}<title>{escape(title)}</title></text>"
        )
        parts.append(
            f'<rect class="bar" data-topic="{escape(code)}" data-count="{count}" '
            f'x="0" y="{y + 23}" width="{length:.1f}" height="14" rx="4" '
            f'fill="#1a56db"><title>{escape(title)}: {count}</title></rect>'
        )
        parts.append(
            f'<text x="{length + 8:.1f}" y="{y + 35}" font-size="{_FONT}" '
            f'font-weight="700" fill="#102a43">{count}</text>'
        )
    parts.append("</svg>")
    return Markup("".join(parts))  # noqa: S704 - every value in it is escaped or numeric
