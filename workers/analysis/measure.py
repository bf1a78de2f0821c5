"""Per-side and per-region measurements, joint effusion and the oedema pattern."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy import ndimage

from workers.analysis.anatomy import FemurGeometry
from workers.analysis.oedema import clean_mask
from workers.analysis.params import AnalysisParameters
from workers.analysis.regions import REGION_NAMES, FemurFrame, neck_end
from workers.analysis.result import Pattern, RegionMeasurement, RegionName

BoolArray = npt.NDArray[np.bool_]
FloatArray = npt.NDArray[np.float32]


def _r(value: float, digits: int = 2) -> float:
    return round(float(value), digits)


def region_measurement(
    region: BoolArray, oedema: BoolArray, fluid: FloatArray, t1: FloatArray | None,
    fluid_ref: float, t1_ref: float | None, voxel_ml: float,
) -> RegionMeasurement:
    """Volume, involvement and signal ratios of the oedema inside one region."""
    inside = oedema & region
    n_region = int(region.sum())
    n_oed = int(inside.sum())
    sir = fluid[inside] / fluid_ref if n_oed else np.zeros(0, dtype=np.float32)
    t1_ratio = t1[inside] / t1_ref if (n_oed and t1 is not None and t1_ref) else None
    return RegionMeasurement(
        region_volume_ml=_r(n_region * voxel_ml),
        oedema_volume_ml=_r(n_oed * voxel_ml),
        involvement_pct=_r(100.0 * n_oed / n_region if n_region else 0.0, 1),
        mean_signal_ratio=_r(float(sir.mean())) if n_oed else None,
        p95_signal_ratio=_r(float(np.percentile(sir, 95))) if n_oed else None,
        mean_t1_ratio=_r(float(t1_ratio.mean())) if t1_ratio is not None else None,
    )


def measure_regions(
    regions: dict[RegionName, BoolArray], oedema: BoolArray, fluid: FloatArray, t1: FloatArray | None,
    fluid_ref: float, t1_ref: float | None, voxel_ml: float,
) -> dict[RegionName, RegionMeasurement]:
    """One measurement per region."""
    return {
        name: region_measurement(regions[name], oedema, fluid, t1, fluid_ref, t1_ref, voxel_ml)
        for name in REGION_NAMES
    }


@dataclass(frozen=True)
class Effusion:
    mask: BoolArray
    volume_ml: float
    present: bool


def effusion(
    fluid: FloatArray, t1: FloatArray | None, femur: FemurGeometry, frame: FemurFrame, bone: BoolArray,
    bright_level: float, t1_dark_level: float | None, voxel_mm3: float, params: AnalysisParameters,
) -> Effusion:
    """Fluid-bright voxels outside bone within ``effusion_shell_mm`` of the head and neck surface."""
    r = femur.radius_mm
    shell = params.effusion_shell_mm
    near_head = frame.dist_centre <= r + shell
    near_neck = (frame.along >= 0) & (frame.along <= neck_end(femur, params)) & (
        frame.radial <= femur.neck_radius_mm + shell
    )
    zone = (near_head | near_neck) & ~bone
    cand = zone & (fluid >= bright_level)
    if t1 is not None and t1_dark_level is not None:
        cand &= t1 <= t1_dark_level
    cand = clean_mask(cand, zone, voxel_mm3, params)
    vol = float(cand.sum()) * voxel_mm3 / 1000.0
    return Effusion(mask=cand, volume_ml=_r(vol), present=vol >= params.effusion_present_min_ml)


@dataclass(frozen=True)
class PatternCall:
    pattern: Pattern
    band: bool | None
    medial_sparing: bool | None


def classify_pattern(
    oedema: BoolArray, regions: dict[RegionName, BoolArray], measures: dict[RegionName, RegionMeasurement],
    frame: FemurFrame, femur: FemurGeometry, present: bool, fluid: FloatArray, t1: FloatArray | None,
    fluid_ref: float, t1_ref: float | None, params: AnalysisParameters,
) -> PatternCall:
    """Diffuse (head + neck, ITOH-like), focal subchondral (AVN-like) or none."""
    if not present:
        return PatternCall(pattern="none", band=None, medial_sparing=None)
    head = regions["head"] & oedema
    n_head = int(head.sum())
    n_all = n_head + int((regions["neck"] & oedema).sum())
    depth = femur.radius_mm - frame.dist_centre[head] if n_head else np.zeros(0, dtype=np.float32)
    subchondral = n_head > 0 and float(np.median(depth)) <= params.focal_depth_mm
    neck_pct = measures["neck"].involvement_pct
    mostly_head = n_all > 0 and n_head / n_all >= 0.8
    focal = (mostly_head and subchondral and neck_pct < params.diffuse_neck_pct_min
             and measures["head"].involvement_pct < params.focal_head_pct_max)
    band = _low_signal_band(head, regions["head"], fluid, t1, fluid_ref, t1_ref, params) if focal else None
    sparing = None
    if measures["head"].involvement_pct >= 20.0:
        medial = regions["head"] & (frame.lateral < -femur.radius_mm / 3)
        rest = regions["head"] & ~medial
        med_frac = float((oedema & medial).sum()) / max(int(medial.sum()), 1)
        rest_frac = float((oedema & rest).sum()) / max(int(rest.sum()), 1)
        sparing = med_frac < 0.3 * rest_frac
    return PatternCall(pattern="focal" if focal else "diffuse", band=band, medial_sparing=sparing)


def _low_signal_band(
    lesion: BoolArray, head: BoolArray, fluid: FloatArray, t1: FloatArray | None,
    fluid_ref: float, t1_ref: float | None, params: AnalysisParameters,
) -> bool | None:
    """A rim of low T1 and low fluid signal around a focal lesion (the AVN band / double line)."""
    if t1 is None or not t1_ref or not lesion.any():
        return None
    rim = ndimage.binary_dilation(lesion, iterations=2) & ~lesion & head
    if not rim.any():
        return False
    dark = (t1[rim] <= 0.6 * t1_ref) & (fluid[rim] <= 1.2 * fluid_ref)
    return bool(dark.mean() >= params.band_fraction_min)
