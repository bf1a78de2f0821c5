# ruff: noqa: F811  (pytest fixtures imported from listener_fixtures)
"""Early completion: a study complete by evidence is sealed seconds after the association that
carried it was released, long before the quiet period; one that is evidently incomplete waits."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from service.completion import Role, SeriesState, instance_evidence, series_role, series_state
from tests import dicom_factory as factory
from tests.listener_fixtures import Harness, harness, storescu, wait_for  # noqa: F401

_EARLY = {"MARROWMAP_QUIET_SECONDS": "60", "MARROWMAP_EARLY_SEAL_SECONDS": "0.5"}


def _header(position: float, **extra: str) -> dict[str, str]:
    return {"ImageOrientationPatient": "1\\0\\0\\0\\0\\-1", "ImagePositionPatient": f"-100\\{position}\\100", **extra}


def test_series_state_from_positions_counts_and_frames() -> None:
    regular = {str(i): instance_evidence(_header(4.0 * i)) for i in range(5)}
    assert series_state(regular) is SeriesState.COMPLETE
    gapped = {k: v for k, v in regular.items() if k != "2"}
    assert series_state(gapped) is SeriesState.INCOMPLETE
    counted = {str(i): instance_evidence(_header(4.0 * i, ImagesInAcquisition="6")) for i in range(5)}
    assert series_state(counted) is SeriesState.INCOMPLETE
    assert series_state({"e": instance_evidence({"NumberOfFrames": "30"})}) is SeriesState.COMPLETE
    assert series_state({"x": instance_evidence({})}) is SeriesState.UNKNOWN


def test_series_role_from_headers() -> None:
    assert series_role({"SeriesDescription": "COR STIR"}) is Role.FLUID_FS
    assert series_role({"SeriesDescription": "ax t2 tse", "ScanOptions": "FS", "RepetitionTime": "4000"}) \
        is Role.FLUID_FS
    assert series_role({"SeriesDescription": "cor", "ScanningSequence": "SE\\IR", "InversionTime": "150"}) \
        is Role.FLUID_FS
    assert series_role({"ImageType": "DERIVED\\PRIMARY\\DIXON\\WATER"}) is Role.FLUID_FS
    assert series_role({"SeriesDescription": "COR T1 TSE"}) is Role.T1
    assert series_role({"RepetitionTime": "550", "EchoTime": "12"}) is Role.T1
    assert series_role({"SeriesDescription": "localizer", "ImageType": "DERIVED\\SECONDARY"}) is Role.OTHER


@pytest.mark.integration
def test_complete_study_is_sealed_soon_after_release(harness: Harness, tmp_path: Path) -> None:
    study = factory.study("early-complete")
    listener = harness.start_listener(**_EARLY)
    sent = time.monotonic()
    assert storescu(harness.port, factory.write(study, tmp_path / "send")).returncode == 0
    wait_for(harness.queue_messages, 10, "a job sealed by evidence")
    assert time.monotonic() - sent < 10  # the quiet period is 60 s
    complete = listener.events("study.complete")
    assert [e["by"] for e in complete] == ["evidence"], complete


@pytest.mark.integration
def test_gap_in_a_needed_series_waits_until_it_is_filled(harness: Harness, tmp_path: Path) -> None:
    study = factory.study("early-gap")
    files = factory.write(study, tmp_path / "send")
    missing = files[1]  # a T1 slice in the middle of its stack
    listener = harness.start_listener(**_EARLY)
    assert storescu(harness.port, [f for f in files if f != missing]).returncode == 0
    time.sleep(2)  # four times early_seal_seconds
    assert harness.queue_messages() == [] and listener.events("study.complete") == []
    assert storescu(harness.port, [missing]).returncode == 0
    messages = wait_for(harness.queue_messages, 10, "a job once the gap is filled")
    assert sum(s["instance_count"] for s in messages[0]["kwargs"]["job"]["series"]) == len(study)


@pytest.mark.integration
def test_early_completion_off_keeps_the_quiet_period(harness: Harness, tmp_path: Path) -> None:
    study = factory.study("early-off")
    listener = harness.start_listener(**_EARLY, MARROWMAP_EARLY_COMPLETION="false")
    assert storescu(harness.port, factory.write(study, tmp_path / "send")).returncode == 0
    time.sleep(2)  # four times early_seal_seconds
    assert harness.queue_messages() == [] and listener.events("study.complete") == []
