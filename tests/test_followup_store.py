"""Prior lookup with the real Redis: patient key = HMAC(site secret; PatientID, issuer), never the name;
the most recent earlier analysed study of the same key is the prior."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pydicom
import pytest
import redis
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, generate_uid

from marrowmap.priors import PriorIndex, SiteSecretError, StudyEntry, patient_key, site_secret
from tests.listener_fixtures import REDIS_URL
from tests.phantom_fixtures import StudyFactory, phantom_study
from workers.analysis.result import Algorithm, AnalysisResult, SideResult
from workers.followup.lookup import (
    StudyIdentity,
    find_prior_study,
    read_study_identity,
    register_study,
)
from workers.pipeline import write_result

__all__ = ["phantom_study"]
pytestmark = pytest.mark.integration

NAME = "DOE^JANE"
SECRET = b"0123456789abcdef0123456789abcdef-test"


def identity_of(folder: Path) -> StudyIdentity:
    """The study identity with this module's site secret."""
    return read_study_identity(folder, secret=SECRET)


@pytest.fixture
def index() -> Iterator[PriorIndex]:
    prefix = f"t{uuid.uuid4().hex[:12]}"
    client = redis.Redis.from_url(REDIS_URL)
    yield PriorIndex(client, prefix)
    for key in client.scan_iter(f"{prefix}:*"):
        client.delete(key)


def write_study(folder: Path, *, patient_id: str, issuer: str | None, study_date: str, study_time: str = "100000",
                name: str = NAME, series: int = 2, study_uid: str | None = None) -> Path:
    """A minimal study folder as the spool holds it: ``<folder>/<series uid>/IM0001.dcm``."""
    study_uid = study_uid or generate_uid()
    for _ in range(series):
        ds = Dataset()
        ds.SOPClassUID, ds.SOPInstanceUID = MRImageStorage, generate_uid()
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study_uid, generate_uid()
        ds.PatientName, ds.PatientID, ds.Modality = name, patient_id, "MR"
        if issuer is not None:
            ds.IssuerOfPatientID = issuer
        ds.StudyDate, ds.StudyTime, ds.AccessionNumber = study_date, study_time, f"A{study_date}"
        ds.file_meta = FileMetaDataset()
        ds.file_meta.MediaStorageSOPClassUID, ds.file_meta.MediaStorageSOPInstanceUID = MRImageStorage, ds.SOPInstanceUID
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        target = folder / str(ds.SeriesInstanceUID) / "IM0001.dcm"
        target.parent.mkdir(parents=True)
        ds.save_as(target, enforce_file_format=True)
    return folder


def analysed_result(out: Path, identity: StudyIdentity, left_ml: float,
                    status: str = "analyzed") -> tuple[AnalysisResult, Path]:
    """A result.json of an analysed study with ``left_ml`` of left oedema (right normal)."""
    sides = {
        "right": SideResult(side="right", localized=True, present=False, oedema_volume_ml=0.0),
        "left": SideResult(side="left", localized=True, present=left_ml >= 1.0, oedema_volume_ml=left_ml),
    }
    result = AnalysisResult(status=status, study_instance_uid=identity.study_instance_uid,
                            study_date=identity.study_date, study_time=identity.study_time,
                            accession_number=identity.accession_number,
                            sides=sides if status == "analyzed" else {}, algorithm=Algorithm(version="test"))
    out.mkdir(parents=True, exist_ok=True)
    return result, write_result(result, out)


def _register(index: PriorIndex, tmp: Path, name: str, *, patient_id: str, issuer: str | None, study_date: str,
              study_time: str = "100000", study_uid: str | None = None, left_ml: float = 40.0,
              status: str = "analyzed") -> StudyIdentity:
    identity = identity_of(write_study(tmp / name, patient_id=patient_id, issuer=issuer,
                                               study_date=study_date, study_time=study_time, study_uid=study_uid))
    result, path = analysed_result(tmp / f"{name}-out", identity, left_ml, status)
    assert register_study(index, identity, f"job-{name}", result, path)
    return identity


def test_patient_key() -> None:
    key = patient_key("12345", "HOSP-A", secret=SECRET)
    assert key == patient_key(" 12345 ", "HOSP-A", secret=SECRET) and len(key) == 64 and "12345" not in key
    assert key != patient_key("12345", "HOSP-B", secret=SECRET) != patient_key("12345", secret=SECRET)
    assert key != patient_key("12345", "HOSP-A", secret=SECRET + b"x")  # another site, another key
    with pytest.raises(ValueError, match="empty PatientID"):
        patient_key("  ", secret=SECRET)


def test_site_secret_is_made_once_private_and_kept(tmp_path: Path) -> None:
    path = tmp_path / "secrets" / "site_secret"
    first = site_secret(path)
    assert len(first) == 64 and site_secret(path) == first
    assert path.stat().st_mode & 0o777 == 0o600
    assert [p.name for p in path.parent.iterdir()] == ["site_secret"]
    path.write_text("short")
    with pytest.raises(SiteSecretError, match="shorter than 32"):
        site_secret(path)


def test_follow_up_finds_the_baseline_and_stores_no_identity(index: PriorIndex, tmp_path: Path) -> None:
    base = _register(index, tmp_path, "base", patient_id="P-77", issuer="HOSP-A", study_date="20260302")
    follow = identity_of(write_study(tmp_path / "follow", patient_id="P-77", issuer="HOSP-A",
                                             study_date="20261005"))
    prior = find_prior_study(index, follow)
    assert prior is not None
    assert (prior.ref.study_instance_uid, prior.ref.study_date, prior.ref.accession_number, prior.ref.job_id) == (
        base.study_instance_uid, "20260302", "A20260302", "job-base")
    assert prior.result.sides["left"].oedema_volume_ml == 40.0
    # nothing in Redis names the patient: keys and values hold the hash only
    client = redis.Redis.from_url(REDIS_URL)
    dumped = b"".join(k + b"".join(client.hgetall(k).values()) for k in client.scan_iter(f"{index._prefix}:*"))
    assert b"P-77" not in dumped and b"DOE" not in dumped and patient_key("P-77", "HOSP-A", secret=SECRET).encode() in dumped


def test_same_name_other_patient_is_no_prior(index: PriorIndex, tmp_path: Path) -> None:
    _register(index, tmp_path, "base", patient_id="P-1", issuer="HOSP-A", study_date="20260302")
    other = identity_of(write_study(tmp_path / "other", patient_id="P-2", issuer="HOSP-A",
                                            study_date="20261005"))
    assert find_prior_study(index, other) is None


def test_issuer_is_part_of_the_identity(index: PriorIndex, tmp_path: Path) -> None:
    _register(index, tmp_path, "base", patient_id="P-1", issuer="HOSP-A", study_date="20260302")
    for name, issuer in (("b", "HOSP-B"), ("none", None)):
        follow = identity_of(write_study(tmp_path / name, patient_id="P-1", issuer=issuer,
                                                 study_date="20261005"))
        assert find_prior_study(index, follow) is None, issuer
    same = identity_of(write_study(tmp_path / "a", patient_id="P-1", issuer="HOSP-A", study_date="20261005"))
    assert find_prior_study(index, same) is not None


def test_most_recent_earlier_analysed_study_wins(index: PriorIndex, tmp_path: Path) -> None:
    who: dict[str, Any] = {"patient_id": "P-9", "issuer": "H"}
    _register(index, tmp_path, "jan", study_date="20260110", left_ml=50.0, **who)
    march = _register(index, tmp_path, "mar", study_date="20260302", left_ml=30.0, **who)
    _register(index, tmp_path, "apr", study_date="20260401", status="not_applicable", **who)
    _register(index, tmp_path, "dec", study_date="20261201", left_ml=5.0, **who)
    current = identity_of(write_study(tmp_path / "jun", study_date="20260608", **who))
    prior = find_prior_study(index, current)
    assert prior is not None and prior.ref.study_instance_uid == march.study_instance_uid
    # the same study analysed again is not its own prior
    again = _register(index, tmp_path, "jun-again", study_date="20260608", study_uid=current.study_instance_uid, **who)
    assert again.study_instance_uid == current.study_instance_uid
    prior = find_prior_study(index, current)
    assert prior is not None and prior.ref.study_instance_uid == march.study_instance_uid
    # a prior whose result.json is gone is skipped for the next older one
    (tmp_path / "mar-out" / "result.json").unlink()
    prior = find_prior_study(index, current)
    assert prior is not None and prior.ref.study_date == "20260110"


def test_same_day_earlier_time(index: PriorIndex, tmp_path: Path) -> None:
    who: dict[str, Any] = {"patient_id": "P-5", "issuer": "X"}
    morning = _register(index, tmp_path, "am", study_date="20260302", study_time="081500", **who)
    evening = identity_of(write_study(tmp_path / "pm", study_date="20260302", study_time="183000", **who))
    prior = find_prior_study(index, evening)
    assert prior is not None and prior.ref.study_instance_uid == morning.study_instance_uid
    undated = identity_of(write_study(tmp_path / "undated", study_date="", **who))
    assert find_prior_study(index, undated) is None


def test_series_disagreeing_on_the_patient_are_not_registered(index: PriorIndex, tmp_path: Path) -> None:
    folder = write_study(tmp_path / "mixed", patient_id="P-1", issuer="A", study_date="20260302", series=1,
                         study_uid="1.2.3.4")
    write_study(folder, patient_id="P-2", issuer="A", study_date="20260302", series=1, study_uid="1.2.3.4")
    identity = identity_of(folder)
    assert identity.patient_key is None and "disagree" in identity.problem
    result, path = analysed_result(tmp_path / "out", identity, 10.0)
    assert not register_study(index, identity, "job", result, path)
    assert find_prior_study(index, identity) is None


def test_phantom_other_patient_has_the_same_name_and_another_key(phantom_study: StudyFactory) -> None:  # noqa: F811
    base, _ = phantom_study("itoh_left", seed=0)
    follow, _ = phantom_study("followup_resolved", seed=0)
    other, _ = phantom_study("itoh_left", "other_patient", seed=0)
    ids = {name: identity_of(folder) for name, folder in
           (("base", base), ("follow", follow), ("other", other))}
    assert ids["base"].patient_key is not None and ids["base"].patient_key == ids["follow"].patient_key
    assert ids["other"].patient_key not in (None, ids["base"].patient_key)
    names = {str(pydicom.dcmread(next(f.glob("*/*.dcm")), stop_before_pixels=True).PatientName)
             for f in (base, other)}
    assert len(names) == 1
    assert ids["base"].study_date < ids["follow"].study_date


def test_entry_round_trip(index: PriorIndex) -> None:
    entry = StudyEntry(study_instance_uid="1.2", study_date="20260302", job_id="j", result_path="/x/result.json",
                       status="analyzed")
    index.register("k" * 64, entry)
    assert index.studies("k" * 64) == [entry]
