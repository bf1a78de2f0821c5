# mypy: disallow-untyped-calls=False
"""How much of each hip's head, neck and intertrochanteric region the fluid-sensitive series images.

The fitted femur (head sphere, neck cylinder, intertrochanteric ball around the neck base) is
sampled on a 2 mm lattice; a point is *covered* when it lies inside the series' volume (in plane
and between its outermost slices) and *sampled* when it also lies within a slice's thickness
(slices with gaps between them image only part of what they cover). A hip whose head or neck is
not fully covered gets its numbers flagged "incomplete coverage" with the covered fraction;
slices with gaps give the oedema volume a range instead of one number.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import SimpleITK as sitk

from workers.analysis.anatomy import FemurGeometry
from workers.analysis.params import AnalysisParameters
from workers.analysis.regions import REGION_NAMES, head_neck_junction, neck_end, neck_radius_at
from workers.analysis.result import RegionName

BoolArray = npt.NDArray[np.bool_]
LATTICE_MM = 2.0
FULL_COVERAGE_PCT = 95.0  # a region less covered than this is "incomplete"
GAP_TOLERANCE = 1.1  # slices further apart than this x their thickness leave gaps


@dataclass(frozen=True)
class Coverage:
    """Per region: % covered by the series' volume, and % actually inside a slice (gaps excluded)."""

    covered_pct: dict[RegionName, float]
    sampled_pct: dict[RegionName, float]
    gap_mm: float  # slice spacing minus thickness (0 for contiguous or overlapping slices)

    @property
    def complete(self) -> bool:
        return all(self.covered_pct[r] >= FULL_COVERAGE_PCT for r in ("head", "neck"))


def _region_points(femur: FemurGeometry, params: AnalysisParameters) -> dict[RegionName, npt.NDArray[np.float64]]:
    """Lattice points (LPS, (n, 3)) of the fitted head, neck and intertrochanteric region."""
    c = np.asarray(femur.centre, dtype=np.float64)
    axis = np.asarray(femur.neck_axis, dtype=np.float64)
    reach = femur.neck_length_mm + params.intertrochanteric_radius_mm + femur.radius_mm
    g = np.arange(-reach, reach + 0.1, LATTICE_MM)
    pts = np.stack(np.meshgrid(g, g, g, indexing="ij"), axis=-1).reshape(-1, 3) + c
    d = pts - c
    dist = np.linalg.norm(d, axis=1)
    along = d @ axis
    radial = np.sqrt(np.maximum(dist**2 - along**2, 0.0))
    j = head_neck_junction(femur)
    end = neck_end(femur, params)
    base_dist = np.sqrt((along - femur.neck_length_mm) ** 2 + radial**2)
    neck_r = neck_radius_at(femur, along.astype(np.float32)).astype(np.float64)
    masks: dict[RegionName, BoolArray] = {
        "head": (dist <= femur.radius_mm) & (along < j),
        "neck": (along >= j) & (along < end) & (radial <= neck_r),
        "intertrochanteric": (along >= end) & (base_dist <= params.intertrochanteric_radius_mm),
    }
    return {name: pts[m] for name, m in masks.items()}


def hip_coverage(image: sitk.Image, femur: FemurGeometry, thickness_mm: float | None,
                 params: AnalysisParameters) -> Coverage:
    """Coverage of one hip's regions by ``image`` (``thickness_mm``: SliceThickness, None = contiguous)."""
    origin = np.asarray(image.GetOrigin(), dtype=np.float64)
    direction = np.asarray(image.GetDirection(), dtype=np.float64).reshape(3, 3)
    spacing = np.asarray(image.GetSpacing(), dtype=np.float64)
    size = np.asarray(image.GetSize(), dtype=np.float64)
    thickness = thickness_mm if thickness_mm and thickness_mm > 0 else float(spacing[2])
    gap = max(float(spacing[2]) - thickness, 0.0) if spacing[2] > GAP_TOLERANCE * thickness else 0.0
    covered: dict[RegionName, float] = {}
    sampled: dict[RegionName, float] = {}
    for name, pts in _region_points(femur, params).items():
        if len(pts) == 0:
            covered[name] = sampled[name] = 0.0
            continue
        idx = ((pts - origin) @ direction) / spacing  # continuous (i, j, k)
        inside = np.all((idx >= -0.5) & (idx <= size - 0.5), axis=1)
        in_slice = inside & (np.abs(idx[:, 2] - np.rint(idx[:, 2])) * spacing[2] <= thickness / 2.0)
        covered[name] = round(100.0 * float(inside.mean()), 1)
        sampled[name] = round(100.0 * float(in_slice.mean()), 1)
    return Coverage(covered_pct=covered, sampled_pct=sampled, gap_mm=round(gap, 1))


def coverage_note(side: str, cov: Coverage) -> str:
    """A warning for an incompletely covered hip, '' when head and neck are fully covered."""
    if cov.complete:
        return ""
    parts = ", ".join(f"{name} {cov.covered_pct[name]:.0f}%" for name in REGION_NAMES)
    return (f"incomplete coverage of the {side} hip by the fluid-sensitive series ({parts} covered): "
            "oedema beyond the slices is not measured; volumes are a lower bound")
