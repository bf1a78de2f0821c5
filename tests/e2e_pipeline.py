"""End-to-end helpers: the whole MarrowMap (``marrowmap listen`` + ``marrowmap worker``
subprocesses on loopback, real Redis) between a PACS and itself, plus checks on what came back.

Builds on the listener engineer's ``listener_fixtures.Harness`` (per-test spool, Redis
namespaces, process logs, cleanup).
"""

from __future__ import annotations

import math
import os
import shutil
import subprocess
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset

from marrowmap.jobstore import FINAL_STATES, JobRecord, JobStore
from tests.listener_fixtures import REDIS_URL, Harness, Proc, wait_for
from tests.orthanc_harness import Modality, Orthanc, running_orthanc

#: Small backoff so that retry tests finish in seconds.
FAST_RETRY_ENV = {
    "MARROWMAP_SEND_BACKOFF_SECONDS": "1",
    "MARROWMAP_SEND_BACKOFF_CAP_SECONDS": "3",
    "MARROWMAP_SEND_MAX_RETRIES": "40",
}
SR_CLASSES = {"1.2.840.10008.5.1.4.1.1.88.34", "1.2.840.10008.5.1.4.1.1.88.22",
              "1.2.840.10008.5.1.4.1.1.88.33"}
SEG_CLASS = "1.2.840.10008.5.1.4.1.1.66.4"
LATERALITY_CONCEPT = "272741003"
LATERALITY_VALUES = {"24028007": "right", "7771000": "left"}


@dataclass
class MarrowMap:
    """A running MarrowMap (listener + worker) pointed at one PACS."""

    harness: Harness
    listener: Proc
    worker: Proc

    @property
    def port(self) -> int:
        """DICOM port of the listener."""
        return self.harness.port

    @property
    def store(self) -> JobStore:
        """The job store of this test's namespace."""
        return JobStore.from_url(REDIS_URL, self.harness.prefix)

    def jobs(self, study_uid: str | None = None) -> list[JobRecord]:
        """Jobs (newest first), optionally of one study."""
        records = self.store.recent(100)
        return [r for r in records if study_uid is None or r.study_instance_uid == study_uid]

    def wait_final(self, study_uid: str, *, count: int = 1, timeout: float = 120) -> list[JobRecord]:
        """Wait until ``count`` jobs of the study are in a final state; return them."""

        def done() -> list[JobRecord]:
            self.check_alive()
            jobs = self.jobs(study_uid)
            final = [j for j in jobs if j.state in FINAL_STATES]
            return final if len(final) >= count and len(final) == len(jobs) else []

        return wait_for(done, timeout, f"{count} final job(s) for the study")

    def check_alive(self) -> None:
        """Fail loudly when the listener or the worker died."""
        for proc in (self.listener, self.worker):
            if proc.popen.poll() is not None:
                raise AssertionError(f"{proc.name} exited with {proc.popen.returncode}:\n"
                                     + _tail(proc.log_path))

    def describe(self) -> str:
        """Tails of the process logs, for assertion messages."""
        return "\n".join(f"--- {p.name}\n{_tail(p.log_path)}" for p in (self.listener, self.worker))

    def results_dir(self, job_id: str) -> Path:
        """Where the worker wrote the job's result.json and outputs."""
        return self.harness.spool / "results" / job_id

    def worker_children(self) -> list[int]:
        """PIDs of the worker's pool processes."""
        pid = self.worker.popen.pid
        children: list[int] = []
        for task in Path(f"/proc/{pid}/task").iterdir():
            text = (task / "children").read_text().split()
            children.extend(int(c) for c in text)
        return children


def _tail(path: Path, lines: int = 40) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""


def start_marrowmap(harness: Harness, *, pacs_ae: str, pacs_port: int, pool: str = "solo",
                    **extra_env: str) -> MarrowMap:
    """Start ``marrowmap listen`` and ``marrowmap worker`` (both queues) for this PACS."""
    env = {
        "MARROWMAP_PACS_AE_TITLE": pacs_ae,
        "MARROWMAP_PACS_HOST": "127.0.0.1",
        "MARROWMAP_PACS_PORT": str(pacs_port),
        **FAST_RETRY_ENV,
        **extra_env,
    }
    listener = harness.start_listener(**env)
    args = ["worker", "--queues", "analysis,send", "--pool", pool]
    if pool == "prefork":
        args += ["--concurrency", "1"]
    worker = harness._spawn("worker", args, harness.env(**env))
    wait_for(lambda: "ready." in worker.log_path.read_text(errors="replace")
             or worker.popen.poll() is not None, 90, "the worker to be ready", interval=0.2)
    assert worker.popen.poll() is None, _tail(worker.log_path)
    return MarrowMap(harness=harness, listener=listener, worker=worker)


def dicom_files(folder: Path) -> list[Path]:
    """The DICOM files of a study folder (``<series>/IMnnnn.dcm``)."""
    return sorted(folder.glob("*/*.dcm"))


def phantom_study(base: Path, case: str = "itoh_left", seed: int = 11) -> Path:
    """The DICOM folder of a small phantom study (cached by name under ``base``: the generator is deterministic)."""
    from workers.phantom import dicom_dir, generate_study

    folder = base / f"phantom-{case}-{seed}-small"
    done = folder / ".complete"
    if not done.exists():
        shutil.rmtree(folder, ignore_errors=True)
        generate_study(folder, case, seed, small=True)
        done.touch()
    return dicom_dir(folder)


def study_uid_of(folder: Path) -> str:
    """Study Instance UID of the first file of a study folder."""
    return str(dcmread(dicom_files(folder)[0], stop_before_pixels=True).StudyInstanceUID)


def dciodvfy_errors(path: Path) -> list[str]:
    """The ``Error`` lines dciodvfy prints for a file."""
    run = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True, timeout=120,
                         check=False, env=dict(os.environ))
    return [line for line in (run.stdout + run.stderr).splitlines() if line.startswith("Error")]


def _content_items(items: Iterable[Dataset]) -> Iterator[Dataset]:
    for item in items:
        yield item
        yield from _content_items(item.get("ContentSequence", []))


def _group_laterality(group: Dataset) -> str | None:
    for item in _content_items(group.get("ContentSequence", [])):
        name = item.get("ConceptNameCodeSequence")
        if name and name[0].CodeValue == LATERALITY_CONCEPT and "ConceptCodeSequence" in item:
            return LATERALITY_VALUES.get(str(item.ConceptCodeSequence[0].CodeValue))
    return None


def sr_numbers_by_side(sr: Dataset) -> dict[str | None, list[tuple[str, float]]]:
    """Every NUM item of a TID 1500 SR as (concept meaning, value), by the laterality of the
    measurement group (finding site) it belongs to."""
    out: dict[str | None, list[tuple[str, float]]] = {}
    for container in _content_items(sr.get("ContentSequence", [])):
        if container.ValueType != "CONTAINER":
            continue
        children = container.get("ContentSequence", [])
        numbers = [
            (str(item.ConceptNameCodeSequence[0].CodeMeaning),
             float(item.MeasuredValueSequence[0].NumericValue))
            for item in children
            if item.ValueType == "NUM" and item.get("MeasuredValueSequence")
        ]
        if numbers:
            out.setdefault(_group_laterality(container), []).extend(numbers)
    return out


def result_numbers(side: dict[str, Any]) -> list[float]:
    """Every number of one side of result.json (recursively)."""
    found: list[float] = []

    def walk(value: Any) -> None:
        if isinstance(value, bool):
            return
        if isinstance(value, int | float):
            found.append(float(value))
        elif isinstance(value, dict):
            for v in value.values():
                walk(v)
        elif isinstance(value, list | tuple):
            for v in value:
                walk(v)

    walk(side)
    return found


def close_to_any(value: float, candidates: Iterable[float]) -> bool:
    """True when ``value`` equals one candidate up to DS rounding."""
    return any(math.isclose(value, c, rel_tol=1e-5, abs_tol=1e-6) for c in candidates)


@pytest.fixture(scope="module")
def phantom(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The e2e tests' small own-phantom itoh_left study, generated once per module."""
    return phantom_study(tmp_path_factory.getbasetemp())


@pytest.fixture
def orthanc(harness: Harness, tmp_path: Path) -> Iterator[Orthanc]:
    """An Orthanc PACS that knows the test's listener as modality ``marrowmap``."""
    with running_orthanc(tmp_path / "orthanc",
                         modalities={"marrowmap": Modality("MARROWMAP", harness.port)}) as pacs:
        yield pacs
