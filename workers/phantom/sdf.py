"""Signed-distance helpers for the phantom anatomy (mm, negative inside).

Every function takes coordinate arrays that broadcast against each other (full
point clouds or ``np.ogrid``-style axes) and returns float32 arrays. Distances
of ellipsoids and blends are first-order approximations, exact enough for
drawing tissue boundaries.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

F32 = NDArray[np.float32]
Vec = tuple[float, float, float]


def _f(a: NDArray[np.floating] | float) -> F32:
    return np.asarray(a, dtype=np.float32)


def sphere(x: F32, y: F32, z: F32, c: Vec, r: float) -> F32:
    """Distance to a sphere surface."""
    return _f(np.sqrt((x - c[0]) ** 2 + (y - c[1]) ** 2 + (z - c[2]) ** 2) - r)


def ellipsoid(x: F32, y: F32, z: F32, c: Vec, radii: Vec) -> F32:
    """Approximate distance to an axis-aligned ellipsoid (f / |grad f|)."""
    ax, ay, az = radii
    dx, dy, dz = x - c[0], y - c[1], z - c[2]
    k0 = np.sqrt((dx / ax) ** 2 + (dy / ay) ** 2 + (dz / az) ** 2)
    k1 = np.sqrt((dx / ax**2) ** 2 + (dy / ay**2) ** 2 + (dz / az**2) ** 2)
    return _f(k0 * (k0 - 1.0) / np.maximum(k1, 1e-6))


def ellipsoid_norm(x: F32, y: F32, z: F32, c: Vec, radii: Vec) -> F32:
    """Normalised ellipsoid radius: 1 on the surface, 0 at the centre."""
    return _f(np.sqrt(((x - c[0]) / radii[0]) ** 2 + ((y - c[1]) / radii[1]) ** 2
                      + ((z - c[2]) / radii[2]) ** 2))


def segment_param(x: F32, y: F32, z: F32, a: Vec, b: Vec) -> tuple[F32, F32]:
    """Return (t in [0, 1] along a->b of the closest point, distance to the segment)."""
    ab = np.subtract(b, a)
    length2 = float(np.dot(ab, ab))
    t = ((x - a[0]) * ab[0] + (y - a[1]) * ab[1] + (z - a[2]) * ab[2]) / length2
    t = np.clip(t, 0.0, 1.0)
    dist = np.sqrt((x - a[0] - t * ab[0]) ** 2 + (y - a[1] - t * ab[1]) ** 2
                   + (z - a[2] - t * ab[2]) ** 2)
    return _f(t), _f(dist)


def capsule(x: F32, y: F32, z: F32, a: Vec, b: Vec, ra: float, rb: float) -> F32:
    """Distance to a tapered capsule (radius ra at a, rb at b)."""
    t, dist = segment_param(x, y, z, a, b)
    return _f(dist - (ra + (rb - ra) * t))


def smin(a: F32, b: F32, k: float) -> F32:
    """Smooth union of two distance fields with blend radius k (mm)."""
    h = np.maximum(k - np.abs(a - b), 0.0) / k
    return _f(np.minimum(a, b) - h * h * k * 0.25)


def smoothstep(edge0: float | F32, edge1: float | F32, v: F32) -> F32:
    """Hermite step from 0 at edge0 to 1 at edge1 (edges may be in either order)."""
    t = np.clip((v - edge0) / (edge1 - edge0), 0.0, 1.0)
    return _f(t * t * (3.0 - 2.0 * t))


def unit(v: NDArray[np.float64] | Vec) -> NDArray[np.float64]:
    """Normalise a 3-vector."""
    arr = np.asarray(v, dtype=np.float64)
    return arr / float(np.linalg.norm(arr))


def dot3(x: F32, y: F32, z: F32, origin: Vec, direction: NDArray[np.float64]) -> F32:
    """Signed projection of (p - origin) on a unit direction."""
    return _f((x - origin[0]) * direction[0] + (y - origin[1]) * direction[1]
              + (z - origin[2]) * direction[2])


class SmoothNoise:
    """A deterministic smooth random field: a sum of random plane waves, values ~[-1, 1]."""

    def __init__(self, rng: np.random.Generator, wavelength_mm: float, waves: int = 8) -> None:
        dirs = rng.normal(size=(waves, 3))
        dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
        lengths = wavelength_mm * rng.uniform(0.6, 1.4, size=waves)
        self._k = dirs * (2.0 * np.pi / lengths[:, None])
        self._phase = rng.uniform(0.0, 2.0 * np.pi, size=waves)
        self._scale = float(np.sqrt(2.0 / waves))

    def __call__(self, x: F32, y: F32, z: F32) -> F32:
        out = np.zeros(np.broadcast_shapes(np.shape(x), np.shape(y), np.shape(z)), np.float32)
        for k, ph in zip(self._k, self._phase, strict=True):
            out += np.cos(x * k[0] + y * k[1] + z * k[2] + ph).astype(np.float32)
        return _f(np.clip(out * self._scale, -1.0, 1.0))
