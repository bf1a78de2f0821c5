# mypy: disallow-untyped-calls=False
"""``tests/perturb.py``: each real-protocol situation applied to one phantom B study (the fast
``noisy_lowres`` case, generated once into a temporary folder) gives valid DICOM and a truth that
says what changed."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk

from tests.perturb import SITUATIONS, PerturbError, main, perturb
from tests.phantom_b_fixtures import PHANTOM_B, phantom_b_available, phantom_b_study
from tests.phantom_fixtures import dciodvfy_errors, lps_to_pixel
from workers.phantom.situations import PARTIAL_SLICES, coil_gain

SEED = 11


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One phantom B study (noisy_lowres, 4-6 s)."""
    if not phantom_b_available():
        pytest.fail(f"phantom B generator not found at {PHANTOM_B} (set MARROWMAP_PHANTOM_B)")
    return phantom_b_study("noisy_lowres", SEED, tmp_path_factory.mktemp("phantom-b"))


@pytest.fixture(scope="module")
def perturbed(source: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Every situation applied once to the source study."""
    root = tmp_path_factory.mktemp("perturbed")
    return {s: perturb(source, root / s, s) for s in SITUATIONS}


def _truth(folder: Path) -> dict[str, Any]:
    return dict(json.loads((folder / "truth.json").read_text(encoding="utf-8")))


def _series(folder: Path, role: str) -> list[pydicom.Dataset]:
    """The datasets of one role's series, sorted along the slice normal."""
    uid = next(s["series_instance_uid"] for s in _truth(folder)["series"] if s["role"] == role)
    datasets = [pydicom.dcmread(f) for f in sorted((folder / "dicom").glob("*/*.dcm"))]
    mine = [ds for ds in datasets if ds.SeriesInstanceUID == uid]
    iop = np.asarray(mine[0].ImageOrientationPatient, float)
    normal = np.cross(iop[:3], iop[3:])
    return sorted(mine, key=lambda ds: float(np.asarray(ds.ImagePositionPatient, float) @ normal))


def _value_at(datasets: list[pydicom.Dataset], p: list[float]) -> float:
    ds = min(datasets, key=lambda d: abs(lps_to_pixel(d, p)[0]))
    _, r, c = (int(round(v)) for v in lps_to_pixel(ds, p))
    real = ds.pixel_array.astype(float) * float(ds.get("RescaleSlope", 1.0)) + float(ds.get("RescaleIntercept", 0.0))
    return float(real[r - 1:r + 2, c - 1:c + 2].mean())


def _affected(truth: dict[str, Any]) -> str:
    return next(s for s in ("right", "left") if truth["sides"][s]["present"])


@pytest.mark.parametrize("situation", SITUATIONS)
def test_every_situation_writes_valid_new_series_of_the_same_study(source: Path, perturbed: dict[str, Path],
                                                                    situation: str) -> None:
    out = perturbed[situation]
    before, after = _truth(source), _truth(out)
    assert after["perturbations"][-1]["situation"] == situation
    old = {s["series_instance_uid"] for s in before["series"]}
    changed = [s for s in after["series"] if s["series_instance_uid"] not in old]
    assert changed
    for entry in changed:
        files = sorted((out / "dicom").glob("*/*.dcm"))
        mine = [f for f in files if pydicom.dcmread(f, stop_before_pixels=True).SeriesInstanceUID
                == entry["series_instance_uid"]]
        assert len(mine) == entry["n_files"] and dciodvfy_errors(mine[0]) == []
        ds = pydicom.dcmread(mine[0], stop_before_pixels=True)
        assert ds.StudyInstanceUID == before["study_instance_uid"] and ds.PatientID == before["patient_id"]
    stir = _series(out, "stir")
    mask = sitk.ReadImage(str(out / "truth_oedema.nii.gz"))
    assert mask.GetSize() == (stir[0].Columns, stir[0].Rows, len(stir))
    assert np.allclose(mask.GetOrigin(), np.asarray(stir[0].ImagePositionPatient, float), atol=1e-3)
    npz = np.load(out / "truth_oedema.npz")
    assert np.array_equal(npz["mask"], sitk.GetArrayFromImage(mask))


def test_one_hip_crops_to_the_affected_hip_and_the_other_is_not_imaged(perturbed: dict[str, Path]) -> None:
    truth = _truth(perturbed["one_hip"])
    side = _affected(truth)
    other = "left" if side == "right" else "right"
    assert truth["sides"][side]["imaged"] and truth["sides"][side]["coverage"]["oedema"] == 1.0
    assert not truth["sides"][other]["imaged"] and truth["sides"][other]["coverage"]["head"] == 0.0
    fov = truth["perturbations"][-1]["field_of_view_mm"]
    assert 180.0 <= fov <= 240.0
    for role in ("t1", "stir"):
        ds = _series(perturbed["one_hip"], role)[0]
        assert ds.Columns * float(ds.PixelSpacing[1]) == pytest.approx(fov, abs=float(ds.PixelSpacing[1]))


def test_arthroplasty_replaces_the_normal_hip_and_keeps_the_affected_one(source: Path,
                                                                         perturbed: dict[str, Path]) -> None:
    out = perturbed["arthroplasty"]
    truth, before = _truth(out), _truth(source)
    side = truth["perturbations"][-1]["side"]
    affected = _affected(before)
    assert side != affected and truth["sides"][side]["metal"] and not truth["sides"][side]["present"]
    assert truth["sides"][affected]["oedema_volume_ml"] == before["sides"][affected]["oedema_volume_ml"]
    assert not np.any(sitk.GetArrayFromImage(sitk.ReadImage(str(out / "truth_oedema.nii.gz"))) == {"right": 1,
                                                                                                    "left": 2}[side])
    centre = truth["sides"][side]["head_centre_lps_mm"]
    for role in ("t1", "stir"):
        assert _value_at(_series(out, role), centre) < 0.1 * _value_at(_series(source, role), centre), role


def test_axial_stir_replaces_the_coronal_stir_and_keeps_the_oedema(source: Path, perturbed: dict[str, Path]) -> None:
    out = perturbed["axial_stir"]
    stir = _series(out, "stir")
    assert [float(v) for v in stir[0].ImageOrientationPatient] == [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
    assert float(stir[0].SliceThickness) == 5.0 and float(stir[0].SpacingBetweenSlices) == 6.0
    assert "AX" in stir[0].SeriesDescription
    side = _affected(_truth(out))
    assert _truth(out)["sides"][side]["oedema_mask_volume_ml"] == pytest.approx(
        _truth(source)["sides"][side]["oedema_mask_volume_ml"], rel=0.1)


@pytest.mark.parametrize("situation", ["gapped", "partial_coverage"])
def test_coronal_slices_dropped(source: Path, perturbed: dict[str, Path], situation: str) -> None:
    for role in ("t1", "stir"):
        before, after = _series(source, role), _series(perturbed[situation], role)
        if situation == "gapped":
            assert len(after) == (len(before) + 1) // 2 or len(after) == len(before) // 2
            assert float(after[0].SpacingBetweenSlices) == pytest.approx(2 * float(before[0].SpacingBetweenSlices))
        else:
            assert len(after) == PARTIAL_SLICES[SEED % len(PARTIAL_SLICES)]
        positions = np.array([ds.ImagePositionPatient for ds in before], float)
        for ds in after:  # every slice kept is one of the source's
            assert np.abs(positions - np.asarray(ds.ImagePositionPatient, float)).sum(axis=1).min() < 1e-3


def test_coil_shading_multiplies_by_the_gain(source: Path, perturbed: dict[str, Path]) -> None:
    truth = _truth(source)
    for side in ("right", "left"):
        p = truth["sides"][side]["head_centre_lps_mm"]
        ratio = _value_at(_series(perturbed["coil_shading"], "t1"), p) / _value_at(_series(source, "t1"), p)
        assert ratio == pytest.approx(float(coil_gain(np.full(1, p[0], np.float32), SEED)[0]), rel=0.05)


def test_t1_shifted_resamples_the_t1_only(source: Path, perturbed: dict[str, Path]) -> None:
    out = perturbed["t1_shifted"]
    before, after = _series(source, "t1"), _series(out, "t1")
    assert np.allclose([ds.ImagePositionPatient for ds in before], [ds.ImagePositionPatient for ds in after])
    assert not np.array_equal(before[len(before) // 2].pixel_array, after[len(after) // 2].pixel_array)
    stir_uid = _truth(source)["stir_series_instance_uid"]
    assert _truth(out)["stir_series_instance_uid"] == stir_uid
    motion = _truth(out)["perturbations"][-1]
    assert np.linalg.norm(motion["translation_mm"]) == pytest.approx(5.0, abs=1e-3)


def test_repack_12bit_keeps_real_values_up_to_the_slope(source: Path, perturbed: dict[str, Path]) -> None:
    before, after = _series(source, "stir"), _series(perturbed["repack_12bit"], "stir")
    k = len(before) // 2
    ds = after[k]
    slope = float(ds.RescaleSlope)
    assert ds.BitsStored == 12 and int(ds.pixel_array.max()) <= 4095 and slope > 1.0
    scale = 2 ** (16 - int(before[k].BitsStored))
    real = ds.pixel_array.astype(float) * slope
    assert np.abs(real - before[k].pixel_array.astype(float) * scale).max() <= slope / 2 + 1e-6


def test_cli_and_refusals(source: Path, tmp_path: Path) -> None:
    assert main([str(source), str(tmp_path / "g"), "--situation", "gapped", "--seed", "3"]) == 0
    assert main([str(source), str(tmp_path / "g"), "--situation", "gapped"]) == 2  # exists
    with pytest.raises(PerturbError, match="unknown situation"):
        perturb(source, tmp_path / "x", "sagittal_only")
