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

from workers.analysis.anatomy import SIDES, FemurGeometry, Localization
from workers.analysis.params import AnalysisParameters
from workers.analysis.result import Side

BoolArray = npt.NDArray[np.bool_]
FloatArray = npt.NDArray[np.float32]

# --- motion ghosts and wrap-around along the phase-encode direction -----------------------------

PHASE_AXES: dict[str, int] = {"COL": 1, "ROW": 2}  # numpy axis of a (slices, rows, cols) stack
GHOST_MIN_LAG_PX = 6  # replicas closer than this are not told apart from the anatomy's own texture
GHOST_SHARE_MAX = 0.15  # predicted ghost signal over a head / the head's signal: more = corrupted
ARTEFACT_PIXEL_MM = 3.0  # the checks run on the fluid-sensitive series binned in plane to about this


@dataclass(frozen=True)
class PhaseEncodeCheck:
    """Motion ghosting found on the fluid-sensitive series, and which hips it corrupts."""

    ghost_axis: str | None  # "ROW" | "COL": along which image axis replicas were found
    ghost_lag_mm: float | None
    ghost_prominence: dict[str, float]  # per image axis: autocorrelation peak above its surroundings
    ghost_share: dict[Side, float | None]  # predicted ghost signal over each head / the head's signal
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


def _coarse(image: sitk.Image) -> sitk.Image:
    """``image`` binned in plane to about ``ARTEFACT_PIXEL_MM`` pixels (geometry kept), for speed."""
    spacing = image.GetSpacing()
    factors = [max(1, int(round(ARTEFACT_PIXEL_MM / float(spacing[i])))) for i in (0, 1)]
    if factors == [1, 1]:
        return image
    binned: sitk.Image = sitk.BinShrink(image, [factors[0], factors[1], 1])
    return binned


def check_phase_encode_artefacts(fluid_image: sitk.Image, loc: Localization,
                                 params: AnalysisParameters) -> PhaseEncodeCheck:
    """Motion ghosts on the fluid-sensitive series, per femoral head: periodic replicas of the anatomy
    along an image axis.

    The stack is band-passed and autocorrelated along each in-plane axis; natural anatomy
    decorrelates smoothly, ghosts give a sharp peak at their spacing. The ghost amplitude (about
    half the peak) times the image shifted by that lag predicts the ghost signal over each head;
    a head where it is a sizeable share of the head's own signal is corrupted.
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
    return PhaseEncodeCheck(ghost_axis=ghost_axis, ghost_lag_mm=ghost_lag_mm,
                            ghost_prominence={k: round(v, 3) for k, v in prominence.items()},
                            ghost_share=share, corrupted=corrupted)
