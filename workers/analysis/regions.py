"""Regions on the fluid-sensitive grid: head, neck and intertrochanteric area per side, plus
the geometry around them (shaft marrow, periarticular shell for effusion).

Regions are geometric primitives in LPS mm evaluated at each voxel centre (so oblique and
anisotropic grids work), eroded by ``region_erosion_mm`` and clipped to bone.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy import ndimage

from workers.analysis.anatomy import FemurGeometry
from workers.analysis.params import AnalysisParameters
from workers.analysis.result import RegionName

BoolArray = npt.NDArray[np.bool_]
FloatArray = npt.NDArray[np.float32]

REGION_NAMES: tuple[RegionName, ...] = ("head", "neck", "intertrochanteric")


@dataclass(frozen=True)
class FemurFrame:
    """Per-voxel coordinates of a block relative to one femur (mm)."""

    dist_centre: FloatArray  # distance to the head centre
    along: FloatArray  # position along the neck axis (0 at the head centre, + towards the shaft)
    radial: FloatArray  # distance from the neck axis
    lateral: FloatArray  # + lateral, - medial, relative to the head centre (LPS x, signed per side)


def femur_frame(femur: FemurGeometry, coords: tuple[FloatArray, FloatArray, FloatArray]) -> FemurFrame:
    """Coordinates of every voxel of a block in the frame of ``femur``."""
    x, y, z = coords
    cx, cy, cz = femur.centre
    dx, dy, dz = x - np.float32(cx), y - np.float32(cy), z - np.float32(cz)
    ax, ay, az = (np.float32(v) for v in femur.neck_axis)
    dist = np.sqrt(dx * dx + dy * dy + dz * dz)
    along = dx * ax + dy * ay + dz * az
    radial = np.sqrt(np.maximum(dist * dist - along * along, 0.0))
    return FemurFrame(dist_centre=dist, along=along, radial=radial, lateral=dx * np.float32(femur.lateral))


def _neck_radius_at(femur: FemurGeometry, along: FloatArray) -> FloatArray:
    """Neck radius along the axis: flares by a quarter towards the base, as femoral necks do."""
    frac = np.clip(along / np.float32(femur.neck_length_mm), 0.0, 1.0)
    out: FloatArray = np.float32(femur.neck_radius_mm) * (np.float32(0.9) + np.float32(0.25) * frac)
    return out


def head_neck_junction(femur: FemurGeometry) -> float:
    """Distance along the neck axis from the head centre to the head-neck junction plane."""
    return float(np.sqrt(max(femur.radius_mm**2 - femur.neck_radius_mm**2, 1.0)))


def neck_end(femur: FemurGeometry, params: AnalysisParameters) -> float:
    """Distance along the neck axis where the neck ends and the intertrochanteric region begins."""
    return max(head_neck_junction(femur) + 10.0, femur.neck_length_mm - params.neck_base_margin_mm)


def femur_regions(femur: FemurGeometry, frame: FemurFrame, marrow_like: BoolArray | None,
                  params: AnalysisParameters, not_cartilage: BoolArray | None = None) -> dict[RegionName, BoolArray]:
    """Head, neck and intertrochanteric marrow regions.

    head: inside the head sphere less ``region_erosion_mm`` (the radius includes the cortex), on
    the head side of the head-neck junction plane. neck: from that plane to the neck end. The
    intertrochanteric region: beyond the neck, within ``intertrochanteric_radius_mm`` of the neck
    base. With a T1, neck and intertrochanteric regions are the marrow-like voxels (T1 bright or
    intermediate, not muscle or cortex) of a generous envelope that connect to the head (outside the
    neck cylinder, one voxel in from muscle and cortex); without a T1 they are the eroded neck
    cylinder and envelope.
    """
    e = np.float32(params.region_erosion_mm)
    r = np.float32(femur.radius_mm)
    j = np.float32(head_neck_junction(femur))
    end = np.float32(neck_end(femur, params))
    in_sphere = frame.dist_centre <= r - e
    head = in_sphere & (frame.along < j)
    neck_zone = (frame.along >= j) & (frame.along < end)
    base_dist = np.sqrt((frame.along - np.float32(femur.neck_length_mm)) ** 2 + frame.radial**2)
    inter = (frame.along >= end) & (base_dist <= np.float32(params.intertrochanteric_radius_mm))
    if marrow_like is None or not_cartilage is None:
        neck = neck_zone & ((frame.radial <= _neck_radius_at(femur, frame.along) - e) | in_sphere)
        return {"head": head, "neck": neck, "intertrochanteric": inter & (frame.radial <= 1.6 * femur.neck_radius_mm)}
    # one voxel in from every in-plane edge: voxels sharing partial volume with muscle or cortex
    # look oedema-like on both series
    in_plane = np.zeros((3, 3, 3), dtype=bool)
    in_plane[1] = ndimage.generate_binary_structure(2, 1)
    inner = ndimage.binary_erosion(marrow_like, structure=in_plane)
    envelope = _neck_radius_at(femur, frame.along) + np.float32(params.neck_envelope_mm)
    cylinder = frame.radial <= _neck_radius_at(femur, frame.along) - e
    neck = neck_zone & (((frame.radial <= envelope) & inner) | (cylinder & marrow_like) | in_sphere)
    inter &= marrow_like
    head &= not_cartilage | (frame.dist_centre <= r - 2 * e - 2)
    bone = connected_to(neck | inter, head)
    return {"head": head, "neck": neck & bone, "intertrochanteric": inter & bone}


def connected_to(mask: BoolArray, seed: BoolArray) -> BoolArray:
    """The parts of ``mask`` that touch ``seed`` (26-connected through mask | seed)."""
    both = mask | seed
    labels, n = ndimage.label(both, structure=np.ones((3, 3, 3), dtype=bool))
    if n == 0:
        return mask
    keep = np.zeros(n + 1, dtype=bool)
    keep[np.unique(labels[seed])] = True
    keep[0] = False
    out: BoolArray = mask & keep[labels]
    return out


def bone_outline(femur: FemurGeometry, frame: FemurFrame, params: AnalysisParameters) -> BoolArray:
    """The proximal femur envelope (not eroded): sphere, neck cylinder and intertrochanteric ball."""
    end = np.float32(neck_end(femur, params))
    neck = (frame.along >= 0) & (frame.along < end) & (frame.radial <= _neck_radius_at(femur, frame.along))
    base_dist = np.sqrt((frame.along - np.float32(femur.neck_length_mm)) ** 2 + frame.radial**2)
    inter = (frame.along >= end) & (base_dist <= np.float32(params.intertrochanteric_radius_mm))
    out: BoolArray = (frame.dist_centre <= np.float32(femur.radius_mm)) | neck | inter
    return out


def shaft_marrow(femur: FemurGeometry, coords: tuple[FloatArray, FloatArray, FloatArray],
                 depth_mm: tuple[float, float]) -> BoolArray | None:
    """Subtrochanteric shaft marrow: within 6 mm of the shaft axis, ``depth_mm`` below the head centre."""
    if femur.shaft_point is None or femur.shaft_direction is None:
        return None
    x, y, z = coords
    p = np.asarray(femur.shaft_point, dtype=np.float32)
    u = np.asarray(femur.shaft_direction, dtype=np.float32)
    dx, dy, dz = x - p[0], y - p[1], z - p[2]
    along = dx * u[0] + dy * u[1] + dz * u[2]
    radial2 = dx * dx + dy * dy + dz * dz - along * along
    below = np.float32(femur.centre[2]) - z
    mask: BoolArray = (radial2 <= 36.0) & (below >= depth_mm[0]) & (below <= depth_mm[1])
    return mask


