"""Ground truth of a phantom study: continuous volumes from the model, masks on a series grid."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk
from numpy.typing import NDArray

from workers.phantom.anatomy import Anatomy, Femur
from workers.phantom.geometry import SeriesGeometry, slice_points, subsample_offsets
from workers.phantom.pathology import (
    TRUTH_THRESHOLD,
    SidePathology,
    avn_axis,
    avn_distance,
    effusion_fraction,
    oedema_fraction,
)
from workers.phantom.sdf import Vec

REGION_NAMES = ("head", "neck", "intertrochanteric")
FINE_MM = 0.75  # grid of the "continuous" volumes (midpoint rule; < 1 % error on these shapes)
REGION_MIN_ML = 0.5  # a region counts as involved above this oedema volume
SIDE_LABEL = {"right": 1, "left": 2}
#: A fluid layer at least this thick around head and neck distends the capsule: an effusion. A
#: thinner layer (e.g. the residue of a resolving effusion) is trace fluid, not an effusion.
EFFUSION_MIN_LAYER_MM = 2.0
COVERAGE_MM = 1.5  # lattice of the coverage fractions
INTERTROCHANTERIC_MM = 20.0  # for coverage, the intertrochanteric region ends this far past the neck base


@dataclass(frozen=True)
class SideTruth:
    """What is true about one hip."""

    present: bool
    pattern: str  # "diffuse" | "focal" | "none"
    volume_ml: float  # continuous oedema volume from the model
    mask_volume_ml: float  # volume of the truth mask on the fluid-sensitive grid
    region_volumes_ml: dict[str, float]
    regions: list[str]
    effusion: bool
    effusion_volume_ml: float
    effusion_mask_volume_ml: float
    head_centre_lps_mm: list[float]
    head_radius_mm: float
    neck_axis: dict[str, Any]
    avn_lesion: dict[str, Any] | None = None
    fat_sat_failure: bool = False
    artefact_corrupted: bool = False  # motion ghosts or wrap-around over this head (variants motion, wrap)
    imaged: bool = True  # the head centre lies inside the fluid-sensitive series (one_hip_*: the other hip does not)
    coverage: dict[str, float] = field(default_factory=dict)  # see ``coverage``
    metal: bool = False  # a total hip arthroplasty (arthroplasty_*): not assessable, no native head


@dataclass(frozen=True)
class SeriesTruth:
    series_instance_uid: str
    series_number: int
    folder: str  # the series folder under dicom/
    description: str
    contrast: str  # "t1" | "stir" | "t2fs" | "localizer"
    plane: str
    enhanced: bool
    n_files: int
    geometry: dict[str, Any]


@dataclass(frozen=True)
class GroundTruth:
    """Everything the generator knows about a study (``truth/truth.json``)."""

    case: str
    seed: int
    variants: list[str]
    small: bool
    patient_id: str
    issuer_of_patient_id: str
    study_instance_uid: str
    study_date: str
    accession_number: str
    frame_of_reference_uid: str
    fluid_sensitive_series_uid: str
    t1_series_uid: str | None
    series: list[SeriesTruth]
    sides: dict[str, SideTruth]
    markers: list[dict[str, Any]]
    mask_grid: dict[str, Any]
    files: dict[str, str] = field(default_factory=dict)
    artefact: dict[str, Any] | None = None  # motion/wrap variants: kind, phase-encode direction, corrupted sides
    #: what the real-protocol variants did (one-hip field of view, implant, slice gaps, coverage, coil
    #: shading, T1 motion, 12-bit repacking), by variant
    situations: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True, ensure_ascii=False)

    @staticmethod
    def load(path: Path) -> GroundTruth:
        """Read ``truth.json`` written by ``generate_study``."""
        raw = json.loads(Path(path).read_text(encoding="utf-8"))
        raw["series"] = [SeriesTruth(**s) for s in raw["series"]]
        raw["sides"] = {k: SideTruth(**v) for k, v in raw["sides"].items()}
        return GroundTruth(**raw)


def _fine_box(fem: Femur, reach_mm: float) -> tuple[Vec, Vec]:
    pts = np.array([fem.point(-fem.head_radius), fem.point(reach_mm), fem.head_centre])
    lo = pts.min(axis=0) - fem.head_radius - 12.0
    hi = pts.max(axis=0) + fem.head_radius + 12.0
    return (float(lo[0]), float(lo[1]), float(lo[2])), (float(hi[0]), float(hi[1]), float(hi[2]))


@lru_cache(maxsize=16)
def _fine_volumes(anat: Anatomy, fem: Femur, side: SidePathology) -> tuple[dict[str, float], float, float]:
    """(oedema mL per region, effusion mL, AVN lesion mL) on a fine grid (pure, so cached)."""
    reach = fem.neck_length + 45.0
    lo, hi = _fine_box(fem, reach)
    axes = [np.arange(lo[i], hi[i], FINE_MM, dtype=np.float32) + FINE_MM / 2 for i in range(3)]
    x = axes[0][:, None, None]
    y = axes[1][None, :, None]
    vox_ml = FINE_MM**3 / 1000.0
    regions = dict.fromkeys(REGION_NAMES, 0.0)
    eff_ml = 0.0
    avn_ml = 0.0
    for z0 in range(0, len(axes[2]), 16):
        z = axes[2][None, None, z0:z0 + 16]
        shape = (len(axes[0]), len(axes[1]), z.shape[2])
        X, Y, Z = (np.broadcast_to(a, shape) for a in (x, y, z))
        if side.oedema is not None:
            f = oedema_fraction(anat, fem, side, X, Y, Z) >= TRUTH_THRESHOLD
            if f.any():
                reg = fem.region(X[f], Y[f], Z[f])
                for i, name in enumerate(REGION_NAMES):
                    regions[name] += float(np.count_nonzero(reg == i + 1)) * vox_ml
        if side.effusion_mm > 0:
            eff_ml += float(np.count_nonzero(effusion_fraction(anat, fem, side, X, Y, Z)
                                             >= TRUTH_THRESHOLD)) * vox_ml
        if side.avn:
            inside = (avn_distance(fem, X, Y, Z) < 0) & fem.marrow(X, Y, Z)
            avn_ml += float(np.count_nonzero(inside)) * vox_ml
    return regions, eff_ml, avn_ml


def masks_on_grid(anat: Anatomy, sides: dict[str, SidePathology], geo: SeriesGeometry,
                  model_h: float) -> tuple[NDArray[np.uint8], NDArray[np.uint8]]:
    """Oedema and effusion label masks (slices, rows, cols) on a series grid: 1 right, 2 left.

    A voxel is labelled when its fraction, averaged over the slice profile and pixel area
    (the same partial-volume sampling as the images), reaches 0.5.
    """
    oed = np.zeros((geo.n_slices, geo.rows, geo.cols), np.uint8)
    eff = np.zeros_like(oed)
    through, inplane = subsample_offsets(geo, model_h)
    n_sub = len(through) * len(inplane)
    for side_name, fem in (("right", anat.right), ("left", anat.left)):
        side = sides[side_name]
        if side.oedema is None and side.effusion_mm <= 0:
            continue
        lo, hi = _fine_box(fem, fem.neck_length + 45.0)
        for k in range(geo.n_slices):
            acc_o = np.zeros((geo.rows, geo.cols), np.float32)
            acc_e = np.zeros_like(acc_o)
            for off in through:
                for sub in inplane:
                    x, y, z = slice_points(geo, k, off, sub)
                    inbox = ((x >= lo[0]) & (x <= hi[0]) & (y >= lo[1]) & (y <= hi[1])
                             & (z >= lo[2]) & (z <= hi[2]))
                    if not inbox.any():
                        continue
                    xs, ys, zs = x[inbox], y[inbox], z[inbox]
                    if side.oedema is not None:
                        acc_o[inbox] += oedema_fraction(anat, fem, side, xs, ys, zs)
                    if side.effusion_mm > 0:
                        acc_e[inbox] += effusion_fraction(anat, fem, side, xs, ys, zs)
            oed[k][acc_o / n_sub >= TRUTH_THRESHOLD] = SIDE_LABEL[side_name]
            eff[k][acc_e / n_sub >= TRUTH_THRESHOLD] = SIDE_LABEL[side_name]
    return oed, eff


def grid_image(mask: NDArray[Any], geo: SeriesGeometry) -> sitk.Image:
    """A SimpleITK image of a (slices, rows, cols) array with the series' LPS geometry."""
    img = sitk.GetImageFromArray(mask)
    img.SetOrigin(tuple(float(v) for v in geo.origin))  # type: ignore[no-untyped-call]
    img.SetSpacing((geo.col_spacing, geo.row_spacing, geo.spacing))  # type: ignore[no-untyped-call]
    n = geo.normal
    r, c = geo.row_dir, geo.col_dir
    img.SetDirection((r[0], c[0], float(n[0]), r[1], c[1], float(n[1]),  # type: ignore[no-untyped-call]
                      r[2], c[2], float(n[2])))
    return img


def geometry_dict(geo: SeriesGeometry) -> dict[str, Any]:
    return {
        "origin_lps_mm": [float(v) for v in geo.origin],
        "row_dir": list(geo.row_dir), "col_dir": list(geo.col_dir),
        "normal": [float(v) for v in geo.normal],
        "rows": geo.rows, "cols": geo.cols,
        "pixel_spacing_mm": [geo.row_spacing, geo.col_spacing],
        "n_slices": geo.n_slices, "slice_spacing_mm": geo.spacing,
        "slice_thickness_mm": geo.thickness,
        "note": "origin = centre of pixel (row 0, col 0) of the slice with the lowest position "
                "along normal = row_dir x col_dir; sitk spacing = (col, row, slice)",
    }


def side_truth(anat: Anatomy, side_name: str, side: SidePathology, mask_ml: float,
               eff_mask_ml: float, fat_fail: bool, artefact_corrupted: bool = False) -> SideTruth:
    fem = anat.femur(side_name)
    regions, eff_ml, avn_ml = _fine_volumes(anat, fem, side)
    regions = dict(regions)
    total = sum(regions.values())
    lesion = None
    if side.avn:
        a = avn_axis(fem)
        lesion = {"kind": "avn_subchondral", "volume_ml": round(avn_ml, 3),
                  "axis_from_head_centre": [float(v) for v in a],
                  "double_line": True,
                  "note": "necrotic segment with a low-signal sclerotic rim (T1 band) and a "
                          "bright inner granulation band on STIR/T2 (double line)"}
    return SideTruth(
        present=side.oedema is not None and total > 0.0,
        pattern=side.pattern,
        volume_ml=round(total, 3),
        mask_volume_ml=round(mask_ml, 3),
        region_volumes_ml={k: round(v, 3) for k, v in regions.items()},
        regions=[k for k in REGION_NAMES if regions[k] >= REGION_MIN_ML],
        effusion=side.effusion_mm >= EFFUSION_MIN_LAYER_MM,
        effusion_volume_ml=round(eff_ml, 3),
        effusion_mask_volume_ml=round(eff_mask_ml, 3),
        head_centre_lps_mm=[round(v, 3) for v in fem.head_centre],
        head_radius_mm=round(fem.head_radius, 3),
        neck_axis={
            "origin_lps_mm": [round(v, 3) for v in fem.head_centre],
            "direction": [round(v, 6) for v in fem.neck_dir],
            "note": "unit vector from the head centre towards the neck base",
            "neck_length_mm": round(fem.neck_length, 3),
            "head_neck_junction_mm": round(fem.head_neck_junction, 3),
            "neck_end_mm": round(fem.neck_end, 3),
            "neck_radius_mm": round(fem.neck_radius, 3),
            "neck_shaft_angle_deg": round(fem.neck_shaft_angle_deg, 2),
            "shaft_direction": [round(v, 6) for v in fem.shaft_dir],
        },
        avn_lesion=lesion,
        fat_sat_failure=fat_fail,
        artefact_corrupted=artefact_corrupted,
    )


def coverage(anat: Anatomy, fem: Femur, side: SidePathology, geo: SeriesGeometry) -> dict[str, float]:
    """Fractions of a hip's head, neck and intertrochanteric marrow, and of its true oedema
    (``oedema``, when there is any), that lie inside the imaged volume of ``geo``."""
    lo, hi = _fine_box(fem, fem.neck_length + 45.0)
    axes = [np.arange(lo[i], hi[i], COVERAGE_MM, dtype=np.float32) for i in range(3)]
    x, y, z = (a.ravel() for a in np.meshgrid(*axes, indexing="ij"))
    keep = fem.marrow(x, y, z) & (fem.along_neck(x, y, z) < fem.neck_length + INTERTROCHANTERIC_MM)
    x, y, z = x[keep], y[keep], z[keep]
    inside = geo.contains(x, y, z)
    region = fem.region(x, y, z)
    out = {name: round(float(inside[region == i + 1].mean()), 3) for i, name in enumerate(REGION_NAMES)}
    if side.oedema is not None:
        oedema = oedema_fraction(anat, fem, side, x, y, z) >= TRUTH_THRESHOLD
        if oedema.any():
            out["oedema"] = round(float(inside[oedema].mean()), 3)
    return out
