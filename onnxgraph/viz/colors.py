"""Colour scale for per-node figures (shared by DOT and HTML)."""

from __future__ import annotations

_STOPS = ((0.0, (49, 130, 189)), (0.5, (255, 237, 111)), (1.0, (222, 45, 38)))
"""Blue (low) -> yellow -> red (high)."""


def scale_color(value: float, low: float, high: float) -> str:
    """``#rrggbb`` for ``value`` on the blue-yellow-red scale between ``low`` and ``high``."""
    t = 0.5 if high <= low else min(max((value - low) / (high - low), 0.0), 1.0)
    for (t0, c0), (t1, c1) in zip(_STOPS, _STOPS[1:]):
        if t <= t1:
            f = (t - t0) / (t1 - t0)
            return "#" + "".join(f"{round(a + (b - a) * f):02x}" for a, b in zip(c0, c1))
    return "#" + "".join(f"{c:02x}" for c in _STOPS[-1][1])
