"""Acceptance (issue 13): real header values do not fail a study, and received free text is
drawn only after sanitising (no control or bidi characters, bounded length)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset

from marrowmap.settings import Settings
from tests.e2e_pipeline import dicom_files, phantom_study
from workers.dicom_out.demographics import (
    dicom_date,
    dicom_time,
    patient_sex,
    person_name,
    with_valid_demographics,
)
from workers.dicom_out.render import clean_text
from workers.pipeline import analyze_study_dir

RLO, PDF = "\u202e", "\u202c"


@pytest.mark.parametrize(("raw", "valid"), [("M", "M"), ("female", "F"), (" o ", "O"), ("0000", ""), ("U", "")])
def test_patient_sex_nearest_valid(raw: str, valid: str) -> None:
    assert patient_sex(raw) == valid


@pytest.mark.parametrize(("raw", "valid"), [("19700101", "19700101"), ("1970-01-02", "19700102"),
                                            ("1970.01.03", "19700103"), ("19701301", ""), ("0000", "")])
def test_dates_nearest_valid(raw: str, valid: str) -> None:
    assert dicom_date(raw) == valid


def test_times_and_names() -> None:
    assert dicom_time("12:30:05") == "123005" and dicom_time("999999") == "" and dicom_time("1230") == "1230"
    assert person_name("Doe^John\r\n") == "Doe^John"
    assert person_name("a^b^c^d^e^f^g") == "a^b^c^d^e f g"
    assert person_name("X" * 80 + "^Y") == "X" * 64 + "^Y"


def test_only_invalid_values_are_replaced_and_the_source_is_untouched() -> None:
    ds = Dataset()
    ds.PatientSex, ds.PatientBirthDate, ds.StudyDate, ds.PatientName = "0000", "1970-01-02", "20260101", "Doe^Jane"
    [fixed] = with_valid_demographics([ds])
    assert (fixed.PatientSex, fixed.PatientBirthDate, fixed.StudyDate, fixed.PatientName) == (
        "", "19700102", "20260101", "Doe^Jane")
    assert ds.PatientSex == "0000", "the received header is not modified"
    clean = Dataset()
    clean.PatientSex = "F"
    assert with_valid_demographics([clean])[0] is clean


def test_clean_text_drops_controls_and_bidi_and_bounds_length() -> None:
    assert clean_text(f"COR STIR\r\nX {RLO}evil{PDF}\x07") == "COR STIR X evil"
    assert clean_text("a\u200bb\u2066c\u2069") == "abc"
    assert clean_text("x" * 500, 64) == "x" * 63 + "\u2026"


def test_hip_phantom_with_patient_sex_0000_and_rtl_description_is_analysed(tmp_path: Path) -> None:
    source = phantom_study(tmp_path / "phantoms")
    odd = tmp_path / "odd"
    for path in dicom_files(source):
        ds = dcmread(path)
        ds.SpecificCharacterSet = "ISO_IR 192"
        ds.PatientSex = "0000"
        if "STIR" in str(ds.SeriesDescription):
            ds.SeriesDescription = f"COR STIR\r\nX {RLO}evil{PDF} text"
        target = odd / path.relative_to(source)
        target.parent.mkdir(parents=True, exist_ok=True)
        ds.save_as(target)

    result = analyze_study_dir(odd, tmp_path / "out", settings=Settings(_env_file=None))

    assert result.status == "analyzed", result.reason
    kinds = sorted({o.kind for o in result.outputs})
    assert kinds == ["kos", "pmap", "sc_overlay", "sc_summary", "seg", "sr"]
    for output in result.outputs:
        ds = dcmread(tmp_path / "out" / output.path)
        assert ds.PatientSex == "" and ds.SpecificCharacterSet == "ISO_IR 192"
    report = json.loads((tmp_path / "out" / "result.json").read_text())
    assert any(RLO in s["series_description"] for s in report["series"]), "the record keeps what was received"
