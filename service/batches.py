"""Turn a study moved to ``sealing`` into a ready batch folder with its manifest.

The batch folder holds every instance of the study received so far: the previous batch's
files are hard-linked (copied where the file system has no hard links), the new ones added
(a re-sent SOP Instance UID replaces the older copy). The folder is built under a hidden
name and renamed into place only when complete, so a reader never sees half a batch and a
crash at any point is repaired by building it again.
"""

from __future__ import annotations

import errno
import os
import shutil
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from pydicom import dcmread
from pydicom.errors import InvalidDicomError

from marrowmap.contract import JobMessage, SeriesEntry
from marrowmap.logs import get_logger
from marrowmap.manifest import MANIFEST_NAME, Manifest, ManifestSeries
from marrowmap.markers import is_derived_secondary, is_own_output
from marrowmap.settings import Settings
from service.routing import decide
from service.spool import (
    SealingStudy,
    Spool,
    fsync_dir,
    instance_files,
    makedirs_durably,
    write_durably,
)

log = get_logger(__name__)

_HEADER_TAGS = [
    "SOPClassUID", "SOPInstanceUID", "SeriesInstanceUID", "Modality", "SeriesNumber",
    "SeriesDescription", "StudyDescription", "ProtocolName", "BodyPartExamined",
    "Manufacturer", "ManufacturerModelName", "ImageType",
]


@dataclass(frozen=True, slots=True)
class _Header:
    series_uid: str
    modality: str
    series_number: int | None
    series_description: str
    study_description: str
    protocol_name: str
    body_part: str
    sop_class: str
    transfer_syntax: str
    calling_ae: str
    received: float
    own_output: bool
    derived_secondary: bool


def _text(value: object) -> str:
    return "" if value is None else str(value).strip()


def read_header(path: Path) -> _Header:
    """The routing/manifest attributes of one spooled file (pixel data not read)."""
    ds = dcmread(path, stop_before_pixels=True, specific_tags=_HEADER_TAGS)
    number = ds.get("SeriesNumber")
    meta = ds.file_meta
    image_type = ds.get("ImageType") or ()
    image_type = (image_type,) if isinstance(image_type, str) else tuple(str(v) for v in image_type)
    return _Header(
        series_uid=path.parent.name,
        modality=_text(ds.get("Modality")),
        series_number=int(number) if number not in (None, "") else None,
        series_description=_text(ds.get("SeriesDescription"))[:256],
        study_description=_text(ds.get("StudyDescription"))[:256],
        protocol_name=_text(ds.get("ProtocolName"))[:256],
        body_part=_text(ds.get("BodyPartExamined")),
        sop_class=_text(ds.get("SOPClassUID")),
        transfer_syntax=_text(meta.get("TransferSyntaxUID")),
        calling_ae=_text(meta.get("SourceApplicationEntityTitle")),
        received=path.stat().st_mtime,
        own_output=is_own_output(_text(ds.get("Manufacturer")), _text(ds.get("ManufacturerModelName"))),
        derived_secondary=is_derived_secondary(image_type),
    )


def _link(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)
    except OSError as exc:
        if exc.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.EXDEV, errno.EMLINK):
            raise
        shutil.copy2(src, dst)


def read_manifest(batch_dir: Path) -> Manifest:
    """The manifest of a ready batch folder."""
    return Manifest.model_validate_json((batch_dir / MANIFEST_NAME).read_bytes())


def build_batch(spool: Spool, sealing: SealingStudy, settings: Settings) -> tuple[Path, Manifest]:
    """Make the ready batch for a study in ``sealing``; return its folder and manifest (idempotent)."""
    study = sealing.study_instance_uid
    study_dir = spool.ready / study
    makedirs_durably(study_dir)
    existing = spool.batches(study)
    for batch_dir in existing:  # crash after the rename, before the clean-up: already done
        if (batch_dir / MANIFEST_NAME).is_file() and read_manifest(batch_dir).job_id == sealing.job_id:
            shutil.rmtree(sealing.path)
            return batch_dir, read_manifest(batch_dir)
    number = int(existing[-1].name) + 1 if existing else 1
    build = study_dir / f".build-{sealing.job_id}"
    if build.exists():
        shutil.rmtree(build)
    build.mkdir()
    previous = instance_files(existing[-1]) if existing else {}
    new = instance_files(sealing.path)
    carried = {rel: p for rel, p in previous.items() if rel not in new}
    for rel, src in [*carried.items(), *new.items()]:
        (build / rel).parent.mkdir(exist_ok=True)
        _link(src, build / rel)

    by_rel: dict[str, _Header] = {}
    unreadable: list[str] = []
    for rel in sorted([*carried, *new]):
        try:
            by_rel[rel] = read_header(build / rel)
        except (InvalidDicomError, OSError, ValueError) as exc:
            log.warning("spool.unreadable_file", file=rel, study_instance_uid=study, error=str(exc))
            unreadable.append(rel)
    headers: dict[str, list[tuple[str, _Header, bool]]] = defaultdict(list)
    for rel, header in by_rel.items():
        headers[header.series_uid].append((rel.split("/")[1], header, rel in new))
    series = tuple(_series_entry(uid, hs) for uid, hs in sorted(headers.items()))
    new_headers = [by_rel[rel] for rel in new if rel in by_rel]
    all_headers = list(by_rel.values())
    study_description = next((h.study_description for h in all_headers if h.study_description), "")
    received = [h.received for h in new_headers] or [h.received for h in all_headers] or [0.0]
    earlier_refused = set(read_manifest(existing[-1]).refused_instances) if existing else set()
    present = {rel.split("/")[1].removesuffix(".dcm") for rel in [*carried, *new]}
    refused = sorted((earlier_refused | spool.refused(sealing)) - present)
    manifest = Manifest(
        job_id=sealing.job_id,
        study_instance_uid=study,
        batch=number,
        study_description=study_description,
        calling_aets=tuple(sorted({h.calling_ae for h in new_headers if h.calling_ae})),
        first_received=datetime.fromtimestamp(min(received), UTC),
        last_received=datetime.fromtimestamp(max(received), UTC),
        sealed_at=datetime.now(UTC),
        series=series,
        new_instances=len(new),
        resent_instances=sum(1 for rel in new if rel in previous),
        carried_instances=len(carried),
        unreadable_files=tuple(unreadable),
        refused_instances=tuple(refused),
        route=decide(series, study_description, settings),
    )
    write_durably(build / MANIFEST_NAME, [manifest.model_dump_json(indent=2).encode()], spool.tmp)
    for series_dir in build.iterdir():
        if series_dir.is_dir():
            fsync_dir(series_dir)
    fsync_dir(build)
    final = study_dir / f"{number:03d}"
    os.rename(build, final)
    fsync_dir(study_dir)
    shutil.rmtree(sealing.path)
    fsync_dir(spool.sealing)
    spool.forget_refused(study, set(refused) | present)
    return final, manifest


def _series_entry(uid: str, files: list[tuple[str, _Header, bool]]) -> ManifestSeries:
    headers = [h for _, h, _ in files]
    first = headers[0]
    return ManifestSeries(
        series_instance_uid=uid,
        modality=next((h.modality for h in headers if h.modality), "")[:16],
        instance_count=len(headers),
        series_number=first.series_number,
        series_description=first.series_description,
        protocol_name=first.protocol_name,
        body_part_examined=next((h.body_part for h in headers if h.body_part), ""),
        sop_class_uids=tuple(sorted({h.sop_class for h in headers if h.sop_class})),
        transfer_syntax_uids=tuple(sorted({h.transfer_syntax for h in headers if h.transfer_syntax})),
        files=tuple(sorted(name for name, _, _ in files)),
        new_instance_count=sum(1 for _, _, is_new in files if is_new),
        own_output=any(h.own_output for h in headers),
        derived_secondary=all(h.derived_secondary for h in headers),
    )


def job_message(manifest: Manifest, spool_path: str) -> JobMessage:
    """The job message for a sealed batch."""
    return JobMessage(
        job_id=manifest.job_id,
        study_instance_uid=manifest.study_instance_uid,
        spool_path=spool_path,
        series=tuple(
            SeriesEntry(
                series_instance_uid=s.series_instance_uid,
                modality=s.modality,
                instance_count=s.instance_count,
                series_description=s.series_description,
                sop_class_uids=s.sop_class_uids,
            )
            for s in manifest.series
        ),
        calling_ae=manifest.calling_aets[0] if manifest.calling_aets else "",
        first_received=manifest.first_received,
        last_received=manifest.last_received,
        sealed_at=manifest.sealed_at,
    )
