"""Total hip arthroplasty: the implant's shape, and what its metal does to every MR series.

The implant replaces the femoral head and proximal neck: a CoCr ball (28-32 mm) on a tapered
neck and a titanium stem cemented down the femoral shaft, articulating in a polyethylene liner
inside a titanium hemispherical cup that fills the reamed socket. Metal and polymer give no
signal. The metal's magnetic susceptibility perturbs the field around it; the perturbation is
modelled as a sum of magnetised spheres (dipoles, ``(3 cos^2 theta - 1) / r^3`` with B0 along the
bore = patient z) placed along the implant. Each series then shows it three ways:

- frequency-encoding displacement: signal moves along the readout by ``df / bandwidth`` pixels,
  so it piles up (a bright rim) where neighbours converge and leaves voids where they spread;
- the metal and polymer themselves are signal voids, bloomed by that displacement;
- fat suppression fails where the off-resonance exceeds the inversion or saturation pulse's
  bandwidth (STIR and spectral fat saturation): bright signal surrounding the void.

Used by the own phantom (``arthroplasty_left``/``_right``) and by ``tests/perturb.py`` on
phantom B studies, from the hip's head centre, radius and neck axis.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from workers.phantom.sdf import F32, Vec, capsule, sphere, unit

BALL_COCR = 1.0  # relative susceptibility weight of the CoCr ball and neck
STEM_TI = 0.25  # titanium stem and cup
F0_HZ = 3000.0  # off-resonance at the equator of the ball's surface (twice that at its poles)
FAIL_HZ = 600.0  # fat suppression fails fully beyond this off-resonance
FAIL_MAX = 0.9  # the largest fraction of fat signal left unsuppressed
CEMENT_MM = 2.0  # cement mantle around the stem
STEM_LENGTH_MM = 130.0
ROD_STEP_MM = 3.0  # spacing of the dipoles standing in for the neck and the stem
ROD_REACH_MM = 60.0  # the rods' field is computed within this distance of the implant's box


def cup_axis(sign: int) -> NDArray[np.float64]:
    """Opening direction of an acetabulum (and of a cup placed in it): lateral, inferior, anterior."""
    return unit((sign * 0.74, -0.30, -0.60))


def _vec(v: NDArray[np.float64]) -> Vec:
    return (float(v[0]), float(v[1]), float(v[2]))


@dataclass(frozen=True)
class Implant:
    """One total hip arthroplasty in LPS millimetres."""

    side: str
    centre: Vec  # centre of the ball and of the cup (the hip's centre of rotation)
    ball_radius: float
    cup_radius: float  # outer radius of the metal shell (the reamed socket)
    cup_opening: Vec  # unit: the cup's opening direction
    neck_dir: Vec  # unit: from the ball centre along the prosthetic neck to the stem shoulder
    neck_length: float  # ball centre to the stem shoulder
    shaft_up: Vec  # unit: up the femoral shaft
    resection_mm: float  # the native neck is cut at this distance from the head centre

    @staticmethod
    def for_hip(side: str, head_centre: Vec, head_radius: float, neck_dir: Vec, neck_length: float,
                shaft_up: Vec) -> Implant:
        """The implant a surgeon would choose for this hip (the socket reamed to the head plus cartilage)."""
        sign = 1 if side == "left" else -1
        return Implant(
            side=side, centre=head_centre, ball_radius=16.0 if head_radius >= 23.0 else 14.0,
            cup_radius=round(head_radius + 3.6, 2), cup_opening=_vec(cup_axis(sign)),
            neck_dir=_vec(unit(neck_dir)), neck_length=neck_length, shaft_up=_vec(unit(shaft_up)),
            resection_mm=round(0.55 * neck_length, 2))

    def _points(self) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
        c, n, up = (np.asarray(v) for v in (self.centre, self.neck_dir, self.shaft_up))
        shoulder = c + self.neck_length * n
        return c, shoulder, up

    def _stem(self, x: F32, y: F32, z: F32, extra: float = 0.0) -> F32:
        c, shoulder, up = self._points()
        neck = capsule(x, y, z, self.centre, _vec(c + 0.8 * self.neck_length * np.asarray(self.neck_dir)),
                       5.5 + extra, 7.0 + extra)
        body = capsule(x, y, z, _vec(c + 0.6 * self.neck_length * np.asarray(self.neck_dir)),
                       _vec(shoulder), 9.0 + extra, 9.0 + extra)
        stem = capsule(x, y, z, _vec(shoulder + 8.0 * up), _vec(shoulder - STEM_LENGTH_MM * up),
                       9.0 + extra, 4.5 + extra)
        return np.asarray(np.minimum(np.minimum(neck, body), stem), np.float32)

    def _hemisphere(self, x: F32, y: F32, z: F32) -> tuple[F32, F32]:
        """(distance from the centre, signed distance to the cup's rim plane cone: > 0 on the opening side)."""
        c, o = self.centre, self.cup_opening
        dx, dy, dz = x - c[0], y - c[1], z - c[2]
        r = np.sqrt(dx * dx + dy * dy + dz * dz) + 1e-3
        cosang = (dx * o[0] + dy * o[1] + dz * o[2]) / r
        return np.asarray(r, np.float32), np.asarray((cosang - 0.05) * r, np.float32)

    def metal_sdf(self, x: F32, y: F32, z: F32) -> F32:
        """Signed distance (mm) to the metal: ball, neck, stem and the cup's shell."""
        r, cut = self._hemisphere(x, y, z)
        shell = np.maximum(np.abs(r - (self.cup_radius - 1.5)) - 1.5, cut)
        ball = sphere(x, y, z, self.centre, self.ball_radius)
        return np.asarray(np.minimum(np.minimum(ball, shell), self._stem(x, y, z)), np.float32)

    def polymer_sdf(self, x: F32, y: F32, z: F32) -> F32:
        """Signed distance (mm) to the polyethylene liner and the cement mantle around the stem."""
        r, cut = self._hemisphere(x, y, z)
        liner = np.maximum(np.maximum(self.ball_radius - r, r - (self.cup_radius - 3.0)), cut)
        return np.asarray(np.minimum(liner, self._stem(x, y, z, CEMENT_MM)), np.float32)

    def dipoles(self) -> list[tuple[Vec, float, float]]:
        """(centre, radius, weight) of the magnetised spheres standing in for the metal: the ball,
        the cup, and spheres every ``ROD_STEP_MM`` along neck and stem, each weighted by the rod
        volume it stands for (``3 step / 4 radius`` of its own)."""
        c, shoulder, up = self._points()
        n = np.asarray(self.neck_dir)
        out = [(self.centre, self.ball_radius, BALL_COCR), (self.centre, self.cup_radius, 0.15 * STEM_TI)]
        for t in np.arange(self.ball_radius, 0.8 * self.neck_length, ROD_STEP_MM):
            out.append((_vec(c + t * n), 6.5, BALL_COCR * 3.0 * ROD_STEP_MM / (4.0 * 6.5)))
        for t in np.arange(0.0, STEM_LENGTH_MM, ROD_STEP_MM):
            radius = 9.0 - 4.5 * t / STEM_LENGTH_MM
            out.append((_vec(shoulder - t * up), radius, STEM_TI * 3.0 * ROD_STEP_MM / (4.0 * radius)))
        return out

    def off_resonance_hz(self, x: F32, y: F32, z: F32) -> F32:
        """Field perturbation (Hz at 1.5 T) around the implant; inside a sphere its surface value.

        The ball and the cup act everywhere; the rods (neck and stem) only within ``ROD_REACH_MM``
        of the implant's box, beyond which they add less than a tenth of a pixel of displacement.
        """
        px, py, pz = np.broadcast_arrays(np.asarray(x, np.float32), np.asarray(y, np.float32),
                                         np.asarray(z, np.float32))
        out = np.zeros(px.shape, np.float32)
        lo, hi = self.bbox(ROD_REACH_MM)
        near = ((px >= lo[0]) & (px <= hi[0]) & (py >= lo[1]) & (py <= hi[1]) & (pz >= lo[2]) & (pz <= hi[2]))
        dipoles = self.dipoles()
        out += _dipole_sum(dipoles[:2], px, py, pz)
        out[near] += _dipole_sum(dipoles[2:], px[near], py[near], pz[near])
        return out

    def bbox(self, margin: float) -> tuple[Vec, Vec]:
        """An axis-aligned box around the implant, ``margin`` mm wide."""
        c, shoulder, up = self._points()
        pts = np.array([c, shoulder + 8.0 * up, shoulder - STEM_LENGTH_MM * up])
        lo = pts.min(axis=0) - self.cup_radius - margin
        hi = pts.max(axis=0) + self.cup_radius + margin
        return _vec(lo), _vec(hi)

    def to_dict(self) -> dict[str, Any]:
        """What the truth records about the implant."""
        out: dict[str, Any] = {k: [round(float(c), 4) for c in v] if isinstance(v, tuple) else v
                               for k, v in asdict(self).items()}
        out["stem_length_mm"] = STEM_LENGTH_MM
        out["note"] = ("CoCr ball on a titanium cemented stem, polyethylene liner in a titanium cup; "
                       "native head and neck resected at resection_mm along neck_dir")
        return out


def _dipole_sum(dipoles: list[tuple[Vec, float, float]], x: F32, y: F32, z: F32) -> F32:
    """Off-resonance (Hz) of magnetised spheres (centre, radius, weight) with B0 along z."""
    out = np.zeros(x.shape, np.float32)
    for (cx, cy, cz), a, w in dipoles:
        dx, dy, dz = x - cx, y - cy, z - cz
        r2 = np.maximum(dx * dx + dy * dy + dz * dz, a * a)
        out += np.asarray(w * F0_HZ * a**3 * (3.0 * dz * dz / r2 - 1.0) / r2**1.5, np.float32)
    return out


def fat_failure(implant: Implant, x: F32, y: F32, z: F32) -> F32:
    """Fraction of fat signal left unsuppressed (0..``FAIL_MAX``) by the off-resonance near the metal."""
    df = np.abs(implant.off_resonance_hz(x, y, z))
    return np.asarray(FAIL_MAX * np.clip(df / FAIL_HZ, 0.0, 1.0), np.float32)


def displace(stack: F32, shift_px: F32, axis: int) -> F32:
    """Move each pixel's signal ``shift_px`` pixels along ``axis`` (frequency encoding), conserving it.

    Signal is split linearly between the two pixels it lands between: where displaced
    neighbours converge it piles up (bright), where they diverge it leaves a void.
    """
    moved = np.moveaxis(stack, axis, -1)
    shifts = np.moveaxis(shift_px, axis, -1)
    n = moved.shape[-1]
    lines = moved.reshape(-1, n)
    target = np.arange(n, dtype=np.float32)[None, :] + shifts.reshape(-1, n)
    i0 = np.floor(target).astype(np.int64)
    w1 = (target - i0).astype(np.float32)
    base = (np.arange(lines.shape[0], dtype=np.int64) * n)[:, None]
    out = np.zeros(lines.size, np.float64)
    for idx, weight in ((i0, 1.0 - w1), (i0 + 1, w1)):
        ok = (idx >= 0) & (idx < n)
        out += np.bincount((base + idx)[ok], weights=(lines * weight)[ok], minlength=lines.size)
    return np.asarray(np.moveaxis(out.reshape(moved.shape).astype(np.float32), -1, axis), np.float32)


def readout_shift_px(implant: Implant, x: F32, y: F32, z: F32, bandwidth_hz_px: float) -> F32:
    """Displacement along the readout (pixels) of the signal at LPS points."""
    return np.asarray(implant.off_resonance_hz(x, y, z) / bandwidth_hz_px, np.float32)

