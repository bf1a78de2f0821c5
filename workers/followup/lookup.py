"""Find a study's prior in the prior index, and register an analysed study there (worker side).

The patient is identified by PatientID + IssuerOfPatientID read from the study's own
headers, keyed with the site secret (``marrowmap.priors.patient_key``); never by name. A study whose files
disagree on the patient, or that has no PatientID, is neither compared nor registered.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pydicom import dcmread
from pydicom.errors import InvalidDicomError

from marrowmap.logs import get_logger
from marrowmap.priors import PriorIndex, StudyEntry, patient_key
from workers.analysis.result import AnalysisResult
from workers.followup.compare import ComparisonError
from workers.followup.prior import PriorStudy, load_prior

log = get_logger(__name__)

_TAGS = ["PatientID", "IssuerOfPatientID", "StudyInstanceUID", "StudyDate", "StudyTime", "AccessionNumber"]


@dataclass(frozen=True)
class StudyIdentity:
    """Who and when a study is, as far as the comparison needs: patient key (hashed), study, date."""

    patient_key: str | None
    study_instance_uid: str
    study_date: str = ""
    study_time: str = ""
    accession_number: str = ""
    problem: str = ""


def read_study_identity(folder: Path, *, secret: bytes) -> StudyIdentity:
    """The identity of the study in ``folder`` from the first file of each series (``<series>/*.dcm``);
    the patient key is made with the site ``secret``."""
    firsts = [files[0] for d in sorted(p for p in folder.iterdir() if p.is_dir())
              if (files := sorted(d.glob("*.dcm")))]
    seen: set[tuple[str, str]] = set()
    study: dict[str, str] = {}
    for path in firsts:
        try:
            ds = dcmread(path, stop_before_pixels=True, specific_tags=_TAGS)
        except (OSError, InvalidDicomError):
            continue
        seen.add((str(ds.get("PatientID", "") or "").strip(), str(ds.get("IssuerOfPatientID", "") or "").strip()))
        if not study:
            study = {"study_instance_uid": str(ds.get("StudyInstanceUID", "") or ""),
                     "study_date": str(ds.get("StudyDate", "") or ""),
                     "study_time": str(ds.get("StudyTime", "") or ""),
                     "accession_number": str(ds.get("AccessionNumber", "") or "")}
    if not study:
        return StudyIdentity(None, "", problem="no readable DICOM header")
    if len(seen) != 1:
        return StudyIdentity(None, problem="the series disagree on PatientID / IssuerOfPatientID", **study)
    pid, issuer = seen.pop()
    if not pid:
        return StudyIdentity(None, problem="no PatientID", **study)
    return StudyIdentity(patient_key(pid, issuer, secret=secret), **study)


def find_prior_study(index: PriorIndex, identity: StudyIdentity) -> PriorStudy | None:
    """The patient's most recent earlier analysed study whose result.json is still readable, else None."""
    if identity.patient_key is None:
        log.info("prior.none", study_instance_uid=identity.study_instance_uid, reason=identity.problem)
        return None
    for entry in index.priors(identity.patient_key, identity.study_instance_uid, identity.study_date,
                              identity.study_time):
        try:
            prior = load_prior(Path(entry.result_path), job_id=entry.job_id)
        except ComparisonError as exc:
            log.warning("prior.unreadable", study_instance_uid=identity.study_instance_uid,
                        prior_study_instance_uid=entry.study_instance_uid, reason=str(exc))
            continue
        log.info("prior.found", study_instance_uid=identity.study_instance_uid,
                 prior_study_instance_uid=entry.study_instance_uid, prior_job_id=entry.job_id)
        return prior
    log.info("prior.none", study_instance_uid=identity.study_instance_uid, reason="no earlier analysed study")
    return None


def register_study(index: PriorIndex, identity: StudyIdentity, job_id: str, result: AnalysisResult,
                   result_path: Path) -> bool:
    """Record the analysed study under its patient key; False when it has no usable identity."""
    if identity.patient_key is None or not identity.study_instance_uid:
        return False
    index.register(identity.patient_key, StudyEntry(
        study_instance_uid=identity.study_instance_uid, study_date=identity.study_date,
        study_time=identity.study_time, accession_number=identity.accession_number, job_id=job_id,
        result_path=str(result_path), status=result.status))
    return True
