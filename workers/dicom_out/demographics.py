"""Patient and study attributes of the sources, made writable: copied as received where valid,
else the nearest valid form (each repair logged by attribute and rule, never by value).

Real headers carry values that highdicom or the standard reject (PatientSex ``0000``, dates
with dashes, person names with control characters, over-long strings). The outputs copy the
patient and study modules of a source; without these repairs one odd value would cost the
radiologist every output of the study.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Sequence
from datetime import date

from pydicom.dataset import Dataset

from marrowmap.logs import get_logger

log = get_logger(__name__)

_SEXES = {"M": "M", "MALE": "M", "F": "F", "FEMALE": "F", "O": "O", "OTHER": "O"}
_DATE_ATTRIBUTES = ("PatientBirthDate", "StudyDate", "SeriesDate", "AcquisitionDate", "ContentDate")
_TIME_ATTRIBUTES = ("PatientBirthTime", "StudyTime", "SeriesTime", "AcquisitionTime", "ContentTime")
_PERSON_ATTRIBUTES = ("PatientName", "ReferringPhysicianName")
#: attribute -> maximum length of its VR (SH 16, LO 64)
_STRING_LIMITS = {"PatientID": 64, "IssuerOfPatientID": 64, "AccessionNumber": 16, "StudyID": 16,
                  "StudyDescription": 64, "InstitutionName": 64}
_CONTROL = re.compile(r"[\x00-\x1a\x1c-\x1f\x7f]")  # ESC (0x1b) stays: ISO 2022 code extensions
_DATE_FORMS = (re.compile(r"^(\d{4})-(\d{2})-(\d{2})$"), re.compile(r"^(\d{4})\.(\d{2})\.(\d{2})$"),
               re.compile(r"^(\d{4})/(\d{2})/(\d{2})$"), re.compile(r"^(\d{4})(\d{2})(\d{2})$"))
_TIME = re.compile(r"^([01]\d|2[0-3])([0-5]\d([0-5]\d(\.\d{1,6})?)?)?$")


def patient_sex(value: str) -> str:
    """M, F or O for a recognisable value, else '' (unknown; Type 2)."""
    return _SEXES.get(value.strip().upper(), "")


def dicom_date(value: str) -> str:
    """YYYYMMDD for a real calendar date written as YYYYMMDD / YYYY-MM-DD / YYYY.MM.DD / YYYY/MM/DD, else ''."""
    text = value.strip()
    for form in _DATE_FORMS:
        match = form.match(text)
        if match:
            year, month, day = (int(g) for g in match.groups())
            try:
                date(year, month, day)
            except ValueError:
                return ""
            return f"{year:04d}{month:02d}{day:02d}"
    return ""


def dicom_time(value: str) -> str:
    """HHMMSS.FFFFFF form (colons dropped) when it is a valid time, else ''."""
    text = value.strip().replace(":", "")
    return text if _TIME.match(text) else ""


def person_name(value: str) -> str:
    """Control characters dropped, at most 5 components per group of at most 64 characters each."""
    groups = []
    for group in _CONTROL.sub("", value).split("=")[:3]:
        parts = group.split("^")
        if len(parts) > 5:
            parts = [*parts[:4], " ".join(p for p in parts[4:] if p)]
        groups.append("^".join(p[:64] for p in parts))
    return "=".join(groups)


def short_string(value: str, limit: int) -> str:
    """Control characters and backslashes dropped, cut to ``limit`` characters."""
    return _CONTROL.sub("", value).replace("\\", " ")[:limit]


def _repairs(ds: Dataset) -> dict[str, tuple[str, str]]:
    """attribute -> (valid value, rule applied) for every value of ``ds`` that needs a repair."""
    found: dict[str, tuple[str, str]] = {}
    if "PatientSex" in ds:
        raw = str(ds.PatientSex or "")
        fixed = patient_sex(raw)
        if fixed != raw:
            found["PatientSex"] = (fixed, "not M/F/O: nearest of M/F/O or empty (unknown)")
    for kw in _DATE_ATTRIBUTES:
        raw = str(ds.get(kw) or "")
        if raw and dicom_date(raw) != raw:
            found[kw] = (dicom_date(raw), "not a YYYYMMDD date: reformatted, or empty when not a real date")
    for kw in _TIME_ATTRIBUTES:
        raw = str(ds.get(kw) or "")
        if raw and dicom_time(raw) != raw:
            found[kw] = (dicom_time(raw), "not an HHMMSS time: colons dropped, or empty")
    for kw in _PERSON_ATTRIBUTES:
        raw = str(ds.get(kw) or "")
        if raw and person_name(raw) != raw:
            found[kw] = (person_name(raw), "control characters or over-long components removed")
    for kw, limit in _STRING_LIMITS.items():
        raw = str(ds.get(kw) or "")
        if raw and short_string(raw, limit) != raw:
            found[kw] = (short_string(raw, limit), f"control characters removed, cut to {limit} characters")
    return found


def with_valid_demographics(datasets: Sequence[Dataset]) -> list[Dataset]:
    """The datasets, each itself when its patient/study values are writable, else a copy with the
    nearest valid forms; one log line names the attributes repaired and the rules."""
    out = []
    applied: dict[str, str] = {}
    for ds in datasets:
        repairs = _repairs(ds)
        if not repairs:
            out.append(ds)
            continue
        fixed = copy.deepcopy(ds)
        for kw, (value, rule) in repairs.items():
            setattr(fixed, kw, value)
            applied[kw] = rule
        out.append(fixed)
    if applied:
        log.warning("output.header_repaired", study_instance_uid=str(datasets[0].get("StudyInstanceUID", "")),
                    repaired_datasets=sum(1 for a, b in zip(out, datasets, strict=True) if a is not b),
                    repairs=applied)
    return out
