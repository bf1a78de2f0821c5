# mypy: disallow-untyped-calls=False
"""Quality guards against the classic mimics of marrow oedema.

Failed or inhomogeneous fat suppression leaves fat bright on the fluid-sensitive series, which
makes fatty marrow look oedematous. It is measured per hip as the fluid-sensitive signal of the
fat around it (bright on T1) relative to deep muscle (intermediate on T1): a working STIR/FS
sequence shows fat much darker than muscle.

Motion ghosts and wrap-around live along the phase-encode direction: periodic replicas of the
anatomy (found by autocorrelation along each image axis) and anatomy cut by the phase-encode edges
of the field of view that folds back over the opposite side. A femoral head they corrupt is
withheld (``check_phase_encode_artefacts``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import SimpleITK as sitk
from pydicom.dataset import Dataset
from scipy import ndimage
from skimage.filters import threshold_otsu

from workers.analysis.anatomy import SIDES, FemurGeometry, Localization, WorkingImages, body_mask
from workers.analysis.params import AnalysisParameters
from workers.analysis.result import Side

BoolArray = npt.NDArray[np.bool_]
FloatArray = npt.NDArray[np.float32]

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
        level = float(threshold_otsu(work.t1[body], nbins=256))
        fat = body & (work.t1 >= level)
        subcut = fat & (depth <= 25.0) & (depth >= 3.0)
        muscle = body & (depth > 30.0) & (work.t1 < level) & (work.t1 > 0.35 * level)
    else:
        level = float(threshold_otsu(work.fluid[body], nbins=256))
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


# --- motion ghosts and wrap-around along the phase-encode direction -----------------------------

PHASE_AXES: dict[str, int] = {"COL": 1, "ROW": 2}  # numpy axis of a (slices, rows, cols) stack
GHOST_MIN_LAG_PX = 6  # replicas closer than this are not told apart from the anatomy's own texture
GHOST_SHARE_MAX = 0.15  # predicted ghost signal over a head / the head's signal: more = corrupted
ARTEFACT_PIXEL_MM = 3.0  # the checks run on the fluid-sensitive series binned in plane to about this
WRAP_MARGIN_MM = 5.0  # folded tissue this close to a head counts as over it
WRAP_EDGE_MIN = 0.15  # a field-of-view edge cuts the body when this fraction of the voxels along it is body


@dataclass(frozen=True)
class PhaseEncodeCheck:
    """Motion ghosting and wrap-around found on the fluid-sensitive series, and which hips they corrupt."""

    ghost_axis: str | None  # "ROW" | "COL": along which image axis replicas were found
    ghost_lag_mm: float | None
    ghost_prominence: dict[str, float]  # per image axis: autocorrelation peak above its surroundings
    ghost_share: dict[Side, float | None]  # predicted ghost signal over each head / the head's signal
    wrap_depth_mm: tuple[float, float] | None  # anatomy beyond the low/high phase-encode edges of the FOV
    corrupted: dict[Side, str]  # side -> why it is withheld


def phase_encoding_direction(datasets: Sequence[Dataset]) -> str | None:
    """InPlanePhaseEncodingDirection ("ROW"/"COL") of a series, classic or Enhanced MR; None if absent."""
    for ds in datasets[:1]:
        value = ds.get("InPlanePhaseEncodingDirection")
        if value is None:
            for group in ("SharedFunctionalGroupsSequence", "PerFrameFunctionalGroupsSequence"):
                items = ds.get(group) or []
                fov = items[0].get("MRFOVGeometrySequence") if items else None
                if fov:
                    value = fov[0].get("InPlanePhaseEncodingDirection")
                    break
        if value is not None and str(value).strip().upper() in PHASE_AXES:
            return str(value).strip().upper()
    return None


def _autocorrelation_peak(high: FloatArray, axis: int) -> tuple[int, float]:
    """(lag, prominence) of the strongest replica of the high-passed stack along ``axis``: the
    normalised autocorrelation at the lag minus the mean at lags 3-5 pixels either side."""
    n = high.shape[axis]
    den = float(np.sum(high * high))
    if den <= 0 or n < 4 * GHOST_MIN_LAG_PX:
        return 0, 0.0
    spectrum = np.fft.rfft(high, axis=axis)
    power = (spectrum * np.conj(spectrum)).real
    other = tuple(a for a in range(high.ndim) if a != axis)
    corr = np.fft.irfft(power.sum(axis=other), n=n) / den  # circular, like np.roll
    best_lag, best = 0, 0.0
    for lag in range(GHOST_MIN_LAG_PX, n // 2 + 1):
        around = [corr[lag + d] for d in (-5, -4, -3, 3, 4, 5) if GHOST_MIN_LAG_PX - 3 <= lag + d < corr.size]
        prominence = float(corr[lag] - np.mean(around))
        if prominence > best:
            best_lag, best = lag, prominence
    return best_lag, best


def _head_voxels(image: sitk.Image, femur: FemurGeometry, shape: tuple[int, ...]) -> BoolArray:
    """Voxels of ``image`` within 0.8 x the head radius of the head centre."""
    idx = np.asarray(image.TransformPhysicalPointToContinuousIndex(femur.centre))
    spacing = np.asarray(image.GetSpacing())
    r_px = 0.8 * femur.radius_mm / spacing
    k, r, c = np.ogrid[:shape[0], :shape[1], :shape[2]]
    d2 = ((c - idx[0]) / r_px[0]) ** 2 + ((r - idx[1]) / r_px[1]) ** 2 + ((k - idx[2]) / r_px[2]) ** 2
    out: BoolArray = d2 <= 1.0
    return out


@dataclass(frozen=True)
class _Extent:
    """The body of an image projected on a direction (LPS mm), and how much of each FOV edge it fills."""

    body_lo: float
    body_hi: float
    fov_lo: float
    fov_hi: float
    edge_lo: float  # fraction of the voxels within two pixels of the low edge that are body
    edge_hi: float


def _coarse(image: sitk.Image) -> sitk.Image:
    """``image`` binned in plane to about ``ARTEFACT_PIXEL_MM`` pixels (geometry kept), for speed."""
    spacing = image.GetSpacing()
    factors = [max(1, int(round(ARTEFACT_PIXEL_MM / float(spacing[i])))) for i in (0, 1)]
    if factors == [1, 1]:
        return image
    binned: sitk.Image = sitk.BinShrink(image, [factors[0], factors[1], 1])
    return binned


def _extent(image: sitk.Image, direction: FloatArray) -> _Extent:
    """Where the body of ``image`` lies along ``direction``, and whether the field of view cuts it."""
    image = _coarse(image)
    body = body_mask(sitk.GetArrayFromImage(image).astype(np.float32))
    k, r, c = np.indices(body.shape)
    pts = np.stack([c.ravel(), r.ravel(), k.ravel()], axis=1).astype(np.float64)
    mat = np.asarray(image.GetDirection()).reshape(3, 3) * np.asarray(image.GetSpacing())[None, :]
    u = (np.asarray(image.GetOrigin()) + pts @ mat.T) @ direction
    inside = body.ravel()
    size = np.asarray(image.GetSize(), dtype=np.float64)
    corners = np.array([[i, j, m] for i in (-0.5, size[0] - 0.5) for j in (-0.5, size[1] - 0.5)
                        for m in (-0.5, size[2] - 0.5)])
    cu = (np.asarray(image.GetOrigin()) + corners @ mat.T) @ direction
    lo, hi = float(cu.min()), float(cu.max())
    band = 2.0 * float(np.abs(mat.T @ direction).max())
    near_lo, near_hi = u <= lo + band, u >= hi - band
    if not inside.any():
        return _Extent(0.0, 0.0, lo, hi, 0.0, 0.0)
    return _Extent(body_lo=float(np.percentile(u[inside], 0.1)), body_hi=float(np.percentile(u[inside], 99.9)),
                   fov_lo=lo, fov_hi=hi, edge_lo=float(inside[near_lo].mean()) if near_lo.any() else 0.0,
                   edge_hi=float(inside[near_hi].mean()) if near_hi.any() else 0.0)


def check_phase_encode_artefacts(fluid_image: sitk.Image, t1_image: sitk.Image | None, loc: Localization,
                                 phase_encoding: str | None, params: AnalysisParameters) -> PhaseEncodeCheck:
    """Motion ghosts (periodic replicas along an image axis) and wrap-around (anatomy beyond the
    phase-encode edges of the field of view) on the fluid-sensitive series, per femoral head.

    Ghosts: the stack is band-passed and autocorrelated along each in-plane axis; natural anatomy
    decorrelates smoothly, ghosts give a sharp peak at their spacing. The ghost amplitude (about
    half the peak) times the image shifted by that lag predicts the ghost signal over each head;
    a head where it is a sizeable share of the head's own signal is corrupted.
    Wrap: with the phase-encode direction known from the header, the anatomy beyond each edge of
    the field of view is measured on the T1 (when it covers more); it folds in from the opposite
    edge, and a head it reaches is corrupted. Without a T1 to measure it, a body cut by both
    phase-encode edges corrupts both heads.
    """
    coarse = _coarse(fluid_image)
    arr = sitk.GetArrayFromImage(coarse).astype(np.float32)
    high = ndimage.gaussian_filter(arr, (0, 1, 1)) - ndimage.gaussian_filter(arr, (0, 6, 6))
    prominence: dict[str, float] = {}
    lags: dict[str, int] = {}
    for name, axis in PHASE_AXES.items():
        lags[name], prominence[name] = _autocorrelation_peak(high, axis)
    corrupted: dict[Side, str] = {}
    share: dict[Side, float | None] = {"right": None, "left": None}
    strongest = max(prominence, key=lambda a: prominence[a])
    ghost_axis: str | None = None
    ghost_lag_mm: float | None = None
    if prominence[strongest] >= params.ghost_prominence_min:
        ghost_axis = strongest
        axis = PHASE_AXES[ghost_axis]
        lag = lags[ghost_axis]
        ghost_lag_mm = round(lag * float(coarse.GetSpacing()[2 - axis]), 1)
        amplitude = prominence[ghost_axis] / 2.0
        smooth = ndimage.gaussian_filter(arr, 1.0)
        ghost = amplitude * (np.roll(smooth, lag, axis=axis) + np.roll(smooth, -lag, axis=axis))
        for side, _ in SIDES:
            femur = loc.femurs[side]
            if femur is None:
                continue
            head = _head_voxels(coarse, femur, arr.shape)
            if head.sum() < 5:
                continue
            value = round(float(ghost[head].mean() / max(float(smooth[head].mean()), 1e-6)), 2)
            share[side] = value
            if value > GHOST_SHARE_MAX:
                corrupted[side] = (f"motion ghosts along the image {ghost_axis.lower()}s (replicas every "
                                   f"{ghost_lag_mm:.0f} mm, about {100 * amplitude:.0f}% of the source) over "
                                   f"the {side} femoral head")
    depth = _wrap(fluid_image, t1_image, loc, phase_encoding, corrupted)
    return PhaseEncodeCheck(ghost_axis=ghost_axis, ghost_lag_mm=ghost_lag_mm,
                            ghost_prominence={k: round(v, 3) for k, v in prominence.items()},
                            ghost_share=share, wrap_depth_mm=depth, corrupted=corrupted)


def _wrap(fluid_image: sitk.Image, t1_image: sitk.Image | None, loc: Localization, phase_encoding: str | None,
          corrupted: dict[Side, str]) -> tuple[float, float] | None:
    """Anatomy beyond the (low, high) phase-encode edges of the fluid-sensitive FOV, in mm; marks the
    heads it folds over in ``corrupted``. None when the phase-encode direction is unknown."""
    if phase_encoding not in PHASE_AXES:
        return None
    d = np.asarray(fluid_image.GetDirection()).reshape(3, 3)
    direction = d[:, 0] if phase_encoding == "ROW" else d[:, 1]
    fluid = _extent(fluid_image, direction)
    fov_lo, fov_hi = fluid.fov_lo, fluid.fov_hi
    if min(fluid.edge_lo, fluid.edge_hi) < WRAP_EDGE_MIN:
        return (0.0, 0.0)
    beyond_lo = beyond_hi = float("inf")
    if t1_image is not None:
        t1 = _extent(t1_image, direction)
        if t1.edge_lo < WRAP_EDGE_MIN:
            beyond_lo = max(fov_lo - t1.body_lo, 0.0)
        if t1.edge_hi < WRAP_EDGE_MIN:
            beyond_hi = max(t1.body_hi - fov_hi, 0.0)
    for side, _ in SIDES:
        femur = loc.femurs[side]
        if femur is None or side in corrupted:
            continue
        u = float(np.asarray(femur.centre) @ direction)
        lo, hi = u - femur.radius_mm - WRAP_MARGIN_MM, u + femur.radius_mm + WRAP_MARGIN_MM
        # beyond the low edge folds in at the high edge, and the other way round
        over = (beyond_lo > 0 and hi >= fov_hi - beyond_lo) or (beyond_hi > 0 and lo <= fov_lo + beyond_hi)
        if over:
            how = ("the anatomy cut off by the field of view could not be measured (no T1 covering it)"
                   if np.isinf(beyond_lo) or np.isinf(beyond_hi) else
                   f"{beyond_lo:.0f} mm and {beyond_hi:.0f} mm of anatomy beyond the two edges")
            corrupted[side] = (f"wrap-around along phase encode ({phase_encoding}, field of view "
                               f"{fov_hi - fov_lo:.0f} mm): folded anatomy over the {side} femoral head; {how}")
    return (round(min(beyond_lo, 1e4), 1), round(min(beyond_hi, 1e4), 1))
