"""Phantom acquisition variants: valid files, geometry, encodings and vendor headers (small mode)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from pydicom.uid import JPEG2000Lossless, JPEGLSLossless, RLELossless

from tests.phantom_fixtures import (
    StudyFactory,
    dciodvfy_errors,
    lps_to_pixel,
    phantom_study,
    series_files,
    stack_from_files,
)
from workers.phantom import VARIANTS, GroundTruth, truth_dir

__all__ = ["phantom_study"]


def _folder(truth: GroundTruth, contrast: str, plane: str | None = None) -> str:
    return next(s.folder for s in truth.series
                if s.contrast == contrast and (plane is None or s.plane == plane))


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_variant_passes_dciodvfy(phantom_study: StudyFactory, variant: str) -> None:
    study_dir, truth = phantom_study("itoh_left", variant)
    for s in truth.series:
        files = series_files(study_dir, s.folder)
        assert len(files) == s.n_files > 0
        assert dciodvfy_errors(files[0]) == [], files[0]


def _bright_at(folder_files: list[Path], p: list[float]) -> tuple[float, float]:
    """(max value around the LPS point in the nearest slice, distance of that slice in mm)."""
    stack, datasets = stack_from_files(folder_files)
    dist = [abs(lps_to_pixel(ds, p)[0]) for ds in datasets]
    k = int(np.argmin(dist))
    _, r, c = lps_to_pixel(datasets[k], p)
    r, c = int(round(r)), int(round(c))
    return float(stack[k, max(r - 1, 0):r + 2, max(c - 1, 0):c + 2].max()), dist[k]


@pytest.mark.parametrize("variant", ["", "oblique", "feet_first", "mismatched_grids"])
def test_skin_markers_are_where_the_truth_says(phantom_study: StudyFactory, variant: str) -> None:
    """The Gd marker capsules are bright at their truth LPS points through the file geometry."""
    study_dir, truth = phantom_study("itoh_left", *([variant] if variant else []))
    files = series_files(study_dir, _folder(truth, "t1", "coronal"))
    for marker in truth.markers:
        p = marker["lps_mm"]
        value, dist = _bright_at(files, p)
        assert dist < 3.0, marker["name"]
        # brighter than the skin fat just inside it, and nothing at the mirror point
        # (where a left/right flip would put it) when a slice passes there
        inside, _ = _bright_at(files, [p[0] - np.sign(p[0]) * 14.0, p[1], p[2]])
        mirrored, mirror_dist = _bright_at(files, [-p[0], p[1], p[2]])
        assert value > 1.1 * inside, marker["name"]
        if mirror_dist < 3.0:
            assert mirrored < 0.3 * value, marker["name"]


def test_feet_first_geometry_is_consistent(phantom_study: StudyFactory) -> None:
    study_dir, truth = phantom_study("itoh_left", "feet_first")
    ds = pydicom.dcmread(series_files(study_dir, _folder(truth, "stir"))[0], stop_before_pixels=True)
    assert ds.PatientPosition == "FFS"
    assert [float(v) for v in ds.ImageOrientationPatient] == [-1.0, 0.0, 0.0, 0.0, 0.0, 1.0]
    # the oedema truth is still on patient left (+x)
    img = sitk.ReadImage(str(truth_dir(study_dir.parent) / "oedema.nii.gz"))
    idx = np.argwhere(sitk.GetArrayFromImage(img) == 2)[0][::-1]
    point = img.TransformIndexToPhysicalPoint([int(i) for i in idx])  # type: ignore[no-untyped-call]
    assert point[0] > 0


def test_oblique_coronal_is_tilted_15_degrees(phantom_study: StudyFactory) -> None:
    study_dir, truth = phantom_study("itoh_left", "oblique")
    ds = pydicom.dcmread(series_files(study_dir, _folder(truth, "stir"))[0], stop_before_pixels=True)
    row = np.asarray(ds.ImageOrientationPatient[:3], float)
    assert np.degrees(np.arccos(abs(row[0]))) == pytest.approx(15.0, abs=0.01)


def test_mismatched_grids_differ_in_fov_matrix_and_positions(phantom_study: StudyFactory) -> None:
    study_dir, truth = phantom_study("itoh_left", "mismatched_grids")
    t1 = pydicom.dcmread(series_files(study_dir, _folder(truth, "t1"))[0], stop_before_pixels=True)
    st = pydicom.dcmread(series_files(study_dir, _folder(truth, "stir"))[0], stop_before_pixels=True)
    assert t1.Rows != st.Rows and t1.PixelSpacing != st.PixelSpacing
    assert t1.ImagePositionPatient != st.ImagePositionPatient
    assert t1.SliceThickness != st.SliceThickness
    assert t1.FrameOfReferenceUID == st.FrameOfReferenceUID


def test_axial_only_has_the_truth_on_the_axial_t2fs(phantom_study: StudyFactory) -> None:
    _, truth = phantom_study("itoh_left", "axial_only")
    assert {s.plane for s in truth.series} == {"axial"}
    fs = next(s for s in truth.series if s.series_instance_uid == truth.fluid_sensitive_series_uid)
    assert fs.contrast == "t2fs" and truth.mask_grid["normal"] == [0.0, 0.0, 1.0]
    assert truth.sides["left"].mask_volume_ml > 0.5 * truth.sides["left"].volume_ml


def test_enhanced_stir_is_one_multiframe_object(phantom_study: StudyFactory) -> None:
    study_dir, truth = phantom_study("itoh_left", "enhanced_stir")
    _, plain = phantom_study("itoh_left")
    files = series_files(study_dir, _folder(truth, "stir"))
    assert len(files) == 1
    ds = pydicom.dcmread(files[0])
    assert ds.SOPClassUID == pydicom.uid.EnhancedMRImageStorage
    n = int(ds.NumberOfFrames)
    assert n == truth.mask_grid["n_slices"] and ds.pixel_array.shape == (n, ds.Rows, ds.Columns)
    mr = ds.SharedFunctionalGroupsSequence[0].MRModifierSequence[0]
    assert mr.InversionRecovery == "YES" and float(mr.InversionTimes) == 160.0
    positions = [np.asarray(f.PlanePositionSequence[0].ImagePositionPatient, float)
                 for f in ds.PerFrameFunctionalGroupsSequence]
    steps = np.diff(np.asarray(positions), axis=0)
    assert np.allclose(np.linalg.norm(steps, axis=1), truth.mask_grid["slice_spacing_mm"])
    # same pixels as the classic STIR of the same acquisition
    classic, _ = stack_from_files(series_files(phantom_study("itoh_left")[0], _folder(plain, "stir")))
    assert np.array_equal(ds.pixel_array.astype(np.float32), classic)


@pytest.mark.parametrize("variant,syntax", [("jpeg2000", JPEG2000Lossless), ("jpegls", JPEGLSLossless),
                                            ("rle", RLELossless)])
def test_lossless_encodings_decode_to_the_same_pixels(phantom_study: StudyFactory, variant: str,
                                                      syntax: str) -> None:
    study_dir, truth = phantom_study("itoh_left", variant)
    plain_dir, plain = phantom_study("itoh_left")
    for s, p in zip(truth.series, plain.series, strict=True):
        enc = series_files(study_dir, s.folder)
        ref = series_files(plain_dir, p.folder)
        ds = pydicom.dcmread(enc[0])
        assert ds.file_meta.TransferSyntaxUID == syntax
        assert np.array_equal(ds.pixel_array, pydicom.dcmread(ref[0]).pixel_array)


@pytest.mark.parametrize("vendor,manufacturer", [("siemens", "SIEMENS"), ("ge", "GE MEDICAL SYSTEMS"),
                                                 ("philips", "Philips Medical Systems")])
def test_vendor_spellings(phantom_study: StudyFactory, vendor: str, manufacturer: str) -> None:
    study_dir, truth = phantom_study("itoh_left", vendor)
    stir = pydicom.dcmread(series_files(study_dir, _folder(truth, "stir"))[0])
    t2 = pydicom.dcmread(series_files(study_dir, _folder(truth, "t2fs"))[0], stop_before_pixels=True)
    assert stir.Manufacturer == manufacturer and float(stir.InversionTime) == 160.0
    assert "IR" in stir.ScanningSequence
    if vendor == "siemens":
        assert stir.SequenceName.startswith("*tir2d") and "tirm" in stir.SeriesDescription
    if vendor == "ge":
        assert "SAT_GEMS" in t2.ScanOptions
    if vendor == "philips":
        assert "SPAIR" in t2.SeriesDescription and float(stir.RescaleSlope) != 1.0
        plain_dir, plain = phantom_study("itoh_left")
        ref = pydicom.dcmread(series_files(plain_dir, _folder(plain, "stir"))[0]).pixel_array
        real = stir.pixel_array * float(stir.RescaleSlope) + float(stir.RescaleIntercept)
        assert np.abs(real - ref).max() <= float(stir.RescaleSlope)


def test_noisy_and_low_res(phantom_study: StudyFactory) -> None:
    plain_dir, plain = phantom_study("itoh_left")
    noisy_dir, noisy = phantom_study("itoh_left", "noisy")
    low_dir, low = phantom_study("itoh_left", "low_res")
    a, _ = stack_from_files(series_files(plain_dir, _folder(plain, "t1")))
    b, _ = stack_from_files(series_files(noisy_dir, _folder(noisy, "t1")))
    # the Rician noise floor in the air of the image corner (outside the body)
    assert b[:, :4, :3].mean() > 1.8 * a[:, :4, :3].mean()
    c, _ = stack_from_files(series_files(low_dir, _folder(low, "t1")))
    assert c.shape[1] < a.shape[1] and c.shape[0] < a.shape[0]


def test_fat_sat_failure_brightens_healthy_marrow_without_oedema(phantom_study: StudyFactory) -> None:
    study_dir, truth = phantom_study("itoh_left", "fat_sat_failure")
    plain_dir, plain = phantom_study("itoh_left")
    right = truth.sides["right"]
    assert right.fat_sat_failure and not right.present and right.mask_volume_ml == 0.0
    p = right.head_centre_lps_mm
    stir_fail, _ = _bright_at(series_files(study_dir, _folder(truth, "stir")), p)
    stir_ok, _ = _bright_at(series_files(plain_dir, _folder(plain, "stir")), p)
    t1_fail, _ = _bright_at(series_files(study_dir, _folder(truth, "t1")), p)
    t1_ok, _ = _bright_at(series_files(plain_dir, _folder(plain, "t1")), p)
    assert stir_fail > 2.5 * stir_ok
    assert t1_fail == pytest.approx(t1_ok, rel=0.05)  # still fatty on T1


@pytest.mark.parametrize("variant,name,charset", [
    ("nonascii_name", "Müller^Jürgen", "ISO_IR 100"),
    ("nonascii_utf8", "Иванов^Пётр=Ηλίας^Δημήτρης", "ISO_IR 192"),
])
def test_non_ascii_names(phantom_study: StudyFactory, variant: str, name: str, charset: str) -> None:
    study_dir, truth = phantom_study("itoh_left", variant)
    f = series_files(study_dir, _folder(truth, "t1"))[0]
    ds = pydicom.dcmread(f, stop_before_pixels=True)
    assert ds.SpecificCharacterSet == charset and str(ds.PatientName) == name
    raw = f.read_bytes()
    assert name.split("^")[0].encode("latin-1" if charset == "ISO_IR 100" else "utf-8") in raw


def test_other_patient_has_the_same_name_and_another_id(phantom_study: StudyFactory) -> None:
    a_dir, a = phantom_study("itoh_left")
    b_dir, b = phantom_study("itoh_left", "other_patient")
    da = pydicom.dcmread(next(a_dir.glob("*/IM0001.dcm")), stop_before_pixels=True)
    db = pydicom.dcmread(next(b_dir.glob("*/IM0001.dcm")), stop_before_pixels=True)
    assert da.PatientName == db.PatientName and da.PatientID != db.PatientID
    assert a.patient_id != b.patient_id and a.study_instance_uid != b.study_instance_uid


def test_localizer_is_three_planes_in_one_series(phantom_study: StudyFactory) -> None:
    study_dir, truth = phantom_study("itoh_left", "localizer")
    loc = next(s for s in truth.series if s.contrast == "localizer")
    normals = set()
    for f in series_files(study_dir, loc.folder):
        ds = pydicom.dcmread(f, stop_before_pixels=True)
        iop = np.asarray(ds.ImageOrientationPatient, float)
        normals.add(tuple(np.abs(np.round(np.cross(iop[:3], iop[3:]))).astype(int)))
    assert normals == {(1, 0, 0), (0, 1, 0), (0, 0, 1)}
