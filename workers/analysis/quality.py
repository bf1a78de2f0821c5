"""Quality guards against the classic mimics of marrow oedema.

Failed or inhomogeneous fat suppression leaves fat bright on the fluid-sensitive series, which
makes fatty marrow look oedematous. It is measured per hip as the fluid-sensitive signal of the
fat around it (bright on T1) relative to deep muscle (intermediate on T1): a working STIR/FS
sequence shows fat much darker than muscle.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy import ndimage

from workers.analysis.anatomy import SIDES, Localization, WorkingImages
from workers.analysis.params import AnalysisParameters
from workers.analysis.result import Side

BoolArray = npt.NDArray[np.bool_]

FAT_ZONE_MM = (40.0, 110.0)  # fat checked this far from the head centre


@dataclass(frozen=True)
class FatSatCheck:
    """Per side: fat/muscle ratio on the fluid-sensitive series and whether suppression worked."""

    ratio: dict[Side, float | None]
    ok: dict[Side, bool | None]
    muscle_median: float | None  # fluid-sensitive signal of deep muscle (for the muscle reference)
    fat_t1_median: float | None  # T1 signal of subcutaneous fat (marrow-like threshold)
    fluid_peak: float | None  # fluid-sensitive signal of free fluid (99.9th percentile in the body)

    @property
    def all_ok(self) -> bool | None:
        vals = [v for v in self.ok.values() if v is not None]
        return all(vals) if vals else None


def _otsu(values: npt.NDArray[np.float32]) -> float:
    hist, edges = np.histogram(values, bins=256)
    centres = (edges[:-1] + edges[1:]) / 2
    w0 = np.cumsum(hist)
    w1 = w0[-1] - w0
    m0 = np.cumsum(hist * centres)
    between = w0 * w1 * (m0 / np.maximum(w0, 1) - (m0[-1] - m0) / np.maximum(w1, 1)) ** 2
    return float(centres[int(np.argmax(between))])


def _near(work: WorkingImages, centre: tuple[float, float, float], lo_mm: float, hi_mm: float) -> BoolArray:
    """Voxels of the working grid between ``lo_mm`` and ``hi_mm`` from ``centre``."""
    axes = [work.origin[i] + work.spacing * np.arange(n) for i, n in enumerate(reversed(work.body.shape))]
    dx = (axes[0] - centre[0])[None, None, :]
    dy = (axes[1] - centre[1])[None, :, None]
    dz = (axes[2] - centre[2])[:, None, None]
    d2 = dx * dx + dy * dy + dz * dz
    out: BoolArray = (d2 >= lo_mm**2) & (d2 <= hi_mm**2)
    return out


def check_fat_suppression(work: WorkingImages, loc: Localization, params: AnalysisParameters) -> FatSatCheck:
    """Fat/muscle ratio per hip on the fluid-sensitive series; needs T1 to tell fat from muscle.

    Fat is every T1-bright voxel (subcutaneous and intermuscular fat, pelvic marrow) 40-110 mm from
    the head centre; the 75th percentile catches a failure confined to part of that zone. Without
    a head, the half of the body is used.
    """
    none: dict[Side, float | None] = {"right": None, "left": None}
    unknown: dict[Side, bool | None] = {"right": None, "left": None}
    body = work.body
    if not body.any():
        return FatSatCheck(ratio=none, ok=unknown, muscle_median=None, fat_t1_median=None, fluid_peak=None)
    # in-plane (axial) depth under the skin
    depth = np.stack([ndimage.distance_transform_edt(b, sampling=work.spacing) for b in body]).astype(np.float32)
    if work.t1 is not None:
        level = _otsu(work.t1[body])
        fat = body & (work.t1 >= level)
        subcut = fat & (depth <= 25.0) & (depth >= 3.0)
        muscle = body & (depth > 30.0) & (work.t1 < level) & (work.t1 > 0.35 * level)
    else:
        level = _otsu(work.fluid[body])
        fat = subcut = body & (depth <= 12.0) & (depth >= 3.0)
        muscle = body & (depth > 30.0) & (work.fluid < level)
    xs = work.origin[0] + work.spacing * np.arange(body.shape[2])
    ratio: dict[Side, float | None] = {}
    ok: dict[Side, bool | None] = {}
    muscle_vals = work.fluid[muscle]
    muscle_med = float(np.median(muscle_vals)) if muscle_vals.size >= 50 else None
    for side, lateral in SIDES:
        femur = loc.femurs[side]
        if femur is not None:
            zone = _near(work, femur.centre, FAT_ZONE_MM[0], FAT_ZONE_MM[1])
        else:
            zone = np.broadcast_to((lateral * (xs - loc.body_centre_x_mm) > 0)[None, None, :], body.shape)
        f = work.fluid[fat & zone]
        m = work.fluid[muscle & zone]
        if f.size < 50 or m.size < 50 or float(np.median(m)) <= 0:
            ratio[side], ok[side] = None, None
            continue
        value = float(np.percentile(f, 75) / np.median(m))
        ratio[side] = round(value, 2)
        ok[side] = value <= params.fat_sat_ratio_max
    fat_t1 = float(np.median(work.t1[subcut])) if (work.t1 is not None and subcut.sum() >= 50) else None
    peak = float(np.percentile(work.fluid[body], 99.9))
    return FatSatCheck(ratio=ratio, ok=ok, muscle_median=muscle_med, fat_t1_median=fat_t1, fluid_peak=peak)


def ghost_ratios(work: WorkingImages, loc: Localization) -> dict[Side, float | None]:
    """Motion/wrap-around ghosting over each hip, on the fluid-sensitive series.

    Ghosts put structured signal into the air around the body; noise does not. Per hip the air
    beside the body within 100 mm (left-right) of the head is smoothed and its 95th percentile divided by the
    air's median (the noise floor): about 1-1.5 for noise alone, far higher with ghosts. None when
    there is too little air, or the background is zero-filled.
    """
    out: dict[Side, float | None] = {"right": None, "left": None}
    body = ndimage.binary_dilation(work.body, iterations=5)
    support = ndimage.binary_erosion(work.fluid > 0, iterations=3)  # away from the stack's edges
    # air = what lies outside the body and reaches the left or right edge of the field of view (dark
    # structures inside the pelvis, cut open by a thin slab, are not air)
    outside, n = ndimage.label(support & ~body)
    cols = np.nonzero(support.any(axis=(0, 1)))[0]
    if n == 0 or cols.size == 0:
        return out
    edge = np.zeros(support.shape[2], dtype=bool)
    edge[max(cols[0], 0):cols[0] + 6] = True
    edge[max(cols[-1] - 5, 0):cols[-1] + 1] = True
    keep = np.zeros(n + 1, dtype=bool)
    keep[np.unique(outside[:, :, edge])] = True
    keep[0] = False
    air = keep[outside]
    smooth = ndimage.gaussian_filter(work.fluid, 2.0)
    xs = work.origin[0] + work.spacing * np.arange(body.shape[2])
    for side, _ in SIDES:
        femur = loc.femurs[side]
        if femur is None:
            continue
        zone = air & (np.abs(xs - femur.centre[0]) <= 100.0)[None, None, :]
        vals = work.fluid[zone]
        if vals.size < 500:
            continue
        floor = float(np.median(vals))
        if floor <= 0:
            continue
        out[side] = round(float(np.percentile(smooth[zone], 95)) / floor, 2)
    return out
