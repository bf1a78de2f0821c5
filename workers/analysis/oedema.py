"""Reference marrow, per-voxel oedema score and the cleaned-up oedema mask.

Reference (DOMAIN.md 1.3 step 4), in order of preference, recorded in the result:
(a) the matching region of the contralateral hip when that hip is not affected;
(b) ipsilateral subtrochanteric shaft marrow (far from head/neck lesions);
(c) muscle: a marrow-to-muscle ratio on the fluid-sensitive series.
Candidate oedema (Hepburn's robust rule): I >= max(Q3 + k*IQR, SIR_min * median) of the
reference, not clearly fatty on T1. The lesion boundary is then placed at half the way from the
reference to the lesion's robust peak (a half-maximum rule, so the outline does not depend on
the noise level), and each connected component must be dark on T1 (mean T1 <= t1_ratio_max
x reference, component mean) when a T1 is present.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy import ndimage

from workers.analysis.params import AnalysisParameters
from workers.analysis.result import RegionName

BoolArray = npt.NDArray[np.bool_]
FloatArray = npt.NDArray[np.float32]

MIN_REFERENCE_VOXELS = 30


@dataclass(frozen=True)
class RobustStats:
    """Robust statistics of reference marrow on the fluid-sensitive series (and T1)."""

    median: float
    q1: float
    q3: float
    t1_median: float | None
    n: int

    @property
    def iqr(self) -> float:
        return self.q3 - self.q1


@dataclass(frozen=True)
class Reference:
    """The reference chosen for one side, with the region statistics it provides."""

    kind: str  # "contralateral", "ipsilateral shaft", "muscle"
    description: str
    per_region: dict[RegionName, RobustStats]

    def threshold(self, region: RegionName, params: AnalysisParameters) -> float:
        """Fluid-sensitive intensity above which a voxel of ``region`` is an oedema candidate."""
        s = self.per_region[region]
        if self.kind == "muscle":
            return params.muscle_sir_min * s.median
        return max(s.q3 + params.iqr_k * s.iqr, params.sir_min * s.median)


def robust_stats(fluid: FloatArray, t1: FloatArray | None, mask: BoolArray) -> RobustStats | None:
    """Quartiles of ``fluid`` (and T1 median) inside ``mask``; None when too few voxels."""
    n = int(mask.sum())
    if n < MIN_REFERENCE_VOXELS:
        return None
    q1, med, q3 = (float(v) for v in np.percentile(fluid[mask], [25, 50, 75]))
    t1_med = float(np.median(t1[mask])) if t1 is not None else None
    if med <= 0:
        return None
    return RobustStats(median=med, q1=q1, q3=q3, t1_median=t1_med, n=n)


def excess_fraction(fluid: FloatArray, roi: BoolArray, stats: RobustStats, params: AnalysisParameters) -> float:
    """Fraction of ``roi`` voxels above the robust threshold of ``stats`` (how "affected" a region looks)."""
    n = int(roi.sum())
    if n == 0:
        return 0.0
    thr = max(stats.q3 + params.iqr_k * stats.iqr, params.sir_min * stats.median)
    return float((fluid[roi] >= thr).sum()) / n


def candidate_mask(
    fluid: FloatArray, t1: FloatArray | None, roi: BoolArray, reference: Reference, region: RegionName,
    params: AnalysisParameters,
) -> BoolArray:
    """Voxels of ``roi`` that are fluid-bright against the reference and not clearly fatty on T1."""
    cand = roi & (fluid >= reference.threshold(region, params))
    stats = reference.per_region[region]
    if t1 is not None and stats.t1_median is not None and reference.kind != "muscle":
        cand &= t1 <= params.t1_fatty_min * stats.t1_median
    return cand


def lesion_boundary(fluid: FloatArray, candidates: BoolArray, reference_median: float,
                    params: AnalysisParameters) -> float:
    """Half-maximum boundary: the level halfway (``boundary_fraction``) from the reference to the
    lesion's robust peak (``peak_percentile`` of the candidate voxels)."""
    if not candidates.any():
        return float("inf")
    peak = float(np.percentile(fluid[candidates], params.peak_percentile))
    return reference_median + params.boundary_fraction * (peak - reference_median)


def confirm_by_t1(mask: BoolArray, t1: FloatArray | None, t1_reference: float | None,
                  params: AnalysisParameters) -> BoolArray:
    """Keep connected components whose mean T1 is low (<= t1_ratio_max x reference): oedema, not fat."""
    if t1 is None or not t1_reference or not mask.any():
        return mask
    labels, n = ndimage.label(mask)
    if n == 0:
        return mask
    mean = ndimage.mean(t1, labels, index=np.arange(1, n + 1))
    keep = np.concatenate([[False], np.asarray(mean) <= params.t1_ratio_max * t1_reference])
    out: BoolArray = keep[labels]
    return out


def _small_holes(mask: BoolArray, max_voxels: float) -> BoolArray:
    """Background pockets fully enclosed by ``mask`` with fewer than ``max_voxels`` voxels."""
    background, n = ndimage.label(~mask)
    if n == 0:
        return np.zeros_like(mask)
    sizes = np.bincount(background.ravel(), minlength=n + 1)
    border = np.unique(np.concatenate([
        background[[0, -1], :, :].ravel(), background[:, [0, -1], :].ravel(), background[:, :, [0, -1]].ravel(),
    ]))
    small = sizes < max_voxels
    small[0] = False
    small[border] = False
    out: BoolArray = small[background]
    return out


def clean_mask(mask: BoolArray, allowed: BoolArray, voxel_mm3: float, params: AnalysisParameters) -> BoolArray:
    """Fill small holes (inside ``allowed``) and drop components smaller than ``min_component_mm3``."""
    if not mask.any():
        return mask
    min_vox = max(params.min_component_mm3 / voxel_mm3, params.min_component_voxels)
    mask = mask | (_small_holes(mask, min_vox) & allowed)
    labels, n = ndimage.label(mask)
    if n == 0:
        return mask
    sizes = np.bincount(labels.ravel(), minlength=n + 1)
    keep = sizes >= min_vox
    keep[0] = False
    out: BoolArray = keep[labels]
    return out
