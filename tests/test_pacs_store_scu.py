"""The send-back SCU against real pynetdicom test PACSs on loopback."""

from __future__ import annotations

from pathlib import Path

import pytest
from pynetdicom import AE

from marrowmap.settings import Settings, load_settings
from tests.pacs_peers import (
    COMPREHENSIVE_3D_SR,
    SC_STORAGE,
    SEG_STORAGE,
    VERIFICATION,
    free_port,
    running_test_pacs,
    write_result_files,
)
from workers.pacs.statuses import StatusCategory, StoreStatus, classify_store_status
from workers.pacs.store_scu import (
    Outcome,
    SendReport,
    _AssociationWatch,
    backoff_seconds,
    send_instances,
)

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return write_result_files(tmp_path_factory.mktemp("results"))


def _paths(results: dict[str, Path]) -> list[Path]:
    return [results["SR"], results["SC"], results["SEG"]]


def _settings(port: int, pacs_ae: str = "TESTPACS", **extra: object) -> Settings:
    return load_settings(ae_title="MARROWMAP", pacs_ae_title=pacs_ae, pacs_host="127.0.0.1",
                         pacs_port=port, network_timeout_seconds=10, **extra)


def test_everything_stored_is_reported_sent(results: dict[str, Path]) -> None:
    with running_test_pacs() as pacs:
        report = send_instances(_paths(results), settings=_settings(pacs.port))
    assert report.state == "sent"
    assert not report.transient
    assert [i.outcome for i in report.instances] == [Outcome.SENT] * 3
    assert all(i.status == StoreStatus.SUCCESS for i in report.instances)
    assert pacs.kinds() == sorted([COMPREHENSIVE_3D_SR, SC_STORAGE, SEG_STORAGE])
    assert report.summary == "sent: SR, SC, SEG"
    assert report.retry_paths == ()


def test_pacs_refusing_seg_still_gets_sr_and_sc(results: dict[str, Path]) -> None:
    with running_test_pacs(sop_classes=[COMPREHENSIVE_3D_SR, SC_STORAGE]) as pacs:
        report = send_instances(_paths(results), settings=_settings(pacs.port))
    assert pacs.kinds() == sorted([COMPREHENSIVE_3D_SR, SC_STORAGE])
    assert report.state == "partially_sent"
    assert report.summary == "partially sent: SEG refused (SOP class not supported)"
    assert not report.transient
    assert report.retry_paths == ()
    seg = next(i for i in report.instances if i.kind == "SEG")
    assert seg.outcome is Outcome.REFUSED and seg.status is None


def test_pacs_accepting_none_of_the_classes_refuses_all(results: dict[str, Path]) -> None:
    with running_test_pacs(sop_classes=[]) as pacs:
        report = send_instances(_paths(results), settings=_settings(pacs.port))
    assert pacs.requests == 0
    assert report.state == "send_failed"
    assert not report.transient
    assert {i.reason for i in report.instances} == {"SOP class not supported"}


def test_out_of_resources_is_transient(results: dict[str, Path]) -> None:
    with running_test_pacs(status=StoreStatus.OUT_OF_RESOURCES) as pacs:
        report = send_instances(_paths(results), settings=_settings(pacs.port))
    assert pacs.requests == 3 and not pacs.stored
    assert report.state == "send_failed"
    assert report.transient
    assert {i.status for i in report.instances} == {0xA700}
    assert set(report.retry_paths) == set(_paths(results))
    assert "out of resources" in report.summary


def test_refusal_status_is_permanent_and_never_reported_sent(results: dict[str, Path]) -> None:
    with running_test_pacs(status=0xA900) as pacs:
        report = send_instances(_paths(results), settings=_settings(pacs.port))
    assert pacs.requests == 3
    assert report.state == "send_failed"
    assert not report.transient
    assert all(i.outcome is Outcome.REFUSED for i in report.instances)
    assert report.retry_paths == ()


def test_warning_status_counts_as_sent_with_the_warning_recorded(results: dict[str, Path]) -> None:
    with running_test_pacs(status=StoreStatus.WARNING_COERCION) as pacs:
        report = send_instances(_paths(results), settings=_settings(pacs.port))
    assert len(pacs.stored) == 3
    assert report.state == "sent"
    assert {i.status for i in report.instances} == {0xB000}
    assert "coercion of data elements" in report.summary


def test_pacs_down_is_transient(results: dict[str, Path]) -> None:
    port = free_port()  # nothing listens here
    report = send_instances(_paths(results), settings=_settings(port))
    assert report.state == "send_failed"
    assert report.transient
    assert {i.reason for i in report.instances} == {"connection refused or unreachable"}


def test_pacs_not_answering_in_time_is_transient(results: dict[str, Path]) -> None:
    with running_test_pacs(delay_seconds=1.5) as pacs:
        settings = _settings(pacs.port).model_copy(update={"network_timeout_seconds": 0.5})
        report = send_instances(_paths(results), settings=settings)
    assert report.state == "send_failed"
    assert report.transient
    assert report.instances[0].reason == "no C-STORE response (time-out or association aborted)"
    assert set(report.retry_paths) == set(_paths(results))


def test_transient_rejection_is_transient(results: dict[str, Path]) -> None:
    with running_test_pacs(maximum_associations=1) as pacs:
        holder = AE(ae_title="HOLDER")
        holder.add_requested_context(VERIFICATION)
        held = holder.associate("127.0.0.1", pacs.port, ae_title=pacs.ae_title)
        assert held.is_established
        try:
            report = send_instances(_paths(results), settings=_settings(pacs.port))
        finally:
            held.release()
    assert report.state == "send_failed" and report.transient
    assert report.instances[0].reason == "association rejected (transient): local limit exceeded"


def test_calling_ae_rejected_is_permanent(results: dict[str, Path]) -> None:
    with running_test_pacs(require_calling_aet=["SOMEONE"]) as pacs:
        report = send_instances(_paths(results), settings=_settings(pacs.port))
    assert pacs.requests == 0
    assert report.state == "send_failed"
    assert not report.transient
    assert report.retry_paths == ()
    assert {i.reason for i in report.instances} == {
        "association rejected: calling ae title not recognised"
    }


def test_retry_sends_only_what_failed_and_merges(results: dict[str, Path]) -> None:
    port = free_port()
    settings = _settings(port)
    first = send_instances(_paths(results), settings=settings)
    assert first.transient and len(first.retry_paths) == 3
    with running_test_pacs(sop_classes=[COMPREHENSIVE_3D_SR, SC_STORAGE]) as probe:
        partial = send_instances(first.retry_paths, settings=_settings(probe.port))
    merged = first.merged(partial)
    assert merged.state == "partially_sent" and not merged.transient
    assert merged.summary == "partially sent: SEG refused (SOP class not supported)"
    # the report survives a trip through JSON (the job store)
    again = SendReport.model_validate_json(merged.model_dump_json())
    assert again == merged and again.summary == merged.summary


def test_unreadable_file_fails_alone(results: dict[str, Path], tmp_path: Path) -> None:
    junk = tmp_path / "junk.dcm"
    junk.write_bytes(b"not dicom at all")
    with running_test_pacs() as pacs:
        report = send_instances([*_paths(results), junk], settings=_settings(pacs.port))
    assert len(pacs.stored) == 3
    assert report.state == "partially_sent" and not report.transient
    bad = report.instances[-1]
    assert bad.outcome is Outcome.FAILED and bad.reason.startswith("unreadable file")


def test_tcp_nodelay_is_on_for_the_sending_socket() -> None:
    watch = _AssociationWatch()
    ae = AE(ae_title="MARROWMAP")
    ae.add_requested_context(VERIFICATION)
    with running_test_pacs() as pacs:
        assoc = ae.associate("127.0.0.1", pacs.port, ae_title=pacs.ae_title,
                             evt_handlers=watch.handlers)
        assert assoc.is_established
        assoc.release()
    assert watch.connected and watch.negotiated and watch.nodelay


def test_backoff_doubles_and_caps() -> None:
    settings = load_settings(send_backoff_seconds=2, send_backoff_cap_seconds=10)
    assert [backoff_seconds(n, settings) for n in range(5)] == [2, 4, 8, 10, 10]
    assert backoff_seconds(500, settings) == 10
    with pytest.raises(ValueError):
        backoff_seconds(-1, settings)


@pytest.mark.parametrize(
    ("status", "category"),
    [
        (0x0000, StatusCategory.STORED),
        (0xB000, StatusCategory.STORED_WITH_WARNING),
        (0xB123, StatusCategory.STORED_WITH_WARNING),
        (0xA700, StatusCategory.TRANSIENT),
        (0xA7FF, StatusCategory.TRANSIENT),
        (0xA900, StatusCategory.REFUSED),
        (0x0122, StatusCategory.REFUSED),
        (0xC001, StatusCategory.REFUSED),
        (0x0110, StatusCategory.TRANSIENT),
        (0x1234, StatusCategory.REFUSED),
    ],
)
def test_status_classification(status: int, category: StatusCategory) -> None:
    assert classify_store_status(status).category is category
