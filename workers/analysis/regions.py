"""Femur coordinates on a block of the fluid-sensitive grid, and the head, neck and
intertrochanteric regions cut out of the segmented marrow.

The regions are parts of the marrow found in the images (``marrow.segment_marrow``): the fitted
femur (head sphere, neck axis, neck base) only names the parts. Coordinates are LPS mm at each
voxel centre, so oblique and anisotropic grids work.
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
DEFAULT_SHAFT_DIRECTION = (0.0, 0.0, 1.0)  # cranial, when the shaft was not found


@dataclass(frozen=True)
class FemurFrame:
    """Per-voxel coordinates of a block relative to one femur (mm)."""

    dist_centre: FloatArray  # distance to the head centre
    along: FloatArray  # position along the neck axis (0 at the head centre, + towards the shaft)
    radial: FloatArray  # distance from the neck axis
    lateral: FloatArray  # + lateral, - medial, relative to the head centre (LPS x, signed per side)
    shaft_radial: FloatArray  # distance from the shaft axis (found, or cranio-caudal through the neck base)
    shaft_below: FloatArray  # distance below the neck base along the shaft axis
    shaft_found: bool


def femur_frame(femur: FemurGeometry, coords: tuple[FloatArray, FloatArray, FloatArray]) -> FemurFrame:
    """Coordinates of every voxel of a block in the frame of ``femur``."""
    x, y, z = coords
    cx, cy, cz = femur.centre
    dx, dy, dz = x - np.float32(cx), y - np.float32(cy), z - np.float32(cz)
    ax, ay, az = (np.float32(v) for v in femur.neck_axis)
    dist = np.sqrt(dx * dx + dy * dy + dz * dz)
    along = dx * ax + dy * ay + dz * az
    radial = np.sqrt(np.maximum(dist * dist - along * along, 0.0))
    base = np.asarray(femur.centre) + femur.neck_length_mm * np.asarray(femur.neck_axis)
    up = np.asarray(femur.shaft_direction or DEFAULT_SHAFT_DIRECTION, dtype=np.float32)
    sx, sy, sz = x - np.float32(base[0]), y - np.float32(base[1]), z - np.float32(base[2])
    s_along = sx * up[0] + sy * up[1] + sz * up[2]
    shaft_radial = np.sqrt(np.maximum(sx * sx + sy * sy + sz * sz - s_along * s_along, 0.0))
    return FemurFrame(dist_centre=dist, along=along, radial=radial, lateral=dx * np.float32(femur.lateral),
                      shaft_radial=shaft_radial, shaft_below=-s_along, shaft_found=femur.shaft_found)


def neck_radius_at(femur: FemurGeometry, along: FloatArray) -> FloatArray:
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


def femur_regions(femur: FemurGeometry, frame: FemurFrame, marrow: BoolArray,
                  params: AnalysisParameters) -> dict[RegionName, BoolArray]:
    """Head, neck and intertrochanteric parts of the segmented ``marrow``.

    head: inside the head sphere, on the head side of the head-neck junction plane; neck: from that
    plane to the neck end; intertrochanteric: beyond the neck end, within
    ``intertrochanteric_radius_mm`` of the neck base. Marrow further down (shaft) is in none.
    """
    j = np.float32(head_neck_junction(femur))
    end = np.float32(neck_end(femur, params))
    head = marrow & (frame.along < j)
    neck = marrow & (frame.along >= j) & (frame.along < end)
    base_dist = np.sqrt((frame.along - np.float32(femur.neck_length_mm)) ** 2 + frame.radial**2)
    inter = marrow & (frame.along >= end) & (base_dist <= np.float32(params.intertrochanteric_radius_mm))
    return {"head": head, "neck": neck, "intertrochanteric": inter}


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


def shaft_marrow(frame: FemurFrame, marrow: BoolArray, below_mm: float) -> BoolArray:
    """Marrow of the femoral shaft at least ``below_mm`` below the neck base: yellow (fatty) marrow in
    adults, which ITOH does not reach."""
    out: BoolArray = marrow & (frame.shaft_below >= np.float32(below_mm))
    return out
