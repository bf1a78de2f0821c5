"""The own phantom's real-protocol variants (issue 11): geometry, headers and truth (small mode).

Their DICOM validity is checked with every other variant in ``test_phantom_variants.py``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest

from tests.phantom_fixtures import (
    StudyFactory,
    lps_to_pixel,
    phantom_study,
    series_files,
    stack_from_files,
)
from workers.phantom import GroundTruth

__all__ = ["phantom_study"]


def _files(study_dir: Path, truth: GroundTruth, contrast: str) -> list[Path]:
    return series_files(study_dir, next(s.folder for s in truth.series if s.contrast == contrast))


def _value_at(files: list[Path] | tuple[np.ndarray, list[pydicom.FileDataset]], p: list[float],
              radius_px: int = 1) -> float:
    """Mean real-world value around an LPS point in the nearest slice (of files, or a read stack)."""
    stack, datasets = stack_from_files(files) if isinstance(files, list) else files
    k = int(np.argmin([abs(lps_to_pixel(ds, p)[0]) for ds in datasets]))
    _, r, c = (int(round(v)) for v in lps_to_pixel(datasets[k], p))
    return float(stack[k, r - radius_px:r + radius_px + 1, c - radius_px:c + radius_px + 1].mean())


@pytest.mark.parametrize("side", ["left", "right"])
def test_one_hip_field_of_view_leaves_the_other_hip_out(phantom_study: StudyFactory, side: str) -> None:
    study_dir, truth = phantom_study("itoh_left", f"one_hip_{side}")
    other = "right" if side == "left" else "left"
    assert truth.sides[side].imaged and truth.sides[side].coverage["head"] == 1.0
    assert not truth.sides[other].imaged and truth.sides[other].coverage["head"] == 0.0
    assert truth.sides[other].mask_volume_ml == 0.0
    centre_x = truth.sides[side].head_centre_lps_mm[0]
    for s in truth.series:
        ds = pydicom.dcmread(series_files(study_dir, s.folder)[0], stop_before_pixels=True)
        fov = ds.Columns * float(ds.PixelSpacing[1])
        assert 180.0 <= fov <= 240.0 + float(ds.PixelSpacing[1])
        middle = float(ds.ImagePositionPatient[0]) + (ds.Columns - 1) / 2.0 * float(ds.PixelSpacing[1])
        assert abs(middle - centre_x) < 2.0
    if side == "left":  # the affected hip is imaged whole: its truth is the plain study's
        assert truth.sides["left"].present and truth.sides["left"].coverage["oedema"] == 1.0


def test_arthroplasty_is_a_void_on_every_series_and_the_other_hip_keeps_its_oedema(
        phantom_study: StudyFactory) -> None:
    study_dir, truth = phantom_study("itoh_left", "arthroplasty_right")
    plain_dir, plain = phantom_study("itoh_left")
    metal, other = truth.sides["right"], truth.sides["left"]
    assert metal.metal and not metal.present and metal.mask_volume_ml == 0.0
    assert not other.metal and other.present and other.volume_ml == plain.sides["left"].volume_ml
    implant = truth.situations["arthroplasty"]
    assert implant["side"] == "right" and implant["centre"] == pytest.approx(metal.head_centre_lps_mm, abs=1e-3)
    centre = metal.head_centre_lps_mm
    for s in truth.series:
        read = stack_from_files(series_files(study_dir, s.folder))
        assert _value_at(read, centre) < 0.1 * np.percentile(read[0], 99), s.folder
        if s.contrast == "stir":  # around the metal: brighter than the native hip (pile-up, fat not nulled)
            native = stack_from_files(_files(plain_dir, plain, "stir"))[0]
            assert np.percentile(read[0], 99.9) > np.percentile(native, 99.9)


def test_axial_stir_is_the_only_fluid_sensitive_series(phantom_study: StudyFactory) -> None:
    _, truth = phantom_study("itoh_left", "axial_stir")
    fluid = next(s for s in truth.series if s.series_instance_uid == truth.fluid_sensitive_series_uid)
    assert (fluid.contrast, fluid.plane) == ("stir", "axial")
    assert {(s.contrast, s.plane) for s in truth.series} == {("t1", "coronal"), ("stir", "axial")}
    assert truth.t1_series_uid is not None
    assert truth.sides["left"].mask_volume_ml > 0.8 * truth.sides["left"].volume_ml


def test_pd_fs_3d_is_an_isotropic_3d_fat_suppressed_pd(phantom_study: StudyFactory) -> None:
    study_dir, truth = phantom_study("itoh_left", "pd_fs_3d")
    ds = pydicom.dcmread(_files(study_dir, truth, "pdfs")[0], stop_before_pixels=True)
    assert ds.MRAcquisitionType == "3D" and "FS" in ds.ScanOptions
    assert float(ds.RepetitionTime) >= 1500.0 and float(ds.EchoTime) <= 50.0
    assert float(ds.SliceThickness) == float(ds.SpacingBetweenSlices) == pytest.approx(float(ds.PixelSpacing[0]),
                                                                                        rel=0.02)
    assert truth.fluid_sensitive_series_uid == ds.SeriesInstanceUID


def test_dixon_water_is_fluid_sensitive_and_the_fat_image_is_fat(phantom_study: StudyFactory) -> None:
    study_dir, truth = phantom_study("itoh_left", "dixon")
    water = pydicom.dcmread(_files(study_dir, truth, "dixon_water")[0], stop_before_pixels=True)
    fat = pydicom.dcmread(_files(study_dir, truth, "dixon_fat")[0], stop_before_pixels=True)
    assert list(water.ImageType)[2:] == ["DIXON", "WATER"] and list(fat.ImageType)[2:] == ["DIXON", "FAT"]
    assert truth.fluid_sensitive_series_uid == water.SeriesInstanceUID
    # subcutaneous fat at the lateral skin marker's level: bright on the fat image, dark on the water image
    marker = np.asarray(truth.markers[0]["lps_mm"], float)
    subcutaneous = [float(marker[0] - np.sign(marker[0]) * 14.0), float(marker[1]), float(marker[2])]
    water_fat = _value_at(_files(study_dir, truth, "dixon_water"), subcutaneous)
    fat_fat = _value_at(_files(study_dir, truth, "dixon_fat"), subcutaneous)
    assert fat_fat > 5.0 * water_fat


@pytest.mark.parametrize("variant", ["gapped", "partial_coverage"])
def test_thinned_coronal_stacks(phantom_study: StudyFactory, variant: str) -> None:
    _, truth = phantom_study("itoh_left", variant)
    stack = truth.situations["coronal_stack"]
    coronal = [s for s in truth.series if s.plane == "coronal"]
    assert all(s.geometry["n_slices"] == stack["slices"] for s in coronal)
    if variant == "gapped":
        assert (stack["slice_thickness_mm"], stack["spacing_mm"]) == (6.0, 12.0)
        assert truth.sides["left"].coverage["head"] == 1.0  # gaps lie inside the covered extent
    else:
        assert 6 <= stack["slices"] <= 8
        assert all(truth.sides[s].coverage["head"] < 0.95 for s in ("left", "right"))
        assert 0.0 < truth.sides["left"].coverage["oedema"] < 1.0


def test_coil_shading_darkens_one_side(phantom_study: StudyFactory) -> None:
    study_dir, truth = phantom_study("itoh_left", "coil_shading")
    plain_dir, plain = phantom_study("itoh_left")
    gains = truth.situations["coil_shading"]["gain_at_head_centre"]
    for side in ("right", "left"):
        p = truth.sides[side].head_centre_lps_mm
        ratio = _value_at(_files(study_dir, truth, "t1"), p, 3) / _value_at(_files(plain_dir, plain, "t1"), p, 3)
        assert ratio == pytest.approx(gains[side], rel=0.15)
    assert gains[truth.situations["coil_shading"]["dark_side"]] < 0.7


def test_t1_shifted_moves_the_anatomy_of_the_t1_only(phantom_study: StudyFactory) -> None:
    study_dir, truth = phantom_study("itoh_left", "t1_shifted")
    motion = truth.situations["t1_shifted"]
    assert np.linalg.norm(motion["translation_mm"]) == pytest.approx(5.0, abs=1e-3)
    assert max(abs(a) for a in motion["rotation_deg"]) <= 2.0
    marker = truth.markers[0]["lps_mm"]
    matrix, centre = np.asarray(motion["matrix"]), np.asarray(motion["centre_lps_mm"])
    moved = list(matrix @ (np.asarray(marker) - centre) + centre + np.asarray(motion["translation_mm"]))
    t1 = _files(study_dir, truth, "t1")
    assert _value_at(t1, moved) > 1.3 * _value_at(t1, marker)
    stir = _files(study_dir, truth, "stir")
    assert _value_at(stir, marker) > 1.3 * _value_at(stir, moved)


def test_repacked_stir_needs_its_rescale_slope(phantom_study: StudyFactory) -> None:
    study_dir, truth = phantom_study("itoh_left", "repacked_12bit")
    plain_dir, plain = phantom_study("itoh_left")
    ds = pydicom.dcmread(_files(study_dir, truth, "stir")[len(_files(study_dir, truth, "stir")) // 2])
    assert ds.BitsStored == 12 and int(ds.pixel_array.max()) <= 4095
    assert float(ds.RescaleSlope) == truth.situations["repacked_12bit"]["rescale_slope"] > 1.0
    real, _ = stack_from_files(_files(study_dir, truth, "stir"))
    base, _ = stack_from_files(_files(plain_dir, plain, "stir"))
    assert float(np.median(real[real > 0])) / float(np.median(base[base > 0])) == pytest.approx(16.0, rel=0.1)
