"""Marrow oedema, joint effusion and the AVN lesion, as pure functions of LPS points.

The same functions paint the images and define the ground truth: a voxel is
"oedema" in the truth when its oedema fraction is at least 0.5.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from workers.phantom.anatomy import CARTILAGE_MM, Anatomy, Femur
from workers.phantom.sdf import F32, SmoothNoise, smoothstep, unit
from workers.phantom.tissue import Tissue

TRUTH_THRESHOLD = 0.5


@dataclass(frozen=True)
class OedemaSpec:
    """Marrow oedema of one hip.

    ``diffuse``: ITOH-like, from the head down the neck to ``distal_mm`` along the neck
    axis (from the head centre), medial head spared by ``medial_sparing`` (0..1).
    ``focal``: a thin halo around a subchondral AVN lesion (``halo_mm`` wide).
    """

    pattern: str  # "diffuse" | "focal"
    amplitude: float = 0.92
    distal_mm: float = 0.0
    medial_sparing: float = 0.85
    spare_from: float = 0.2  # cosine to the medial axis where sparing starts (lower = more spared)
    halo_mm: float = 5.0


@dataclass(frozen=True)
class SidePathology:
    oedema: OedemaSpec | None = None
    effusion_mm: float = 0.0  # thickness of the fluid layer around the neck; 0 = none
    avn: bool = False

    @property
    def pattern(self) -> str:
        return self.oedema.pattern if self.oedema else "none"


NORMAL_SIDE = SidePathology()


def _noise(anat: Anatomy, fem: Femur) -> SmoothNoise:
    return SmoothNoise(np.random.default_rng([anat.seed, 0x0ED, fem.sign + 2]), 16.0, waves=8)


def avn_axis(fem: Femur) -> np.ndarray:
    """Anterosuperior (and slightly lateral) direction of the AVN lesion from the head centre."""
    return unit((fem.sign * 0.22, -0.42, 0.88))


AVN_HALF_ANGLE_DEG = 36.0


def avn_distance(fem: Femur, x: F32, y: F32, z: F32) -> F32:
    """Approximate signed distance (mm) to the boundary of the necrotic segment."""
    c = fem.head_centre
    dx, dy, dz = x - c[0], y - c[1], z - c[2]
    r = np.sqrt(dx * dx + dy * dy + dz * dz) + 1e-3
    a = avn_axis(fem)
    cosang = np.clip((dx * a[0] + dy * a[1] + dz * a[2]) / r, -1.0, 1.0)
    d_ang = (np.arccos(cosang) - math.radians(AVN_HALF_ANGLE_DEG)) * r
    d_in = 0.42 * fem.head_radius - r
    # a serpiginous, not geometric, demarcation line
    wobble = SmoothNoise(np.random.default_rng([int(fem.head_radius * 1000), 0xA7]), 11.0, waves=6)
    return np.asarray(np.maximum(d_ang, d_in) + 1.8 * wobble(x, y, z), np.float32)


def avn_labels(fem: Femur, x: F32, y: F32, z: F32) -> np.ndarray:
    """Label overrides inside the head's marrow: necrotic core, bright inner band, dark rim."""
    d = avn_distance(fem, x, y, z)
    marrow = fem.marrow(x, y, z)
    out = np.zeros(d.shape, np.uint8)
    out[marrow & (d < 1.3)] = Tissue.SCLEROTIC_RIM
    out[marrow & (d < -0.7)] = Tissue.GRANULATION
    out[marrow & (d < -2.1)] = Tissue.NECROTIC_MARROW
    return out


def _flat(x: F32, y: F32, z: F32) -> tuple[tuple[int, ...], F32, F32, F32]:
    shape = np.broadcast_shapes(np.shape(x), np.shape(y), np.shape(z))
    xs, ys, zs = (np.broadcast_to(np.asarray(a, np.float32), shape).reshape(-1) for a in (x, y, z))
    return shape, xs, ys, zs


def _near_axis(fem: Femur, x: F32, y: F32, z: F32, reach: float, radius: float) -> np.ndarray:
    """Cheap pre-filter: within ``radius`` of the neck axis, between -R and ``reach`` along it."""
    t = fem.along_neck(x, y, z)
    c = fem.head_centre
    d2 = (x - c[0]) ** 2 + (y - c[1]) ** 2 + (z - c[2]) ** 2 - t * t
    return np.asarray((t > -fem.head_radius - 3.0) & (t < reach) & (d2 < radius * radius))


def oedema_fraction(anat: Anatomy, fem: Femur, side: SidePathology,
                    x: F32, y: F32, z: F32) -> F32:
    """Oedema fraction (0..1) of marrow; 0 outside marrow and on unaffected hips."""
    shape, xs, ys, zs = _flat(x, y, z)
    out = np.zeros(xs.shape, np.float32)
    spec = side.oedema
    if spec is None:
        return out.reshape(shape)
    reach = spec.distal_mm + 8.0 if spec.pattern == "diffuse" else fem.head_neck_junction + 5.0
    keep = _near_axis(fem, xs, ys, zs, reach, fem.head_radius + 2.0 * fem.shaft_radius)
    x, y, z = xs[keep], ys[keep], zs[keep]
    keep_idx = np.flatnonzero(keep)
    marrow = fem.marrow(x, y, z)
    x, y, z, keep_idx = x[marrow], y[marrow], z[marrow], keep_idx[marrow]
    if spec.pattern == "diffuse":
        t = fem.along_neck(x, y, z)
        f = smoothstep(spec.distal_mm + 7.0, spec.distal_mm - 7.0, t)
        c = fem.head_centre
        dx, dy, dz = x - c[0], y - c[1], z - c[2]
        r = np.sqrt(dx * dx + dy * dy + dz * dz) + 1e-3
        m = unit((-fem.sign, 0.1, -0.45))
        medial = (dx * m[0] + dy * m[1] + dz * m[2]) / r
        spare = smoothstep(spec.spare_from, spec.spare_from + 0.35, medial) * smoothstep(0.35 * fem.head_radius,
                                                            0.75 * fem.head_radius, r)
        f = f * (1.0 - spec.medial_sparing * spare)
        f = f * spec.amplitude * (0.88 + 0.12 * _noise(anat, fem)(x, y, z))
    elif spec.pattern == "focal":
        d = avn_distance(fem, x, y, z)
        f = smoothstep(spec.halo_mm + 2.0, spec.halo_mm - 2.0, d) * (d > 1.3)
        f = f * (fem.along_neck(x, y, z) < fem.head_neck_junction + 4.0)
        f = f * spec.amplitude * (0.9 + 0.1 * _noise(anat, fem)(x, y, z))
    else:
        raise ValueError(f"unknown oedema pattern {spec.pattern!r}")
    out[keep_idx] = np.clip(f, 0.0, 1.0)
    return out.reshape(shape)


def _joint_layers(anat: Anatomy, fem: Femur, fluid_mm: float,
                  x: F32, y: F32, z: F32) -> tuple[F32, F32, F32]:
    """(distance to head/neck surface, inner edge of the joint space, outer edge)."""
    d = fem.headneck_sdf(x, y, z)
    t = fem.along_neck(x, y, z)
    on_head = smoothstep(fem.head_neck_junction + 3.0, fem.head_neck_junction - 3.0, t)
    lo = 0.6 + (CARTILAGE_MM - 0.6) * on_head
    hi = lo + 0.7 + fluid_mm * (1.0 - 0.35 * on_head)
    return d, np.asarray(lo, np.float32), np.asarray(hi, np.float32)


def _joint_extent(anat: Anatomy, fem: Femur, x: F32, y: F32, z: F32) -> F32:
    """1 where the capsule encloses the joint (outside the bony cup, proximal to the base)."""
    t = fem.along_neck(x, y, z)
    uncovered = smoothstep(1.0, -1.0, anat.acetabular_opening(x, y, z, fem))
    return np.asarray(smoothstep(fem.neck_length - 6.0, fem.neck_length - 13.0, t) * uncovered,
                      np.float32)


def effusion_fraction(anat: Anatomy, fem: Femur, side: SidePathology,
                      x: F32, y: F32, z: F32) -> F32:
    """Joint-fluid fraction (0..1) in the capsule around the head and neck."""
    shape, xs, ys, zs = _flat(x, y, z)
    out = np.zeros(xs.shape, np.float32)
    if side.effusion_mm <= 0.0:
        return out.reshape(shape)
    keep = _near_axis(fem, xs, ys, zs, fem.neck_length,
                      fem.head_radius + CARTILAGE_MM + side.effusion_mm + 3.0)
    x, y, z = xs[keep], ys[keep], zs[keep]
    d, lo, hi = _joint_layers(anat, fem, side.effusion_mm, x, y, z)
    f = smoothstep(lo - 0.4, lo + 0.4, d) * smoothstep(hi + 0.6, hi - 0.6, d)
    out[keep] = f * _joint_extent(anat, fem, x, y, z)
    return out.reshape(shape)


def capsule_wall(anat: Anatomy, fem: Femur, side: SidePathology,
                 x: F32, y: F32, z: F32) -> np.ndarray:
    """The fibrous capsule, just outside the joint space."""
    d, _, hi = _joint_layers(anat, fem, max(side.effusion_mm, 0.0), x, y, z)
    return np.asarray((d >= hi) & (d < hi + 2.0) & (_joint_extent(anat, fem, x, y, z) > 0.5))


def fat_sat_failure_field(anat: Anatomy, side: str, x: F32, y: F32, z: F32) -> F32:
    """Where fat suppression fails (0..1): a smooth zone over one hip and its lateral soft tissue."""
    fem = anat.femur(side)
    centre = fem.point(fem.neck_length * 0.4)
    cx = centre[0] + fem.sign * 30.0
    r = np.sqrt((x - cx) ** 2 + ((y - centre[1]) * 1.2) ** 2 + ((z - centre[2]) * 0.8) ** 2)
    return np.asarray(0.85 * smoothstep(95.0, 45.0, r), np.float32)
