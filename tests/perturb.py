# mypy: disallow-untyped-calls=False
"""Real hip protocols on phantom B studies: a copy of a generated study, perturbed the way hospitals
scan, with its truth updated (issue 11).

    python -m tests.perturb SRC DST --situation NAME [--side left|right] [--seed N]

SRC is a phantom B study folder (``dicom/S<nr>/*.dcm``, ``truth.json``, ``truth_oedema.nii.gz``,
``truth_oedema.npz``); it is only read. DST (must not exist) gets the perturbed copy: series that
change are rewritten as new series (new Series and SOP Instance UIDs, derived from the old ones
and the situation, so the same request gives the same UIDs; Study UID and patient data kept),
the truth mask is cut or resampled with the STIR, and ``truth.json`` says what was done
(``perturbations``) and, per hip, ``imaged``, ``metal`` and ``coverage`` (fractions of the head
sphere and of the original truth mask inside the new STIR's volume, slice gaps counting as inside).

Situations (the same as the own phantom's variants, ``workers/phantom/situations.py``):

- ``one_hip``: every series cropped in plane to a 180-240 mm field of view centred on one hip (by
  default the affected one); the other hip is not imaged.
- ``arthroplasty``: one hip (by default the normal one when exactly one is affected) replaced by a
  total hip arthroplasty placed from the truth's head centre, radius and neck axis: the socket and
  the resected head and neck filled with soft tissue, metal and polymer as voids, fat suppression
  failing around the metal on the fluid-sensitive series, and every series' signal displaced along
  the readout by the metal's off-resonance (pile-up rims and voids). That hip has no native head:
  no oedema in its truth, ``metal`` true.
- ``axial_stir``: the coronal STIR resampled (SimpleITK, linear, 5 sub-planes per slice) into an
  axial stack of 5 mm slices every 6 mm over the hips, replacing it; the truth mask resampled with it.
- ``gapped``: every second slice of the coronal T1 and STIR dropped (the one through the heads kept).
- ``partial_coverage``: the coronal T1 and STIR keep only the 6-8 slices through the heads.
- ``coil_shading``: every series multiplied by a receive-coil gain rising linearly from 0.3 to 1.5
  across the patient (x), dark side by seed.
- ``t1_shifted``: the T1's pixels resampled with a rigid motion (5 mm, up to 2 degrees), its header
  geometry kept: the anatomy in the T1 is displaced against the STIR.
- ``repack_12bit``: the STIR (taken to 16 bits first when it is stored in 12) repacked into 12 bits
  stored with a RescaleSlope.

Only classic single-frame series are handled (not the Enhanced MR ``enhanced`` case).
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import sys
import tempfile
from collections.abc import Callable
from copy import deepcopy
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import SimpleITK as sitk
from numpy.typing import NDArray
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid

from workers.phantom.geometry import SeriesGeometry, slice_points
from workers.phantom.implant import Implant, fat_failure
from workers.phantom.sdf import F32, Vec, sphere, unit
from workers.phantom.situations import (
    PARTIAL_SLICES,
    REPACK_BITS,
    SHADING_GAIN,
    metal_artefacts,
    one_hip_fov,
    shade,
    shading_sign,
    t1_motion,
)
from workers.phantom.truth import grid_image

SITUATIONS: tuple[str, ...] = ("one_hip", "arthroplasty", "axial_stir", "gapped", "partial_coverage",
                               "coil_shading", "t1_shifted", "repack_12bit")
SIDES = ("right", "left")
LABELS = {"right": 1, "left": 2}
TRUTH_FILE = "truth.json"
MASK_FILE = "truth_oedema.nii.gz"
NPZ_FILE = "truth_oedema.npz"
UID_NAMESPACE = "marrowmap-perturb-v1"
AXIAL_THICKNESS_MM = 5.0
AXIAL_SPACING_MM = 6.0  # 5 mm slices with a 1 mm gap
AXIAL_RANGE_MM = (-80.0, 70.0)  # axial slab from below the lesser trochanters to above the acetabular roofs
AXIAL_DEPTH = 0.75  # axial field of view: A-P depth / L-R width
NECK_LENGTH_PER_RADIUS = 2.1  # head centre to the neck base, in head radii (phantom B gives no neck length)
SHAFT_TILT_DEG = 8.0
HALO_LEVEL = 0.7  # unsuppressed fat near metal: this fraction of the series' 99th percentile
COVERAGE_MM = 1.5


class PerturbError(ValueError):
    """An unknown situation or side, a study this tool cannot perturb, or an existing destination."""


@dataclass
class Series:
    """One classic single-frame MR series, slices sorted along the slice normal, real-world values."""

    folder: str
    role: str  # phantom B's role: "t1" | "stir" | "t2fs"
    datasets: list[Dataset]
    real: F32  # (slices, rows, cols): stored values x RescaleSlope + RescaleIntercept
    geo: SeriesGeometry
    positions: list[NDArray[np.float64]] = field(default_factory=list)  # each slice's ImagePositionPatient
    changed: bool = False
    description: str | None = None  # a new SeriesDescription
    rescale: tuple[float, float] | None = None  # (slope, intercept) to store with; None: as before
    bits_stored: int | None = None

    def set(self, real: F32, geo: SeriesGeometry | None = None,
            positions: list[NDArray[np.float64]] | None = None) -> None:
        """New pixels (and geometry, and slice positions: by default the geometry's) for this series."""
        self.real, self.changed = np.asarray(real, np.float32), True
        if geo is not None:
            self.geo = geo
            self.positions = positions if positions is not None else [geo.slice_origin(k) for k in range(geo.n_slices)]


@dataclass
class Study:
    """A phantom B study in memory: its series, the truth and the truth mask on the STIR grid."""

    truth: dict[str, Any]
    series: list[Series]
    mask: NDArray[np.uint8]  # (slices, rows, cols) on the STIR's grid
    original_mask: NDArray[np.uint8] = field(default_factory=lambda: np.zeros((0, 0, 0), np.uint8))
    original_geo: SeriesGeometry | None = None

    @property
    def stir(self) -> Series:
        return next(s for s in self.series if s.role == "stir")

    def head(self, side: str) -> tuple[Vec, float]:
        """(centre, radius) of one femoral head from the truth."""
        s = self.truth["sides"][side]
        c = s["head_centre_lps_mm"]
        return (float(c[0]), float(c[1]), float(c[2])), float(s["head_radius_mm"])


def _uid(*parts: object) -> str:
    return str(generate_uid(entropy_srcs=[UID_NAMESPACE, *map(str, parts)]))


def _along(geo: SeriesGeometry, p: Vec) -> float:
    return float((np.asarray(p) - np.asarray(geo.origin)) @ geo.normal)


def _read_series(folder: Path, role: str) -> Series:
    datasets: list[Dataset] = [pydicom.dcmread(f) for f in sorted(folder.glob("*.dcm"))]
    if not datasets:
        raise PerturbError(f"{folder}: no DICOM files")
    if any(int(ds.get("NumberOfFrames", 1) or 1) > 1 for ds in datasets):
        raise PerturbError(f"{folder}: multi-frame (Enhanced MR) series are not supported")
    iop = np.asarray(datasets[0].ImageOrientationPatient, float)
    normal = np.cross(iop[:3], iop[3:])
    datasets.sort(key=lambda ds: float(np.asarray(ds.ImagePositionPatient, float) @ normal))
    real = np.stack([ds.pixel_array.astype(np.float32) * float(ds.get("RescaleSlope", 1.0) or 1.0)
                     + float(ds.get("RescaleIntercept", 0.0) or 0.0) for ds in datasets])
    positions = [np.asarray(ds.ImagePositionPatient, float) @ normal for ds in datasets]
    spacing = float(np.median(np.diff(positions))) if len(datasets) > 1 else float(datasets[0].SliceThickness)
    row_spacing, col_spacing = (float(v) for v in datasets[0].PixelSpacing)
    origin = np.asarray(datasets[0].ImagePositionPatient, float)
    geo = SeriesGeometry(
        row_dir=(float(iop[0]), float(iop[1]), float(iop[2])), col_dir=(float(iop[3]), float(iop[4]), float(iop[5])),
        origin=(float(origin[0]), float(origin[1]), float(origin[2])), rows=int(datasets[0].Rows),
        cols=int(datasets[0].Columns), row_spacing=row_spacing, col_spacing=col_spacing,
        n_slices=len(datasets), spacing=round(spacing, 4), thickness=float(datasets[0].SliceThickness))
    return Series(folder.name, role, datasets, real, geo,
                  [np.asarray(ds.ImagePositionPatient, float) for ds in datasets])


def load(src: Path) -> Study:
    """Read a phantom B study folder (``dicom/``, truth, mask)."""
    truth = json.loads((src / TRUTH_FILE).read_text(encoding="utf-8"))
    roles = {s["series_instance_uid"]: s["role"] for s in truth["series"]}
    series = []
    for folder in sorted(p for p in (src / "dicom").iterdir() if p.is_dir()):
        first = pydicom.dcmread(next(folder.glob("*.dcm")), stop_before_pixels=True)
        series.append(_read_series(folder, roles.get(str(first.SeriesInstanceUID), "other")))
    mask = sitk.GetArrayFromImage(sitk.ReadImage(str(src / MASK_FILE))).astype(np.uint8)
    study = Study(truth, series, mask)
    if not any(s.role == "stir" for s in series):
        raise PerturbError(f"{src}: no STIR series in the truth")
    if mask.shape != (study.stir.geo.n_slices, study.stir.geo.rows, study.stir.geo.cols):
        raise PerturbError(f"{src}: the truth mask is not on the STIR grid")
    study.original_mask, study.original_geo = mask.copy(), study.stir.geo
    return study


# ------------------------------------------------------------------ grid operations


def _crop(series: Series, r0: int, nr: int, c0: int, nc: int) -> None:
    g = series.geo
    offset = r0 * g.row_spacing * np.asarray(g.col_dir) + c0 * g.col_spacing * np.asarray(g.row_dir)
    origin = np.asarray(g.origin) + offset
    series.set(series.real[:, r0:r0 + nr, c0:c0 + nc],
               replace(g, origin=(float(origin[0]), float(origin[1]), float(origin[2])), rows=nr, cols=nc),
               [p + offset for p in series.positions])


def _keep_slices(series: Series, first: int, count: int, step: int) -> None:
    g = series.geo
    origin = g.slice_origin(first)
    picks = slice(first, first + (count - 1) * step + 1, step)
    series.set(series.real[picks],
               replace(g, origin=(float(origin[0]), float(origin[1]), float(origin[2])), n_slices=count,
                       spacing=g.spacing * step), series.positions[picks])


def _mid_slice(series: Series, study: Study) -> float:
    """Fractional slice index of the middle of the two femoral heads."""
    centres = [study.head(s)[0] for s in SIDES]
    return _along(series.geo, tuple(np.mean(centres, axis=0))) / series.geo.spacing


def _coronal(study: Study) -> list[Series]:
    """The T1 and STIR stacks of the study whose slices are coronal."""
    return [s for s in study.series if s.role in ("t1", "stir") and abs(s.geo.normal[1]) > 0.7]


# ------------------------------------------------------------------ situations


def one_hip(study: Study, side: str, seed: int) -> dict[str, Any]:
    """Crop every series in plane to a one-hip field of view centred on ``side``."""
    fov = one_hip_fov(seed)
    centre, _ = study.head(side)
    for s in study.series:
        g = s.geo
        _, r, c = g.lps_to_index(centre)
        nr, nc = min(g.rows, int(round(fov / g.row_spacing))), min(g.cols, int(round(fov / g.col_spacing)))
        r0 = int(np.clip(round(r - (nr - 1) / 2.0), 0, g.rows - nr))
        c0 = int(np.clip(round(c - (nc - 1) / 2.0), 0, g.cols - nc))
        if s is study.stir:
            study.mask = study.mask[:, r0:r0 + nr, c0:c0 + nc]
        _crop(s, r0, nr, c0, nc)
    return {"side": side, "field_of_view_mm": fov}


def implant_for(study: Study, side: str) -> Implant:
    """The arthroplasty for one hip of the study, from the truth's head centre, radius and neck axis."""
    centre, radius = study.head(side)
    sign = 1 if side == "left" else -1
    axis = unit(study.truth["sides"][side]["neck_axis_lps"])
    neck = axis if axis[0] * sign > 0 else -axis  # head -> neck base runs laterally
    tilt = math.radians(SHAFT_TILT_DEG)
    return Implant.for_hip(side, centre, radius, (float(neck[0]), float(neck[1]), float(neck[2])),
                           NECK_LENGTH_PER_RADIUS * radius, (sign * math.sin(tilt), 0.0, math.cos(tilt)))


def _implant_image(s: Series, implant: Implant, fluid: bool) -> F32:
    """One series with the implant in place (before the readout displacement)."""
    g = s.geo
    c = np.asarray(implant.centre)
    n = np.asarray(implant.neck_dir)
    neck_radius = 0.62 * (implant.cup_radius - 3.6) + 2.0
    out = s.real.copy()
    offsets = (-g.thickness / 3.0, 0.0, g.thickness / 3.0)
    ring, replaced, void, halo = [], [], [], []
    lo, hi = implant.bbox(5.0)
    for k in range(g.n_slices):
        x, y, z = slice_points(g, k, 0.0)
        d = np.sqrt((x - c[0]) ** 2 + (y - c[1]) ** 2 + (z - c[2]) ** 2)
        t = (x - c[0]) * n[0] + (y - c[1]) * n[1] + (z - c[2]) * n[2]
        radial = np.sqrt(np.maximum(d**2 - t**2, 0.0))
        ring.append((d > implant.cup_radius + 5.0) & (d < implant.cup_radius + 20.0))
        replaced.append((d < implant.cup_radius) | ((t > 0) & (t < implant.resection_mm) & (radial < neck_radius)))
        solid = np.zeros_like(x)
        near = (x >= lo[0]) & (x <= hi[0]) & (y >= lo[1]) & (y <= hi[1]) & (z >= lo[2]) & (z <= hi[2])
        for off in offsets:
            p = [a[near] for a in slice_points(g, k, off)]
            solid[near] += ((implant.metal_sdf(*p) < 0) | (implant.polymer_sdf(*p) < 0)).astype(np.float32)
        void.append(solid / len(offsets))
        halo.append(fat_failure(implant, x, y, z) if fluid else np.zeros_like(x))
    around = np.asarray(ring)
    soft = float(np.median(out[around])) if around.any() else float(np.median(out))
    out[np.asarray(replaced)] = soft
    out += np.asarray(halo) * HALO_LEVEL * float(np.percentile(s.real, 99))
    return np.asarray(out * (1.0 - np.asarray(void)), np.float32)


def arthroplasty(study: Study, side: str, seed: int) -> dict[str, Any]:
    """Replace one hip by a total hip arthroplasty on every series; that hip loses its oedema truth."""
    implant = implant_for(study, side)
    for s in study.series:
        ds = s.datasets[0]
        image = _implant_image(s, implant, fluid=s.role in ("stir", "t2fs"))
        s.set(metal_artefacts(image, s.geo, float(ds.get("PixelBandwidth", 250.0) or 250.0),
                              str(ds.get("InPlanePhaseEncodingDirection", "ROW") or "ROW"), implant))
    study.mask = np.where(study.mask == LABELS[side], 0, study.mask).astype(np.uint8)
    truth_side = study.truth["sides"][side]
    truth_side.update({"native_oedema_volume_ml": truth_side["oedema_volume_ml"], "present": False,
                       "pattern": "none", "oedema_volume_ml": 0.0, "oedema_regions": [],
                       "femoral_head_involvement_pct": 0.0, "effusion": False, "effusion_volume_ml": 0.0,
                       "metal": True})
    return {"side": side, "implant": implant.to_dict()}


def axial_stir(study: Study, side: str, seed: int) -> dict[str, Any]:
    """Resample the STIR into an axial stack of 5 mm slices every 6 mm; the mask with it.

    The axial field of view is 3/4 as deep (A-P) as it is wide; where it reaches beyond the
    coronal slab there is no data, and background (air) values drawn from the STIR's corners stand in.
    """
    stir = study.stir
    g = stir.geo
    corners = np.array([g.index_to_lps(k, r, c) for k in (0, g.n_slices - 1) for r in (0, g.rows - 1)
                        for c in (0, g.cols - 1)])
    lo, hi = corners.min(axis=0), corners.max(axis=0)
    z_mid = float(np.mean([study.head(s)[0][2] for s in SIDES]))
    z0 = max(z_mid + AXIAL_RANGE_MM[0], lo[2] + AXIAL_THICKNESS_MM / 2.0)
    z1 = min(z_mid + AXIAL_RANGE_MM[1], hi[2] - AXIAL_THICKNESS_MM / 2.0)
    n = int((z1 - z0) // AXIAL_SPACING_MM) + 1
    ps = g.col_spacing
    cols = int((hi[0] - lo[0]) // ps) + 1
    rows = max(int(round(AXIAL_DEPTH * cols)), int((hi[1] - lo[1]) // ps) + 1)
    y0 = (lo[1] + hi[1]) / 2.0 - (rows - 1) * ps / 2.0
    axial = SeriesGeometry(row_dir=(1.0, 0.0, 0.0), col_dir=(0.0, 1.0, 0.0), origin=(float(lo[0]), y0, z0),
                           rows=rows, cols=cols, row_spacing=ps, col_spacing=ps, n_slices=n,
                           spacing=AXIAL_SPACING_MM, thickness=AXIAL_THICKNESS_MM)
    sub = int(AXIAL_THICKNESS_MM)  # 1 mm sub-planes across each slice, averaged
    step = int(AXIAL_SPACING_MM)
    fine = replace(axial, origin=(axial.origin[0], y0, z0 - (sub - 1) / 2.0), n_slices=(n - 1) * step + sub,
                   spacing=1.0, thickness=1.0)
    picks = [k * step + j for k in range(n) for j in range(sub)]
    reference = grid_image(np.zeros((fine.n_slices, fine.rows, fine.cols), np.float32), fine)

    def resampled(values: NDArray[Any]) -> F32:
        img = sitk.Resample(grid_image(np.asarray(values, np.float32), g), reference, sitk.Transform(),
                            sitk.sitkLinear, 0.0)
        arr = sitk.GetArrayFromImage(img)[picks]
        return np.asarray(arr.reshape(n, sub, fine.rows, fine.cols).mean(axis=1), np.float32)

    mask = np.zeros((n, axial.rows, axial.cols), np.uint8)
    for label in LABELS.values():
        mask[resampled(study.mask == label) >= 0.5] = label
    covered = resampled(np.ones_like(stir.real))
    air = np.concatenate([stir.real[:, a, b].ravel() for a in (slice(0, 16), slice(-16, None))
                          for b in (slice(0, 16), slice(-16, None))])
    background = np.random.default_rng([seed, 0xA1]).choice(air, size=covered.shape)
    stir.set(resampled(stir.real) + (1.0 - covered) * background, axial)
    study.mask = mask
    stir.description = str(stir.datasets[0].get("SeriesDescription", "STIR")).replace("COR", "AX")
    return {"slice_thickness_mm": AXIAL_THICKNESS_MM, "spacing_mm": AXIAL_SPACING_MM, "slices": n,
            "data_rows_mm": [round(float(lo[1]), 2), round(float(hi[1]), 2)]}


def gapped(study: Study, side: str, seed: int) -> dict[str, Any]:
    """Drop every second slice of the coronal T1 and STIR, keeping the one through the heads."""
    for s in _coronal(study):
        first = int(round(_mid_slice(s, study))) % 2
        count = (s.geo.n_slices - first + 1) // 2
        if s is study.stir:
            study.mask = study.mask[first::2][:count]
        _keep_slices(s, first, count, 2)
    return {"kept": "every second slice, the one through the middle of the heads included"}


def partial_coverage(study: Study, side: str, seed: int) -> dict[str, Any]:
    """Keep only the middle 6-8 slices (by seed) of the coronal T1 and STIR, through the heads."""
    count = PARTIAL_SLICES[seed % len(PARTIAL_SLICES)]
    for s in _coronal(study):
        keep = min(count, s.geo.n_slices)
        first = int(np.clip(round(_mid_slice(s, study) - (keep - 1) / 2.0), 0, s.geo.n_slices - keep))
        if s is study.stir:
            study.mask = study.mask[first:first + keep]
        _keep_slices(s, first, keep, 1)
    return {"slices": count}


def coil_shading(study: Study, side: str, seed: int) -> dict[str, Any]:
    """Every series times a left-right receive-coil gain from 0.3 to 1.5."""
    for s in study.series:
        s.set(shade(s.real, s.geo, seed))
    return {"dark_side": "right" if shading_sign(seed) > 0 else "left", "gain_range": list(SHADING_GAIN)}


def t1_shifted(study: Study, side: str, seed: int) -> dict[str, Any]:
    """Resample the T1 with a rigid motion (5 mm, <= 2 degrees), its header geometry unchanged."""
    centres = {s: study.head(s)[0] for s in SIDES}
    motion = t1_motion((centres["right"], centres["left"]), seed)
    transform = sitk.AffineTransform(3)
    back = motion.matrix.T
    transform.SetMatrix([float(v) for v in back.ravel()])
    transform.SetCenter(motion.centre)
    transform.SetTranslation([float(v) for v in -(back @ np.asarray(motion.translation_mm))])
    for s in study.series:
        if s.role == "t1":
            img = grid_image(s.real, s.geo)
            s.set(sitk.GetArrayFromImage(sitk.Resample(img, img, transform, sitk.sitkLinear, 0.0)))
    return motion.to_dict(centres)


def repack_12bit(study: Study, side: str, seed: int) -> dict[str, Any]:
    """Store the STIR in 12 bits with a RescaleSlope (a 12-bit STIR is taken to 16 bits first)."""
    stir = study.stir
    bits = int(stir.datasets[0].BitsStored)
    real = stir.real * (2 ** (16 - bits) if bits < 16 else 1)
    slope = math.ceil(max(float(real.max()), 1.0) / (2**REPACK_BITS - 1) * 1e4) / 1e4
    stir.set(real)
    stir.rescale, stir.bits_stored = (slope, 0.0), REPACK_BITS
    return {"bits_stored": REPACK_BITS, "rescale_slope": slope, "scaled_from_bits": bits}


PERTURBATIONS: dict[str, Callable[[Study, str, int], dict[str, Any]]] = {
    "one_hip": one_hip, "arthroplasty": arthroplasty, "axial_stir": axial_stir, "gapped": gapped,
    "partial_coverage": partial_coverage, "coil_shading": coil_shading, "t1_shifted": t1_shifted,
    "repack_12bit": repack_12bit,
}


def default_side(truth: dict[str, Any], situation: str, seed: int) -> str:
    """The hip a situation acts on: one_hip the affected hip, arthroplasty the normal one (when
    exactly one hip is affected), else by seed."""
    affected = [s for s in SIDES if truth["sides"][s]["present"]]
    if len(affected) == 1:
        other = next(s for s in SIDES if s != affected[0])
        return other if situation == "arthroplasty" else affected[0]
    return SIDES[seed % 2]


# ------------------------------------------------------------------ writing


def _stored(real: F32, ds: Dataset, rescale: tuple[float, float] | None, bits: int | None
            ) -> tuple[NDArray[np.uint16], float, float, int]:
    """Stored values for real-world values: (pixels, slope, intercept, bits stored); a slope is set
    when the values would not fit the bits otherwise."""
    bits = bits or int(ds.BitsStored)
    slope, intercept = rescale or (float(ds.get("RescaleSlope", 1.0) or 1.0),
                                   float(ds.get("RescaleIntercept", 0.0) or 0.0))
    top = 2**bits - 1
    values = (np.asarray(real, np.float64) - intercept) / slope
    if values.max() > top:
        slope = math.ceil(slope * float(values.max()) / top * 1e4) / 1e4
        values = (np.asarray(real, np.float64) - intercept) / slope
    return np.clip(np.rint(values), 0, top).astype(np.uint16), slope, intercept, bits


def _ds(v: float) -> str:
    """A decimal string (at most 16 characters) that reads back as ``v`` to 10 significant digits."""
    for digits in range(10, 3, -1):
        text = f"{v:.{digits}g}"
        if len(text) <= 16:
            return "0" if text == "-0" else text
    return f"{v:.3g}"


def _write_series(out: Path, s: Series, tag: str) -> dict[str, Any]:
    """Write a changed series as a new one; returns the fields of its truth entry that changed."""
    g = s.geo
    old_uid = str(s.datasets[0].SeriesInstanceUID)
    series_uid = _uid("series", old_uid, tag)
    pixels, slope, intercept, bits = _stored(s.real, s.datasets[0], s.rescale, s.bits_stored)
    rescaled = slope != 1.0 or intercept != 0.0 or "RescaleSlope" in s.datasets[0]
    out.mkdir(parents=True, exist_ok=True)
    for k in range(g.n_slices):
        ds = deepcopy(s.datasets[k] if len(s.datasets) == g.n_slices else s.datasets[0])
        sop = _uid("sop", old_uid, tag, k)
        ds.set_pixel_data(np.ascontiguousarray(pixels[k]), "MONOCHROME2", bits, generate_instance_uid=False)
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = pydicom.uid.UID(sop)
        ds.SeriesInstanceUID = series_uid
        ds.InstanceNumber = k + 1
        pos = s.positions[k]
        ds.ImagePositionPatient = [_ds(v) for v in pos]
        ds.ImageOrientationPatient = [_ds(v) for v in (*g.row_dir, *g.col_dir)]
        ds.PixelSpacing = [_ds(g.row_spacing), _ds(g.col_spacing)]
        ds.SliceThickness = _ds(g.thickness)
        ds.SpacingBetweenSlices = _ds(g.spacing)
        ds.SliceLocation = _ds(float(pos @ g.normal))
        for keyword in ("SmallestImagePixelValue", "LargestImagePixelValue"):
            if keyword in ds:
                delattr(ds, keyword)
        if rescaled:
            ds.RescaleSlope, ds.RescaleIntercept = _ds(slope), _ds(intercept)
            ds.RescaleType = ds.get("RescaleType", "US")
        if s.description is not None:
            ds.SeriesDescription = s.description
        ds.save_as(out / f"IM{k + 1:04d}.dcm", enforce_file_format=True)
    plane = "axial" if abs(g.normal[2]) > 0.7 else "coronal" if abs(g.normal[1]) > 0.7 else "sagittal"
    return {"series_instance_uid": series_uid, "n_files": g.n_slices, "n_slices": g.n_slices, "rows": g.rows,
            "columns": g.cols, "pixel_spacing_mm": [g.row_spacing, g.col_spacing],
            "slice_thickness_mm": g.thickness, "spacing_between_slices_mm": g.spacing,
            "image_orientation_patient": [*g.row_dir, *g.col_dir], "first_slice_ipp": [float(v) for v in g.origin],
            "plane": plane, "transfer_syntax_uid": str(pydicom.uid.ExplicitVRLittleEndian),
            "rescale_slope": slope if rescaled else None, "rescale_intercept": intercept if rescaled else None,
            "instance_order": "along_normal", **({"description": s.description} if s.description else {})}


def _coverage(study: Study, side: str) -> dict[str, float]:
    """Fractions of the head sphere and of the original truth mask's voxels of this side that lie
    inside the new STIR's volume."""
    geo = study.stir.geo
    (cx, cy, cz), radius = study.head(side)
    axis = np.arange(-radius, radius + COVERAGE_MM, COVERAGE_MM, dtype=np.float32)
    x, y, z = (a.ravel() for a in np.meshgrid(axis + cx, axis + cy, axis + cz, indexing="ij"))
    ball = sphere(x, y, z, (cx, cy, cz), radius) < 0
    out = {"head": round(float(geo.contains(x[ball], y[ball], z[ball]).mean()), 3)}
    assert study.original_geo is not None
    voxels = np.argwhere(study.original_mask == LABELS[side]).astype(np.float64)
    if len(voxels):
        g = study.original_geo
        points = (np.asarray(g.origin) + np.outer(voxels[:, 0] * g.spacing, g.normal)
                  + np.outer(voxels[:, 1] * g.row_spacing, g.col_dir) + np.outer(voxels[:, 2] * g.col_spacing, g.row_dir))
        out["oedema"] = round(float(geo.contains(*points.T.astype(np.float32)).mean()), 3)
    return out


def _update_truth(study: Study, record: dict[str, Any], written: dict[str, dict[str, Any]]) -> None:
    truth = study.truth
    for entry in truth["series"]:
        old = entry["series_instance_uid"]
        if old in written:
            if entry["role"] == "stir":
                truth["stir_series_instance_uid"] = written[old]["series_instance_uid"]
            entry.update(written[old])
    geo = study.stir.geo
    voxel_ml = geo.row_spacing * geo.col_spacing * geo.spacing / 1000.0
    centres = np.array([study.head(s)[0] for s in SIDES], np.float32)
    inside = geo.contains(centres[:, 0], centres[:, 1], centres[:, 2])
    for i, side in enumerate(SIDES):
        entry = truth["sides"][side]
        entry["oedema_mask_volume_ml"] = round(float(np.count_nonzero(study.mask == LABELS[side])) * voxel_ml, 3)
        entry["imaged"] = bool(inside[i])
        entry["coverage"] = _coverage(study, side)
        entry.setdefault("metal", False)
    truth.setdefault("perturbations", []).append(record)


def perturb(src: Path, dst: Path, situation: str, *, side: str | None = None, seed: int | None = None) -> Path:
    """Write a perturbed copy of the phantom B study ``src`` into ``dst`` (which must not exist)."""
    if situation not in PERTURBATIONS:
        raise PerturbError(f"unknown situation {situation!r}; expected one of {', '.join(SITUATIONS)}")
    if side is not None and side not in SIDES:
        raise PerturbError(f"side must be 'left' or 'right', not {side!r}")
    if dst.exists():
        raise PerturbError(f"{dst} exists")
    study = load(src)
    seed = int(study.truth["seed"]) if seed is None else seed
    side = side or default_side(study.truth, situation, seed)
    record = {"situation": situation, "seed": seed, **PERTURBATIONS[situation](study, side, seed)}
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dst.name}.", dir=dst.parent))
    try:
        written = {}
        tag = json.dumps(record, sort_keys=True)
        for s in study.series:
            target = tmp / "dicom" / s.folder
            if s.changed:
                written[str(s.datasets[0].SeriesInstanceUID)] = _write_series(target, s, tag)
            else:
                shutil.copytree(src / "dicom" / s.folder, target)
        _update_truth(study, record, written)
        mask_img = grid_image(study.mask, study.stir.geo)
        sitk.WriteImage(mask_img, str(tmp / MASK_FILE), True)
        affine = np.eye(4)
        affine[:3, :3] = np.asarray(mask_img.GetDirection()).reshape(3, 3) * np.asarray(mask_img.GetSpacing())
        affine[:3, 3] = mask_img.GetOrigin()
        axes = str(np.load(src / NPZ_FILE)["axes"]) if (src / NPZ_FILE).is_file() else "mask[k, j, i]"
        np.savez_compressed(tmp / NPZ_FILE, mask=study.mask, affine_ijk_to_lps=affine, axes=np.asarray(axes))
        (tmp / TRUTH_FILE).write_text(json.dumps(study.truth, indent=1, sort_keys=True) + "\n", encoding="utf-8")
        tmp.rename(dst)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dst


def main(argv: list[str] | None = None) -> int:
    """The command line: perturb one study, print what the truth now says per hip."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("src", type=Path)
    parser.add_argument("dst", type=Path)
    parser.add_argument("--situation", required=True, choices=SITUATIONS)
    parser.add_argument("--side", choices=SIDES, default=None, help="the hip (default: see the situation)")
    parser.add_argument("--seed", type=int, default=None, help="default: the study's seed")
    args = parser.parse_args(argv)
    try:
        out = perturb(args.src, args.dst, args.situation, side=args.side, seed=args.seed)
    except PerturbError as exc:
        print(f"perturb: {exc}", file=sys.stderr)
        return 2
    truth = json.loads((out / TRUTH_FILE).read_text(encoding="utf-8"))
    print(json.dumps(truth["perturbations"][-1], sort_keys=True)[:300])
    for side in SIDES:
        s = truth["sides"][side]
        print(f"{side}: present {s['present']} {s['oedema_volume_ml']} mL (mask {s['oedema_mask_volume_ml']} mL), "
              f"imaged {s['imaged']}, metal {s['metal']}, coverage {s['coverage']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
