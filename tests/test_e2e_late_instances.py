# ruff: noqa: F811  (pytest fixtures imported from e2e_pipeline and listener_fixtures)
"""Late instances after an early start, with Orthanc as the PACS: the PACS ends with one current
result set, computed on the complete study.

The last STIR slices are held back: the study is complete by evidence without them (a shorter
regular stack), so MarrowMap starts early; then they arrive. Either the early results were
not yet sent (never sent) or already sent (withdrawn by an IOCM rejection note).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from pydicom import dcmread

from marrowmap.jobstore import JobRecord, JobState
from tests.e2e_pipeline import (  # noqa: F401  (fixtures)
    MarrowMap,
    dicom_files,
    orthanc,
    phantom,
    start_marrowmap,
    study_uid_of,
)
from tests.listener_fixtures import Harness, harness, storescu, wait_for  # noqa: F401  (fixture)
from tests.orthanc_harness import Orthanc

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

_HELD_BACK = 3  # STIR slices at the end of the stack: without them it is still a regular stack
_EARLY = {"MARROWMAP_QUIET_SECONDS": "60", "MARROWMAP_EARLY_SEAL_SECONDS": "0.5"}




def _split(phantom: Path) -> tuple[list[Path], list[Path]]:
    files = dicom_files(phantom)
    stir = sorted(f for f in files if "STIR" in f.parent.name)
    late = stir[-_HELD_BACK:]
    return [f for f in files if f not in late], late


def _outputs(job: JobRecord) -> set[str]:
    return {i["sop_instance_uid"] for i in job.send["report"]["instances"] if i["outcome"] == "sent"}


def _in_orthanc(orthanc: Orthanc, study_uid: str) -> dict[str, str]:
    """SOP Instance UID -> Orthanc id of every instance of the study."""
    return {i["MainDicomTags"]["SOPInstanceUID"]: i["ID"] for i in orthanc.instances(study_uid)}


def _current_results(mm: MarrowMap, orthanc: Orthanc, study_uid: str, inputs: set[str]) -> tuple[set[str], set[str]]:
    """MarrowMap's results in Orthanc not withdrawn by a rejection note, and the rejection notes."""
    stored = _in_orthanc(orthanc, study_uid)
    rejected: set[str] = set()
    notes: set[str] = set()
    for uid, orthanc_id in stored.items():
        if uid in inputs:
            continue
        tags = orthanc.instance_tags(orthanc_id)
        title = tags.get("ConceptNameCodeSequence") or [{}]
        if title[0].get("CodeValue") == "113001":
            notes.add(uid)
    for uid in notes:
        path = mm.harness.tmp / f"{uid}.dcm"
        path.write_bytes(orthanc.instance_file(stored[uid]))
        note = dcmread(path)
        rejected |= {str(r.ReferencedSOPInstanceUID) for study in note.CurrentRequestedProcedureEvidenceSequence
                     for series in study.ReferencedSeriesSequence for r in series.ReferencedSOPSequence}
    return set(stored) - inputs - notes - rejected, notes


def test_late_instances_supersede_an_early_start(harness: Harness, orthanc: Orthanc,  # noqa: F811
                                                phantom: Path) -> None:
    """Early start -> late slices while it is analysed (never sent) -> the last slice after its results were sent
    (withdrawn by a rejection note): Orthanc ends with the complete study's results as its one current set."""
    mm = start_marrowmap(harness, pacs_ae=orthanc.aet, pacs_port=orthanc.dicom_port, **_EARLY)
    second_worker = harness._spawn("worker", ["worker", "--queues", "analysis,send", "--pool", "solo"],
                                   harness.env(**_EARLY, MARROWMAP_PACS_AE_TITLE=orthanc.aet,
                                               MARROWMAP_PACS_HOST="127.0.0.1",
                                               MARROWMAP_PACS_PORT=str(orthanc.dicom_port)))
    wait_for(lambda: "ready." in second_worker.log_path.read_text(errors="replace"), 90, "the second worker")
    study_uid = study_uid_of(phantom)
    inputs = {str(dcmread(f, stop_before_pixels=True).SOPInstanceUID) for f in dicom_files(phantom)}
    early, late = _split(phantom)

    assert storescu(mm.port, early).returncode == 0
    wait_for(lambda: [j for j in mm.jobs(study_uid) if j.state is JobState.ANALYSING], 60, "the early analysis")
    assert storescu(mm.port, late[:-1]).returncode == 0  # while the early job is analysed
    first, second = sorted(mm.wait_final(study_uid, count=2, timeout=120), key=lambda j: j.times["queued"])
    assert first.state is JobState.SUPERSEDED, f"{first.state}: {first.reason}"
    assert not first.send, "a superseded job sends nothing"
    assert second.state is JobState.SENT, f"{second.state}: {second.reason}\n{mm.describe()}"
    # two workers, one study: the second analysis started only after the first one ended
    assert second.times["analysing"] >= first.times["superseded"]
    current, notes = _current_results(mm, orthanc, study_uid, inputs)
    assert not notes and current == _outputs(second)

    assert storescu(mm.port, late[-1:]).returncode == 0  # after the results were sent
    third = max(mm.wait_final(study_uid, count=3, timeout=120), key=lambda j: j.times["queued"])
    assert third.state is JobState.SENT, f"{third.state}: {third.reason}\n{mm.describe()}"
    assert third.instance_count == len(early) + len(late)  # the complete study, early and late instances
    current, notes = _current_results(mm, orthanc, study_uid, inputs)
    assert len(notes) == 1, "one rejection note withdraws the results sent before the last slice"
    assert current == _outputs(third) - notes  # one current result set: the complete study's
    assert not current & (_outputs(second) - _outputs(third))
