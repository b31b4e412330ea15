"""Small charts as inline SVG, so a notebook and the HTML report show them without a plotting library.

Example
-------
>>> svg = distribution_svg("temperature", ["<= 10", "(10, 20]", "> 20"], [0.3, 0.4, 0.3], [0.1, 0.3, 0.6])
>>> svg.startswith("<svg") and svg.count("<rect") == 6 + 2  # two bars per bin, two legend keys
True
"""

from __future__ import annotations

import html
from collections.abc import Sequence

#: Baseline and current window, as the drift table's bars colour them.
BASELINE_COLOUR = "#7f8c8d"
CURRENT_COLOUR = "#c0392b"


def distribution_svg(title: str, labels: Sequence[str], baseline: Sequence[float], current: Sequence[float], *,
                     width: int = 440, height: int = 190) -> str:
    """Grouped bars of the baseline's and the current window's proportion per bin or category."""
    if not (len(labels) == len(baseline) == len(current)) or not labels:
        raise ValueError("labels, baseline and current need the same, non-zero length")
    top = max([*baseline, *current, 1e-9])
    left, right, upper, lower = 34, 8, 26, 58
    plot_w, plot_h = width - left - right, height - upper - lower
    slot = plot_w / len(labels)
    bar = max(1.0, slot * 0.38)
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             f'font-family="sans-serif" font-size="9">',
             f'<text x="{left}" y="12" font-size="11" font-weight="bold">{html.escape(title)}</text>',
             f'<rect x="{width - 150}" y="4" width="9" height="9" fill="{BASELINE_COLOUR}"/>'
             f'<text x="{width - 138}" y="12">baseline</text>',
             f'<rect x="{width - 90}" y="4" width="9" height="9" fill="{CURRENT_COLOUR}"/>'
             f'<text x="{width - 78}" y="12">current</text>',
             f'<line x1="{left}" y1="{upper + plot_h}" x2="{width - right}" y2="{upper + plot_h}" stroke="#999"/>',
             f'<text x="{left - 4}" y="{upper + 4}" text-anchor="end">{top:.0%}</text>',
             f'<text x="{left - 4}" y="{upper + plot_h}" text-anchor="end">0</text>']
    for i, (label, expected, actual) in enumerate(zip(labels, baseline, current)):
        x = left + i * slot + (slot - 2 * bar) / 2
        for offset, value, colour, name in ((0, expected, BASELINE_COLOUR, "baseline"),
                                            (bar, actual, CURRENT_COLOUR, "current")):
            h = plot_h * value / top
            parts.append(f'<rect x="{x + offset:.1f}" y="{upper + plot_h - h:.1f}" width="{bar:.1f}" '
                         f'height="{h:.1f}" fill="{colour}"><title>{html.escape(str(label))} {name}: '
                         f'{value:.1%}</title></rect>')
        cx, cy = left + (i + 0.5) * slot, upper + plot_h + 10
        parts.append(f'<text x="{cx:.1f}" y="{cy}" text-anchor="end" transform="rotate(-35 {cx:.1f} {cy})">'
                     f'{html.escape(_short(str(label)))}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _short(label: str, limit: int = 16) -> str:
    return label if len(label) <= limit else label[: limit - 1] + "…"
