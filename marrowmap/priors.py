"""The prior-study index: each patient's analysed studies, for the follow-up comparison (Redis).

One Redis hash per patient, ``<prefix>:patient:<patient key>``, field = Study Instance UID,
value = the study's entry (JSON: study UID, StudyDate/StudyTime, accession, job id, path
of its result.json, analysis status). The patient key is the HMAC-SHA-256 of (PatientID,
IssuerOfPatientID or "") under the site secret (``site_secret_path``, outside Redis), so
that whoever reads Redis cannot test guesses of low-entropy IDs: the raw ID is never stored
or logged, and the name is never used (two patients with the same name are different keys).
A study analysed again replaces its own entry.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import uuid
from datetime import UTC, datetime
from pathlib import Path

import redis
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from marrowmap.jobstore import JobStoreError

ANALYZED = "analyzed"
_SECRET_MIN_CHARS = 32


class SiteSecretError(ValueError):
    """The site secret file exists but cannot serve as a key."""


def site_secret(path: Path) -> bytes:
    """The site's secret key; created (256 random bits, hex, mode 0600) when missing.

    Several workers may start at once: each writes a complete temp file and links it into
    place (atomic, fails when another one won), then everyone reads the same file.
    """
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}")
        with open(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as fh:
            fh.write(secrets.token_hex(32) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass
        finally:
            tmp.unlink()
    secret = path.read_text().strip()
    if len(secret) < _SECRET_MIN_CHARS:
        raise SiteSecretError(f"site secret {path} is shorter than {_SECRET_MIN_CHARS} characters")
    return secret.encode()


def patient_key(patient_id: str, issuer: str = "", *, secret: bytes) -> str:
    """HMAC-SHA-256 (hex) of PatientID and IssuerOfPatientID: the only form in which a patient is stored."""
    pid = patient_id.strip()
    if not pid:
        raise ValueError("an empty PatientID identifies no patient")
    return hmac.new(secret, f"{pid}\x1f{issuer.strip()}".encode(), hashlib.sha256).hexdigest()


def study_moment(study_date: str, study_time: str) -> tuple[str, str] | None:
    """(YYYYMMDD, HHMMSS.ffffff) for ordering studies; None when the date is not a DICOM date."""
    date = study_date.strip()
    if len(date) != 8 or not date.isdigit():
        return None
    time = study_time.strip().replace(":", "")
    whole, _, fraction = time.partition(".")
    return date, f"{whole.ljust(6, '0')}.{fraction.ljust(6, '0')}"


class StudyEntry(BaseModel):
    """One analysed (or not) study of a patient."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    study_instance_uid: str
    study_date: str = ""
    study_time: str = ""
    accession_number: str = ""
    job_id: str
    result_path: str
    status: str
    registered_at: datetime = Field(default_factory=lambda: datetime.now(UTC))

    @property
    def moment(self) -> tuple[str, str] | None:
        return study_moment(self.study_date, self.study_time)


class PriorIndex:
    """Typed access to the per-patient study entries in Redis."""

    def __init__(self, client: redis.Redis[bytes], prefix: str = "marrowmap") -> None:
        self._r = client
        self._prefix = prefix

    @classmethod
    def from_url(cls, url: str, prefix: str = "marrowmap") -> PriorIndex:
        """Connect to the Redis at ``url`` (lazily, on first use)."""
        return cls(redis.Redis.from_url(url, socket_connect_timeout=5, socket_timeout=10), prefix)

    def _key(self, key: str) -> str:
        return f"{self._prefix}:patient:{key}"

    def register(self, key: str, entry: StudyEntry) -> None:
        """Record (or replace) a study of the patient ``key``."""
        try:
            self._r.hset(self._key(key), entry.study_instance_uid, entry.model_dump_json())
        except redis.RedisError as exc:
            raise JobStoreError(f"prior index unreachable while registering a study: {exc}") from exc

    def studies(self, key: str) -> list[StudyEntry]:
        """Every registered study of the patient ``key`` (unreadable entries are skipped)."""
        try:
            raw = self._r.hgetall(self._key(key))
        except redis.RedisError as exc:
            raise JobStoreError(f"prior index unreachable while reading: {exc}") from exc
        entries = []
        for value in raw.values():
            try:
                entries.append(StudyEntry.model_validate_json(value))
            except ValidationError:
                continue
        return entries

    def priors(self, key: str, study_instance_uid: str, study_date: str, study_time: str) -> list[StudyEntry]:
        """The patient's analysed studies earlier than the given one (other study UID), most recent first.

        Empty when the given study has no valid StudyDate (it cannot be placed in time).
        """
        now = study_moment(study_date, study_time)
        if now is None:
            return []
        earlier = [e for e in self.studies(key)
                   if e.status == ANALYZED and e.study_instance_uid != study_instance_uid
                   and e.moment is not None and e.moment < now]
        return sorted(earlier, key=lambda e: e.moment or ("", ""), reverse=True)
