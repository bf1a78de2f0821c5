"""Latency: last instance sent -> all results stored in the PACS, at default settings.

    python benchmarks/latency.py [--runs 3] [--small]

Runs the real thing on loopback: Orthanc (Debian package) as the PACS, ``marrowmap listen`` and
``marrowmap worker`` as subprocesses with the default settings (quiet period 60 s, early
completion on), the local Redis (db 14, own key prefixes, cleaned after). Each run pushes a
full-size phantom hip study (``marrowmap phantom``, given fresh UIDs per run so that every run is
a new study) with ``/usr/bin/storescu`` at its default settings, and measures from the moment
storescu has sent the last instance and released (its exit) to the moment the Orthanc REST API
lists every output of the job. Prints each run's stage table (job-store state times,
result.json timings) and the median, with the load average. Never run in CI; no timing asserted.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import redis  # noqa: E402
from pydicom import dcmread  # noqa: E402
from pydicom.uid import generate_uid  # noqa: E402

from benchmarks.roundtrip import dicom_files, phantom, service_env, spawn, stop  # noqa: E402
from marrowmap.jobstore import FINAL_STATES, JobRecord, JobStore  # noqa: E402
from tests.orthanc_harness import Modality, Orthanc, running_orthanc, wait_for  # noqa: E402
from tests.pacs_peers import free_port  # noqa: E402
from workers.analysis.result import AnalysisResult  # noqa: E402

REDIS_URL = "redis://127.0.0.1:6379/14"
_UID_ROOT = "1.2.826.0.1.3680043.8.498."


def fresh_copy(study: Path, out: Path, run: str) -> list[Path]:
    """The study with new Study/Series/SOP/Frame of Reference UIDs (derived from ``run``)."""
    paths = []
    for src in dicom_files(study):
        ds = dcmread(src)
        for keyword in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "FrameOfReferenceUID"):
            if keyword in ds:
                setattr(ds, keyword, generate_uid(_UID_ROOT, [run, str(getattr(ds, keyword))]))
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        dst = out / src.parent.name / src.name
        dst.parent.mkdir(parents=True, exist_ok=True)
        ds.save_as(dst, enforce_file_format=True)
        paths.append(dst)
    return paths


def _at(moment: datetime | None, zero: float) -> str:
    return "-" if moment is None else f"{moment.timestamp() - zero:7.2f}"


def one_run(orthanc: Orthanc, store: JobStore, files: list[Path], port: int, spool: Path) -> dict[str, Any]:
    """Push ``files`` with storescu; wait for every output in Orthanc; return the figures."""
    study_uid = str(dcmread(files[0], stop_before_pixels=True).StudyInstanceUID)
    started = time.time()
    subprocess.run(["/usr/bin/storescu", "-aec", "MARROWMAP", "127.0.0.1", str(port), *map(str, files)],
                   check=True, capture_output=True, timeout=600)
    last_sent = time.time()

    def final_job() -> JobRecord | None:
        jobs = [r for r in store.recent(50) if r.study_instance_uid == study_uid]
        done = [r for r in jobs if r.state in FINAL_STATES]
        return done[0] if jobs and len(done) == len(jobs) else None

    job = wait_for(final_job, timeout=600, interval=0.05, what="the job to finish")
    assert job is not None
    result_path = spool / "results" / job.job_id / "result.json"
    result = AnalysisResult.model_validate_json(result_path.read_bytes())
    outputs = {o.sop_instance_uid for o in result.outputs}

    def all_stored() -> float:
        stored = {i["MainDicomTags"]["SOPInstanceUID"] for i in orthanc.instances(study_uid)}
        return time.time() if outputs <= stored else 0.0

    stored_at = wait_for(all_stored, timeout=120, interval=0.05, what="outputs in Orthanc")
    message = job.message or {}
    sealed = datetime.fromisoformat(message["sealed_at"]) if "sealed_at" in message else None
    t = job.times
    print(f"  job {job.job_id} {job.state.value}, {len(files)} instances in, {len(outputs)} outputs; "
          f"seconds after the last instance was sent:")
    rows = [("storescu push (before zero)", f"{started - last_sent:7.2f}"),
            ("sealed (complete)", _at(sealed, last_sent)),
            ("analysis started", _at(t.get("analysing"), last_sent)),
            ("analysed", _at(t.get("analysed"), last_sent)),
            ("sending", _at(t.get("sending"), last_sent)),
            (f"{job.state.value}", _at(t.get(job.state.value), last_sent)),
            ("all outputs listed by Orthanc", f"{stored_at - last_sent:7.2f}")]
    for name, value in rows:
        print(f"    {name:32s} {value}")
    print("    analysis stages (result.json): "
          + ", ".join(f"{k} {v:.2f}" for k, v in result.timings_s.items()))
    return {"latency_s": stored_at - last_sent, "outputs_s": result.timings_s.get("outputs")}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--small", action="store_true", help="small phantom (128^2, 16-18 slices)")
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "marrowmap-bench")
    args = parser.parse_args()
    client = redis.Redis.from_url(REDIS_URL)
    client.ping()
    args.cache.mkdir(parents=True, exist_ok=True)
    study = phantom(args.cache, args.small)
    prefix = f"lat{uuid.uuid4().hex[:8]}"
    work = Path(tempfile.mkdtemp(prefix="marrowmap-latency-"))
    port = free_port()
    procs: list[subprocess.Popen[bytes]] = []
    latencies: list[float] = []
    outputs: list[float] = []
    load_before = Path("/proc/loadavg").read_text().split()[:3]
    try:
        with running_orthanc(work / "orthanc", modalities={"marrowmap": Modality("MARROWMAP", port)}) as orthanc:
            # default settings otherwise: quiet_seconds 60, early completion on
            env = service_env(work, port, prefix, MARROWMAP_PACS_AE_TITLE=orthanc.aet,
                              MARROWMAP_PACS_HOST="127.0.0.1", MARROWMAP_PACS_PORT=str(orthanc.dicom_port))
            procs.append(spawn(["listen"], env, work / "listener.log"))
            worker_log = work / "worker.log"
            procs.append(spawn(["worker", "--queues", "analysis,send"], env, worker_log))
            wait_for(lambda: "ready." in worker_log.read_text(errors="replace"), timeout=120, what="the worker")
            store = JobStore.from_url(REDIS_URL, prefix)
            for run in range(args.runs):
                files = fresh_copy(study, work / f"run{run}", f"{prefix}-{run}")
                print(f"run {run + 1} (load {' '.join(Path('/proc/loadavg').read_text().split()[:3])}):")
                figures = one_run(orthanc, store, files, port, work / "spool")
                latencies.append(figures["latency_s"])
                if figures["outputs_s"] is not None:
                    outputs.append(figures["outputs_s"])
    finally:
        for proc in procs:
            stop(proc)
        keys = list(client.scan_iter(match=f"*{prefix}*", count=1000))
        if keys:
            client.delete(*keys)
        shutil.rmtree(work, ignore_errors=True)
    print(f"\nlast instance sent -> all results stored in Orthanc: median {statistics.median(latencies):.2f} s "
          f"of {len(latencies)} runs ({', '.join(f'{v:.2f}' for v in latencies)}); DICOM outputs stage median "
          f"{statistics.median(outputs) if outputs else float('nan'):.2f} s")
    print(f"load average (1, 5, 15 min) before: {' '.join(load_before)}, after: "
          f"{' '.join(Path('/proc/loadavg').read_text().split()[:3])}, on {os.cpu_count()} CPUs; at "
          f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
