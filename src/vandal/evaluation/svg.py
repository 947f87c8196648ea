"""Small line charts as inline SVG strings (the HTML reports draw their curves with no plotting
library and no scripts)."""

from __future__ import annotations

import html
from collections.abc import Sequence

PALETTE = ("#2457c5", "#c62828", "#2e7d32", "#ef6c00", "#6a1b9a", "#00838f", "#5d4037", "#9e9d24")
WIDTH, HEIGHT = 300, 260
LEFT, RIGHT, TOP, BOTTOM = 40, 10, 22, 36


def _x(value: float) -> float:
    return LEFT + value * (WIDTH - LEFT - RIGHT)


def _y(value: float) -> float:
    return HEIGHT - BOTTOM - value * (HEIGHT - TOP - BOTTOM)


def line_chart(series: Sequence[tuple[str, Sequence[Sequence[float]]]], title: str, x_label: str, y_label: str,
               diagonal: bool = False) -> str:
    """Curves on the unit square: ``series`` = ``[(legend, [[x, y], ...])]``; ``diagonal``: the
    chance line of a ROC figure."""
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" '
             f'height="{HEIGHT}" role="img" aria-label="{html.escape(title)}" font-family="sans-serif" font-size="10">',
             f'<text x="{WIDTH / 2}" y="14" text-anchor="middle" font-size="12" font-weight="bold">'
             f'{html.escape(title)}</text>']
    for tick in (0.0, 0.25, 0.5, 0.75, 1.0):
        parts.append(f'<line x1="{_x(0)}" y1="{_y(tick):.1f}" x2="{_x(1)}" y2="{_y(tick):.1f}" stroke="#e3e7ec"/>')
        parts.append(f'<line x1="{_x(tick):.1f}" y1="{_y(0)}" x2="{_x(tick):.1f}" y2="{_y(1)}" stroke="#e3e7ec"/>')
        parts.append(f'<text x="{LEFT - 4}" y="{_y(tick) + 3:.1f}" text-anchor="end">{tick:g}</text>')
        parts.append(f'<text x="{_x(tick):.1f}" y="{_y(0) + 12}" text-anchor="middle">{tick:g}</text>')
    parts.append(f'<rect x="{_x(0)}" y="{_y(1)}" width="{_x(1) - _x(0)}" height="{_y(0) - _y(1)}" fill="none" '
                 'stroke="#888"/>')
    if diagonal:
        parts.append(f'<line x1="{_x(0)}" y1="{_y(0)}" x2="{_x(1)}" y2="{_y(1)}" stroke="#aaa" '
                     'stroke-dasharray="3 3"/>')
    for i, (legend, points) in enumerate(series):
        colour = PALETTE[i % len(PALETTE)]
        path = " ".join(f"{_x(x):.1f},{_y(y):.1f}" for x, y in points)
        parts.append(f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="1.6"/>')
        row = _y(0) - 8 - 12 * (len(series) - 1 - i) if diagonal else _y(1) + 12 + 12 * i
        parts.append(f'<line x1="{_x(0.62)}" y1="{row - 3}" x2="{_x(0.70)}" y2="{row - 3}" stroke="{colour}" '
                     'stroke-width="2"/>')
        parts.append(f'<text x="{_x(0.72)}" y="{row}">{html.escape(legend)}</text>')
    parts.append(f'<text x="{_x(0.5)}" y="{HEIGHT - 6}" text-anchor="middle">{html.escape(x_label)}</text>')
    parts.append(f'<text x="12" y="{_y(0.5)}" text-anchor="middle" transform="rotate(-90 12 {_y(0.5)})">'
                 f'{html.escape(y_label)}</text>')
    return "".join(parts) + "</svg>"
