"""Real hip protocols the analysis must cope with (issue 11): one hip in the field of view, hip
arthroplasty, gapped or partial coronal stacks, receive-coil shading, a patient who moved between
the T1 and the fluid-sensitive series, and a fluid-sensitive series repacked into 12 bits.

The variants that only change the slice plan (``axial_stir``, ``pd_fs_3d``, ``dixon``) live in
``study.plan_series``; this module holds what the others need: which hip, how the stacks change,
the shading field, the rigid motion, and the repacking.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from workers.phantom.anatomy import Anatomy
from workers.phantom.artefacts import PHASE_AXIS
from workers.phantom.geometry import SeriesGeometry, slice_points
from workers.phantom.implant import Implant, displace, readout_shift_px
from workers.phantom.sdf import F32, Vec, unit

ONE_HIP: dict[str, str] = {"one_hip_left": "left", "one_hip_right": "right"}
ARTHROPLASTY: dict[str, str] = {"arthroplasty_left": "left", "arthroplasty_right": "right"}
ONE_HIP_FOV_MM = (180.0, 200.0, 220.0, 240.0)  # dedicated one-hip protocols, chosen by seed
GAPPED_THICKNESS_MM = 6.0
GAPPED_SPACING_MM = 12.0  # 6 mm slices every 12 mm: every second slice missing
PARTIAL_SLICES = (6, 7, 8)  # partial coverage keeps this many middle slices (by seed)
SHADING_GAIN = (0.3, 1.5)  # receive-coil gain from the dark to the bright side
SHADING_HALF_WIDTH_MM = 170.0  # the gain ramps linearly over +-this in patient x
T1_SHIFT_MM = 5.0
REPACK_FULL_SCALE = 16000.0  # the 16-bit series: joint fluid at about this value
REPACK_BITS = 12


def side_of(variants: tuple[str, ...], table: dict[str, str]) -> str | None:
    """The hip named by the first variant of ``table`` among ``variants`` (None: none asked)."""
    return next((table[v] for v in variants if v in table), None)


def one_hip_fov(seed: int) -> float:
    """Field of view (mm) of a dedicated one-hip protocol, 180-240 mm by seed."""
    return ONE_HIP_FOV_MM[seed % len(ONE_HIP_FOV_MM)]


def coronal_stack(n: int, thickness: float, spacing: float, variants: tuple[str, ...],
                  seed: int) -> tuple[int, float, float]:
    """(slices, thickness, spacing) of the coronal stacks: thick and gapped (``gapped``) or only
    the middle slices through the heads (``partial_coverage``), else unchanged."""
    if "gapped" in variants:
        n = int(math.ceil(n * spacing / GAPPED_SPACING_MM)) | 1  # odd: one slice through the head centres
        return n, GAPPED_THICKNESS_MM, GAPPED_SPACING_MM
    if "partial_coverage" in variants:
        return PARTIAL_SLICES[seed % len(PARTIAL_SLICES)], thickness, spacing
    return n, thickness, spacing


def shading_sign(seed: int) -> int:
    """+1: the patient's right is the dark side (gain rises towards +x, patient left); -1: the left."""
    return 1 if seed % 2 == 0 else -1


def coil_gain(x: F32, seed: int) -> F32:
    """Receive-coil gain at patient x (mm): a smooth ramp from 0.3 on the dark side to 1.5 on the bright."""
    lo, hi = SHADING_GAIN
    t = np.clip((shading_sign(seed) * np.asarray(x) + SHADING_HALF_WIDTH_MM) / (2.0 * SHADING_HALF_WIDTH_MM),
                0.0, 1.0)
    return np.asarray(lo + (hi - lo) * t, np.float32)


def shade(stack: F32, geo: SeriesGeometry, seed: int) -> F32:
    """A series' image multiplied by the coil gain at each pixel."""
    out = np.empty_like(stack)
    for k in range(geo.n_slices):
        out[k] = stack[k] * coil_gain(slice_points(geo, k, 0.0)[0], seed)
    return out


def shading_truth(anat: Anatomy, seed: int) -> dict[str, Any]:
    """What the truth records about the coil shading."""
    gains = {side: round(float(coil_gain(np.full(1, anat.femur(side).head_centre[0], np.float32), seed)[0]), 3)
             for side in ("right", "left")}
    lo, hi = SHADING_GAIN
    return {"dark_side": "right" if shading_sign(seed) > 0 else "left", "gain_range": [lo, hi],
            "gain_at_head_centre": gains,
            "note": f"gain linear in patient x over +-{SHADING_HALF_WIDTH_MM:g} mm, constant beyond; "
                    "every series, noise not shaded"}


@dataclass(frozen=True)
class RigidMotion:
    """The patient's movement between two series: a tissue point p moves to R (p - c) + c + t."""

    translation_mm: Vec
    rotation_deg: Vec  # about the LPS x, y, z axes through ``centre``, applied x then y then z
    centre: Vec

    @property
    def matrix(self) -> NDArray[np.float64]:
        ax, ay, az = (math.radians(a) for a in self.rotation_deg)
        rx = np.array([[1, 0, 0], [0, math.cos(ax), -math.sin(ax)], [0, math.sin(ax), math.cos(ax)]])
        ry = np.array([[math.cos(ay), 0, math.sin(ay)], [0, 1, 0], [-math.sin(ay), 0, math.cos(ay)]])
        rz = np.array([[math.cos(az), -math.sin(az), 0], [math.sin(az), math.cos(az), 0], [0, 0, 1]])
        return np.asarray(rz @ ry @ rx)

    def forward(self, p: Vec) -> Vec:
        """Where the tissue at ``p`` (as in the fluid-sensitive series) is after the movement."""
        q = self.matrix @ (np.asarray(p) - self.centre) + self.centre + self.translation_mm
        return (float(q[0]), float(q[1]), float(q[2]))

    def before(self, x: F32, y: F32, z: F32) -> tuple[F32, F32, F32]:
        """Where the tissue seen at scanner points (x, y, z) after the movement was before it."""
        m = self.matrix.T
        d = [np.asarray(a, np.float64) - self.centre[i] - self.translation_mm[i]
             for i, a in enumerate((x, y, z))]
        return tuple(np.asarray(m[i, 0] * d[0] + m[i, 1] * d[1] + m[i, 2] * d[2] + self.centre[i], np.float32)
                     for i in range(3))  # type: ignore[return-value]

    def to_dict(self, head_centres: dict[str, Vec]) -> dict[str, Any]:
        """What the truth records: the motion and where the head centres are in the moved series."""
        return {"translation_mm": list(self.translation_mm), "rotation_deg": list(self.rotation_deg),
                "centre_lps_mm": list(self.centre),
                "matrix": [[round(float(v), 6) for v in row] for row in self.matrix],
                "t1_head_centre_lps_mm": {s: [round(v, 3) for v in self.forward(c)]
                                          for s, c in head_centres.items()},
                "note": "tissue at p in the fluid-sensitive series (and the truth masks) is at "
                        "matrix (p - centre) + centre + translation in the T1; the T1's header "
                        "geometry is as planned (the scanner did not know)"}


def t1_motion(head_centres: tuple[Vec, Vec], seed: int) -> RigidMotion:
    """A 5 mm shift with a slight rotation (<= 2 degrees) about the middle of the two hips, by seed."""
    rng = np.random.default_rng([seed, 0x7135])
    t = unit(rng.normal(size=3)) * T1_SHIFT_MM
    rot = (float(rng.uniform(-1.0, 1.0)), float(rng.choice([-2.0, 2.0])), float(rng.uniform(-1.5, 1.5)))
    c = (np.asarray(head_centres[0]) + np.asarray(head_centres[1])) / 2.0
    return RigidMotion(translation_mm=(round(float(t[0]), 3), round(float(t[1]), 3), round(float(t[2]), 3)),
                       rotation_deg=(round(rot[0], 3), round(rot[1], 3), round(rot[2], 3)),
                       centre=(round(float(c[0]), 3), round(float(c[1]), 3), round(float(c[2]), 3)))


def metal_artefacts(stack: F32, geo: SeriesGeometry, bandwidth_hz_px: float, phase_encoding: str,
                    implant: Implant, motion: RigidMotion | None = None) -> F32:
    """Displace the signal along the readout by the implant's off-resonance (pile-up and voids).

    The readout runs across the phase-encode direction (DICOM InPlanePhaseEncodingDirection
    ``ROW`` or ``COL``); the shift is off-resonance / pixel bandwidth. ``motion``: the patient
    (and the implant) moved before this series.
    """
    shift = np.empty_like(stack)
    for k in range(geo.n_slices):
        points = slice_points(geo, k, 0.0)
        if motion is not None:
            points = motion.before(*points)
        shift[k] = readout_shift_px(implant, *points, bandwidth_hz_px)
    readout_axis = 1 if PHASE_AXIS[phase_encoding] == 2 else 2
    return displace(stack, shift, readout_axis)


def repack(pixels16: NDArray[np.uint16]) -> tuple[NDArray[np.uint16], float]:
    """A 16-bit series stored in 12 bits: (stored values, RescaleSlope) with stored x slope ~ the 16-bit values."""
    top = 2**REPACK_BITS - 1
    slope = math.ceil(max(int(pixels16.max()), 1) / top * 1e4) / 1e4
    stored = np.clip(np.rint(pixels16 / slope), 0, top).astype(np.uint16)
    return stored, slope
