"""Phantom studies: laterality, truth, determinism and validity of the files (small mode)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from click.testing import CliRunner

from marrowmap.cli import main
from tests.phantom_fixtures import (
    StudyFactory,
    dciodvfy_errors,
    lps_to_pixel,
    phantom_study,
    series_files,
    stack_from_files,
)
from workers.phantom import CASES, GroundTruth, PhantomError, generate_study, truth_dir

__all__ = ["phantom_study"]


def _truth_mask_lps(study_dir: Path, name: str, label: int) -> np.ndarray:
    """LPS coordinates (N, 3) of the voxels of one label of a truth mask, via SimpleITK."""
    img = sitk.ReadImage(str(truth_dir(study_dir.parent) / f"{name}.nii.gz"))
    arr = sitk.GetArrayFromImage(img)
    idx = np.argwhere(arr == label)[:, ::-1]  # (x, y, z) index order
    return np.array([img.TransformIndexToPhysicalPoint([int(i) for i in v])  # type: ignore[no-untyped-call]
                     for v in idx[::7]])


def _series(truth: GroundTruth, uid: str) -> str:
    return next(s.folder for s in truth.series if s.series_instance_uid == uid)


def _signal_at(study_dir: Path, folder: str, p: list[float], radius_px: int = 2) -> float:
    """Mean pixel value around an LPS point, found through each file's own IPP/IOP."""
    stack, datasets = stack_from_files(series_files(study_dir, folder))
    dist = [abs(lps_to_pixel(ds, p)[0]) for ds in datasets]
    k = int(np.argmin(dist))
    _, r, c = lps_to_pixel(datasets[k], p)
    r, c = int(round(r)), int(round(c))
    return float(stack[k, r - radius_px:r + radius_px + 1, c - radius_px:c + radius_px + 1].mean())


@pytest.mark.parametrize("case,side", [("itoh_left", "left"), ("itoh_right", "right")])
def test_oedema_is_on_the_named_side_in_lps(phantom_study: StudyFactory, case: str, side: str) -> None:
    study_dir, truth = phantom_study(case)
    label = {"right": 1, "left": 2}[side]
    pts = _truth_mask_lps(study_dir, "oedema", label)
    assert len(pts) > 50
    # patient left = +x in LPS
    assert np.all(np.sign(pts[:, 0]) == (1 if side == "left" else -1))
    other = 3 - label
    assert not np.any(sitk.GetArrayFromImage(sitk.ReadImage(str(truth_dir(study_dir.parent) / "oedema.nii.gz"))) == other)
    centre = truth.sides[side].head_centre_lps_mm
    assert np.sign(centre[0]) == (1 if side == "left" else -1)


@pytest.mark.parametrize("case,side", [("itoh_left", "left"), ("itoh_right", "right")])
def test_stir_is_bright_and_t1_dark_in_the_oedematous_head(phantom_study: StudyFactory, case: str,
                                                          side: str) -> None:
    """Read back through the DICOM geometry: the affected head is STIR-bright and T1-dark."""
    study_dir, truth = phantom_study(case)
    other = "right" if side == "left" else "left"
    stir = _series(truth, truth.fluid_sensitive_series_uid)
    assert truth.t1_series_uid is not None
    t1 = _series(truth, truth.t1_series_uid)
    # a point in the lateral half of the head (medial head is spared)
    def lateral_head(s: str) -> list[float]:
        c = truth.sides[s].head_centre_lps_mm
        sign = 1 if s == "left" else -1
        return [c[0] + sign * 6.0, c[1], c[2] + 4.0]
    stir_sick = _signal_at(study_dir, stir, lateral_head(side))
    stir_well = _signal_at(study_dir, stir, lateral_head(other))
    t1_sick = _signal_at(study_dir, t1, lateral_head(side))
    t1_well = _signal_at(study_dir, t1, lateral_head(other))
    assert stir_sick > 3.0 * stir_well
    assert t1_sick < 0.75 * t1_well


def test_truth_volumes_are_sane(phantom_study: StudyFactory) -> None:
    _, itoh = phantom_study("itoh_left")
    left = itoh.sides["left"]
    assert left.present and left.pattern == "diffuse"
    assert 30.0 < left.volume_ml < 110.0
    assert set(left.regions) >= {"head", "neck"}
    assert abs(left.mask_volume_ml - left.volume_ml) < 0.2 * left.volume_ml
    assert left.effusion and 3.0 < left.effusion_volume_ml < 40.0
    assert not itoh.sides["right"].present and itoh.sides["right"].volume_ml == 0.0
    assert 20.0 < left.head_radius_mm * 1.0 < 28.0
    _, normal = phantom_study("normal")
    for s in ("left", "right"):
        assert not normal.sides[s].present and not normal.sides[s].effusion
        assert normal.sides[s].mask_volume_ml == 0.0
    _, avn = phantom_study("avn_left")
    assert avn.sides["left"].pattern == "focal"
    assert avn.sides["left"].volume_ml < 0.2 * left.volume_ml
    assert avn.sides["left"].avn_lesion is not None and avn.sides["left"].avn_lesion["double_line"]
    _, both = phantom_study("bilateral")
    assert both.sides["left"].present and both.sides["right"].present
    assert both.sides["left"].effusion and both.sides["right"].effusion
    assert "intertrochanteric" in both.sides["left"].regions


def test_followups_are_the_same_patient_later(phantom_study: StudyFactory) -> None:
    base_dir, base = phantom_study("itoh_left")
    res_dir, resolved = phantom_study("followup_resolved")
    _, improved = phantom_study("followup_improved")
    b = pydicom.dcmread(next(base_dir.glob("*/IM0001.dcm")), stop_before_pixels=True)
    r = pydicom.dcmread(next(res_dir.glob("*/IM0001.dcm")), stop_before_pixels=True)
    for kw in ("PatientID", "IssuerOfPatientID", "PatientName", "PatientBirthDate", "PatientSex"):
        assert b.get(kw) == r.get(kw), kw
    assert r.StudyDate > b.StudyDate and r.StudyInstanceUID != b.StudyInstanceUID
    assert r.AccessionNumber != b.AccessionNumber
    assert resolved.patient_id == base.patient_id == improved.patient_id
    assert not resolved.sides["left"].present and resolved.sides["left"].volume_ml == 0.0
    ratio = improved.sides["left"].volume_ml / base.sides["left"].volume_ml
    assert 0.35 <= ratio <= 0.65
    assert improved.study_date > base.study_date


@pytest.mark.parametrize("case", CASES)
def test_every_case_passes_dciodvfy(phantom_study: StudyFactory, case: str) -> None:
    study_dir, truth = phantom_study(case)
    for s in truth.series:
        files = series_files(study_dir, s.folder)
        assert len(files) == s.n_files
        assert dciodvfy_errors(files[0]) == [], files[0]


def test_generation_is_deterministic(tmp_path: Path, phantom_study: StudyFactory) -> None:
    first, _ = phantom_study("itoh_left")
    generate_study(tmp_path, "itoh_left", 0, small=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dicom", "truth"]  # truth beside, not in, the study

    def digest(root: Path) -> dict[str, str]:
        return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
                for p in sorted(root.rglob("*")) if p.is_file()}

    assert digest(first.parent) == digest(tmp_path)


def test_bad_requests_raise_typed_errors(tmp_path: Path) -> None:
    with pytest.raises(PhantomError, match="unknown case"):
        generate_study(tmp_path, "itoh_middle", 0, small=True)
    with pytest.raises(PhantomError, match="unknown variant"):
        generate_study(tmp_path, "normal", 0, variants=("sagittal_only",), small=True)
    with pytest.raises(PhantomError, match="cannot be combined"):
        generate_study(tmp_path, "normal", 0, variants=("rle", "jpegls"), small=True)


def test_cli_writes_a_study(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["phantom", str(tmp_path / "s"), "--case", "itoh_right",
                                       "--seed", "3", "--small"])
    assert result.exit_code == 0, result.output
    truth = GroundTruth.load(tmp_path / "s" / "truth" / "truth.json")
    assert truth.case == "itoh_right" and truth.seed == 3 and truth.sides["right"].present
    bad = CliRunner().invoke(main, ["phantom", str(tmp_path / "t"), "--case", "nope", "--small"])
    assert bad.exit_code == 2 and "unknown case" in bad.output


@pytest.mark.slow
def test_full_size_study_has_the_stated_matrix_and_volumes(tmp_path: Path) -> None:
    truth = generate_study(tmp_path, "itoh_left", 5)
    t1 = next(s for s in truth.series if s.contrast == "t1")
    stir = next(s for s in truth.series if s.contrast == "stir")
    assert (t1.geometry["rows"], t1.geometry["n_slices"]) == (512, 30)
    assert stir.geometry["rows"] == 384
    left = truth.sides["left"]
    assert 30.0 < left.volume_ml < 110.0  # tens of mL of head + neck oedema
    assert left.mask_volume_ml == pytest.approx(left.volume_ml, rel=0.1)
    assert left.effusion_mask_volume_ml == pytest.approx(left.effusion_volume_ml, rel=0.2)
