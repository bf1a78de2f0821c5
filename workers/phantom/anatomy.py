"""A hip/pelvis anatomy in patient LPS millimetres (+x = patient left, +y = posterior, +z = head).

The femoral head centres sit near z = 0, about 90 mm either side of the midline.
Shapes are implicit (distance fields from ``sdf``), so the same functions draw the
label volume and evaluate ground truth at any point. ``Anatomy.from_seed`` draws a
patient's proportions; the same seed always gives the same patient.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from workers.phantom.implant import cup_axis
from workers.phantom.sdf import (
    F32,
    SmoothNoise,
    Vec,
    capsule,
    dot3,
    ellipsoid,
    ellipsoid_norm,
    smin,
    smoothstep,
    sphere,
    unit,
)

SIDES = ("right", "left")
CARTILAGE_MM = 1.8  # femoral head and acetabular cartilage thickness each


def side_sign(side: str) -> int:
    """+1 for the patient's left (+x in LPS), -1 for the right."""
    if side not in SIDES:
        raise ValueError(f"side must be 'left' or 'right', not {side!r}")
    return 1 if side == "left" else -1


@dataclass(frozen=True)
class Femur:
    """Geometry of one proximal femur (all mm, LPS)."""

    side: str
    head_centre: Vec
    head_radius: float
    neck_dir: tuple[float, float, float]  # unit, from head centre towards the neck base
    neck_length: float  # head centre to the neck base (where the neck meets the shaft)
    neck_radius: float
    shaft_dir: tuple[float, float, float]  # unit, pointing superiorly along the shaft
    shaft_radius: float
    neck_shaft_angle_deg: float

    @property
    def sign(self) -> int:
        return side_sign(self.side)

    @property
    def base(self) -> Vec:
        c, d = np.asarray(self.head_centre), np.asarray(self.neck_dir)
        p = c + self.neck_length * d
        return (float(p[0]), float(p[1]), float(p[2]))

    @property
    def head_neck_junction(self) -> float:
        """Distance along the neck axis from the head centre to the head-neck junction plane."""
        return math.sqrt(max(self.head_radius**2 - self.neck_radius**2, 1.0))

    @property
    def neck_end(self) -> float:
        """Distance along the neck axis where the neck region ends and the intertrochanteric begins."""
        return self.neck_length - 0.6 * self.shaft_radius

    def point(self, along_neck: float = 0.0, along_shaft: float = 0.0) -> Vec:
        """A point at a distance along the neck axis from the head centre, then along the shaft."""
        p = (np.asarray(self.head_centre) + along_neck * np.asarray(self.neck_dir)
             + along_shaft * np.asarray(self.shaft_dir))
        return (float(p[0]), float(p[1]), float(p[2]))

    # --- distance fields -------------------------------------------------------------
    def headneck_sdf(self, x: F32, y: F32, z: F32) -> F32:
        """Head sphere smoothly joined to the neck (used for the joint space)."""
        head = sphere(x, y, z, self.head_centre, self.head_radius)
        neck = capsule(x, y, z, self.head_centre, self.base, self.neck_radius,
                       self.neck_radius * 1.25)
        return smin(head, neck, 6.0)

    def sdf(self, x: F32, y: F32, z: F32) -> F32:
        """Outer surface of the proximal femur (head, neck, trochanters, shaft)."""
        s = self.sign
        b = np.asarray(self.base)
        up = np.asarray(self.shaft_dir)
        lat = np.array([s, 0.0, 0.0])
        post = np.array([0.0, 1.0, 0.0])

        def at(v: np.ndarray) -> Vec:
            return (float(v[0]), float(v[1]), float(v[2]))

        d = self.headneck_sdf(x, y, z)
        shaft = capsule(x, y, z, at(b + 12.0 * up), at(b - 320.0 * up),
                        self.shaft_radius * 1.45, self.shaft_radius * 0.92)
        d = smin(d, shaft, 10.0)
        inter = ellipsoid(x, y, z, at(b - 4.0 * up + 2.0 * lat), (20.0, 19.0, 26.0))
        d = smin(d, inter, 8.0)
        gt = ellipsoid(x, y, z, at(b + 18.0 * up + 15.0 * lat + 6.0 * post), (14.0, 19.0, 22.0))
        d = smin(d, gt, 8.0)
        lt = ellipsoid(x, y, z, at(b - 38.0 * up - 13.0 * lat + 9.0 * post), (8.0, 8.0, 11.0))
        return smin(d, lt, 6.0)

    def cortex_mm(self, x: F32, y: F32, z: F32) -> F32:
        """Cortical thickness: thin subchondral bone at the head, thick diaphyseal cortex."""
        below = -dot3(x, y, z, self.base, np.asarray(self.shaft_dir))
        return 1.3 + 4.2 * smoothstep(35.0, 110.0, below)

    def marrow(self, x: F32, y: F32, z: F32) -> np.ndarray:
        """True inside the medullary marrow."""
        return np.asarray(self.sdf(x, y, z) < -self.cortex_mm(x, y, z))

    def along_neck(self, x: F32, y: F32, z: F32) -> F32:
        return dot3(x, y, z, self.head_centre, np.asarray(self.neck_dir))

    def region(self, x: F32, y: F32, z: F32) -> np.ndarray:
        """1 = head, 2 = neck, 3 = intertrochanteric, by distance along the neck axis."""
        t = self.along_neck(x, y, z)
        out = np.full(t.shape, 3, np.uint8)
        out[t < self.neck_end] = 2
        out[t < self.head_neck_junction] = 1
        return out

    def bbox(self, margin: float = 20.0) -> tuple[Vec, Vec]:
        """An axis-aligned box holding the head, neck and trochanters (and the joint)."""
        pts = np.array([self.point(-self.head_radius), self.point(self.neck_length + 30.0),
                        self.point(self.neck_length, -90.0), self.point(self.neck_length, 45.0)])
        lo = pts.min(axis=0) - self.head_radius - margin
        hi = pts.max(axis=0) + self.head_radius + margin
        return (float(lo[0]), float(lo[1]), float(lo[2])), (float(hi[0]), float(hi[1]), float(hi[2]))


@dataclass(frozen=True)
class Anatomy:
    """One patient's pelvis and proximal femurs."""

    seed: int
    right: Femur
    left: Femur
    body_half_width: float
    body_half_depth: float
    subcut_mm: float
    bladder_radii: Vec
    markers: tuple[tuple[str, Vec], ...]

    @staticmethod
    def from_seed(seed: int) -> Anatomy:
        """Draw a plausible adult pelvis from the seed (deterministic)."""
        rng = np.random.default_rng([seed, 0x41A7])
        r_head = float(rng.uniform(22.0, 26.0))
        half_sep = float(rng.uniform(86.0, 94.0))
        nsa = float(rng.uniform(125.0, 135.0))
        anteversion = float(rng.uniform(8.0, 15.0))
        tilt_z = float(rng.uniform(-2.0, 2.0))
        femurs = {}
        for side in SIDES:
            s = side_sign(side)
            r = r_head + float(rng.uniform(-0.4, 0.4))
            centre = (s * (half_sep + float(rng.uniform(-1.5, 1.5))), float(rng.uniform(-2.0, 2.0)),
                      s * tilt_z / 2.0)
            shaft_up = unit((s * math.sin(math.radians(8.0)), 0.0, math.cos(math.radians(8.0))))
            # neck direction (head -> base) makes (180 - nsa) with the downward shaft, laterally
            a = math.radians(180.0 - nsa)
            down = -shaft_up
            lat = np.array([s, 0.0, 0.0])
            lat_perp = unit(lat - np.dot(lat, down) * down)
            neck = math.cos(a) * down + math.sin(a) * lat_perp
            # head -> base goes laterally and down; apply anteversion (head is anterior of base)
            av = math.radians(anteversion)
            neck = unit(neck * math.cos(av) + np.array([0.0, math.sin(av), 0.0]))
            femurs[side] = Femur(
                side=side, head_centre=centre, head_radius=r,
                neck_dir=(float(neck[0]), float(neck[1]), float(neck[2])),
                neck_length=float(rng.uniform(50.0, 56.0)), neck_radius=0.62 * r,
                shaft_dir=(float(shaft_up[0]), float(shaft_up[1]), float(shaft_up[2])),
                shaft_radius=float(rng.uniform(13.0, 14.5)), neck_shaft_angle_deg=nsa)
        bhw = float(rng.uniform(156.0, 168.0))
        anat = Anatomy(seed=seed, right=femurs["right"], left=femurs["left"],
                       body_half_width=bhw, body_half_depth=float(rng.uniform(112.0, 124.0)),
                       subcut_mm=float(rng.uniform(14.0, 24.0)),
                       bladder_radii=(float(rng.uniform(38.0, 48.0)), float(rng.uniform(26.0, 33.0)),
                                      float(rng.uniform(24.0, 32.0))),
                       markers=())
        # skin markers taped on, asymmetric so that a left/right flip is caught
        markers = (("left_lateral", anat.on_skin(1, 8.0, 22.0)),
                   ("right_lateral", anat.on_skin(-1, -14.0, -38.0)))
        return replace(anat, markers=markers)

    def on_skin(self, sign: int, y: float, z: float, gap: float = 5.5) -> Vec:
        """The point ``gap`` mm outside the skin along x on one side, at (y, z)."""
        lo, hi = 0.0, 300.0
        for _ in range(40):
            mid = (lo + hi) / 2.0
            pt = np.array([sign * mid, y, z], np.float32)
            inside = float(self.body_sdf(pt[0:1], pt[1:2], pt[2:3])[0]) < 0
            lo, hi = (mid, hi) if inside else (lo, mid)
        return (round(sign * (lo + gap), 2), y, z)

    def femur(self, side: str) -> Femur:
        return self.left if side_sign(side) > 0 else self.right

    # --- soft tissue -----------------------------------------------------------------
    def body_sdf(self, x: F32, y: F32, z: F32) -> F32:
        """Skin surface: trunk, buttocks and both thighs, smoothly joined."""
        a = self.body_half_width + 8.0 * np.exp(-(((z + 15.0) / 70.0) ** 2)) - 0.05 * np.maximum(z - 60.0, 0.0)
        b = self.body_half_depth - 0.04 * np.maximum(z - 40.0, 0.0)
        yc = 4.0
        k0 = np.sqrt((x / a) ** 2 + ((y - yc) / b) ** 2)
        k1 = np.sqrt((x / a**2) ** 2 + ((y - yc) / b**2) ** 2)
        trunk = k0 * (k0 - 1.0) / np.maximum(k1, 1e-6)
        trunk = np.maximum(trunk, -60.0 - z).astype(np.float32)
        d = trunk
        for s in (-1, 1):
            thigh = capsule(x, y, z, (s * 92.0, 2.0, -40.0), (s * 84.0, -4.0, -330.0), 86.0, 70.0)
            d = smin(d, thigh, 30.0)
            butt = ellipsoid(x, y, z, (s * 72.0, 58.0, -48.0), (84.0, 68.0, 78.0))
            d = smin(d, butt, 25.0)
        # natal cleft and perineal crease
        cleft = np.maximum(np.abs(x) - 1.5, np.maximum(92.0 - y - 0.25 * np.minimum(z + 5.0, 0.0),
                                                        z + 5.0 + 0.0 * y))
        return np.asarray(np.maximum(d, -cleft), np.float32)

    def subcut_thickness(self, x: F32, y: F32, z: F32) -> F32:
        base = self.subcut_mm
        return np.asarray(base + 10.0 * smoothstep(30.0, 110.0, y) + 5.0 * smoothstep(120.0, 175.0, np.abs(x))
                          - 5.0 * smoothstep(-40.0, -110.0, y), np.float32)

    def muscles(self) -> list[tuple[Vec, Vec]]:
        """Muscle bellies as (centre, radii) ellipsoids, both sides."""
        out: list[tuple[Vec, Vec]] = []
        for s in (-1, 1):
            out += [
                ((s * 88.0, 92.0, -15.0), (78.0, 32.0, 95.0)),  # gluteus maximus
                ((s * 128.0, 25.0, 60.0), (30.0, 62.0, 62.0)),  # gluteus medius
                ((s * 108.0, 10.0, 30.0), (18.0, 45.0, 32.0)),  # gluteus minimus
                ((s * 62.0, 8.0, -12.0), (12.0, 38.0, 34.0)),  # obturator internus
                ((s * 62.0, -8.0, -48.0), (22.0, 24.0, 14.0)),  # obturator externus
                ((s * 72.0, 40.0, -45.0), (30.0, 12.0, 10.0)),  # quadratus femoris
                ((s * 48.0, -10.0, -150.0), (42.0, 55.0, 100.0)),  # adductors
                ((s * 118.0, -20.0, -165.0), (38.0, 45.0, 120.0)),  # vastus lateralis
                ((s * 90.0, -68.0, -150.0), (30.0, 30.0, 110.0)),  # rectus femoris / vastus
                ((s * 80.0, 60.0, -165.0), (36.0, 36.0, 100.0)),  # hamstrings
                ((s * 125.0, -62.0, -30.0), (16.0, 24.0, 60.0)),  # tensor fasciae latae
                ((s * 62.0, -58.0, -10.0), (18.0, 20.0, 60.0)),  # iliopsoas (distal)
                ((s * 40.0, -95.0, 90.0), (32.0, 12.0, 90.0)),  # rectus abdominis
                ((s * 150.0, -10.0, 150.0), (22.0, 85.0, 60.0)),  # abdominal obliques
                ((s * 35.0, 75.0, 150.0), (28.0, 30.0, 80.0)),  # erector spinae
            ]
        return out

    def pelvic_cavity_sdf(self, x: F32, y: F32, z: F32) -> F32:
        true_pelvis = ellipsoid(x, y, z, (0.0, 2.0, -2.0), (54.0, 58.0, 52.0))
        greater = ellipsoid(x, y, z, (0.0, -22.0, 105.0), (112.0, 82.0, 88.0))
        return smin(true_pelvis, greater, 25.0)

    def iliacus_sdf(self, x: F32, y: F32, z: F32) -> F32:
        d = np.full(np.broadcast_shapes(np.shape(x), np.shape(y), np.shape(z)), 1e3, np.float32)
        for s in (-1, 1):
            iliacus = ellipsoid(x, y, z, (s * 88.0, -8.0, 78.0), (20.0, 46.0, 50.0))
            psoas = capsule(x, y, z, (s * 40.0, 40.0, 175.0), (s * 62.0, -50.0, 5.0), 20.0, 17.0)
            d = np.minimum(d, smin(iliacus, psoas, 15.0))
        return d

    # --- pelvic bones ----------------------------------------------------------------
    def spine_sdf(self, x: F32, y: F32, z: F32) -> F32:
        """Sacrum (a wedge, wide above, curving back and down, with foramina) and L5."""
        t = np.clip((105.0 - z) / 140.0, 0.0, 1.0)
        half_w = 52.0 - 40.0 * t
        yc = 52.0 + 42.0 * t * t - 0.006 * x * x
        half_d = 19.0 - 9.0 * t
        qx = np.abs(x) - half_w + 8.0
        qy = np.abs(y - yc) - half_d + 8.0
        box = (np.sqrt(np.maximum(qx, 0.0) ** 2 + np.maximum(qy, 0.0) ** 2)
               + np.minimum(np.maximum(qx, qy), 0.0) - 8.0)
        top = z - 105.0 + 0.004 * x * x
        sacrum = np.maximum(box, np.maximum(top, -38.0 - z))
        for zf in (80.0, 57.0, 35.0, 15.0):
            for sx in (-1.0, 1.0):
                xf = sx * (23.0 - 0.08 * (80.0 - zf))
                hole = capsule(x, y, z, (xf, 30.0, zf), (xf, 110.0, zf), 3.5, 3.5)
                sacrum = np.maximum(sacrum, -hole)
        l5 = np.maximum(ellipsoid(x, y, z, (0.0, 32.0, 140.0), (27.0, 20.0, 40.0)),
                        np.abs(z - 140.0) - 14.0)
        return np.asarray(np.minimum(sacrum, l5), np.float32)

    def disc_sdf(self, x: F32, y: F32, z: F32) -> F32:
        disc = ellipsoid(x, y, z, (0.0, 34.0, 120.0), (26.0, 19.0, 8.0))
        return np.asarray(disc, np.float32)

    def innominate_sdf(self, x: F32, y: F32, z: F32, fem: Femur) -> F32:
        """One hip bone: iliac wing, acetabulum, pubis and ischium, with the socket cut out."""
        s = fem.sign
        c = fem.head_centre
        r = fem.head_radius
        xl = s * x  # lateral coordinate for this side
        # iliac wing: a curved plate flaring laterally and upward from the acetabular roof
        zr = np.asarray(z - c[2], np.float32)
        h = np.clip((zr - 22.0) / 105.0, 0.0, 1.0)
        yr = y - c[1]
        w = (abs(c[0]) - 14.0 + 56.0 * h - (0.0018 + 0.005 * h) * (yr + 38.0) ** 2
             - 0.01 * np.maximum(yr - 10.0, 0.0) ** 2)
        thick = 8.0 + 34.0 * smoothstep(62.0, 22.0, zr) + 6.0 * smoothstep(100.0, 124.0, zr)
        plate = (np.abs(xl - w) * 0.8 - thick / 2.0).astype(np.float32)
        y_ant = c[1] - 30.0 - 40.0 * h
        y_post = c[1] + 34.0 + 26.0 * h
        crest = c[2] + 126.0 - 0.006 * (yr + 5.0) ** 2
        wing = np.maximum(plate, np.maximum(np.maximum(y_ant - y, y - y_post),
                                            np.maximum(c[2] + 12.0 - z, z - crest)))
        # acetabular body around the socket
        body = ellipsoid(x, y, z, (c[0] - s * 8.0, c[1] + 4.0, c[2] + 12.0), (r + 12.0, r + 11.0, r + 19.0))
        d = smin(wing.astype(np.float32), body, 14.0)
        # posterior ilium reaching the sacrum at the sacroiliac joint
        buttress = capsule(x, y, z, (s * 78.0, c[1] + 30.0, c[2] + 100.0), (s * 56.0, c[1] + 58.0, c[2] + 45.0),
                           17.0, 13.0)
        d = smin(d, buttress, 12.0)
        d = np.maximum(d, -(self.spine_sdf(x, y, z) - 2.5))
        # superior pubic ramus and body, ischium and ischiopubic ramus
        pub_body = ellipsoid(x, y, z, (s * 13.0, -62.0, c[2] - 30.0), (11.0, 11.0, 20.0))
        sup_ramus = capsule(x, y, z, (c[0] - s * 22.0, c[1] - 16.0, c[2] - 4.0),
                            (s * 16.0, -60.0, c[2] - 24.0), 11.0, 8.0)
        ischium = capsule(x, y, z, (c[0] - s * 16.0, c[1] + 22.0, c[2] - 18.0),
                          (c[0] - s * 28.0, c[1] + 32.0, c[2] - 68.0), 14.0, 13.0)
        inf_ramus = capsule(x, y, z, (c[0] - s * 30.0, c[1] + 26.0, c[2] - 70.0),
                            (s * 14.0, -55.0, c[2] - 46.0), 7.5, 8.0)
        d = smin(d, pub_body, 6.0)
        d = smin(d, sup_ramus, 10.0)
        d = smin(d, ischium, 10.0)
        d = smin(d, inf_ramus, 8.0)
        # the socket and the acetabular opening
        socket = sphere(x, y, z, c, r + 2.0 * CARTILAGE_MM)
        d = np.maximum(d, -socket)
        opening = self.acetabular_opening(x, y, z, fem)
        d = np.maximum(d, -opening)
        return np.asarray(np.maximum(d, -(xl - 2.0)), np.float32)  # pubic symphysis gap

    @staticmethod
    def opening_dir(fem: Femur) -> np.ndarray:
        """Axis of the acetabular opening: lateral, inferior and anterior."""
        return cup_axis(fem.sign)

    def acetabular_opening(self, x: F32, y: F32, z: F32, fem: Femur) -> F32:
        """Negative inside the cone the acetabulum leaves open (limited to near the joint)."""
        c = fem.head_centre
        dx, dy, dz = x - c[0], y - c[1], z - c[2]
        r = np.sqrt(dx * dx + dy * dy + dz * dz) + 1e-3
        o = self.opening_dir(fem)
        cosang = (dx * o[0] + dy * o[1] + dz * o[2]) / r
        cone = (0.12 - cosang) * r
        return np.asarray(np.maximum(cone, r - (fem.head_radius + 40.0)), np.float32)

    def labrum(self, x: F32, y: F32, z: F32, fem: Femur) -> np.ndarray:
        c = fem.head_centre
        dx, dy, dz = x - c[0], y - c[1], z - c[2]
        r = np.sqrt(dx * dx + dy * dy + dz * dz) + 1e-3
        o = self.opening_dir(fem)
        cosang = (dx * o[0] + dy * o[1] + dz * o[2]) / r
        rr = fem.head_radius + CARTILAGE_MM
        return np.asarray((cosang > 0.12) & (cosang < 0.12 + 0.05 + 0.25 * (r - rr) / 8.0)
                          & (r > rr) & (r < rr + 7.0))

    def acetabular_cartilage(self, x: F32, y: F32, z: F32, fem: Femur) -> np.ndarray:
        r = sphere(x, y, z, fem.head_centre, fem.head_radius)
        opening = self.acetabular_opening(x, y, z, fem)
        return np.asarray((r >= CARTILAGE_MM) & (r < 2.0 * CARTILAGE_MM) & (opening > 0))

    def vessels(self) -> list[tuple[str, Vec, Vec, float]]:
        """(kind, start, end, radius) of the big vessels and the sciatic nerves."""
        out: list[tuple[str, Vec, Vec, float]] = []
        for s in (-1, 1):
            out += [
                ("artery", (s * 22.0, 20.0, 170.0), (s * 55.0, -38.0, 45.0), 5.0),
                ("artery", (s * 55.0, -38.0, 45.0), (s * 78.0, -62.0, -25.0), 4.5),
                ("artery", (s * 78.0, -62.0, -25.0), (s * 70.0, -45.0, -240.0), 4.0),
                ("vein", (s * 14.0, 28.0, 170.0), (s * 45.0, -30.0, 45.0), 6.5),
                ("vein", (s * 45.0, -30.0, 45.0), (s * 66.0, -58.0, -25.0), 6.0),
                ("vein", (s * 66.0, -58.0, -25.0), (s * 62.0, -40.0, -240.0), 5.5),
                ("nerve", (s * 45.0, 58.0, 60.0), (s * 78.0, 58.0, -20.0), 5.0),
                ("nerve", (s * 78.0, 58.0, -20.0), (s * 82.0, 50.0, -260.0), 5.0),
            ]
        return out

    def bowel_noise(self) -> SmoothNoise:
        return SmoothNoise(np.random.default_rng([self.seed, 0xB0E1]), 38.0, waves=10)

    def texture_noise(self) -> SmoothNoise:
        return SmoothNoise(np.random.default_rng([self.seed, 0x7E47]), 9.0, waves=12)


def bounds_union(boxes: list[tuple[Vec, Vec]]) -> tuple[Vec, Vec]:
    lo = np.min([b[0] for b in boxes], axis=0)
    hi = np.max([b[1] for b in boxes], axis=0)
    return (float(lo[0]), float(lo[1]), float(lo[2])), (float(hi[0]), float(hi[1]), float(hi[2]))


def empty_like(x: F32, y: F32, z: F32, value: float) -> F32:
    return np.full(np.broadcast_shapes(np.shape(x), np.shape(y), np.shape(z)), value, np.float32)


def muscle_partition(x: F32, y: F32, z: F32, muscles: list[tuple[Vec, Vec]]) -> tuple[F32, F32]:
    """Best and second-best normalised ellipsoid radius over all muscles (for fat septa)."""
    best = empty_like(x, y, z, 9.0)
    second = empty_like(x, y, z, 9.0)
    for c, radii in muscles:
        n = ellipsoid_norm(x, y, z, c, radii)
        second = np.minimum(second, np.maximum(best, n))
        best = np.minimum(best, n)
    return best, second
