"""The oedema mask of one hip, inside its segmented marrow, on the study's own tissue scales.

1. Core: marrow (one voxel in from its edge, also across slices) whose lightly smoothed fluid-sensitive signal is
   clearly brighter than muscle (``u >= core_u_min`` on the fat-muscle scale of
   ``tissues.TissueLevels``) and, with a T1, clearly less fatty than fat (``v <= core_v_max``).
   Oedema is brighter than muscle on STIR/T2-FS and darker than fatty marrow on T1; muscle, red
   marrow and suppressed fat are not both. Cores smaller than ``min_component_mm3`` are noise.
2. Outline: the half-maximum level between fat (normal fatty marrow) and the lesion's local
   plateau (the core signal averaged over ``plateau_mm`` by normalised convolution), grown from
   the cores through the marrow only. The outline therefore does not depend on the noise level
   or on how intense the lesion is.
3. Clean-up: small holes are filled, specks dropped.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from scipy import ndimage

from workers.analysis.marrow import EDGE_SMOOTHING_MAX_PX, smoothed
from workers.analysis.params import AnalysisParameters
from workers.analysis.regions import connected_to
from workers.analysis.tissues import TissueLevels

BoolArray = npt.NDArray[np.bool_]
FloatArray = npt.NDArray[np.float32]
Spacing = tuple[float, float, float]  # (z, y, x) mm


def min_voxels(voxel_mm3: float, params: AnalysisParameters) -> float:
    """The smallest component kept, in voxels."""
    return max(params.min_component_mm3 / voxel_mm3, float(params.min_component_voxels))


def oedema_core(fluid: FloatArray, t1: FloatArray | None, marrow: BoolArray, levels: TissueLevels,
                spacing: Spacing, params: AnalysisParameters) -> BoolArray:
    """Marrow voxels that are surely oedema (step 1 of the module text)."""
    # one voxel in from the marrow's edge in every direction: across thick slices the outermost
    # slice of a bone holds cortex, capsule and joint fluid in partial volume
    inner = ndimage.binary_erosion(marrow, structure=ndimage.generate_binary_structure(3, 1))
    fluid_s, t1_s = smoothed(fluid, t1, levels, EDGE_SMOOTHING_MAX_PX)
    u = levels.u(fluid_s)
    candidate: BoolArray = inner & (u >= np.float32(params.core_u_weak))
    v = levels.v(t1_s) if t1_s is not None else None
    if v is not None:
        candidate &= v <= np.float32(params.core_v_max)
    # hysteresis: a region above the weak level is a core when it reaches the strong level somewhere,
    # is larger than a speck and brighter than the strong level on average (noise is neither)
    labels, n = ndimage.label(candidate)
    if n == 0:
        return candidate
    index = np.arange(1, n + 1)
    sizes = ndimage.sum_labels(candidate, labels, index)
    means = ndimage.mean(u, labels, index)
    peaks = ndimage.maximum(u, labels, index)
    voxel_mm3 = float(np.prod(spacing))
    keep = np.concatenate([[False], (sizes >= min_voxels(voxel_mm3, params)) & (np.asarray(means) >= params.core_u_min)
                           & (np.asarray(peaks) >= params.core_u_min)])
    out: BoolArray = keep[labels]
    return out


def local_plateau(fluid: FloatArray, core: BoolArray, spacing: Spacing, params: AnalysisParameters) -> FloatArray:
    """The lesion's signal around each voxel: the core's mean signal within about ``plateau_mm``
    (normalised convolution, so it extends a little beyond the core and ignores non-core voxels)."""
    sigma = [params.plateau_mm / s for s in spacing]
    weight = ndimage.gaussian_filter(core.astype(np.float32), sigma)
    total = ndimage.gaussian_filter(np.where(core, fluid, np.float32(0.0)).astype(np.float32), sigma)
    out: FloatArray = np.where(weight > 1e-3, total / np.maximum(weight, np.float32(1e-3)), np.float32(0.0)).astype(
        np.float32)
    return out


def oedema_mask(fluid: FloatArray, t1: FloatArray | None, marrow: BoolArray, levels: TissueLevels,
                spacing: Spacing, params: AnalysisParameters) -> tuple[BoolArray, FloatArray]:
    """(oedema mask, score) of one hip; the score is the fluid-sensitive signal on the fat (0) to
    muscle (1) scale, kept where the mask is."""
    core = oedema_core(fluid, t1, marrow, levels, spacing, params)
    score = np.zeros(fluid.shape, dtype=np.float32)
    if not core.any():
        return core, score
    plateau = local_plateau(fluid, core, spacing, params)
    fat = np.float32(levels.fluid_fat)
    level = fat + np.float32(params.outline_fraction) * (plateau - fat)
    smooth, _ = smoothed(fluid, None, levels, EDGE_SMOOTHING_MAX_PX)
    above = marrow & (plateau > 0) & (smooth >= level)
    mask = connected_to(above, core) | core
    voxel_mm3 = float(np.prod(spacing))
    mask = fill_small_holes(mask, min_voxels(voxel_mm3, params)) & marrow
    mask = drop_small(mask, min_voxels(voxel_mm3, params))
    score[mask] = levels.u(fluid[mask])
    return mask, score


def drop_small(mask: BoolArray, min_size: float) -> BoolArray:
    """``mask`` without connected components smaller than ``min_size`` voxels."""
    labels, n = ndimage.label(mask)
    if n == 0:
        return mask
    sizes = np.bincount(labels.ravel(), minlength=n + 1)
    keep = sizes >= min_size
    keep[0] = False
    out: BoolArray = keep[labels]
    return out


def fill_small_holes(mask: BoolArray, max_size: float) -> BoolArray:
    """``mask`` with enclosed background pockets of fewer than ``max_size`` voxels filled."""
    background, n = ndimage.label(~mask)
    if n == 0:
        return mask
    sizes = np.bincount(background.ravel(), minlength=n + 1)
    border = np.unique(np.concatenate([
        background[[0, -1], :, :].ravel(), background[:, [0, -1], :].ravel(), background[:, :, [0, -1]].ravel(),
    ]))
    small = sizes < max_size
    small[0] = False
    small[border] = False
    out: BoolArray = mask | small[background]
    return out
