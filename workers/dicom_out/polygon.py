"""Douglas-Peucker simplification of a pixel outline, vectorised.

The same algorithm and distance as ``skimage.measure.approximate_polygon`` (a point's distance
to the chord's segment; a chord is split at its first farthest point while that is farther than
the tolerance), but every chord of one recursion level is handled at once in numpy instead of
one chord per Python iteration: about six times faster on the outlines of a study. The
distances come from exact cross products on the half-pixel grid of a marching-squares contour
(skimage uses trigonometry), so equally far points tie exactly and the first one is taken.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray


def corner_points(coords: NDArray[np.float64]) -> NDArray[np.float64]:
    """``coords`` without the points inside straight runs (where the chain does not turn).

    Lossless for Douglas-Peucker: a point's distance to a segment is convex along a straight
    run, so a run's inner points are never farther from a chord than both of its ends.
    """
    step = np.diff(coords, axis=0)
    turns = step[1:, 0] * step[:-1, 1] - step[1:, 1] * step[:-1, 0] != 0
    corners: NDArray[np.float64] = coords[np.concatenate([[True], turns, [True]])]
    return corners


def _distances(coords: NDArray[np.float64], starts: NDArray[np.intp], ends: NDArray[np.intp],
               points: NDArray[np.intp], chord: NDArray[np.intp]) -> NDArray[np.float64]:
    """Distance of each of ``points`` to the segment of its chord (``starts``/``ends`` indexed by ``chord``)."""
    p0, p1, p = coords[starts[chord]], coords[ends[chord]], coords[points]
    d, v0, v1 = p1 - p0, p - p0, p - p1
    inside = ((v0 * d).sum(axis=1) > 0) & ((v1 * d).sum(axis=1) < 0)  # projects onto the segment
    length = np.hypot(d[:, 0], d[:, 1])
    cross = np.abs(d[:, 0] * v0[:, 1] - d[:, 1] * v0[:, 0])
    perpendicular = np.divide(cross, length, out=np.zeros_like(cross), where=inside)
    nearest_end = np.minimum(np.hypot(v0[:, 0], v0[:, 1]), np.hypot(v1[:, 0], v1[:, 1]))
    return np.where(inside, perpendicular, nearest_end)


def simplify(coords: NDArray[np.float64], tolerance: float) -> NDArray[np.float64]:
    """The points of ``coords`` (K x 2, a closed chain repeats its first point last) that Douglas-Peucker
    keeps: every original point lies within ``tolerance`` of the simplified chain."""
    coords = corner_points(coords)
    keep = np.zeros(len(coords), dtype=bool)
    keep[[0, -1]] = True
    starts, ends = np.array([0]), np.array([len(coords) - 1])
    while starts.size:
        inner = ends - starts - 1
        chord = np.repeat(np.arange(starts.size), inner)
        points = starts[chord] + 1 + np.arange(chord.size) - (np.cumsum(inner) - inner)[chord]
        dist = _distances(coords, starts, ends, points, chord)
        # per chord, its first farthest point (sorted by chord, distance descending, position)
        order = np.lexsort((points, -dist, chord))
        first = order[np.flatnonzero(np.diff(chord[order], prepend=-1))]
        split = first[dist[first] > tolerance]
        keep[points[split]] = True
        starts = np.concatenate([starts[chord[split]], points[split]])
        ends = np.concatenate([points[split], ends[chord[split]]])
        wide = ends - starts > 1
        starts, ends = starts[wide], ends[wide]
    return coords[keep]
