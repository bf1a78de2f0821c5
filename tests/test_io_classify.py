"""Sequence identification: real MR files shipped with pydicom/pydicom-data, vendor spellings, planes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset

from tests.io_fixtures import (
    CORONAL,
    STIR_COR,
    SeriesSpec,
    centred_geometry,
    marker_volume,
    pydicom_file,
    rotation,
    write_enhanced,
)
from workers.io.classify import classify_series, plane_from_orientation
from workers.io.load import load_study
from workers.io.types import Plane, SeriesKind


def _header(path: str) -> Dataset:
    found = pydicom_file(path)
    assert found is not None, path
    return dcmread(found, stop_before_pixels=True)


# --- real files: headers that make the answer clear -------------------------------------


@pytest.mark.parametrize(
    "name",
    ["MR_small.dcm", "MR_small_RLE.dcm", "MR_small_jpeg_ls_lossless.dcm", "MR_small_jp2klossless.dcm",
     "MR_small_bigendian.dcm", "MR_small_implicit.dcm"],
)
def test_pydicom_mr_small_is_axial_t2_without_fat_suppression(name: str) -> None:
    """Toshiba SE, TR 4000 / TE 240, IOP (1,0,0,0,1,0)."""
    cls = classify_series([_header(name)])

    assert (cls.kind, cls.plane, cls.fat_suppressed) == (SeriesKind.T2, Plane.AXIAL, False)
    assert "TR=4000ms TE=240ms (long TR, long TE: T2-weighted)" in cls.evidence


@pytest.mark.parametrize("name", ["MR2_UNCR.dcm", "MR2_UNCI.dcm", "MR2_J2KR.dcm", "MR2_J2KI.dcm"])
def test_pydicom_data_mr2_is_oblique_t1_spin_echo(name: str) -> None:
    """Philips 'T1W/SE/1024', TR 350 / TE 27, slice normal 34.7 deg from sagittal."""
    cls = classify_series([_header(name)])

    assert (cls.kind, cls.plane, cls.fat_suppressed) == (SeriesKind.T1, Plane.OBLIQUE, False)
    assert any("34.7 deg from sagittal" in e for e in cls.evidence)


@pytest.mark.parametrize("name", ["MR-SIEMENS-DICOM-WithOverlays.dcm", "examples_overlay.dcm"])
def test_siemens_vibe_mpr_with_contrast_is_derived(name: str) -> None:
    """ImageType DERIVED\\SECONDARY\\MPR, t1_vibe_fs, ContrastBolusAgent Omniscan."""
    cls = classify_series([_header(name)])

    assert cls.kind is SeriesKind.DERIVED
    assert cls.plane is Plane.AXIAL
    assert "ContrastBolusAgent=11 ml Omniscan" in cls.evidence
    assert "ScanOptions contains FS" in cls.evidence


@pytest.mark.parametrize("name", ["emri_small.dcm", "emri_small_RLE.dcm", "emri_small_jpeg_2k_lossless.dcm"])
def test_enhanced_mr_t1_tfe_water_excitation(name: str) -> None:
    """Philips Enhanced MR: AcquisitionContrast T1, T1TFE, SpectrallySelectedExcitation WATER."""
    cls = classify_series([_header(name)])

    assert cls.kind is SeriesKind.T1
    assert cls.fat_suppressed
    assert cls.plane is Plane.UNKNOWN  # no functional groups in these files
    assert "AcquisitionContrast=T1" in cls.evidence


# --- vendor spellings -------------------------------------------------------------------


def _ds(**attributes: Any) -> Dataset:
    ds = Dataset()
    ds.ImageType = ["ORIGINAL", "PRIMARY", "M", "NORM"]
    ds.ImageOrientationPatient = [1, 0, 0, 0, 0, -1]
    ds.MagneticFieldStrength = 1.5
    for keyword, value in attributes.items():
        setattr(ds, keyword, value)
    return ds


CASES: dict[str, tuple[dict[str, Any], SeriesKind, bool]] = {
    "siemens_stir_tirm": (
        {"SeriesDescription": "t2_tirm_cor", "ScanningSequence": ["SE", "IR"], "SequenceVariant": ["SK", "SP", "MP"],
             "ScanOptions": ["IR"], "SequenceName": "*tir2d1_13", "RepetitionTime": 5000, "EchoTime": 41, "InversionTime": 160},
        SeriesKind.STIR, True),
    "ge_stir": (
        {"SeriesDescription": "COR STIR", "ScanningSequence": ["SE", "IR"], "ScanOptions": ["FAST_GEMS", "IR_GEMS"],
             "RepetitionTime": 4200, "EchoTime": 42, "InversionTime": 150},
        SeriesKind.STIR, True),
    "philips_stir_3t": (
        {"SeriesDescription": "STIR_COR", "ScanningSequence": "IR", "ScanOptions": "", "RepetitionTime": 3500,
             "EchoTime": 30, "InversionTime": 220, "MagneticFieldStrength": 3},
        SeriesKind.STIR, True),
    "stir_from_text_only": (
        {"SeriesDescription": "Cor STIR", "RepetitionTime": 4000, "EchoTime": 40}, SeriesKind.STIR, True),
    "flair_long_ti": (
        {"SeriesDescription": "t2_tirm_dark-fluid", "ScanningSequence": ["SE", "IR"], "RepetitionTime": 9000,
             "EchoTime": 85, "InversionTime": 2500},
        SeriesKind.FLAIR, False),
    "flair_from_inversion_time_only": (
        {"SeriesDescription": "AX FLAIR", "RepetitionTime": 9000, "EchoTime": 90, "InversionTime": 2400},
        SeriesKind.FLAIR, False),
    "stir_from_inversion_time_only": (
        {"SeriesDescription": "COR IR", "RepetitionTime": 4000, "EchoTime": 30, "InversionTime": 150},
        SeriesKind.STIR, True),
    "siemens_t2_fs": (
        {"SeriesDescription": "t2_tse_fs_cor", "ScanningSequence": "SE", "ScanOptions": ["PFP", "FS"],
             "RepetitionTime": 4000, "EchoTime": 80},
        SeriesKind.T2_FS, True),
    "ge_t2_fs": (
        {"SeriesDescription": "COR T2 FSE", "ScanningSequence": "SE", "ScanOptions": ["FAST_GEMS", "SAT_GEMS", "FS"],
             "RepetitionTime": 3800, "EchoTime": 85},
        SeriesKind.T2_FS, True),
    "ge_sat_only_not_fat_sat": (
        {"SeriesDescription": "AX T2 FSE", "ScanningSequence": "SE", "ScanOptions": ["FAST_GEMS", "SAT_GEMS"],
             "RepetitionTime": 3800, "EchoTime": 85},
        SeriesKind.T2, False),
    "philips_pd_spair": (
        {"SeriesDescription": "PDW_SPAIR_COR", "ScanningSequence": "SE", "ScanOptions": "", "RepetitionTime": 3000,
             "EchoTime": 30},
        SeriesKind.PD_FS, True),
    "pd_without_fs": (
        {"SeriesDescription": "COR PD TSE", "ScanningSequence": "SE", "RepetitionTime": 3000, "EchoTime": 25},
        SeriesKind.PD, False),
    "pd_fs_negated": (
        {"SeriesDescription": "COR PD NFS", "ScanningSequence": "SE", "RepetitionTime": 3000, "EchoTime": 25},
        SeriesKind.PD, False),
    "t2_without_fs": (
        {"SeriesDescription": "AX T2 TSE", "ScanningSequence": "SE", "RepetitionTime": 4500, "EchoTime": 100},
        SeriesKind.T2, False),
    "t1_spin_echo": (
        {"SeriesDescription": "COR T1 SE", "ScanningSequence": "SE", "RepetitionTime": 520, "EchoTime": 12},
        SeriesKind.T1, False),
    "t1_description_overruled_by_physics": (
        {"SeriesDescription": "T1 cor", "ScanningSequence": "SE", "RepetitionTime": 4000, "EchoTime": 90},
        SeriesKind.T2, False),
    "siemens_dixon_water": (
        {"SeriesDescription": "t2_tse_dixon_cor_W", "ImageType": ["DERIVED", "PRIMARY", "DIXON", "WATER"],
             "RepetitionTime": 4000, "EchoTime": 70},
        SeriesKind.DIXON_WATER, True),
    "siemens_dixon_opp": (
        {"SeriesDescription": "t1_vibe_dixon_opp", "ImageType": ["ORIGINAL", "PRIMARY", "DIXON", "OPP_PHASE"],
             "RepetitionTime": 7, "EchoTime": 2.4},
        SeriesKind.DIXON_OPPOSED_PHASE, False),
    "siemens_dixon_in": (
        {"SeriesDescription": "t1_vibe_dixon_in", "ImageType": ["ORIGINAL", "PRIMARY", "DIXON", "IN_PHASE"],
             "RepetitionTime": 7, "EchoTime": 4.8},
        SeriesKind.DIXON_IN_PHASE, False),
    "ge_ideal_fat": (
        {"SeriesDescription": "FAT: COR T2 IDEAL", "RepetitionTime": 3500, "EchoTime": 60},
        SeriesKind.DIXON_FAT, False),
    "ge_ideal_water": (
        {"SeriesDescription": "WATER: COR T2 IDEAL", "RepetitionTime": 3500, "EchoTime": 60},
        SeriesKind.DIXON_WATER, True),
    "philips_mdixon_water": (
        {"SeriesDescription": "T2_mDIXON_TSE", "ImageType": ["DERIVED", "PRIMARY", "W", "W"],
             "RepetitionTime": 3000, "EchoTime": 80},
        SeriesKind.DIXON_WATER, True),
    "siemens_diffusion": (
        {"SeriesDescription": "ep2d_diff_b50_800", "ScanningSequence": "EP", "RepetitionTime": 5000, "EchoTime": 70,
             "DiffusionBValue": 800},
        SeriesKind.DIFFUSION, False),
    "adc_map": (
        {"SeriesDescription": "ep2d_diff_ADC", "ImageType": ["DERIVED", "PRIMARY", "DIFFUSION", "ADC"],
             "ScanningSequence": "EP", "RepetitionTime": 5000, "EchoTime": 70},
        SeriesKind.ADC, False),
    "localizer": (
        {"SeriesDescription": "localizer", "ScanningSequence": "GR", "RepetitionTime": 8, "EchoTime": 4},
        SeriesKind.LOCALIZER, False),
    "ge_three_plane_loc": (
        {"SeriesDescription": "3-Plane Loc", "ImageType": ["ORIGINAL", "PRIMARY", "LOCALIZER"], "RepetitionTime": 6,
             "EchoTime": 2},
        SeriesKind.LOCALIZER, False),
    "mpr": (
        {"SeriesDescription": "COR T1 MPR", "ImageType": ["DERIVED", "SECONDARY", "MPR"], "RepetitionTime": 600,
             "EchoTime": 10},
        SeriesKind.DERIVED, False),
    "subtraction": (
        {"SeriesDescription": "t1_fl3d_SUB", "ImageType": ["DERIVED", "PRIMARY", "SUB"], "RepetitionTime": 5,
             "EchoTime": 2},
        SeriesKind.DERIVED, False),
    "post_contrast_agent": (
        {"SeriesDescription": "COR T1 FS", "ScanOptions": ["FS"], "RepetitionTime": 600, "EchoTime": 10,
             "ContrastBolusAgent": "Gadovist"},
        SeriesKind.POST_CONTRAST, True),
    "post_contrast_text": (
        {"SeriesDescription": "T1 FS POST GD", "ScanOptions": ["FS"], "RepetitionTime": 600, "EchoTime": 10},
        SeriesKind.POST_CONTRAST, True),
    "pre_contrast_not_post": (
        {"SeriesDescription": "T1 pre", "RepetitionTime": 600, "EchoTime": 10, "ContrastBolusAgent": "Gadovist"},
        SeriesKind.T1, False),
    "t2_star_gre_not_t1": (
        {"SeriesDescription": "COR MEDIC", "ScanningSequence": "GR", "RepetitionTime": 600, "EchoTime": 18, "FlipAngle": 30},
        SeriesKind.UNKNOWN, False),
    "inversion_with_intermediate_ti": (
        {"SeriesDescription": "T1 FLAIR", "ScanningSequence": ["SE", "IR"], "RepetitionTime": 2000, "EchoTime": 10,
             "InversionTime": 800},
        SeriesKind.UNKNOWN, False),
}


@pytest.mark.parametrize("case", list(CASES))
def test_vendor_header_variants(case: str) -> None:
    attributes, kind, fat_suppressed = CASES[case]

    cls = classify_series([_ds(**attributes)])

    assert cls.kind is kind, cls.evidence
    assert cls.fat_suppressed is fat_suppressed, cls.evidence
    assert cls.evidence


def test_stir_evidence_strings() -> None:
    attributes = CASES["siemens_stir_tirm"][0]

    evidence = classify_series([_ds(**attributes)]).evidence

    assert "ScanningSequence=SE\\IR" in evidence
    assert "ScanOptions contains IR" in evidence
    assert "TI=160ms (STIR range at 1.5T, typical)" in evidence
    assert "SeriesDescription contains 'tirm'" in evidence


def test_mixed_orientations_in_one_series_is_a_localizer() -> None:
    datasets = [_ds(SeriesDescription="survey", ImageOrientationPatient=iop, RepetitionTime=10, EchoTime=3)
                for iop in ([1, 0, 0, 0, 0, -1], [1, 0, 0, 0, 1, 0], [0, 1, 0, 0, 0, -1])]
    datasets[0].SeriesDescription = "Cor T1"

    cls = classify_series(datasets)

    assert cls.kind is SeriesKind.LOCALIZER
    assert "3 orientations in one series" in cls.evidence


def test_enhanced_mr_stir_from_functional_groups(tmp_path: Path) -> None:
    """InversionRecovery=YES and InversionTimes in MRModifierSequence, no classic TR/TE/TI."""
    shape = (6, 32, 32)
    headers = {**STIR_COR, "SeriesDescription": "cor_ir", "AcquisitionContrast": "UNKNOWN"}
    spec = SeriesSpec(marker_volume(shape, (1, 1, 1)), centred_geometry(CORONAL, shape), headers)
    write_enhanced(tmp_path, spec)

    series = load_study(tmp_path).loaded[0]

    assert series.classification.kind is SeriesKind.STIR
    assert "MRModifierSequence InversionRecovery=YES" in series.classification.evidence
    assert series.classification.plane is Plane.CORONAL


def test_enhanced_mr_t2_fat_suppressed_from_spectral_suppression(tmp_path: Path) -> None:
    shape = (6, 32, 32)
    headers = {"SeriesDescription": "cor_t2", "ScanningSequence": "SE", "RepetitionTime": 4000,
               "EchoTime": 90, "SpectrallySelectedSuppression": "FAT"}
    spec = SeriesSpec(marker_volume(shape, (1, 1, 1)), centred_geometry(CORONAL, shape), headers)
    write_enhanced(tmp_path, spec)

    cls = load_study(tmp_path).loaded[0].classification

    assert cls.kind is SeriesKind.T2_FS
    assert "SpectrallySelectedSuppression=FAT" in cls.evidence


@pytest.mark.parametrize(
    ("axis", "degrees", "plane", "oblique_note"),
    [
        ((1, 0, 0), 0.0, Plane.CORONAL, False),
        ((1, 0, 0), 20.0, Plane.CORONAL, True),
        ((0, 0, 1), -22.0, Plane.CORONAL, True),
        ((1, 0, 0), 30.0, Plane.OBLIQUE, True),
        ((1, 0, 0), 90.0, Plane.AXIAL, False),
        ((0, 0, 1), 90.0, Plane.SAGITTAL, False),
        ((1, 0, 0), 180.0, Plane.CORONAL, False),
    ],
)
def test_plane_from_orientation(axis: tuple[int, int, int], degrees: float, plane: Plane, oblique_note: bool) -> None:
    rot = rotation(axis, degrees)
    iop = [*(rot @ CORONAL[0]), *(rot @ CORONAL[1])]

    found, angle, evidence = plane_from_orientation(iop)

    assert found is plane
    assert ("oblique" in evidence) is oblique_note
    assert angle == pytest.approx(abs(degrees) % 90 if abs(degrees) % 90 <= 45 else 90 - abs(degrees) % 90, abs=0.01)
