"""Draw the anatomy into a regular LPS model grid, then turn it into signal per sequence.

The model grid is axis-aligned in LPS (array index order x, y, z). Each shape is
evaluated only inside its bounding box, so a 1 mm grid of the whole pelvis takes a
few seconds. Series images are sampled from the signal volume (``render``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage

from workers.phantom.anatomy import CARTILAGE_MM, Anatomy, Femur, muscle_partition
from workers.phantom.implant import Implant, fat_failure
from workers.phantom.pathology import (
    SidePathology,
    avn_labels,
    capsule_wall,
    effusion_fraction,
    fat_sat_failure_field,
    oedema_fraction,
)
from workers.phantom.sdf import F32, Vec, capsule, ellipsoid, sphere
from workers.phantom.tissue import SequenceTiming, Tissue, signal_table

MODEL_LO: Vec = (-205.0, -150.0, -250.0)
MODEL_HI: Vec = (205.0, 150.0, 185.0)

Axes = tuple[tuple[slice, slice, slice], F32, F32, F32]


@dataclass
class Canvas:
    """A regular LPS grid with spacing ``h`` mm; ``labels`` holds a ``Tissue`` per voxel."""

    h: float
    origin: Vec = MODEL_LO
    shape: tuple[int, int, int] = (0, 0, 0)
    labels: NDArray[np.uint8] = field(default_factory=lambda: np.zeros((0, 0, 0), np.uint8))

    @staticmethod
    def create(h: float) -> Canvas:
        shape = tuple(int(np.ceil((MODEL_HI[i] - MODEL_LO[i]) / h)) + 1 for i in range(3))
        return Canvas(h=h, shape=(shape[0], shape[1], shape[2]),
                      labels=np.zeros(shape, np.uint8))

    def axes(self, lo: Vec, hi: Vec) -> Axes | None:
        """Index slices and broadcastable coordinate axes of the voxels inside [lo, hi]."""
        sl = []
        coords = []
        for i in range(3):
            a = max(int(np.floor((lo[i] - self.origin[i]) / self.h)), 0)
            b = min(int(np.ceil((hi[i] - self.origin[i]) / self.h)) + 1, self.shape[i])
            if b <= a:
                return None
            sl.append(slice(a, b))
            coords.append((self.origin[i] + self.h * np.arange(a, b)).astype(np.float32))
        x = coords[0][:, None, None]
        y = coords[1][None, :, None]
        z = coords[2][None, None, :]
        return (sl[0], sl[1], sl[2]), x, y, z

    def paint_sdf(self, lo: Vec, hi: Vec, fn: Callable[[F32, F32, F32], F32],
                  levels: list[tuple[float, Tissue]]) -> None:
        """Within the box, paint each label where ``fn`` < its level (in the order given)."""
        ax = self.axes(lo, hi)
        if ax is None:
            return
        sl, x, y, z = ax
        reach = max(abs(level) for level, _ in levels)
        d = adaptive(fn, x.reshape(-1), y.reshape(-1), z.reshape(-1), reach)
        view = self.labels[sl]
        for level, label in levels:
            view[d < level] = label


@dataclass
class Model:
    """The rasterised patient: labels plus per-hip oedema fraction boxes."""

    canvas: Canvas
    anatomy: Anatomy
    oedema_boxes: list[tuple[tuple[slice, slice, slice], F32]]
    fat_fail: tuple[tuple[slice, slice, slice], F32] | None
    texture: NDArray[np.float16]
    metal_fail: tuple[tuple[slice, slice, slice], F32] | None = None  # arthroplasty: fat suppression fails


def _box(c: Vec, r: Vec, pad: float = 2.0) -> tuple[Vec, Vec]:
    return ((c[0] - r[0] - pad, c[1] - r[1] - pad, c[2] - r[2] - pad),
            (c[0] + r[0] + pad, c[1] + r[1] + pad, c[2] + r[2] + pad))


def _seg_box(a: Vec, b: Vec, r: float) -> tuple[Vec, Vec]:
    lo = tuple(min(a[i], b[i]) - r - 2.0 for i in range(3))
    hi = tuple(max(a[i], b[i]) + r + 2.0 for i in range(3))
    return (lo[0], lo[1], lo[2]), (hi[0], hi[1], hi[2])


def _lin_weights(n: int, cidx: NDArray[np.intp]) -> tuple[NDArray[np.intp], NDArray[np.intp], F32]:
    j = np.arange(n)
    i1 = np.clip(np.searchsorted(cidx, j, side="right"), 1, len(cidx) - 1)
    i0 = i1 - 1
    w = (j - cidx[i0]) / np.maximum(cidx[i1] - cidx[i0], 1)
    return i0, i1, np.asarray(w, np.float32)


def _upsample(coarse: F32, shape: tuple[int, ...], cidx: list[NDArray[np.intp]]) -> F32:
    """Separable linear interpolation of samples at fine indices ``cidx`` to the full shape."""
    a = coarse
    for axis in range(3):
        i0, i1, w = _lin_weights(shape[axis], cidx[axis])
        wshape = [1, 1, 1]
        wshape[axis] = -1
        wb = w.reshape(wshape)
        a = np.take(a, i0, axis=axis) * (1.0 - wb) + np.take(a, i1, axis=axis) * wb
    return np.asarray(a, np.float32)


def _coarse_index(n: int, factor: int) -> NDArray[np.intp]:
    idx = np.arange(0, n, factor)
    if idx[-1] != n - 1:
        idx = np.append(idx, n - 1)
    return idx


def adaptive(fn: Callable[[F32, F32, F32], F32], x: F32, y: F32, z: F32, reach: float) -> F32:
    """Evaluate a distance-like field on the grid of axes x, y, z (1-D, mm).

    The field is sampled on a lattice of about 4 mm; voxels whose nearest lattice value is
    within ``reach`` (plus the worst interpolation error) of zero are evaluated exactly, so
    levels in [-reach, reach] are exact while far-away voxels only keep their sign.
    """
    h = float(x[1] - x[0]) if len(x) > 1 else 1.0
    f = max(2, int(round(4.0 / h)))
    band = reach + 3.0 * f * h
    n = (len(x), len(y), len(z))
    if min(n) < 2 * f:
        return np.asarray(np.broadcast_to(fn(x[:, None, None], y[None, :, None], z[None, None, :]), n),
                          np.float32)
    out = np.empty(n, np.float32)
    chunk = 8 * f
    for z0 in range(0, n[2], chunk):
        zc = z[z0:z0 + chunk]
        coarse = fn(x[::f][:, None, None], y[::f][None, :, None], zc[::f][None, None, :])
        coarse = np.broadcast_to(coarse, (len(x[::f]), len(y[::f]), len(zc[::f])))
        up = coarse.repeat(f, 0).repeat(f, 1).repeat(f, 2)[: n[0], : n[1], : len(zc)]
        ii, jj, kk = np.nonzero(np.abs(up) < band)
        up = np.array(up, np.float32)
        if len(ii):
            up[ii, jj, kk] = fn(x[ii], y[jj], zc[kk])
        out[:, :, z0:z0 + len(zc)] = up
    return out


def smooth_field(shape: tuple[int, int, int], h: float, size_mm: float,
                 rng: np.random.Generator) -> F32:
    """A fine random texture (about unit std): white noise box-filtered over ``size_mm``."""
    field = rng.standard_normal(shape, dtype=np.float32)
    size = max(int(round(size_mm / h)), 1)
    if size > 1:
        field = ndimage.uniform_filter(field, size)
    field /= max(float(field[:: max(1, shape[0] // 32)].std()), 1e-6)
    return np.asarray(field, np.float32)


def coarse_noise(shape: tuple[int, int, int], h: float, step_mm: float | tuple[float, float, float],
                 rng: np.random.Generator) -> F32:
    """A smooth random field (about unit std): white noise on a lattice of ``step_mm`` (per axis
    when a triple), interpolated."""
    steps = step_mm if isinstance(step_mm, tuple) else (step_mm, step_mm, step_mm)
    cidx = [_coarse_index(n, max(int(round(st / h)), 1)) for n, st in zip(shape, steps, strict=True)]
    coarse = rng.standard_normal(tuple(len(c) for c in cidx)).astype(np.float32)
    coarse = ndimage.gaussian_filter(coarse, 0.7)
    coarse /= max(float(coarse.std()), 1e-6)
    return _upsample(coarse, shape, cidx)


def rasterise(anat: Anatomy, sides: dict[str, SidePathology], h: float,
              fat_sat_failure_side: str | None = None, implant: Implant | None = None) -> Model:
    """Draw the patient on a grid of spacing ``h`` mm (with a hip arthroplasty when ``implant``)."""
    cv = Canvas.create(h)
    ax = cv.axes(MODEL_LO, MODEL_HI)
    assert ax is not None
    _, X, Y, Z = ax
    x1, y1, z1 = X.reshape(-1), Y.reshape(-1), Z.reshape(-1)
    body = adaptive(anat.body_sdf, x1, y1, z1, 2.0)
    cv.labels[body < 0] = Tissue.FAT
    skin = (body < 0) & (body >= -1.8)
    del body
    deep = adaptive(lambda x, y, z: anat.body_sdf(x, y, z) + anat.subcut_thickness(x, y, z),
                    x1, y1, z1, 0.0)
    cv.labels[deep < 0] = Tissue.MUSCLE
    del deep
    cv.labels[skin] = Tissue.SKIN
    del skin
    _paint_muscle_septa(cv, anat)
    # abdominopelvic cavity and its content
    cv.paint_sdf((-120.0, -110.0, -60.0), (120.0, 70.0, 195.0), anat.pelvic_cavity_sdf,
                 [(0.0, Tissue.PELVIC_FAT)])
    _paint_bowel(cv, anat)
    cv.paint_sdf((-70.0, -40.0, -80.0), (70.0, 90.0, -25.0), _levator_sdf, [(0.0, Tissue.MUSCLE)])
    br = anat.bladder_radii
    bc: Vec = (0.0, -36.0, -4.0 + br[2] * 0.3)
    cv.paint_sdf(*_box(bc, br, 4.0), lambda x, y, z: ellipsoid(x, y, z, bc, br),
                 [(2.2, Tissue.MUSCLE), (0.0, Tissue.URINE)])
    rectum = ((0.0, 36.0, -62.0), (0.0, 52.0, -15.0), (-8.0, 50.0, 30.0), (-25.0, 25.0, 55.0))
    for a, b in zip(rectum[:-1], rectum[1:], strict=True):
        cv.paint_sdf(*_seg_box(a, b, 16.0), partial(_tube, a=a, b=b, r=14.0), [(0.0, Tissue.BOWEL)])
    gas_a: Vec = (-3.0, 50.0, 5.0)
    gas_b: Vec = (-6.0, 50.0, 22.0)
    cv.paint_sdf(*_seg_box(gas_a, gas_b, 6.0), lambda x, y, z: capsule(x, y, z, gas_a, gas_b, 5.0, 6.0),
                 [(0.0, Tissue.GAS)])
    cv.paint_sdf((-150.0, -110.0, -60.0), (150.0, 90.0, 195.0), anat.iliacus_sdf,
                 [(0.0, Tissue.MUSCLE)])
    for kind, a, b, r in anat.vessels():
        label = {"artery": Tissue.ARTERY, "vein": Tissue.VEIN, "nerve": Tissue.NERVE}[kind]
        cv.paint_sdf(*_seg_box(a, b, r), partial(_tube, a=a, b=b, r=r), [(0.0, label)])
    _paint_pelvic_bones(cv, anat)
    boxes = []
    for side, fem in (("right", anat.right), ("left", anat.left)):
        boxes.append(_paint_hip(cv, anat, fem, sides[side]))
    for _, c in anat.markers:
        cv.paint_sdf(*_box(c, (6.0, 6.0, 6.0)), partial(_ball, c=c, r=5.0), [(0.0, Tissue.MARKER)])
    fat_fail = None
    if fat_sat_failure_side is not None:
        fem = anat.femur(fat_sat_failure_side)
        centre = fem.point(fem.neck_length * 0.4)
        lo = (centre[0] - 130.0, centre[1] - 100.0, centre[2] - 130.0)
        hi = (centre[0] + 130.0, centre[1] + 100.0, centre[2] + 130.0)
        fax = cv.axes(lo, hi)
        assert fax is not None
        fsl, fx, fy, fz = fax
        fat_fail = (fsl, fat_sat_failure_field(anat, fat_sat_failure_side, fx, fy, fz))
    metal_fail = None if implant is None else _paint_implant(cv, anat.femur(implant.side), implant)
    tex = smooth_field(cv.shape, h, 3.0, np.random.default_rng([anat.seed, 0x7E4])).astype(np.float16)
    return Model(canvas=cv, anatomy=anat, oedema_boxes=[b for b in boxes if b is not None],
                 fat_fail=fat_fail, texture=tex, metal_fail=metal_fail)


def _paint_implant(cv: Canvas, fem: Femur, implant: Implant) -> tuple[tuple[slice, slice, slice], F32]:
    """Resect the head and proximal neck, ream the socket, insert the implant; return where and how
    much fat suppression fails around it (a smooth field, computed on a lattice of about 3 mm)."""
    ax = cv.axes(*implant.bbox(40.0))
    assert ax is not None
    sl, x, y, z = ax
    x1, y1, z1 = x.reshape(-1), y.reshape(-1), z.reshape(-1)
    full = np.broadcast_shapes(x.shape, y.shape, z.shape)
    X, Y, Z = (np.ascontiguousarray(np.broadcast_to(a, full)) for a in (x, y, z))
    view = cv.labels[sl]
    resected = (adaptive(fem.sdf, x1, y1, z1, 1.0) < 0.0) & (fem.along_neck(X, Y, Z) < implant.resection_mm)
    socket = sphere(X, Y, Z, implant.centre, implant.cup_radius) < 0.0
    view[resected | socket] = Tissue.MUSCLE  # pseudocapsule and scar
    view[adaptive(implant.polymer_sdf, x1, y1, z1, 1.0) < 0.0] = Tissue.POLYMER
    view[adaptive(implant.metal_sdf, x1, y1, z1, 1.0) < 0.0] = Tissue.METAL
    factor = max(1, int(round(3.0 / cv.h)))
    cidx = [_coarse_index(n, factor) for n in full]
    coarse = fat_failure(implant, x1[cidx[0]][:, None, None], y1[cidx[1]][None, :, None], z1[cidx[2]][None, None, :])
    return sl, _upsample(coarse, full, cidx)


def _tube(x: F32, y: F32, z: F32, a: Vec, b: Vec, r: float) -> F32:
    return capsule(x, y, z, a, b, r, r)


def _ball(x: F32, y: F32, z: F32, c: Vec, r: float) -> F32:
    return sphere(x, y, z, c, r)


def _paint_muscle_septa(cv: Canvas, anat: Anatomy) -> None:
    """Split the muscle compartment into bellies with thin fat planes between them.

    The partition is computed on a lattice of at most 2.5 mm, one belly's box at a time,
    and interpolated to the grid.
    """
    factor = max(1, int(round(2.5 / cv.h)))
    hc = cv.h * factor
    cidx = [_coarse_index(n, factor) for n in cv.shape]
    axes = [(cv.origin[i] + cv.h * cidx[i]).astype(np.float32) for i in range(3)]
    shape = tuple(len(c) for c in cidx)
    best = np.full(shape, 9.0, np.float32)
    second = np.full(shape, 9.0, np.float32)
    for c, r in anat.muscles():
        sl = []
        for i in range(3):
            a = int(np.searchsorted(axes[i], c[i] - 1.35 * r[i] - hc))
            b = int(np.searchsorted(axes[i], c[i] + 1.35 * r[i] + hc))
            sl.append(slice(a, b))
        x = axes[0][sl[0]][:, None, None]
        y = axes[1][sl[1]][None, :, None]
        z = axes[2][sl[2]][None, None, :]
        b1, _ = muscle_partition(x, y, z, [(c, r)])
        bv, sv = best[sl[0], sl[1], sl[2]], second[sl[0], sl[1], sl[2]]
        sv[...] = np.minimum(sv, np.maximum(bv, b1))
        bv[...] = np.minimum(bv, b1)
    wobble = coarse_noise(shape, hc, 22.0, np.random.default_rng([anat.seed, 0x5E9]))  # type: ignore[arg-type]
    margin = np.minimum(second - best - 0.028 * (best + 0.5) + 0.03 * wobble, 1.65 - best)
    if factor > 1:
        margin = _upsample(margin, cv.shape, cidx)
    muscle = cv.labels == Tissue.MUSCLE
    cv.labels[muscle & (margin <= 0)] = Tissue.FAT
    # intramuscular fat: thin streaks along the fibres (mostly cranio-caudal here)
    streaks = coarse_noise(cv.shape, cv.h, (3.0, 3.0, 14.0), np.random.default_rng([anat.seed, 0x57A]))
    cv.labels[muscle & (margin > 0) & (streaks > 2.0)] = Tissue.FAT


def _paint_bowel(cv: Canvas, anat: Anatomy) -> None:
    """Small-bowel and sigmoid loops in the greater pelvis: serpiginous tubes in mesenteric fat."""
    ax = cv.axes((-120.0, -110.0, -10.0), (120.0, 70.0, 195.0))
    assert ax is not None
    sl, x, y, z = ax
    shape = (sl[0].stop - sl[0].start, sl[1].stop - sl[1].start, sl[2].stop - sl[2].start)
    n = coarse_noise(shape, cv.h, 11.0, np.random.default_rng([anat.seed, 0xB0E]))
    depth = coarse_noise(shape, cv.h, 30.0, np.random.default_rng([anat.seed, 0xB0F]))
    view = cv.labels[sl]
    # loops fill the abdomen and thin out towards the true pelvis (below about z = 25 mm)
    floor = np.broadcast_to(z - (25.0 + 18.0 * depth), view.shape)
    cavity = (view == Tissue.PELVIC_FAT) & (floor > 0)
    tube = np.abs(n) < 0.42
    view[cavity & tube] = Tissue.BOWEL
    view[cavity & (np.abs(n) < 0.16)] = Tissue.BOWEL_FLUID
    view[cavity & (np.abs(n) < 0.05) & (depth > 1.2)] = Tissue.GAS


def _levator_sdf(x: F32, y: F32, z: F32) -> F32:
    """The pelvic floor: a funnel of muscle opening upward from the anorectal junction."""
    r = np.sqrt(x * x + ((y - 20.0) * 1.3) ** 2)
    cone = np.abs(r - (z + 72.0) * 1.25) * 0.6 - 3.5
    return np.asarray(np.maximum(cone, np.maximum(-72.0 - z, z + 30.0)), np.float32)


def _paint_pelvic_bones(cv: Canvas, anat: Anatomy) -> None:
    """Innominate bones, sacrum and L5: cortex shell and red marrow; the L5/S1 disc."""
    for fem in (anat.right, anat.left):
        s = fem.sign
        lo: Vec = (-8.0 if s > 0 else -175.0, -100.0, fem.head_centre[2] - 100.0)
        hi: Vec = (175.0 if s > 0 else 8.0, 95.0, fem.head_centre[2] + 140.0)
        cv.paint_sdf(lo, hi, partial(anat.innominate_sdf, fem=fem),
                     [(0.0, Tissue.CORTEX), (-1.6, Tissue.RED_MARROW)])
    cv.paint_sdf((-60.0, 10.0, -50.0), (60.0, 130.0, 185.0), anat.spine_sdf,
                 [(0.0, Tissue.CORTEX), (-1.6, Tissue.RED_MARROW)])
    cv.paint_sdf((-40.0, 5.0, 100.0), (40.0, 65.0, 140.0), anat.disc_sdf, [(0.0, Tissue.DISC)])


def _on(mask: np.ndarray, fn: Callable[[F32, F32, F32], np.ndarray], X: F32, Y: F32, Z: F32,
        fill: float | bool = False) -> np.ndarray:
    """Evaluate ``fn`` only where ``mask`` holds (other voxels get ``fill``)."""
    idx = np.nonzero(mask)
    vals = fn(X[idx], Y[idx], Z[idx])
    out = np.full(mask.shape, fill, dtype=np.asarray(vals).dtype)
    out[idx] = vals
    return out


def _paint_hip(cv: Canvas, anat: Anatomy, fem: Femur,
               side: SidePathology) -> tuple[tuple[slice, slice, slice], F32] | None:
    lo, hi = fem.bbox()
    ax = cv.axes(lo, hi)
    if ax is None:
        return None
    sl, x, y, z = ax
    view = cv.labels[sl]
    full = np.broadcast_shapes(x.shape, y.shape, z.shape)
    X, Y, Z = (np.ascontiguousarray(np.broadcast_to(a, full)) for a in (x, y, z))
    head = sphere(X, Y, Z, fem.head_centre, fem.head_radius)
    joint = np.asarray((head < 2.0 * CARTILAGE_MM + 14.0)
                       | (fem.along_neck(X, Y, Z) < fem.neck_length))
    eff = _on(joint, lambda a, b, c: effusion_fraction(anat, fem, side, a, b, c), X, Y, Z, 0.0)
    view[_on(joint, lambda a, b, c: capsule_wall(anat, fem, side, a, b, c), X, Y, Z)] = Tissue.CAPSULE
    view[eff >= 0.5] = Tissue.JOINT_FLUID
    near = head < 2.0 * CARTILAGE_MM + 8.0
    view[_on(near, lambda a, b, c: anat.acetabular_cartilage(a, b, c, fem), X, Y, Z)] = Tissue.CARTILAGE
    view[_on(near, lambda a, b, c: anat.labrum(a, b, c, fem), X, Y, Z)] = Tissue.LABRUM
    d = adaptive(fem.sdf, x.reshape(-1), y.reshape(-1), z.reshape(-1), 6.0)
    view[(head < CARTILAGE_MM) & (d >= 0)] = Tissue.CARTILAGE
    bone = d < 0
    view[bone] = Tissue.CORTEX
    cortex = _on(bone, fem.cortex_mm, X, Y, Z, 0.0)
    marrow = bone & (d < -cortex)
    view[marrow] = Tissue.YELLOW_MARROW
    if side.avn:
        inner = head < 0
        avn = _on(inner, lambda a, b, c: avn_labels(fem, a, b, c), X, Y, Z, 0)
        view[avn > 0] = avn[avn > 0]
    if side.oedema is None:
        return None
    f = oedema_fraction(anat, fem, side, X, Y, Z)
    return sl, f


def signal_volume(model: Model, seq: SequenceTiming, fat_fail_strength: float = 1.0) -> F32:
    """Noise-free signal of every model voxel for one sequence (texture, oedema, fat-sat failure)."""
    table, _ = signal_table(seq)
    labels = model.canvas.labels
    out = table[labels]
    marrowish = np.isin(labels, (Tissue.YELLOW_MARROW, Tissue.RED_MARROW, Tissue.MUSCLE,
                                 Tissue.NECROTIC_MARROW))
    out[marrowish] *= 1.0 + 0.06 * model.texture[marrowish]
    oed = float(table[Tissue.OEDEMA_MARROW])
    yellow = float(table[Tissue.YELLOW_MARROW])
    for sl, f in model.oedema_boxes:
        view = out[sl]
        lab = labels[sl]
        fm = np.where(lab == Tissue.YELLOW_MARROW, f, 0.0).astype(np.float32)
        view += fm * (oed - yellow * (1.0 + 0.06 * model.texture[sl]))
    if seq.kind in ("stir", "fs"):
        # unsuppressed fat: the STIR inversion / spectral pulse misses the fat locally (a failed
        # suppression, or the off-resonance around metal), so the fat compartment shows as on a
        # plain spin echo with the same TR/TE
        plain = signal_table(SequenceTiming("se", seq.tr_ms, seq.te_ms))[1]
        for fail, strength in ((model.fat_fail, fat_fail_strength), (model.metal_fail, 1.0)):
            if fail is not None:
                sl, field = fail
                out[sl] += strength * field * plain[labels[sl]]
    return np.asarray(out, np.float32)
