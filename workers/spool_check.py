"""Check a job's study folder on the shared spool against its manifest and job message.

The worker trusts nothing it did not check: the folder must exist, hold the manifest the
listener wrote for this job, and exactly the series and files that manifest lists.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import ValidationError

from marrowmap.contract import JobMessage
from marrowmap.manifest import MANIFEST_NAME, Manifest


class SpoolMismatch(ValueError):
    """The study folder does not match what the listener sealed."""


def study_folder(spool_dir: Path, job: JobMessage) -> Path:
    """The job's folder (inside the spool; the message cannot point elsewhere)."""
    folder = (spool_dir / job.spool_path).resolve()
    if not folder.is_relative_to(spool_dir.resolve()):
        raise SpoolMismatch(f"spool_path {job.spool_path} leaves the spool")
    return folder


def verify_study_folder(spool_dir: Path, job: JobMessage) -> Manifest:
    """Return the folder's manifest when folder, manifest and message agree; else SpoolMismatch."""
    folder = study_folder(spool_dir, job)
    if not folder.is_dir():
        raise SpoolMismatch(f"study folder {job.spool_path} is missing")
    try:
        manifest = Manifest.model_validate_json((folder / MANIFEST_NAME).read_bytes())
    except FileNotFoundError:
        raise SpoolMismatch(f"{job.spool_path}/{MANIFEST_NAME} is missing") from None
    except ValidationError as exc:
        raise SpoolMismatch(f"{job.spool_path}/{MANIFEST_NAME} is invalid: {exc.error_count()} error(s)") from None
    if manifest.job_id != job.job_id or manifest.study_instance_uid != job.study_instance_uid:
        raise SpoolMismatch("manifest belongs to another job or study")
    expected = {s.series_instance_uid: s for s in manifest.series}
    on_disk = {p.name: p for p in folder.iterdir() if p.is_dir()}
    if set(on_disk) != set(expected):
        missing = sorted(set(expected) - set(on_disk))
        extra = sorted(set(on_disk) - set(expected))
        raise SpoolMismatch(f"series differ from the manifest (missing: {missing}, unexpected: {extra})")
    for uid, series in expected.items():
        files = sorted(p.name for p in on_disk[uid].glob("*.dcm"))
        if len(files) != series.instance_count or (series.files and tuple(files) != series.files):
            raise SpoolMismatch(
                f"series {uid}: {len(files)} file(s) on disk, manifest lists {series.instance_count}"
            )
    announced = {s.series_instance_uid: s.instance_count for s in job.series}
    if announced != {uid: s.instance_count for uid, s in expected.items()}:
        raise SpoolMismatch("the job message's series/counts differ from the manifest")
    return manifest
