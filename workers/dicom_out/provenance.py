"""Headers shared by every MarrowMap output: equipment, dates, patient and study modules.

IHE AI Results style provenance: Manufacturer "MarrowMap", the model name and the
algorithm version as SoftwareVersions, and a Contributing Equipment item naming
MarrowMap as the processing equipment. Dates and times come from the source images
(the latest content/acquisition/series/study date-time found), never from the wall
clock, so rebuilding the same input gives byte-identical objects.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from datetime import UTC, datetime

import highdicom as hd
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes

from marrowmap.logs import get_logger
from marrowmap.markers import MANUFACTURER, MODEL_NAME

log = get_logger(__name__)

DEVICE_SERIAL_NUMBER = "MARROWMAP"

#: (date, time) attribute pairs tried in this order on each source header
_DATE_TIME_PAIRS = (
    ("ContentDate", "ContentTime"),
    ("AcquisitionDate", "AcquisitionTime"),
    ("SeriesDate", "SeriesTime"),
    ("StudyDate", "StudyTime"),
)


#: BodyPartExamined values (CID 4031) of paired structures around the hip
#: Type 2 attributes of the Patient and General Study modules. Anonymised or minimal sources often
#: lack them; highdicom reads them unconditionally, and the outputs must carry them (empty).
TYPE2_PATIENT_STUDY = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyDate",
                       "StudyTime", "ReferringPhysicianName", "StudyID", "AccessionNumber")
PAIRED_BODY_PARTS = frozenset({"HIP", "FEMUR", "THIGH", "LEG", "KNEE", "LOWER_LIMB", "EXTREMITY"})


class MissingSourceDateError(ValueError):
    """No source header carries any date; the outputs would need a wall-clock date."""


def content_datetime(datasets: Sequence[Dataset]) -> tuple[str, str]:
    """The latest (date, time) found on the source headers, as DICOM DA/TM strings."""
    found: list[tuple[str, str]] = []
    for ds in datasets:
        for date_kw, time_kw in _DATE_TIME_PAIRS:
            date = str(ds.get(date_kw) or "").strip()
            if len(date) == 8 and date.isdigit():
                time = str(ds.get(time_kw) or "").strip() or "000000"
                found.append((date, time))
                break
    if not found:
        raise MissingSourceDateError("none of the source headers has a content, acquisition, series or study date")
    return max(found, key=lambda dt: (dt[0], dt[1].split(".")[0].ljust(6, "0")))


def output_datetime(datasets: Sequence[Dataset]) -> tuple[str, str]:
    """``content_datetime`` of the sources; when none carries a date (seen in real exports), the
    current UTC date and time, logged: the outputs need a date, and no source offers one."""
    try:
        return content_datetime(datasets)
    except MissingSourceDateError:
        now = datetime.now(UTC)
        log.warning("output.no_source_date", study_instance_uid=str(datasets[0].get("StudyInstanceUID", ""))
                    if datasets else "", using=now.isoformat(timespec="seconds"),
                    note="no source date: outputs dated now (UTC); a rebuild will differ in its dates")
        return now.strftime("%Y%m%d"), now.strftime("%H%M%S")


def with_type2_attributes(ds: Dataset) -> Dataset:
    """``ds`` itself when it has every Patient/Study Type 2 attribute, else a copy with them present and empty."""
    missing = [kw for kw in TYPE2_PATIENT_STUDY if kw not in ds]
    if not missing:
        return ds
    out = copy.deepcopy(ds)
    for kw in missing:
        setattr(out, kw, "")
    return out


def contributing_equipment(version: str, institution_name: str) -> hd.ContributingEquipment:
    """The Contributing Equipment item that names MarrowMap as the processing equipment."""
    return hd.ContributingEquipment(
        manufacturer=MANUFACTURER,
        purpose_of_reference=codes.DCM.ProcessingEquipment,
        manufacturer_model_name=MODEL_NAME,
        software_versions=version,
        device_serial_number=DEVICE_SERIAL_NUMBER,
        institution_name=institution_name or None,
        contribution_description="Bone marrow oedema analysis (decision support, not for diagnostic use)",
    )


def finish_header(out: hd.SOPClass, ref: Dataset, date: str, time: str, institution_name: str, *,
                  both_hips: bool) -> None:
    """Copy the patient and study modules of ``ref`` exactly and stamp the deterministic dates."""
    if "SpecificCharacterSet" in ref:
        out.SpecificCharacterSet = ref.SpecificCharacterSet
    elif "SpecificCharacterSet" in out:
        del out.SpecificCharacterSet
    out.copy_patient_and_study_information(ref)
    stamps = [("InstanceCreationDate", "InstanceCreationTime"), ("SeriesDate", "SeriesTime")]
    stamps += [pair for pair in (("ContentDate", "ContentTime"), ("DateOfSecondaryCapture", "TimeOfSecondaryCapture"))
               if pair[0] in out]
    for date_kw, time_kw in stamps:
        setattr(out, date_kw, date)
        setattr(out, time_kw, time)
    for item in out.get("ContributingEquipmentSequence", []):
        if "ContributionDateTime" in item:  # highdicom stamps its own item with the wall clock
            item.ContributionDateTime = date + time
    if institution_name:
        out.InstitutionName = institution_name
    if out.Modality not in ("SR", "KO"):  # documents, not images: no body part
        _body_part(out, ref, both_hips)


def _body_part(out: Dataset, ref: Dataset, both_hips: bool) -> None:
    """BodyPartExamined (+ Laterality) of an image output.

    Copied from the source when it is unpaired or comes with its Laterality. An output
    covering both hips whose source names a paired part without laterality (or none)
    says PELVIS: a paired part would need a single-sided Laterality, which a bilateral
    result does not have (dciodvfy: Laterality Type 2C). Any other output (a study that was
    not analysed, maybe not even a hip) keeps the source's part with Laterality present and
    empty: not known (Type 2C).
    """
    part = str(ref.get("BodyPartExamined") or "").strip()
    laterality = str(ref.get("Laterality") or "").strip()
    if part and (part.upper() not in PAIRED_BODY_PARTS or laterality):
        out.BodyPartExamined = part
        if laterality:
            out.Laterality = laterality
    elif both_hips:
        out.BodyPartExamined = "PELVIS"
    else:
        if part:
            out.BodyPartExamined = part
        out.Laterality = ""
