# mypy: disallow-untyped-calls=False
"""Femoral marrow of one hip, segmented from the images: the bone inside the dark cortex.

The cortex is dark on every sequence; marrow is bright on T1 when fatty and bright on the
fluid-sensitive series when oedematous; muscle, fat and joint fluid lie outside the cortex.
On a brightness map ``b = max(T1 / fat, fluid / muscle)`` (the fluid-sensitive term alone without a
T1) the cortex is a dark ridge around the marrow. A marker-controlled watershed on ``-log b``
floods the marrow from the core of the femoral head and everything else from outside the femur
envelope; the two floods meet on the cortex, wherever it lies. The parametric femur (head sphere,
neck axis, intertrochanteric ball, shaft) only bounds the search and seeds it: the voxels are
decided by the images.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from scipy import ndimage
from skimage.segmentation import watershed

from workers.analysis.anatomy import FemurGeometry
from workers.analysis.params import AnalysisParameters
from workers.analysis.regions import FemurFrame, head_neck_junction, neck_radius_at
from workers.analysis.tissues import TissueLevels

BoolArray = npt.NDArray[np.bool_]
FloatArray = npt.NDArray[np.float32]

SEED_FRACTION = 0.5  # the marrow seed: this fraction of the head and of the neck radius
AXIS_SEED_MM = 4.0  # and this close to the shaft axis
BONE_CORE_FRACTION = 0.7  # within this fraction of the fitted head and neck radii ...
SHAFT_CORE_MM = 6.0  # ... and this close to the shaft axis, muscle-like signal is not taken as muscle
ACETABULUM_MM = 20.0  # the acetabulum lies within this of the femoral head surface
MAX_SWEEPS = 3
CORE_FRACTION = 0.5  # a slice's marrow at least this fraction of its deepest point deep seeds the next slice
EDGE_SMOOTHING_MAX_PX = 1.0
FLUID_T1_MAX = 0.8  # free fluid is at most this x muscle on T1 ...
FLUID_U_MIN = 2.0  # ... and at least this on the fat (0) - muscle (1) scale of the fluid-sensitive series
MUSCLE_TOLERANCE = 0.25  # "at muscle level": within this of muscle (1 on u, 0 on v) on each tissue scale


def brightness(fluid: FloatArray, t1: FloatArray | None, levels: TissueLevels) -> FloatArray:
    """Marrow/soft tissue brightness: T1 over fat, fluid-sensitive over muscle, the larger of the two.

    Fatty marrow is bright on the first, oedematous marrow on the second, muscle is about 1 on the
    second, and the cortex is dark on both.
    """
    b = fluid / np.float32(levels.fluid_muscle)
    if t1 is not None and levels.t1_fat is not None:
        b = np.maximum(b, t1 / np.float32(levels.t1_fat))
    out: FloatArray = b.astype(np.float32)
    return out


def femur_envelope(femur: FemurGeometry, frame: FemurFrame, params: AnalysisParameters, margin_mm: float) -> BoolArray:
    """Where this femur's proximal marrow may lie: head sphere, a generous neck, the trochanteric
    ball around the neck base and the shaft below it (bounds the watershed, never defines marrow)."""
    m = np.float32(margin_mm)
    head = frame.dist_centre <= np.float32(femur.radius_mm) + m
    along = frame.along
    neck = (along >= 0) & (along <= np.float32(femur.neck_length_mm)) & (
        frame.radial <= neck_radius_at(femur, along) + m + np.float32(6.0))
    base_dist = np.sqrt((along - np.float32(femur.neck_length_mm)) ** 2 + frame.radial**2)
    trochanters = base_dist <= np.float32(params.trochanter_envelope_radius_mm) + m
    shaft = (frame.shaft_radial <= np.float32(params.shaft_envelope_radius_mm) + m) & (frame.shaft_below >= 0)
    out: BoolArray = head | neck | trochanters | shaft
    return out


def marrow_seed(femur: FemurGeometry, frame: FemurFrame, b: FloatArray, params: AnalysisParameters) -> BoolArray:
    """Surely marrow: the core of the head, and the axis of the neck and shaft where the brightness
    says it is not cortex (so a slightly misplaced axis never seeds muscle through the cortex)."""
    head = frame.dist_centre <= np.float32(SEED_FRACTION * femur.radius_mm)
    neck = (frame.along >= 0) & (frame.along <= np.float32(femur.neck_length_mm)) & (
        frame.radial <= np.float32(SEED_FRACTION * femur.neck_radius_mm))
    axis = neck
    if frame.shaft_found:
        axis |= (frame.shaft_radial <= np.float32(AXIS_SEED_MM)) & (frame.shaft_below >= 0)
    out: BoolArray = head | (axis & (b >= np.float32(params.cortex_brightness_max)))
    return out


def surely_bone(femur: FemurGeometry, frame: FemurFrame) -> BoolArray:
    """The middle of the fitted head, neck and shaft, where no muscle can be."""
    head = frame.dist_centre <= np.float32(BONE_CORE_FRACTION * femur.radius_mm)
    neck = (frame.along >= 0) & (frame.along <= np.float32(femur.neck_length_mm)) & (
        frame.radial <= np.float32(BONE_CORE_FRACTION * femur.neck_radius_mm))
    shaft = (frame.shaft_radial <= np.float32(SHAFT_CORE_MM)) & (frame.shaft_below >= 0)
    out: BoolArray = head | neck | shaft
    return out


def muscle_like(fluid: FloatArray, t1: FloatArray | None, levels: TissueLevels) -> BoolArray:
    """Voxels whose whole in-plane neighbourhood is at muscle level on every (smoothed) series:
    surely not marrow (oedematous marrow is brighter than muscle on the fluid-sensitive series, fatty
    marrow brighter on T1; partial-volume edges are excluded by the neighbourhood)."""
    like = np.abs(levels.u(fluid) - 1.0) <= np.float32(MUSCLE_TOLERANCE)
    v = levels.v(t1) if t1 is not None else None
    if v is not None:
        like &= np.abs(v) <= np.float32(MUSCLE_TOLERANCE)
    in_plane = np.zeros((3, 3, 3), dtype=bool)
    in_plane[1] = True
    out: BoolArray = ndimage.binary_erosion(like, structure=in_plane)
    return out


def smoothed(fluid: FloatArray, t1: FloatArray | None, levels: TissueLevels,
             max_px: float | None = None) -> tuple[FloatArray, FloatArray | None]:
    """Both series smoothed in plane just enough for their noise (``TissueLevels.*_smoothing_px``),
    at most ``max_px`` (edges such as the thin cortex must survive where they are needed)."""
    cap = max_px if max_px is not None else np.inf
    sf = min(levels.fluid_smoothing_px, cap)
    fluid_s: FloatArray = ndimage.gaussian_filter(fluid, (0.0, sf, sf))
    if t1 is None:
        return fluid_s, None
    st = min(levels.t1_smoothing_px, cap)
    t1_s: FloatArray = ndimage.gaussian_filter(t1, (0.0, st, st))
    return fluid_s, t1_s


def fluid_like(fluid: FloatArray, t1: FloatArray | None, levels: TissueLevels) -> BoolArray:
    """Free fluid (joint effusion, bursae, slow-flow vessels), also in partial volume: clearly
    brighter than muscle on the fluid-sensitive series and clearly darker than muscle on T1
    (oedematous marrow keeps some fat and is not). Nothing without a T1: signal alone cannot tell
    intense oedema from fluid."""
    if t1 is None or levels.t1_muscle is None:
        return np.zeros(fluid.shape, dtype=bool)
    out: BoolArray = (levels.u(fluid) >= np.float32(FLUID_U_MIN)) & (
        t1 <= np.float32(FLUID_T1_MAX * levels.t1_muscle))
    return out


def segment_marrow(fluid: FloatArray, t1: FloatArray | None, levels: TissueLevels, femur: FemurGeometry,
                   frame: FemurFrame, body: BoolArray, params: AnalysisParameters) -> BoolArray:
    """The proximal femur's marrow on a block of the fluid-sensitive grid (see the module text).

    Slice by slice (the cortex is resolved in plane; across thick slices a bone surface is only
    partly sampled): in each slice a marker-controlled watershed floods the marrow from the seeds
    that reach it and the soft tissue from muscle, fluid and everything outside the body or in the
    joint. Seeds are the certain marrow of ``marrow_seed`` plus the previous slice's marrow shrunk
    in plane, starting from the slice through the head centre and going outwards both ways.
    """
    fluid_s, t1_s = smoothed(fluid, t1, levels)
    # the flooding itself sees the cortex at (nearly) full resolution: markers carry the noise robustness
    fluid_e, t1_e = smoothed(fluid, t1, levels, EDGE_SMOOTHING_MAX_PX)
    b = brightness(fluid_e, t1_e, levels)
    elevation = -np.log(np.maximum(b, np.float32(0.02)))
    envelope = femur_envelope(femur, frame, params, params.envelope_margin_mm)
    head_cap = frame.dist_centre <= np.float32(femur.radius_mm + params.head_cap_margin_mm)
    # just beyond the head sphere on the joint side (cartilage, acetabulum) nothing is femoral marrow
    beyond_head = ~head_cap & (frame.dist_centre <= np.float32(femur.radius_mm + ACETABULUM_MM)) & (
        frame.along < np.float32(head_neck_junction(femur)))
    allowed = envelope & ~beyond_head & (b >= np.float32(params.cortex_brightness_max))
    # muscle-like evidence is not trusted inside the fitted bone (oedematous marrow in partial volume
    # with the cortex can be close to muscle on both series), fluid-like only inside the head (joint
    # fluid lies against the neck within its fitted radius across thick slices)
    muscle = muscle_like(fluid_s, t1_s, levels) & ~surely_bone(femur, frame)
    head_core = frame.dist_centre <= np.float32(BONE_CORE_FRACTION * femur.radius_mm)
    fluid_bg = fluid_like(fluid_e, t1_e, levels) & ~head_core  # thin fluid pockets too
    background = ~body | beyond_head | muscle | fluid_bg
    certain = marrow_seed(femur, frame, b, params) & allowed & ~background
    marrow = np.zeros(fluid.shape, dtype=bool)
    if not certain.any():
        return marrow
    n = fluid.shape[0]
    used: list[BoolArray | None] = [None] * n  # the seeds each slice was last flooded from
    cores = [np.zeros(fluid.shape[1:], dtype=bool) for _ in range(n)]  # _core of each slice's marrow
    # sweep up and down until nothing changes: a slice is seeded by the certain marrow in it and by
    # the middle of its neighbours' marrow, so the head, neck and shaft seeds reach every slice
    for _ in range(MAX_SWEEPS):
        changed = False
        for order in (range(n), range(n - 1, -1, -1)):
            for k in order:
                seeds = certain[k].copy()
                for j in (k - 1, k + 1):
                    if 0 <= j < n:
                        seeds |= cores[j] & allowed[k] & ~background[k]
                last = used[k]
                if last is not None and np.array_equal(seeds, last):
                    continue
                used[k] = seeds
                section = _slice_marrow(elevation[k], seeds, background[k], allowed[k])
                if not np.array_equal(section, marrow[k]):
                    marrow[k] = section
                    cores[k] = _core(section)
                    changed = True
        if not changed:
            break
    return marrow


def _core(section: BoolArray) -> BoolArray:
    """The middle of each part of a cross-section: at least half its largest in-plane depth deep."""
    labels, n = ndimage.label(section)
    if n == 0:
        return section
    depth = ndimage.distance_transform_edt(section)
    deepest = np.zeros(n + 1, dtype=np.float64)
    inside = labels > 0
    np.maximum.at(deepest, labels[inside], depth[inside])
    need = np.maximum(CORE_FRACTION * deepest, 1.0)
    need[0] = np.inf
    out: BoolArray = section & (depth >= need[labels])
    return out


def _slice_marrow(elevation: FloatArray, seeds: BoolArray, background: BoolArray, allowed: BoolArray) -> BoolArray:
    """One slice: the part of the watershed of ``seeds`` against ``background`` inside ``allowed``."""
    if not seeds.any():
        return np.zeros(seeds.shape, dtype=bool)
    markers = np.zeros(seeds.shape, dtype=np.int32)
    markers[background] = 2
    markers[[0, -1], :] = np.where(markers[[0, -1], :] == 0, 2, markers[[0, -1], :])
    markers[:, [0, -1]] = np.where(markers[:, [0, -1]] == 0, 2, markers[:, [0, -1]])
    markers[seeds] = 1
    mask: BoolArray = (watershed(elevation, markers=markers) == 1) & allowed
    lab, n = ndimage.label(mask)
    if n > 1:
        keep = np.zeros(n + 1, dtype=bool)
        keep[np.unique(lab[seeds & mask])] = True
        keep[0] = False
        mask = keep[lab]
    filled: BoolArray = ndimage.binary_fill_holes(mask) & allowed
    return filled
