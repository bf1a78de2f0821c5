"""End to end against pynetdicom test PACSs: a PACS that refuses SEG, a worker killed in the
middle of an analysis, and a study MarrowMap cannot analyse.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import time
from pathlib import Path

import pytest
from pydicom import dcmread

from tests.e2e_pipeline import SEG_CLASS, dicom_files, phantom_study, start_marrowmap, study_uid_of
from tests.listener_fixtures import Harness, harness, storescu  # noqa: F401  (fixture)
from tests.orthanc_harness import wait_for
from tests.pacs_peers import COMPREHENSIVE_3D_SR, SC_STORAGE, running_test_pacs

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

ALL_RESULT_CLASSES = ["1.2.840.10008.5.1.4.1.1.88.34", "1.2.840.10008.5.1.4.1.1.88.22",
                      SC_STORAGE, "1.2.840.10008.5.1.4.1.1.7.4", SEG_CLASS,
                      "1.2.840.10008.5.1.4.1.1.30", "1.2.840.10008.5.1.4.1.1.88.59"]  # Parametric Map, KOS


@pytest.fixture(scope="module")
def phantom(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return phantom_study(tmp_path_factory.getbasetemp())


@pytest.fixture(scope="module")
def not_applicable(phantom: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The phantom hip study with its fluid-sensitive (STIR / fat-sat T2) series removed."""
    folder = tmp_path_factory.mktemp("t1_only")
    kept = 0
    for path in dicom_files(phantom):
        ds = dcmread(path, stop_before_pixels=True)
        text = f"{ds.get('SeriesDescription', '')} {ds.get('ScanningSequence', '')}".upper()
        if "T1" in str(ds.get("SeriesDescription", "")).upper() and "STIR" not in text:
            target = folder / path.relative_to(phantom)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(path, target)
            kept += 1
    assert kept, "the phantom has no T1 series"
    return folder


def test_pacs_refusing_seg_gets_the_rest_and_nothing_loops(harness: Harness, phantom: Path) -> None:  # noqa: F811
    accepted = [uid for uid in ALL_RESULT_CLASSES if uid != SEG_CLASS]
    with running_test_pacs(ae_title="NOSEG", sop_classes=accepted) as pacs:
        mm = start_marrowmap(harness, pacs_ae="NOSEG", pacs_port=pacs.port)
        study_uid = study_uid_of(phantom)
        sent = storescu(mm.port, dicom_files(phantom), calling_ae="MODALITY")
        assert sent.returncode == 0, sent.stderr
        [job] = mm.wait_final(study_uid, timeout=180)
        assert job.state.value == "partially_sent", f"{job.reason}\n{mm.describe()}"
        assert job.reason == "partially sent: SEG refused (SOP class not supported)"
        result = json.loads((mm.results_dir(job.job_id) / "result.json").read_text())
        expected = {o["sop_instance_uid"] for o in result["outputs"] if o["kind"] != "seg"}
        assert set(pacs.stored) == expected
        kinds = set(pacs.kinds())
        assert COMPREHENSIVE_3D_SR in kinds or "1.2.840.10008.5.1.4.1.1.88.22" in kinds
        assert kinds & {SC_STORAGE, "1.2.840.10008.5.1.4.1.1.7.4"}
        requests = pacs.requests
        time.sleep(3)  # a retry loop would show up as more requests or a changed state
        assert pacs.requests == requests
        [again] = mm.jobs(study_uid)
        assert again.state == job.state and len(again.history) == len(job.history)


def test_worker_killed_mid_analysis_completes_once(harness: Harness, phantom: Path) -> None:  # noqa: F811
    with running_test_pacs(ae_title="PACS", sop_classes=ALL_RESULT_CLASSES) as pacs:
        mm = start_marrowmap(harness, pacs_ae="PACS", pacs_port=pacs.port, pool="prefork")
        study_uid = study_uid_of(phantom)
        sent = storescu(mm.port, dicom_files(phantom), calling_ae="MODALITY")
        assert sent.returncode == 0, sent.stderr

        def analysing() -> bool:
            mm.check_alive()
            jobs = mm.jobs(study_uid)
            return bool(jobs) and jobs[0].state.value == "analysing"
        wait_for(analysing, timeout=120, interval=0.05, what="the analysis to start")
        [child] = mm.worker_children()
        os.kill(child, signal.SIGKILL)  # the process running the analysis dies (e.g. OOM killer)

        [job] = mm.wait_final(study_uid, timeout=180)
        assert job.state.value == "sent", f"{job.reason}\n{mm.describe()}"
        result = json.loads((mm.results_dir(job.job_id) / "result.json").read_text())
        expected = {o["sop_instance_uid"] for o in result["outputs"]}
        assert set(pacs.stored) == expected
        assert pacs.requests == len(expected)  # each object sent exactly once
        states = [h.state.value for h in job.history]
        assert states.count("analysing") >= 2  # redelivered after the kill
        assert states.count("sent") == 1


def test_study_without_usable_sequences_says_why(harness: Harness, not_applicable: Path) -> None:  # noqa: F811
    with running_test_pacs(ae_title="PACS", sop_classes=ALL_RESULT_CLASSES) as pacs:
        mm = start_marrowmap(harness, pacs_ae="PACS", pacs_port=pacs.port)
        study_uid = study_uid_of(not_applicable)
        sent = storescu(mm.port, dicom_files(not_applicable), calling_ae="MODALITY")
        assert sent.returncode == 0, sent.stderr
        [job] = mm.wait_final(study_uid, timeout=180)
        history = [h.state.value for h in job.history]
        assert "not_applicable" in history, f"{history}: {job.reason}\n{mm.describe()}"
        result = json.loads((mm.results_dir(job.job_id) / "result.json").read_text())
        assert result["status"] == "not_applicable" and result["reason"]
        na_reason = next(h.reason for h in job.history if h.state.value == "not_applicable")
        assert na_reason, "the job does not say why it was not analysed"
        # the explanatory objects (an SR with the status and why, a summary key image) reach
        # the PACS; never a SEG, an overlay or a number
        expected = {o["sop_instance_uid"] for o in result["outputs"]}
        assert {o["kind"] for o in result["outputs"]} <= {"sr", "sc_summary", "kos"}
        wait_deadline = time.monotonic() + 30
        while set(pacs.stored) != expected and time.monotonic() < wait_deadline:
            time.sleep(0.2)
        assert set(pacs.stored) == expected
