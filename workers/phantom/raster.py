"""Draw the anatomy into a regular LPS model grid, then turn it into signal per sequence.

The model grid is axis-aligned in LPS (array index order x, y, z). Each shape is
evaluated only inside its bounding box, so a 1 mm grid of the whole pelvis takes a
few seconds. Series images are sampled from the signal volume (``render``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage

from workers.phantom.anatomy import Anatomy, Femur, muscle_partition
from workers.phantom.pathology import (
    SidePathology,
    avn_labels,
    capsule_wall,
    effusion_fraction,
    fat_sat_failure_field,
    oedema_fraction,
)
from workers.phantom.sdf import F32, Vec, capsule, ellipsoid, sphere
from workers.phantom.tissue import FAT_FRACTION, TISSUES, SequenceTiming, Tissue, signal_table

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

    def paint(self, lo: Vec, hi: Vec, label: Tissue, inside: object) -> None:
        """Set ``label`` where ``inside(x, y, z)`` is true within the box."""
        ax = self.axes(lo, hi)
        if ax is None:
            return
        sl, x, y, z = ax
        mask = inside(x, y, z)  # type: ignore[operator]
        view = self.labels[sl]
        view[np.broadcast_to(mask, view.shape)] = label


@dataclass
class Model:
    """The rasterised patient: labels plus per-hip oedema fraction boxes."""

    canvas: Canvas
    anatomy: Anatomy
    oedema_boxes: list[tuple[tuple[slice, slice, slice], F32]]
    fat_fail: F32 | None
    texture: F32


def _box(c: Vec, r: Vec, pad: float = 2.0) -> tuple[Vec, Vec]:
    return ((c[0] - r[0] - pad, c[1] - r[1] - pad, c[2] - r[2] - pad),
            (c[0] + r[0] + pad, c[1] + r[1] + pad, c[2] + r[2] + pad))


def _seg_box(a: Vec, b: Vec, r: float) -> tuple[Vec, Vec]:
    lo = tuple(min(a[i], b[i]) - r - 2.0 for i in range(3))
    hi = tuple(max(a[i], b[i]) + r + 2.0 for i in range(3))
    return (lo[0], lo[1], lo[2]), (hi[0], hi[1], hi[2])


def coarse_noise(shape: tuple[int, int, int], h: float, wavelength_mm: float,
                 rng: np.random.Generator) -> F32:
    """A smooth random field (unit std) on the grid, from an upsampled coarse lattice."""
    step = max(wavelength_mm / 3.0, h)
    cshape = tuple(int(np.ceil(n * h / step)) + 3 for n in shape)
    coarse = ndimage.gaussian_filter(rng.standard_normal(cshape).astype(np.float32), 1.0)
    coarse /= max(float(coarse.std()), 1e-6)
    zoom = [shape[i] / (cshape[i] - 2) for i in range(3)]
    out = ndimage.zoom(coarse, zoom, order=1)[: shape[0], : shape[1], : shape[2]]
    return np.asarray(out, np.float32)


def rasterise(anat: Anatomy, sides: dict[str, SidePathology], h: float,
              fat_sat_failure_side: str | None = None) -> Model:
    """Draw the patient on a grid of spacing ``h`` mm."""
    cv = Canvas.create(h)
    body_lo, body_hi = MODEL_LO, MODEL_HI
    ax = cv.axes(body_lo, body_hi)
    assert ax is not None
    _, X, Y, Z = ax
    # slab by slab along z keeps temporaries small
    for k in range(cv.shape[2]):
        z = Z[:, :, k:k + 1]
        body = anat.body_sdf(X, Y, z)
        lab = cv.labels[:, :, k:k + 1]
        lab[body < 0] = Tissue.FAT
        deep = body < -anat.subcut_thickness(X, Y, z)
        lab[deep] = Tissue.MUSCLE
        lab[(body < 0) & (body >= -1.8)] = Tissue.SKIN
    _paint_muscle_septa(cv, anat)
    # abdominopelvic cavity and its content
    cv.paint((-120.0, -110.0, -60.0), (120.0, 70.0, 195.0), Tissue.PELVIC_FAT,
             lambda x, y, z: anat.pelvic_cavity_sdf(x, y, z) < 0)
    _paint_bowel(cv, anat)
    br = anat.bladder_radii
    bc: Vec = (0.0, -36.0, -4.0 + br[2] * 0.3)
    cv.paint(*_box(bc, br, 4.0), Tissue.MUSCLE, lambda x, y, z: ellipsoid(x, y, z, bc, br) < 2.2)
    cv.paint(*_box(bc, br), Tissue.URINE, lambda x, y, z: ellipsoid(x, y, z, bc, br) < 0)
    rect_a: Vec = (0.0, 52.0, -55.0)
    rect_b: Vec = (0.0, 48.0, 40.0)
    cv.paint(*_seg_box(rect_a, rect_b, 16.0), Tissue.BOWEL,
             lambda x, y, z: capsule(x, y, z, rect_a, rect_b, 13.0, 16.0) < 0)
    cv.paint(*_seg_box(rect_a, rect_b, 16.0), Tissue.GAS,
             lambda x, y, z: capsule(x, y, z, (0.0, 46.0, 10.0), (0.0, 46.0, 28.0), 5.0, 6.0) < 0)
    cv.paint((-150.0, -110.0, -60.0), (150.0, 90.0, 195.0), Tissue.MUSCLE,
             lambda x, y, z: anat.iliacus_sdf(x, y, z) < 0)
    for kind, a, b, r in anat.vessels():
        label = {"artery": Tissue.ARTERY, "vein": Tissue.VEIN, "nerve": Tissue.NERVE}[kind]
        cv.paint(*_seg_box(a, b, r), label,
                 lambda x, y, z, a=a, b=b, r=r: capsule(x, y, z, a, b, r, r) < 0)
    _paint_pelvic_bones(cv, anat)
    boxes = []
    for side, fem in (("right", anat.right), ("left", anat.left)):
        boxes.append(_paint_hip(cv, anat, fem, sides[side]))
    for _, c in anat.markers:
        cv.paint(*_box(c, (6.0, 6.0, 6.0)), Tissue.MARKER,
                 lambda x, y, z, c=c: sphere(x, y, z, c, 5.0) < 0)
    fat_fail = None
    if fat_sat_failure_side is not None:
        fat_fail = fat_sat_failure_field(anat, fat_sat_failure_side, X, Y, Z)
    tex = coarse_noise(cv.shape, h, 7.0, np.random.default_rng([anat.seed, 0x7E4]))
    return Model(canvas=cv, anatomy=anat, oedema_boxes=[b for b in boxes if b is not None],
                 fat_fail=fat_fail, texture=tex)


def _paint_muscle_septa(cv: Canvas, anat: Anatomy) -> None:
    """Split the muscle compartment into bellies with thin fat planes between them."""
    muscles = anat.muscles()
    best = np.full(cv.shape, 9.0, np.float32)
    second = np.full(cv.shape, 9.0, np.float32)
    for c, r in muscles:
        ax = cv.axes(*_box(c, (r[0] * 1.35, r[1] * 1.35, r[2] * 1.35)))
        if ax is None:
            continue
        sl, x, y, z = ax
        b, s2 = muscle_partition(x, y, z, [(c, r)])
        bv, sv = best[sl], second[sl]
        sv[...] = np.minimum(sv, np.maximum(bv, b))
        bv[...] = np.minimum(bv, b)
        del s2
    septum = (second - best) < 0.035 * (best + 0.5)
    gap = best > 1.3
    muscle = cv.labels == Tissue.MUSCLE
    cv.labels[muscle & (septum | gap)] = Tissue.FAT


def _paint_bowel(cv: Canvas, anat: Anatomy) -> None:
    ax = cv.axes((-120.0, -110.0, 25.0), (120.0, 70.0, 195.0))
    assert ax is not None
    sl, x, y, z = ax
    n = coarse_noise((sl[0].stop - sl[0].start, sl[1].stop - sl[1].start, sl[2].stop - sl[2].start), cv.h, 26.0,
                     np.random.default_rng([anat.seed, 0xB0E]))
    view = cv.labels[sl]
    cavity = (view == Tissue.PELVIC_FAT) & np.broadcast_to(z > 30.0 + 0.0 * x + 0.0 * y, view.shape)
    view[cavity & (n > -0.35)] = Tissue.BOWEL
    view[cavity & (n > 0.55)] = Tissue.BOWEL_FLUID
    view[cavity & (n > 1.7)] = Tissue.GAS


def _paint_pelvic_bones(cv: Canvas, anat: Anatomy) -> None:
    lo: Vec = (-170.0, -95.0, -90.0)
    hi: Vec = (170.0, 125.0, 175.0)
    ax = cv.axes(lo, hi)
    assert ax is not None
    sl, x, y, z = ax
    view = cv.labels[sl]
    for k in range(view.shape[2]):
        zk = z[:, :, k:k + 1]
        d = anat.pelvis_bone_sdf(x, y, zk)
        vk = view[:, :, k:k + 1]
        vk[d < 0] = Tissue.CORTEX
        vk[d < -1.8] = Tissue.RED_MARROW
        vk[anat.disc_sdf(x, y, zk) < 0] = Tissue.DISC


def _paint_hip(cv: Canvas, anat: Anatomy, fem: Femur,
               side: SidePathology) -> tuple[tuple[slice, slice, slice], F32] | None:
    lo, hi = fem.bbox()
    ax = cv.axes(lo, hi)
    if ax is None:
        return None
    sl, x, y, z = ax
    view = cv.labels[sl]
    full = np.broadcast_shapes(x.shape, y.shape, z.shape)
    X, Y, Z = (np.broadcast_to(a, full) for a in (x, y, z))
    eff = effusion_fraction(anat, fem, side, X, Y, Z)
    view[capsule_wall(anat, fem, side, X, Y, Z)] = Tissue.CAPSULE
    view[eff >= 0.5] = Tissue.JOINT_FLUID
    view[anat.acetabular_cartilage(X, Y, Z, fem)] = Tissue.CARTILAGE
    view[anat.labrum(X, Y, Z, fem)] = Tissue.LABRUM
    d = fem.sdf(X, Y, Z)
    head = sphere(X, Y, Z, fem.head_centre, fem.head_radius)
    view[(head < 1.8) & (d >= 0)] = Tissue.CARTILAGE
    view[d < 0] = Tissue.CORTEX
    view[d < -fem.cortex_mm(X, Y, Z)] = Tissue.YELLOW_MARROW
    # the faint physeal scar across the head
    scar = np.abs(fem.along_neck(X, Y, Z) - 0.55 * fem.head_neck_junction) < 0.8
    view[scar & (view == Tissue.YELLOW_MARROW) & (head < -3.0)] = Tissue.RED_MARROW
    if side.avn:
        avn = avn_labels(fem, X, Y, Z)
        view[avn > 0] = avn[avn > 0]
    f = oedema_fraction(anat, fem, side, X, Y, Z)
    if not np.any(f > 0):
        return None
    return sl, f


def signal_volume(model: Model, seq: SequenceTiming, fat_fail_strength: float = 1.0) -> F32:
    """Noise-free signal of every model voxel for one sequence (texture, oedema, fat-sat failure)."""
    table, fat = signal_table(seq)
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
    if model.fat_fail is not None and seq.kind in ("stir", "fs"):
        # unsuppressed fat: the STIR inversion / spectral pulse misses the fat locally
        unsup = np.array([TISSUES[t].pd * FAT_FRACTION[t] for t in Tissue], np.float32)
        full_fat = float(fat[Tissue.FAT]) / max(float(unsup[Tissue.FAT]), 1e-6)
        if seq.kind == "stir":
            se = SequenceTiming("se", seq.tr_ms, seq.te_ms)
            full_fat = float(signal_table(se)[1][Tissue.FAT]) / float(unsup[Tissue.FAT])
        else:
            full_fat = float(fat[Tissue.FAT]) / float(unsup[Tissue.FAT])
        out += fat_fail_strength * model.fat_fail * full_fat * unsup[labels]
    return np.asarray(out, np.float32)
