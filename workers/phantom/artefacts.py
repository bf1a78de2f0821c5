"""Acquisition artefacts of the fluid-sensitive series: motion ghosting and wrap-around (aliasing).

Both live along the phase-encode direction. Motion during the acquisition modulates k-space
line by line, so the moving anatomy reappears as faint replicas spaced FOV/N along phase encode
(wrapping cyclically inside the field of view) and the anatomy itself is smeared along that
direction. A field of view too small along phase encode folds the anatomy outside it back over
the opposite side of the image. Neither creates oedema; both can make normal marrow look bright.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
from scipy import ndimage

from workers.phantom.anatomy import Anatomy
from workers.phantom.geometry import SeriesGeometry, slice_points
from workers.phantom.sdf import F32

MOTION_GHOSTS: tuple[tuple[int, float], ...] = ((1, 0.24), (2, 0.1))  # (order, amplitude of the replica)
MOTION_PERIOD_N = 4  # ghosts every FOV/N along phase encode
MOTION_BLUR_PX = 1.2  # smearing of the moving anatomy along phase encode (Gaussian sigma)
WRAP_PHASE_FOV = 0.63  # phase field of view / frequency field of view of the wrap variant
CORRUPTION_MIN = 0.25  # mean artefact signal over a head / the clean head signal: the side is corrupted
PHASE_AXIS = {"ROW": 2, "COL": 1}  # numpy axis of a (slices, rows, cols) stack along which phase is encoded


@dataclass(frozen=True)
class Artefact:
    """What the artefact did to the fluid-sensitive series (written into truth.json)."""

    kind: str  # "motion" | "wrap"
    phase_encoding_direction: str  # DICOM InPlanePhaseEncodingDirection: "ROW" | "COL"
    phase_encoding_lps_axis: str  # "R-L" | "H-F" | "A-P"
    description: str
    corrupted_sides: list[str]
    artefact_to_head_signal: dict[str, float]
    ghost_spacing_mm: float | None = None
    ghost_amplitudes: list[float] | None = None
    phase_fov_mm: float | None = None


def motion_ghosts(clean: F32, pe: str, period_n: int = MOTION_PERIOD_N) -> F32:
    """The stack with motion: the anatomy smeared along phase encode plus cyclic replicas every FOV/N."""
    axis = PHASE_AXIS[pe]
    blurred = ndimage.gaussian_filter1d(clean, MOTION_BLUR_PX, axis=axis, mode="wrap")
    shift = int(round(clean.shape[axis] / period_n))
    out = blurred.copy()
    for order, amp in MOTION_GHOSTS:
        for sign in (1, -1):
            out += amp * np.roll(blurred, sign * order * shift, axis=axis)
    return np.asarray(out, np.float32)


def fold(wide: F32, n_fov: int, pe: str) -> F32:
    """Alias a stack rendered over three phase fields of view back into the middle one."""
    axis = PHASE_AXIS[pe]
    if wide.shape[axis] != 3 * n_fov:
        raise ValueError(f"expected {3 * n_fov} samples along phase encode, got {wide.shape[axis]}")
    parts = np.split(wide, 3, axis=axis)
    return np.asarray(parts[0] + parts[1] + parts[2], np.float32)


def widen(geo: SeriesGeometry, pe: str) -> SeriesGeometry:
    """The same stack extended to three fields of view along phase encode (same pixel centres in the middle)."""
    rd, cd = np.asarray(geo.row_dir), np.asarray(geo.col_dir)
    if pe == "ROW":
        origin = np.asarray(geo.origin) - geo.cols * geo.col_spacing * rd
        return replace(geo, cols=3 * geo.cols, origin=_vec(origin))
    origin = np.asarray(geo.origin) - geo.rows * geo.row_spacing * cd
    return replace(geo, rows=3 * geo.rows, origin=_vec(origin))


def _vec(v: np.ndarray) -> tuple[float, float, float]:
    return (float(v[0]), float(v[1]), float(v[2]))


def lps_axis(geo: SeriesGeometry, pe: str) -> str:
    """Which patient axis the phase-encode direction of ``geo`` runs along."""
    d = np.abs(np.asarray(geo.row_dir if pe == "ROW" else geo.col_dir))
    return ("R-L", "A-P", "H-F")[int(np.argmax(d))]


def head_corruption(clean: F32, corrupted: F32, geo: SeriesGeometry, anat: Anatomy) -> dict[str, float]:
    """Per side: mean |artefact| over the femoral head / mean clean signal of the head."""
    out: dict[str, float] = {}
    for side in ("right", "left"):
        fem = anat.femur(side)
        c = np.asarray(fem.head_centre)
        diff = clean_sum = 0.0
        for k in range(geo.n_slices):
            x, y, z = slice_points(geo, k, 0.0)
            inside = (x - c[0]) ** 2 + (y - c[1]) ** 2 + (z - c[2]) ** 2 <= (0.8 * fem.head_radius) ** 2
            if inside.any():
                diff += float(np.abs(corrupted[k] - clean[k])[inside].sum())
                clean_sum += float(clean[k][inside].sum())
        out[side] = round(diff / clean_sum, 3) if clean_sum > 0 else 0.0
    return out
