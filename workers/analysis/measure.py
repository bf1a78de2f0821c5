"""Per-side and per-region measurements, joint effusion and the oedema pattern."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy import ndimage

from workers.analysis.anatomy import FemurGeometry
from workers.analysis.oedema import Spacing, drop_small, min_voxels
from workers.analysis.params import AnalysisParameters
from workers.analysis.regions import REGION_NAMES, FemurFrame, neck_end
from workers.analysis.result import Pattern, RegionMeasurement, RegionName
from workers.analysis.tissues import TissueLevels

BoolArray = npt.NDArray[np.bool_]
FloatArray = npt.NDArray[np.float32]


def _r(value: float, digits: int = 2) -> float:
    return round(float(value), digits)


@dataclass(frozen=True)
class MarrowReference:
    """Normal marrow of the hip (its marrow away from the oedema): the denominator of signal ratios."""

    fluid: float
    t1: float | None
    description: str


def region_measurement(
    region: BoolArray, oedema: BoolArray, fluid: FloatArray, t1: FloatArray | None,
    ref: MarrowReference, voxel_ml: float,
) -> RegionMeasurement:
    """Volume, involvement and signal ratios of the oedema inside one region."""
    inside = oedema & region
    n_region = int(region.sum())
    n_oed = int(inside.sum())
    sir = fluid[inside] / ref.fluid if n_oed else np.zeros(0, dtype=np.float32)
    t1_ratio = t1[inside] / ref.t1 if (n_oed and t1 is not None and ref.t1) else None
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
    ref: MarrowReference, voxel_ml: float,
) -> dict[RegionName, RegionMeasurement]:
    """One measurement per region."""
    return {name: region_measurement(regions[name], oedema, fluid, t1, ref, voxel_ml) for name in REGION_NAMES}


@dataclass(frozen=True)
class Effusion:
    mask: BoolArray
    volume_ml: float
    thickness_mm: float  # thickest fluid layer (twice the largest in-plane distance to its edge)
    present: bool


def fluid_level(levels: TissueLevels, params: AnalysisParameters) -> float:
    """Free-fluid signal threshold: halfway from muscle to the study's free fluid (bladder, joint
    fluid), or ``effusion_muscle_multiple`` x muscle when no free fluid is in view."""
    if levels.fluid_free is None:
        return params.effusion_muscle_multiple * levels.fluid_muscle
    return levels.fluid_muscle + params.effusion_level_fraction * (levels.fluid_free - levels.fluid_muscle)


def effusion(
    fluid: FloatArray, t1: FloatArray | None, levels: TissueLevels, femur: FemurGeometry, frame: FemurFrame,
    marrow: BoolArray, spacing: Spacing, params: AnalysisParameters,
) -> Effusion:
    """Joint fluid in the capsule around head and neck, and whether it distends the capsule.

    Fluid: outside the femur (its marrow plus the cortex), within ``effusion_shell_mm`` of the head
    and neck, at least ``fluid_level`` on the fluid-sensitive series and darker than muscle on T1.
    An effusion is a distended capsule holding more than physiological fluid: a fluid layer at
    least ``effusion_distension_mm`` thick and at least ``effusion_min_ml`` of fluid. A thin film of
    physiological fluid is not one.
    """
    r = femur.radius_mm
    shell = params.effusion_shell_mm
    near_head = frame.dist_centre <= r + shell
    near_neck = (frame.along >= 0) & (frame.along <= neck_end(femur, params)) & (
        frame.radial <= femur.neck_radius_mm + shell)
    bone = ndimage.binary_dilation(marrow, iterations=1) | (frame.dist_centre <= np.float32(r))
    zone = (near_head | near_neck) & ~bone
    cand = zone & (fluid >= np.float32(fluid_level(levels, params)))
    if t1 is not None and levels.t1_muscle is not None:
        cand &= t1 <= np.float32(levels.t1_muscle)
    voxel_mm3 = float(np.prod(spacing))
    cand = drop_small(cand, min_voxels(voxel_mm3, params))
    depth = np.zeros(cand.shape, dtype=np.float32)
    for k in np.nonzero(cand.any(axis=(1, 2)))[0]:
        depth[k] = ndimage.distance_transform_edt(cand[k], sampling=spacing[1:])
    thickness = float(2.0 * depth.max())
    vol = float(cand.sum()) * voxel_mm3 / 1000.0
    present = vol >= params.effusion_min_ml and thickness >= params.effusion_distension_mm
    return Effusion(mask=cand, volume_ml=_r(vol), thickness_mm=_r(thickness, 1), present=present)


@dataclass(frozen=True)
class PatternCall:
    pattern: Pattern
    band: bool | None
    medial_sparing: bool | None


def classify_pattern(
    oedema: BoolArray, regions: dict[RegionName, BoolArray], measures: dict[RegionName, RegionMeasurement],
    frame: FemurFrame, femur: FemurGeometry, present: bool, fluid: FloatArray, t1: FloatArray | None,
    ref: MarrowReference, params: AnalysisParameters,
) -> PatternCall:
    """The pattern the numbers support.

    - diffuse (ITOH-like): head and neck both involved (head >= ``diffuse_head_pct_min`` and neck
      >= ``diffuse_neck_pct_min``), or most of the head;
    - focal (subchondral, AVN / insufficiency-fracture-like): not diffuse, mostly in the head, small
      share of the head, and touching the subchondral bone plate (within ``subchondral_mm``);
    - regional: oedema that is neither (e.g. confined to the neck or the trochanteric region);
    - none: no oedema reported.
    """
    if not present:
        return PatternCall(pattern="none", band=None, medial_sparing=None)
    head_pct = measures["head"].involvement_pct
    neck_pct = measures["neck"].involvement_pct
    head = regions["head"] & oedema
    n_head = int(head.sum())
    n_all = int(oedema.sum())
    diffuse = (head_pct >= params.diffuse_head_pct_min and neck_pct >= params.diffuse_neck_pct_min) or (
        head_pct >= params.diffuse_head_only_pct_min)
    depth = np.float32(femur.radius_mm) - frame.dist_centre[head] if n_head else np.zeros(0, dtype=np.float32)
    subchondral = n_head > 0 and float(depth.min()) <= params.subchondral_mm
    mostly_head = n_all > 0 and n_head / n_all >= params.focal_head_share_min
    focal = (not diffuse and mostly_head and subchondral and head_pct < params.focal_head_pct_max)
    band = _low_signal_band(head, regions["head"], fluid, t1, ref, params) if focal else None
    sparing = None
    if diffuse and head_pct >= 20.0:
        medial = regions["head"] & (frame.lateral < -femur.radius_mm / 3)
        rest = regions["head"] & ~medial
        med_frac = float((oedema & medial).sum()) / max(int(medial.sum()), 1)
        rest_frac = float((oedema & rest).sum()) / max(int(rest.sum()), 1)
        sparing = med_frac < 0.3 * rest_frac
    pattern: Pattern = "diffuse" if diffuse else ("focal" if focal else "regional")
    return PatternCall(pattern=pattern, band=band, medial_sparing=sparing)


def _low_signal_band(lesion: BoolArray, head: BoolArray, fluid: FloatArray, t1: FloatArray | None,
                     ref: MarrowReference, params: AnalysisParameters) -> bool | None:
    """A rim of low T1 and low fluid signal around a focal lesion (the AVN band / double line)."""
    if t1 is None or not ref.t1 or not lesion.any():
        return None
    rim = ndimage.binary_dilation(lesion, iterations=2) & ~lesion & head
    if not rim.any():
        return False
    dark = (t1[rim] <= 0.6 * ref.t1) & (fluid[rim] <= 1.2 * ref.fluid)
    return bool(dark.mean() >= params.band_fraction_min)
