# ruff: noqa: F811  (pytest fixtures imported from listener_fixtures)
"""send_results through a real worker: a PACS refusing SEG -> partially_sent (nothing loops);
a PACS that is down -> capped retries -> send_failed; `marrowmap resend` after it is back -> sent."""

from __future__ import annotations

from typing import Any

import pytest
from pydicom import dcmread
from pynetdicom import AE, evt

from marrowmap.jobstore import JobRecord, JobState, JobStore
from tests.listener_fixtures import REDIS_URL, Harness, free_port, harness, wait_for, wait_for_job  # noqa: F401
from tests.pacs_peers import COMPREHENSIVE_3D_SR, SC_STORAGE, SEG_STORAGE, write_result_files
from workers.analysis.result import Algorithm, AnalysisResult, OutputFile

pytestmark = pytest.mark.integration
KIND = {"SR": "sr", "SC": "sc_overlay", "SEG": "seg"}


def _results(h: Harness, job_id: str) -> list[str]:
    """A finished analysis with three outputs (SR, SC, SEG) in results/<job_id>/."""
    folder = h.spool / "results" / job_id
    files = write_result_files(folder)
    outputs = []
    for kind, path in files.items():
        ds = dcmread(path, stop_before_pixels=True)
        outputs.append(OutputFile(kind=KIND[kind], path=path.relative_to(folder).as_posix(),
                                  sop_class_uid=str(ds.SOPClassUID), sop_instance_uid=str(ds.SOPInstanceUID),
                                  series_instance_uid=str(ds.SeriesInstanceUID)))
    result = AnalysisResult(status="analyzed", algorithm=Algorithm(version="test"), outputs=outputs)
    (folder / "result.json").write_text(result.model_dump_json())
    return sorted(o.sop_instance_uid for o in outputs)


def _final(store: JobStore, job_id: str, timeout: float = 60) -> JobRecord:
    return wait_for_job(store, job_id, lambda r: r.state in (
        JobState.SENT, JobState.PARTIALLY_SENT, JobState.SEND_FAILED), timeout, "a final send state")


class _Pacs:
    """A pynetdicom storage SCP on a fixed loopback port, restartable with other SOP classes."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.stored: dict[str, str] = {}
        self.requests = 0
        self._server: Any = None

    def _on_store(self, event: Any) -> int:
        self.requests += 1
        self.stored[str(event.request.AffectedSOPInstanceUID)] = str(event.request.AffectedSOPClassUID)
        return 0

    def start(self, sop_classes: tuple[str, ...]) -> None:
        ae = AE(ae_title="TESTPACS")
        for uid in sop_classes:
            ae.add_supported_context(uid, ["1.2.840.10008.1.2.1", "1.2.840.10008.1.2"])
        self._server = ae.start_server(("127.0.0.1", self.port), block=False,
                                       evt_handlers=[(evt.EVT_C_STORE, self._on_store)])

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server = None


def test_partial_send_retry_and_resend(harness: Harness) -> None:
    store = JobStore.from_url(REDIS_URL, harness.prefix)
    job_id = "send0000000000000000000000000001"
    uids = _results(harness, job_id)
    store.record(job_id, JobState.ANALYSED, study_instance_uid="1.2.3")
    pacs = _Pacs(free_port())
    harness.start_worker(MARROWMAP_PACS_AE_TITLE="TESTPACS", MARROWMAP_PACS_PORT=str(pacs.port),
                         MARROWMAP_SEND_BACKOFF_SECONDS="0.5", MARROWMAP_SEND_BACKOFF_CAP_SECONDS="1",
                         MARROWMAP_SEND_MAX_RETRIES="2")
    try:
        # 1. a PACS that refuses SEG: SR and SC arrive, the job says why, no retry loop
        pacs.start((COMPREHENSIVE_3D_SR, SC_STORAGE))
        resend = harness.cli("resend", job_id)
        assert resend.returncode == 0 and "queued for sending" in resend.stdout, resend.stderr
        record = _final(store, job_id)
        assert record.state == JobState.PARTIALLY_SENT
        assert "SEG refused" in record.reason
        assert sorted(pacs.stored.values()) == sorted([COMPREHENSIVE_3D_SR, SC_STORAGE])
        assert pacs.requests == 2
        pacs.stop()

        # 2. the PACS is down: transient failures are retried (capped backoff), then send_failed
        assert harness.cli("resend", job_id).returncode == 0
        record = wait_for_job(store, job_id, lambda r: r.state == JobState.SEND_FAILED, 60,
                              "send_failed after the retries")
        since = max(i for i, c in enumerate(record.history) if c.reason.startswith("resend requested"))
        attempts = [c.reason for c in record.history[since:]
                    if c.state == JobState.SENDING and c.reason.startswith("attempt")]
        assert [a.split(":")[0] for a in attempts] == ["attempt 1", "attempt 2", "attempt 3"]
        assert any("retry 1 in" in c.reason for c in record.history)
        assert "send_failed" in harness.cli("status").stdout

        # 3. the PACS is back, accepting everything: `marrowmap resend` delivers it all
        pacs.stored.clear()
        pacs.start((COMPREHENSIVE_3D_SR, SC_STORAGE, SEG_STORAGE))
        assert harness.cli("resend", job_id).returncode == 0
        record = wait_for_job(store, job_id, lambda r: r.state == JobState.SENT, 60, "sent")
        assert sorted(pacs.stored) == uids
        assert record.reason.startswith("sent:")
    finally:
        pacs.stop()
