"""Follow-up through the real pipeline with Orthanc as the PACS: the patient's itoh_left baseline
is routed to MarrowMap, then the follow-up (followup_resolved, same patient); the follow-up's SR and
summary come back into its study in Orthanc stating left "resolved" with both volumes, right "no
oedema" both times, and referencing the baseline study."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset

from tests.e2e_pipeline import (
    SR_CLASSES,
    MarrowMap,
    dciodvfy_errors,
    dicom_files,
    phantom_study,
    start_marrowmap,
    study_uid_of,
)
from tests.listener_fixtures import Harness, harness  # noqa: F401  (fixture)
from tests.orthanc_harness import Modality, Orthanc, running_orthanc
from workers.followup.prior import KEY_IMAGE_FILE

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

SEED = 11  # one patient (PatientID MM-11): baseline and follow-up


@pytest.fixture
def orthanc(harness: Harness, tmp_path: Path) -> Iterator[Orthanc]:  # noqa: F811
    with running_orthanc(tmp_path / "orthanc",
                         modalities={"marrowmap": Modality("MARROWMAP", harness.port)}) as pacs:
        yield pacs


def _route(mm: MarrowMap, orthanc: Orthanc, folder: Path) -> tuple[str, dict[str, Any]]:
    """Upload a study to Orthanc, route it to MarrowMap, wait until its job is sent; its result.json."""
    study_uid = study_uid_of(folder)
    for path in dicom_files(folder):
        orthanc.upload(path)
    orthanc.send_study(study_uid, "marrowmap")
    [job] = mm.wait_final(study_uid, timeout=240)
    assert job.state.value == "sent", f"{job.state}: {job.reason}\n{mm.describe()}"
    return job.job_id, json.loads((mm.results_dir(job.job_id) / "result.json").read_text())


def _items(items: Any) -> Iterator[Dataset]:
    for item in items:
        yield item
        yield from _items(item.get("ContentSequence", []))


def _fetch(orthanc: Orthanc, study_uid: str, sop_uid: str, target: Path) -> Path:
    [instance] = [i for i in orthanc.instances(study_uid) if i["MainDicomTags"]["SOPInstanceUID"] == sop_uid]
    target.write_bytes(orthanc.instance_file(instance["ID"]))
    return target


def test_follow_up_reports_resolution(harness: Harness, orthanc: Orthanc, tmp_path: Path) -> None:  # noqa: F811
    mm = start_marrowmap(harness, pacs_ae=orthanc.aet, pacs_port=orthanc.dicom_port)
    base_dir = phantom_study(tmp_path, "itoh_left", SEED)
    follow_dir = phantom_study(tmp_path, "followup_resolved", SEED)

    base_job, base = _route(mm, orthanc, base_dir)
    assert base["status"] == "analyzed" and base["comparison"] is None
    assert base["sides"]["left"]["present"] is True
    follow_job, follow = _route(mm, orthanc, follow_dir)
    assert follow["status"] == "analyzed", follow["reason"]
    comparison = follow["comparison"]
    assert comparison is not None, follow["quality"]
    assert comparison["prior"]["study_instance_uid"] == base["study_instance_uid"]
    assert comparison["prior"]["job_id"] == base_job
    left, right = comparison["sides"]["left"], comparison["sides"]["right"]
    assert left["status"] == "resolved"
    assert left["volume_ml_prior"] == base["sides"]["left"]["oedema_volume_ml"] > 10.0
    assert left["volume_ml_current"] == follow["sides"]["left"]["oedema_volume_ml"]
    assert right["status"] == "no_oedema"
    assert right["volume_ml_prior"] is not None and right["volume_ml_current"] is not None
    record = mm.store.get(follow_job)
    assert record is not None
    assert record.result["comparison"]["sides"] == {"left": "resolved", "right": "no_oedema"}

    # the follow-up's SR and summary, fetched back from Orthanc
    study_uid = follow["study_instance_uid"]
    outputs = {o["kind"]: o for o in follow["outputs"] if o["kind"] in ("sr", "sc_summary")}
    sr_path = _fetch(orthanc, study_uid, outputs["sr"]["sop_instance_uid"], tmp_path / "sr.dcm")
    summary_path = _fetch(orthanc, study_uid, outputs["sc_summary"]["sop_instance_uid"], tmp_path / "summary.dcm")
    for path in (sr_path, summary_path):
        assert not dciodvfy_errors(path), path.name
    sr = dcmread(sr_path)
    assert str(sr.SOPClassUID) in SR_CLASSES and sr.StudyInstanceUID == study_uid
    items = list(_items(sr.ContentSequence))
    statuses = {str(i.ConceptCodeSequence[0].CodeMeaning) for i in items if i.ValueType == "CODE"
                and i.ConceptNameCodeSequence[0].CodeValue == "BMECHANGE"}
    assert statuses == {"Problem resolved", "No change"}
    volumes = {float(i.MeasuredValueSequence[0].NumericValue) for i in items
               if i.ValueType == "NUM" and i.ConceptNameCodeSequence[0].CodeMeaning == "Volume"}
    assert {left["volume_ml_prior"], left["volume_ml_current"]} <= volumes
    assert base["study_instance_uid"] in {str(i.UID) for i in items if i.ValueType == "UIDREF"}
    [text] = [str(i.TextValue) for i in items if i.ValueType == "TEXT"
              and i.ConceptNameCodeSequence[0].CodeValue == "121070"]  # DCM Findings
    assert text == follow["findings_text"]
    assert (f"left hip bone marrow oedema has resolved ({left['volume_ml_prior']:.1f} mL -> "
            f"{left['volume_ml_current']:.1f} mL)") in text
    # the summary in the PACS is the one built with the comparison table
    local = dcmread(mm.results_dir(follow_job) / outputs["sc_summary"]["path"])
    assert dcmread(summary_path).PixelData == local.PixelData
    base_summary = next(o for o in base["outputs"] if o["kind"] == "sc_summary")
    assert (mm.results_dir(base_job) / KEY_IMAGE_FILE).is_file()  # the baseline's key slice, shown beside
    assert local.Rows > dcmread(mm.results_dir(base_job) / base_summary["path"]).Rows  # the comparison rows
