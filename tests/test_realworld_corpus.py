# ruff: noqa: F811  (pytest fixtures imported from listener_fixtures)
"""Acceptance (issue 13): real MR data from public sources, through ``marrowmap series``,
``marrowmap analyze`` and the running service (listener + worker): no failed job, no internal
error, and every outcome says why.

The package-shipped files (pydicom, pydicom-data) always run. The larger extracted corpus
(``tests/realworld.py``: ≥ 100 series from the neurolabusc dcm_qa collections, several vendors)
runs when present and is skipped, saying how to get it, when not.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path

import pytest
from click.testing import CliRunner
from pydicom import dcmread

from marrowmap.cli import main
from marrowmap.jobstore import FINAL_STATES, JobState, JobStore
from tests.listener_fixtures import REDIS_URL, Harness, harness, send_raw_files, wait_for  # noqa: F401
from tests.realworld import Case, corpus_cases, corpus_dir, package_cases, series_count, tally

NOT_ANALYSED_OUTPUTS = ["kos", "sc_summary", "sr"]


def _sop_class_and_syntax(path: Path) -> tuple[str, str]:
    meta = dcmread(path, stop_before_pixels=True).file_meta
    return str(meta.MediaStorageSOPClassUID), str(meta.TransferSyntaxUID)


def _offline(cases: list[Case], tmp: Path) -> dict[str, tuple[str, str]]:
    """case -> (status, reason) of ``marrowmap analyze``, after ``marrowmap series`` listed it."""
    runner = CliRunner()
    outcomes: dict[str, tuple[str, str]] = {}
    for n, case in enumerate(cases):
        label = f"{case.source}/{case.name}"
        folder = case.copy_to(tmp / f"{n:03d}" / "in")
        listed = runner.invoke(main, ["--log-format", "console", "series", str(folder)])
        assert listed.exit_code == 0, f"{label}: marrowmap series: {listed.exception!r}\n{listed.output[-2000:]}"
        out = tmp / f"{n:03d}" / "out"
        runner.invoke(main, ["--log-format", "console", "analyze", str(folder), "--out", str(out)])
        result = json.loads((out / "result.json").read_text())
        outcomes[label] = (result["status"], result["reason"])
        assert result["status"] != "failed", f"{label}: {result['reason']}"
        if result["status"] == "not_applicable":
            assert result["reason"], label
            assert sorted(o["kind"] for o in result["outputs"]) == NOT_ANALYSED_OUTPUTS, label
    return outcomes


def _report(name: str, cases: list[Case], outcomes: dict[str, tuple[str, str]]) -> None:
    counts = tally(outcomes)
    sources = sorted({c.source for c in cases})
    print(f"\n{name}: {len(cases)} cases, {series_count(cases)} MR series, {len(sources)} sources "
          f"({', '.join(sources)}): {dict(counts)}")
    for reason, count in Counter(reason for _, reason in outcomes.values()).most_common():
        print(f"  {count:4d} x {reason[:160]}")


def test_package_shipped_real_mr_files_offline(tmp_path: Path) -> None:
    cases = package_cases()
    assert len(cases) >= 30
    outcomes = _offline(cases, tmp_path)
    _report("pydicom + pydicom-data", cases, outcomes)
    assert "failed" not in tally(outcomes)


@pytest.fixture(scope="module")
def corpus() -> list[Case]:
    root = corpus_dir()
    if root is None:
        pytest.skip("real-world corpus not present: python tools/realworld/collect.py --out ../shared/realworld "
                    "(from the fetched snapshots listed in tests/data/realworld/sources.toml), "
                    "or set MARROWMAP_REALWORLD_DIR")
    return corpus_cases(root)


@pytest.mark.slow
def test_realworld_corpus_offline(corpus: list[Case], tmp_path: Path) -> None:
    cases = corpus + package_cases()
    assert series_count(cases) >= 100 and len({c.source for c in cases}) >= 3
    outcomes = _offline(cases, tmp_path)
    _report("offline corpus", cases, outcomes)
    assert "failed" not in tally(outcomes)


@pytest.mark.slow
@pytest.mark.integration
def test_realworld_corpus_through_the_service(corpus: list[Case], harness: Harness, tmp_path: Path) -> None:
    cases = corpus + package_cases()
    harness.start_listener(MARROWMAP_QUIET_SECONDS="2")
    harness.start_worker()
    refused: Counter[str] = Counter()  # a damaged file is refused at the door (0xCxxx), with the reason logged
    for case in cases:  # byte for byte, each file in its own transfer syntax (dcmtk's storescu cannot
        # decompress JPEG Lossless when the listener picks Explicit VR Little Endian from its proposal)
        files = [(path, *_sop_class_and_syntax(path)) for path in case.files]
        statuses = send_raw_files(harness.port, files, calling_ae="CORPUS")
        refused.update(f"{case.source}/{case.name}: 0x{s:04X}" for s in statuses if s != 0)
        assert not {s for s in statuses if s >> 12 not in (0x0, 0xC)}, f"{case.source}/{case.name}: {statuses}"
    store = JobStore.from_url(REDIS_URL, harness.prefix)

    def settled() -> list[object]:
        jobs = store.recent(10_000)
        return jobs if jobs and all(j.state in FINAL_STATES or j.state is JobState.SENDING for j in jobs) else []

    wait_for(settled, 600, "every job to settle", interval=1)
    time.sleep(3)  # studies of the last cases may still be within their quiet period
    jobs = wait_for(settled, 600, "every job to settle", interval=1)
    outcomes = {}
    for job in jobs:
        decided = next(h for h in reversed(job.history) if h.state in (
            JobState.SKIPPED, JobState.ANALYSED, JobState.NOT_APPLICABLE, JobState.FAILED))
        outcomes[job.job_id] = (decided.state.value, decided.reason)
    print(f"\nservice: {len(cases)} cases sent, {len(jobs)} jobs: {dict(tally(outcomes))}; "
          f"instances refused at receipt: {dict(refused)}")
    for reason, count in Counter(f"{o}: {r[:140]}" for o, r in outcomes.values()).most_common():
        print(f"  {count:4d} x {reason}")
    assert "failed" not in tally(outcomes)
    assert all(reason for _, reason in outcomes.values())
