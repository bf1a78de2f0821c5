"""``generate_study``: one synthetic hip MRI study on disk, with its ground truth."""

from __future__ import annotations

import math
import zlib
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk
from numpy.typing import NDArray
from pydicom.uid import JPEG2000Lossless, JPEGLSLossless, RLELossless

from workers.phantom.anatomy import Anatomy
from workers.phantom.artefacts import (
    CORRUPTION_MIN,
    MOTION_GHOSTS,
    MOTION_PERIOD_N,
    WRAP_PHASE_FOV,
    Artefact,
    fold,
    head_corruption,
    lps_axis,
    motion_ghosts,
    widen,
)
from workers.phantom.cases import (
    BASELINE,
    VISITS,
    PatientIdentity,
    check_request,
    default_identity,
    fat_sat_failure_side,
    pathology,
)
from workers.phantom.dicom_write import (
    StudyMeta,
    derive_uid,
    folder_name,
    write_classic_series,
    write_enhanced_series,
)
from workers.phantom.geometry import SeriesGeometry, plan, render_slices, slice_points
from workers.phantom.implant import Implant
from workers.phantom.pathology import NORMAL_SIDE, SidePathology
from workers.phantom.protocols import (
    FLUID_CONTRASTS,
    Protocol,
    dixon_protocols,
    pd_fs_3d_protocol,
    protocol,
)
from workers.phantom.raster import Model, rasterise, signal_volume
from workers.phantom.sdf import F32, Vec
from workers.phantom.situations import (
    ARTHROPLASTY,
    ONE_HIP,
    REPACK_FULL_SCALE,
    RigidMotion,
    coronal_stack,
    metal_artefacts,
    one_hip_fov,
    repack,
    shade,
    shading_truth,
    side_of,
    t1_motion,
)
from workers.phantom.tissue import TISSUES, SequenceTiming, Tissue, tissue_signal
from workers.phantom.truth import (
    GroundTruth,
    SeriesTruth,
    coverage,
    geometry_dict,
    grid_image,
    masks_on_grid,
    side_truth,
)

_CASE_CODE = {"normal": "N", "itoh_left": "", "itoh_right": "R", "bilateral": "B", "avn_left": "V",
              "followup_resolved": "", "followup_improved": ""}
_NOT_ACQUISITION = frozenset({"jpeg2000", "jpegls", "rle", "siemens", "ge", "philips", "nonascii_name",
                              "nonascii_utf8", "other_patient", "enhanced_stir", "localizer"})
_TRANSFER = {"jpeg2000": JPEG2000Lossless, "jpegls": JPEGLSLossless, "rle": RLELossless}
#: ``OUT/dicom``: the series folders only (what a user pushes or analyses); ``OUT/truth``: the ground truth.
DICOM_DIR = "dicom"
TRUTH_DIR = "truth"
#: Called with one line per step while a study is written (the CLI prints it).
Progress = Callable[[str], None]


def dicom_dir(out_dir: Path) -> Path:
    """The study's DICOM folder (series folders only) under a phantom's output folder."""
    return Path(out_dir) / DICOM_DIR


def truth_dir(out_dir: Path) -> Path:
    """The study's ground-truth folder (truth.json, oedema.nii.gz, effusion.nii.gz), beside ``dicom/``."""
    return Path(out_dir) / TRUTH_DIR


@dataclass(frozen=True)
class SeriesPlan:
    """One series: its protocol and geometry (a localizer adds single-slice pieces in other planes)."""

    proto: Protocol
    geo: SeriesGeometry
    enhanced: bool = False
    reverse_numbering: bool = False
    extra_pieces: tuple[SeriesGeometry, ...] = ()


def _size(small: bool, low_res: bool) -> dict[str, float]:
    if small:
        return ({"t1": 96, "stir": 96, "ax": 96, "cor_n": 14, "cor_th": 7.0, "cor_sp": 7.7,
                 "ax_n": 12, "ax_th": 8.0, "ax_sp": 8.8} if low_res else
                {"t1": 192, "stir": 192, "ax": 192, "cor_n": 18, "cor_th": 5.0, "cor_sp": 5.5,
                 "ax_n": 16, "ax_th": 6.0, "ax_sp": 6.6})
    return ({"t1": 256, "stir": 256, "ax": 256, "cor_n": 20, "cor_th": 6.0, "cor_sp": 6.6,
             "ax_n": 22, "ax_th": 7.0, "ax_sp": 7.7} if low_res else
            {"t1": 512, "stir": 384, "ax": 384, "cor_n": 30, "cor_th": 4.0, "cor_sp": 4.4,
             "ax_n": 30, "ax_th": 5.0, "ax_sp": 5.5})


@lru_cache(maxsize=4)
def _small_model(seed: int, case: str, fail_side: str | None, metal_side: str | None) -> Model:
    """The small-mode model, kept for the next study of the same patient and case (tests)."""
    anat = Anatomy.from_seed(seed)
    return rasterise(anat, case_sides(case, anat, seed, metal_side), 1.5, fail_side,
                     implant_for(anat, metal_side))


def case_sides(case: str, anat: Anatomy, seed: int, metal_side: str | None) -> dict[str, SidePathology]:
    """Per side pathology of the case; a hip with an arthroplasty has no native head, so none."""
    sides = pathology(case, anat, seed)
    return sides if metal_side is None else {**sides, metal_side: NORMAL_SIDE}


def implant_for(anat: Anatomy, side: str | None) -> Implant | None:
    """The total hip arthroplasty of one hip (None: no implant)."""
    if side is None:
        return None
    fem = anat.femur(side)
    return Implant.for_hip(side, fem.head_centre, fem.head_radius, fem.neck_dir, fem.neck_length,
                           fem.shaft_dir)


def plan_series(anat: Anatomy, variants: Sequence[str], small: bool, visit_shift: Vec) -> list[SeriesPlan]:
    """The series of the study, their protocols and slice geometry."""
    chosen = tuple(variants)
    vendor = next((v for v in ("siemens", "ge", "philips") if v in variants), "generic")
    sz = _size(small, "low_res" in variants)
    ff = "feet_first" in variants
    tilt = 15.0 if "oblique" in variants else 0.0
    cy = round((anat.left.head_centre[1] + anat.right.head_centre[1]) / 2.0, 1)
    sx, sy, sz_ = visit_shift
    fov, cx = 380.0, 0.0
    one_hip = side_of(chosen, ONE_HIP)
    if one_hip is not None:  # a dedicated one-hip protocol: small field of view centred on that hip
        fov = one_hip_fov(anat.seed)
        cx = round(anat.femur(one_hip).head_centre[0], 1)
        sz = {k: (max(16, int(round(v * fov / 380.0 / 16.0)) * 16) if k in ("t1", "stir", "ax") else v)
              for k, v in sz.items()}
    cor_centre: Vec = (cx + sx, cy + sy, -15.0 + sz_)
    ax_centre: Vec = (cx + sx, 5.0 + sy, -18.0 + sz_)
    plans: list[SeriesPlan] = []
    if "localizer" in variants:
        loc = replace(protocol("t1", "coronal", vendor, 1), key="localizer",
                      description="3-plane localizer", protocol_name="localizer",
                      scanning_sequence=("GR",), sequence_variant=("SP",), scan_options=(),
                      sequence_name="fl2d1", echo_train_length=1, flip_angle=20.0)
        pieces = tuple(plan(p, cor_centre, (fov + 70.0, fov + 70.0), (128, 128), 1, 8.0, 8.0,
                            feet_first=ff) for p in ("coronal", "axial", "sagittal"))
        plans.append(SeriesPlan(loc, pieces[0], extra_pieces=pieces[1:]))
    n_ax, th_ax, sp_ax, m_ax = int(sz["ax_n"]), sz["ax_th"], sz["ax_sp"], int(sz["ax"])
    axial = plan("axial", ax_centre, (fov, fov), (m_ax, m_ax), n_ax, th_ax, sp_ax, feet_first=ff)
    if "axial_only" in variants:
        plans.append(SeriesPlan(protocol("t1", "axial", vendor, 3), axial, reverse_numbering=ff))
        plans.append(SeriesPlan(protocol("t2fs", "axial", vendor, 4), axial, reverse_numbering=ff))
        return plans
    n, th, sp = coronal_stack(int(sz["cor_n"]), sz["cor_th"], sz["cor_sp"], chosen, anat.seed)
    m1, ms = int(sz["t1"]), int(sz["stir"])
    t1_geo = plan("coronal", cor_centre, (fov, fov), (m1, m1), n, th, sp, tilt_deg=tilt, feet_first=ff)
    if "mismatched_grids" in variants:
        ms2 = int(round(ms * 0.84 / 16.0)) * 16
        stir_geo = plan("coronal", (cor_centre[0] + 4.0, cor_centre[1] + 2.2, cor_centre[2] - 6.0),
                        (340.0, 340.0), (ms2, ms2), n - 2, th + 0.5, sp + 0.6, tilt_deg=tilt,
                        feet_first=ff)
    elif "wrap" in variants:
        # phase (right-left) field of view set too small: the hips' lateral soft tissue folds over
        pe_cols = int(round(ms * WRAP_PHASE_FOV / 2.0)) * 2
        stir_geo = plan("coronal", cor_centre, (fov, fov * pe_cols / ms), (ms, pe_cols), n, th, sp,
                        tilt_deg=tilt, feet_first=ff)
    else:
        stir_geo = plan("coronal", cor_centre, (fov, fov), (ms, ms), n, th, sp, tilt_deg=tilt,
                        feet_first=ff)
    stir = protocol("stir", "coronal", vendor, 4)
    if "wrap" in variants:
        stir = replace(stir, phase_encoding="ROW",
                       percent_phase_fov=round(100.0 * stir_geo.cols * stir_geo.col_spacing
                                               / (stir_geo.rows * stir_geo.row_spacing), 2))
    plans.append(SeriesPlan(protocol("t1", "coronal", vendor, 3), t1_geo, reverse_numbering=ff))
    if "axial_stir" in variants:  # coronal T1 and an axial STIR: the only fluid-sensitive series is axial
        plans.append(SeriesPlan(protocol("stir", "axial", vendor, 4), axial, reverse_numbering=ff))
        return plans
    if "pd_fs_3d" in variants:
        iso = 2.0 if small else 1.0
        m3 = int(round(fov / iso))
        slab = plan("coronal", cor_centre, (m3 * iso, m3 * iso), (m3, m3), int(round(112.0 / iso)), iso, iso,
                    feet_first=ff)
        plans.append(SeriesPlan(pd_fs_3d_protocol(vendor, 4), slab, reverse_numbering=ff))
    elif "dixon" in variants:
        plans += [SeriesPlan(p, stir_geo, reverse_numbering=ff) for p in dixon_protocols(vendor, 4)]
    else:
        plans.append(SeriesPlan(stir, stir_geo, enhanced="enhanced_stir" in variants, reverse_numbering=ff))
    plans.append(SeriesPlan(protocol("t2fs", "axial", vendor, plans[-1].proto.series_number + 1), axial,
                            reverse_numbering=ff))
    return plans


def _bias(geo: SeriesGeometry, seed: int) -> F32:
    """Smooth receive-coil shading: brighter near the anterior/posterior coil elements."""
    rng = np.random.default_rng([seed, 0xB1A5])
    gx, gz = (float(v) for v in rng.uniform(-0.08, 0.08, size=2))
    out = np.empty((geo.n_slices, geo.rows, geo.cols), np.float32)
    for k in range(geo.n_slices):
        x, y, z = slice_points(geo, k, 0.0)
        out[k] = (0.9 + 0.3 * (y / 140.0) ** 2 + gx * x / 190.0 + gz * z / 190.0
                  + 0.1 * (x / 190.0) ** 2)
    return out


def _reference_signal(timing: SequenceTiming) -> float:
    """The tissue scaled to a fixed stored value: fat on T1, joint fluid on fluid-sensitive."""
    tissue = Tissue.FAT if timing.kind == "se" and timing.dixon != "water" else Tissue.JOINT_FLUID
    return tissue_signal(TISSUES[tissue], timing)


def _clean(model: Model, sp: SeriesPlan, volume: F32, seed: int, artefact: str | None,
           motion: RigidMotion | None = None) -> tuple[F32, F32]:
    """(noise-free image as acquired, noise-free image without the artefact) of one series;
    ``motion``: the patient moved before this series."""
    moved = motion.before if motion is not None else None
    clean = render_slices(volume, model.canvas, sp.geo, moved) * _bias(sp.geo, seed)
    pe = sp.proto.phase_encoding
    if artefact == "motion":
        return motion_ghosts(clean, pe), clean
    if artefact == "wrap":
        wide = widen(sp.geo, pe)
        folded = fold(render_slices(volume, model.canvas, wide) * _bias(wide, seed),
                      sp.geo.cols if pe == "ROW" else sp.geo.rows, pe)
        return folded, clean
    return clean, clean


def _pixels(clean: F32, sp: SeriesPlan, seed: int, noise_key: int, noisy: bool,
            full_scale: float = 1000.0, bits: int = 12) -> NDArray[np.uint16]:
    """Stored values: magnitude with Rician noise, the reference tissue at ``full_scale``."""
    ref = _reference_signal(sp.proto.timing)
    snr = sp.proto.snr / (2.5 if noisy else 1.0)
    rng = np.random.default_rng([seed, sp.proto.series_number, noise_key])
    sigma = ref / snr
    n1 = rng.standard_normal(clean.shape, dtype=np.float32) * sigma
    n2 = rng.standard_normal(clean.shape, dtype=np.float32) * sigma
    mag = np.sqrt((clean + n1) ** 2 + n2**2)
    scale = full_scale / ref
    if sp.proto.rescale is not None:
        scale /= sp.proto.rescale[0]
    out: NDArray[np.uint16] = np.clip(np.rint(mag * scale), 0, 2**bits - 1).astype(np.uint16)
    return out


def generate_study(out_dir: Path, case: str, seed: int = 0, *, variants: Sequence[str] = (),
                   small: bool = False, patient: PatientIdentity | None = None,
                   progress: Progress | None = None) -> GroundTruth:
    """Write one synthetic hip MRI study (DICOM) and its ground truth into ``out_dir``.

    Series go to ``out_dir/dicom/<NNN_description>/IMnnnn.dcm`` (push or analyse that folder);
    the truth goes beside it, to ``out_dir/truth/truth.json``, ``oedema.nii.gz`` and
    ``effusion.nii.gz`` (uint8, 1 = right hip, 2 = left hip) on the grid of the fluid-sensitive
    series. ``progress`` gets one line per step. Same arguments, same bytes.
    """
    def say(message: str) -> None:
        if progress is not None:
            progress(message)

    chosen = check_request(case, variants)
    out_dir = Path(out_dir)
    anat = Anatomy.from_seed(seed)
    metal_side = side_of(chosen, ARTHROPLASTY)
    implant = implant_for(anat, metal_side)
    sides = case_sides(case, anat, seed, metal_side)
    visit = VISITS.get(case, BASELINE)
    family_case = "itoh_left" if case.startswith("followup_") else case
    ident = patient or default_identity(seed, chosen)
    if patient is None and _CASE_CODE[case]:
        ident = replace(ident, patient_id=f"{ident.patient_id}-{_CASE_CODE[case]}")
    shift: Vec = (0.0, 0.0, 0.0) if visit is BASELINE else (3.0, -2.5, 6.0)
    fail_side = fat_sat_failure_side(sides) if "fat_sat_failure" in chosen else None
    h = 1.5 if small else 1.0
    say(f"modelling the anatomy ({'small' if small else 'full size'}, case {case}, seed {seed})")
    model = (_small_model(seed, case, fail_side, metal_side) if small
             else rasterise(anat, sides, h, fail_side, implant))
    uid_parts = ("study", case, str(seed), *chosen, "small" if small else "full")
    vendor = next((v for v in ("siemens", "ge", "philips") if v in chosen), "generic")
    variant_tag = f"{zlib.crc32(','.join(chosen).encode()) % 256:02X}" if chosen else ""
    meta = StudyMeta(
        study_uid=derive_uid(*uid_parts, "study-uid"),
        frame_of_reference_uid=derive_uid(*uid_parts, "frame-of-reference"),
        study_date=visit.study_date, study_time=visit.study_time,
        accession=f"MM{seed % 100000:05d}{_CASE_CODE[family_case]}{visit.accession_suffix}{variant_tag}",
        study_id=f"{seed % 1000:03d}{visit.accession_suffix}",
        identity=ident, vendor=vendor, patient_position="FFS" if "feet_first" in chosen else "HFS",
        body_part="PELVIS", uid_parts=uid_parts)
    plans = plan_series(anat, chosen, small, shift)
    primary = next(sp for sp in plans if sp.proto.contrast in FLUID_CONTRASTS and sp.proto.series_number != 1)
    motion = t1_motion((anat.right.head_centre, anat.left.head_centre), seed) if "t1_shifted" in chosen else None
    situations: dict[str, Any] = {}
    ts = next((_TRANSFER[v] for v in chosen if v in _TRANSFER), None)
    # the noise depends on the acquisition only: encodings, vendor spellings and identities
    # do not change the pixel values, so variants can be compared pixel for pixel
    acquisition = [v for v in chosen if v not in _NOT_ACQUISITION]
    noise_key = zlib.crc32(",".join([case, str(seed), *acquisition, str(small)]).encode())
    volumes: dict[str, F32] = {}
    series_truth: list[SeriesTruth] = []
    artefact_kind = next((v for v in ("motion", "wrap") if v in chosen), None)
    artefact: Artefact | None = None
    for number, sp in enumerate(plans, start=1):
        say(f"series {number}/{len(plans)}: {sp.proto.description} ({sp.geo.n_slices} slices, "
            f"{sp.geo.rows} x {sp.geo.cols})")
        key = sp.proto.contrast
        if key not in volumes:
            volumes.clear()  # one signal volume at a time (216 MB each at full size)
            volumes[key] = signal_volume(model, sp.proto.timing)
        series_uid = derive_uid(*uid_parts, sp.proto.key, sp.proto.series_number, "series")
        folder = dicom_dir(out_dir) / folder_name(sp.proto)
        files = []
        for i, geo in enumerate((sp.geo, *sp.extra_pieces)):
            piece = replace(sp, geo=geo)
            hit = artefact_kind if (i == 0 and sp.proto.contrast == "stir" and sp.proto.series_number != 1) else None
            moved = motion if sp.proto.contrast == "t1" and sp.proto.series_number != 1 else None
            acquired, clean = _clean(model, piece, volumes[key], seed, hit, moved)
            if hit is not None:
                artefact = _artefact_truth(hit, piece, clean, acquired, anat)
            acquired = _situations(acquired, piece, chosen, seed, implant, moved)
            proto = sp.proto
            if "repacked_12bit" in chosen and sp is primary:
                pixels, slope = repack(_pixels(acquired, piece, seed, noise_key + i, "noisy" in chosen,
                                               REPACK_FULL_SCALE, 16))
                slope *= (proto.rescale or (1.0, 0.0))[0]
                proto = replace(proto, rescale=(slope, 0.0))
                situations["repacked_12bit"] = {
                    "series_instance_uid": series_uid, "rescale_slope": slope, "bits_stored": 12,
                    "note": f"joint fluid at about {REPACK_FULL_SCALE:g} in real-world values (16 bit), "
                            "stored / RescaleSlope in 12 bits"}
            else:
                pixels = _pixels(acquired, piece, seed, noise_key + i, "noisy" in chosen)
            if sp.enhanced:
                files += write_enhanced_series(folder, meta, proto, geo, pixels, series_uid, ts)
            else:
                files += write_classic_series(folder, meta, proto, geo, pixels, series_uid, ts,
                                              reverse=sp.reverse_numbering, first_instance=len(files) + 1)
        contrast = "localizer" if sp.proto.series_number == 1 else sp.proto.contrast
        series_truth.append(SeriesTruth(
            series_instance_uid=series_uid, series_number=sp.proto.series_number,
            folder=folder.name, description=sp.proto.description, contrast=contrast,
            plane=sp.proto.plane, enhanced=sp.enhanced, n_files=len(files),
            geometry=geometry_dict(sp.geo)))
    del volumes
    primary_uid = next(s.series_instance_uid for s in series_truth
                       if s.series_number == primary.proto.series_number)
    t1s = sorted((s.plane != primary.proto.plane, s.series_number, s.series_instance_uid)
                 for s in series_truth if s.contrast == "t1")
    t1_uid = t1s[0][2] if t1s else None
    say("ground truth masks")
    oed, eff = masks_on_grid(anat, sides, primary.geo, h)
    truth_folder = truth_dir(out_dir)
    truth_folder.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(grid_image(oed, primary.geo), str(truth_folder / "oedema.nii.gz"), True)
    sitk.WriteImage(grid_image(eff, primary.geo), str(truth_folder / "effusion.nii.gz"), True)
    geo = primary.geo
    vox_ml = geo.row_spacing * geo.col_spacing * geo.spacing / 1000.0
    sides_truth = {}
    for name, label in (("right", 1), ("left", 2)):
        st = side_truth(anat, name, sides[name], float(np.count_nonzero(oed == label)) * vox_ml,
                        float(np.count_nonzero(eff == label)) * vox_ml, fail_side == name,
                        artefact is not None and name in artefact.corrupted_sides)
        fem = anat.femur(name)
        sides_truth[name] = replace(
            st, imaged=bool(geo.contains(*(np.full(1, v, np.float32) for v in fem.head_centre))[0]),
            coverage=coverage(anat, fem, sides[name], geo), metal=name == metal_side)
    situations.update(_situations_truth(anat, chosen, seed, plans, implant, motion))
    truth = GroundTruth(
        case=case, seed=seed, variants=list(chosen), small=small,
        patient_id=ident.patient_id, issuer_of_patient_id=ident.issuer,
        study_instance_uid=meta.study_uid, study_date=meta.study_date,
        accession_number=meta.accession, frame_of_reference_uid=meta.frame_of_reference_uid,
        fluid_sensitive_series_uid=primary_uid, t1_series_uid=t1_uid, series=series_truth,
        sides=sides_truth,
        markers=[{"name": name, "lps_mm": list(c), "radius_mm": 5.0,
                  "note": "Gd-doped water capsule on the skin: bright on T1, STIR and T2"}
                 for name, c in anat.markers],
        mask_grid={"series_instance_uid": primary_uid, **geometry_dict(primary.geo)},
        files={"oedema": f"{TRUTH_DIR}/oedema.nii.gz", "effusion": f"{TRUTH_DIR}/effusion.nii.gz"},
        artefact=asdict(artefact) if artefact is not None else None,
        situations=situations,
    )
    (truth_folder / "truth.json").write_text(truth.to_json() + "\n", encoding="utf-8")
    return truth


def _situations(image: F32, sp: SeriesPlan, chosen: tuple[str, ...], seed: int, implant: Implant | None,
                motion: RigidMotion | None) -> F32:
    """A series' noise-free image with the receive-coil shading and the metal's displacement."""
    if "coil_shading" in chosen:
        image = shade(image, sp.geo, seed)
    if implant is not None:
        image = metal_artefacts(image, sp.geo, sp.proto.pixel_bandwidth, sp.proto.phase_encoding, implant,
                                motion)
    return image


def _situations_truth(anat: Anatomy, chosen: tuple[str, ...], seed: int, plans: list[SeriesPlan],
                      implant: Implant | None, motion: RigidMotion | None) -> dict[str, Any]:
    """What the real-protocol variants did, for ``truth.json`` (``situations``)."""
    out: dict[str, Any] = {}
    one_hip = side_of(chosen, ONE_HIP)
    if one_hip is not None:
        out["one_hip"] = {"side": one_hip, "field_of_view_mm": one_hip_fov(seed),
                          "note": "every series centred on this hip; the other hip is outside the field of view"}
    if implant is not None:
        out["arthroplasty"] = implant.to_dict()
    coronal = [sp.geo for sp in plans if sp.proto.plane == "coronal" and sp.proto.series_number != 1]
    if coronal and ("gapped" in chosen or "partial_coverage" in chosen):
        geo = coronal[0]
        out["coronal_stack"] = {"slices": geo.n_slices, "slice_thickness_mm": geo.thickness,
                                "spacing_mm": geo.spacing, "gap_mm": round(geo.spacing - geo.thickness, 3),
                                "extent_mm": round((geo.n_slices - 1) * geo.spacing + geo.thickness, 3)}
    if "coil_shading" in chosen:
        out["coil_shading"] = shading_truth(anat, seed)
    if motion is not None:
        out["t1_shifted"] = motion.to_dict({"right": anat.right.head_centre, "left": anat.left.head_centre})
    return out


def _artefact_truth(kind: str, sp: SeriesPlan, clean: F32, acquired: F32, anat: Anatomy) -> Artefact:
    """What the motion or wrap artefact did to the fluid-sensitive series, per hip."""
    pe = sp.proto.phase_encoding
    ratio = head_corruption(clean, acquired, sp.geo, anat)
    corrupted = [side for side in ("right", "left") if ratio[side] >= CORRUPTION_MIN]
    phase_fov = sp.geo.cols * sp.geo.col_spacing if pe == "ROW" else sp.geo.rows * sp.geo.row_spacing
    axis = lps_axis(sp.geo, pe)
    if kind == "motion":
        spacing = phase_fov / MOTION_PERIOD_N
        return Artefact(kind=kind, phase_encoding_direction=pe, phase_encoding_lps_axis=axis,
                        description=(f"motion ghosts: replicas of the anatomy every {spacing:.0f} mm along "
                                     f"phase encode ({axis}), anatomy smeared along it; no oedema"),
                        corrupted_sides=corrupted, artefact_to_head_signal=ratio,
                        ghost_spacing_mm=round(spacing, 2), ghost_amplitudes=[a for _, a in MOTION_GHOSTS],
                        phase_fov_mm=round(phase_fov, 2))
    return Artefact(kind=kind, phase_encoding_direction=pe, phase_encoding_lps_axis=axis,
                    description=(f"wrap-around: phase field of view {phase_fov:.0f} mm ({axis}) smaller than "
                                 "the body; anatomy outside it folds over the opposite side; no oedema"),
                    corrupted_sides=corrupted, artefact_to_head_signal=ratio, phase_fov_mm=round(phase_fov, 2))


def head_pixel(truth: GroundTruth, side: str) -> tuple[int, int, int]:
    """(slice, row, col) of a femoral head centre on the fluid-sensitive grid (for tests/plots)."""
    g = truth.mask_grid
    origin = np.asarray(g["origin_lps_mm"])
    d = np.asarray(truth.sides[side].head_centre_lps_mm) - origin
    k = d @ np.asarray(g["normal"]) / g["slice_spacing_mm"]
    r = d @ np.asarray(g["col_dir"]) / g["pixel_spacing_mm"][0]
    c = d @ np.asarray(g["row_dir"]) / g["pixel_spacing_mm"][1]
    return int(math.floor(k + 0.5)), int(math.floor(r + 0.5)), int(math.floor(c + 0.5))
