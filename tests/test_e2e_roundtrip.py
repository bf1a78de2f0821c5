# ruff: noqa: F811  (pytest fixtures imported from e2e_pipeline and listener_fixtures)
"""The round trip with Orthanc as the PACS: Orthanc sends a study to MarrowMap (as an auto-route
does) and the SR, SEG, Parametric Map, KOS and SC images come back into the same study, valid and matching the
analysis; a re-push duplicates nothing; an Orthanc outage while results are due heals itself.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset

from tests.e2e_pipeline import (  # noqa: F401  (fixtures)
    SEG_CLASS,
    SR_CLASSES,
    close_to_any,
    dciodvfy_errors,
    dicom_files,
    orthanc,
    phantom,
    result_numbers,
    sr_numbers_by_side,
    start_marrowmap,
    study_uid_of,
)
from tests.listener_fixtures import Harness, harness  # noqa: F401  (fixture)
from tests.orthanc_harness import Orthanc, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.slow]





def _results_by_modality(orthanc: Orthanc, study_uid: str) -> dict[str, int]:
    counts: dict[str, int] = {}
    for series in orthanc.series(study_uid):
        modality = series["MainDicomTags"].get("Modality", "")
        counts[modality] = counts.get(modality, 0) + len(series["Instances"])
    return counts


def test_round_trip_through_orthanc(harness: Harness, orthanc: Orthanc, phantom: Path,  # noqa: F811
                                    tmp_path: Path) -> None:
    mm = start_marrowmap(harness, pacs_ae=orthanc.aet, pacs_port=orthanc.dicom_port)
    study_uid = study_uid_of(phantom)
    inputs = [orthanc.upload(p) for p in dicom_files(phantom)]
    routed = orthanc.send_study(study_uid, "marrowmap")
    assert routed["InstancesCount"] == len(inputs)

    [job] = mm.wait_final(study_uid, timeout=180)
    assert job.state.value == "sent", f"{job.state}: {job.reason}\n{mm.describe()}"
    result = json.loads((mm.results_dir(job.job_id) / "result.json").read_text())
    assert result["status"] == "analyzed", result["reason"]
    expected = {o["sop_instance_uid"]: o for o in result["outputs"]}
    assert {o["kind"] for o in expected.values()} == {"sr", "seg", "sc_overlay", "sc_summary", "pmap", "kos"}

    # every output is in Orthanc, in the same study
    stored = {i["MainDicomTags"]["SOPInstanceUID"]: i["ID"] for i in orthanc.instances(study_uid)}
    assert set(expected) <= set(stored)
    assert len(stored) == len(inputs) + len(expected)

    # fetched back from Orthanc: valid objects, and the SR says what the analysis computed
    sr_numbers: dict[str | None, list[tuple[str, float]]] = {}
    for uid in expected:
        path = tmp_path / f"{uid}.dcm"
        path.write_bytes(orthanc.instance_file(stored[uid]))
        errors = dciodvfy_errors(path)
        assert not errors, f"{expected[uid]['kind']}: {errors}"
        ds = dcmread(path)
        assert ds.StudyInstanceUID == study_uid
        if str(ds.SOPClassUID) in SR_CLASSES:
            sr_numbers = sr_numbers_by_side(ds)
        if expected[uid]["kind"] == "seg":
            assert str(ds.SOPClassUID) == SEG_CLASS
    for side_name, side in result["sides"].items():
        in_sr = [value for _, value in sr_numbers.get(side_name, [])]
        invented = [v for v in in_sr if not close_to_any(v, result_numbers(side))]
        assert not invented, f"{side_name}: SR numbers not in result.json: {invented}"
        if side["present"]:  # numbers only for a finding: a hip without oedema has none of the oedema's
            assert close_to_any(side["oedema_volume_ml"], in_sr), f"no {side_name} oedema volume in the SR"
        elif not side["effusion"]:
            assert not in_sr, f"{side_name}: numbers for a hip without a finding"

    # the audit trail says who sent the study, and what went where; it never names the patient
    _check_audit(harness, study_uid, orthanc.aet, len(inputs), set(expected), dcmread(dicom_files(phantom)[0]))

    # the same study pushed again: one more job (the listener seals a second batch), whose
    # outputs have the same UIDs, so the PACS gains nothing
    before = orthanc.statistics()["CountInstances"]
    orthanc.send_study(study_uid, "marrowmap")
    jobs = mm.wait_final(study_uid, count=2, timeout=180)
    assert len(jobs) == 2 and {j.state.value for j in jobs} == {"sent"}, [j.reason for j in jobs]
    assert orthanc.statistics()["CountInstances"] == before


def _check_audit(harness: Harness, study_uid: str, orthanc_aet: str, instances: int,  # noqa: F811
                 outputs: set[str], source: Dataset) -> None:
    text = (harness.spool / "audit" / "audit.jsonl").read_text()
    events = [json.loads(line) for line in text.splitlines()]
    by_kind: dict[str, list[dict[str, Any]]] = {}
    for event in events:
        by_kind.setdefault(event["EventIdentification"]["EventID"]["originalText"], []).append(event)
    logins = [e["ActiveParticipant"][0]["UserID"] for e in by_kind["User Authentication"]]
    assert orthanc_aet in logins  # association accepted: Orthanc as the calling AE
    received = [e for e in by_kind["DICOM Instances Transferred"]
                if e["ParticipantObjectIdentification"][0]["ParticipantObjectID"] == study_uid]
    assert sum(e["ParticipantObjectIdentification"][0]["ParticipantObjectDetail"]["instances"]
               for e in received) == instances
    [export] = [e for e in by_kind["Export"] if e["EventIdentification"]["EventOutcomeIndicator"] == 0]
    exported = export["ParticipantObjectIdentification"][0]
    assert exported["ParticipantObjectID"] == study_uid
    assert {uid for c in exported["SOPClass"] for uid in c["Instance"]} == outputs
    assert export["ActiveParticipant"][1]["UserID"] == orthanc_aet
    for identity in (str(source.PatientName), str(source.PatientName).replace("^", " "), str(source.PatientID)):
        assert identity not in text, "the audit trail names the patient"


def test_results_arrive_after_orthanc_comes_back(harness: Harness, orthanc: Orthanc,  # noqa: F811
                                                 phantom: Path) -> None:
    mm = start_marrowmap(harness, pacs_ae=orthanc.aet, pacs_port=orthanc.dicom_port)
    study_uid = study_uid_of(phantom)
    inputs = [orthanc.upload(p) for p in dicom_files(phantom)]
    orthanc.send_study(study_uid, "marrowmap")
    orthanc.stop()  # the PACS goes away while the results are due

    def retrying() -> bool:
        mm.check_alive()
        jobs = mm.jobs(study_uid)
        return bool(jobs) and "retry" in jobs[0].reason
    wait_for(retrying, timeout=180, what="a send retry to be scheduled")
    time.sleep(5)  # retries keep failing while the PACS is away
    [job] = mm.jobs(study_uid)
    assert job.state.value == "sending", job.reason  # still waiting, not given up
    orthanc.start()

    [job] = mm.wait_final(study_uid, timeout=120)
    assert job.state.value == "sent", f"{job.reason}\n{mm.describe()}"
    result = json.loads((mm.results_dir(job.job_id) / "result.json").read_text())
    assert len(orthanc.instances(study_uid)) == len(inputs) + len(result["outputs"])
    attempts = [h for h in job.history if h.state.value == "sending"]
    assert len(attempts) >= 3  # first try, at least one retry while Orthanc was down, success
