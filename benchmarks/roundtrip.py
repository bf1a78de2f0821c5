"""Round-trip latency: study sealed -> all results stored in Orthanc, split per stage.

    python benchmarks/roundtrip.py [--small] [--runs N]

Runs the real thing on loopback: Orthanc (Debian package) as the PACS, ``marrowmap listen`` and
``marrowmap worker`` as subprocesses, the local Redis (db 14, own key prefixes, cleaned after).
A full-size phantom hip study (coronal T1 512 x 512, coronal STIR and axial T2 FS 384 x 384,
30 slices each) is uploaded to Orthanc, which is told to send it to MarrowMap. Stage times
come from the job store (state entry times) and result.json; the end point is the moment the
Orthanc REST API lists every output instance in the study. Target: <= 15 s sealed -> stored.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import redis  # noqa: E402
from pydicom import dcmread  # noqa: E402

from marrowmap.jobstore import FINAL_STATES, JobRecord, JobStore  # noqa: E402
from tests.orthanc_harness import Modality, Orthanc, running_orthanc, wait_for  # noqa: E402
from tests.pacs_peers import free_port  # noqa: E402

REDIS_URL = "redis://127.0.0.1:6379/14"
MARROWMAP = [sys.executable, "-c", "from marrowmap.cli import main; main()"]
TARGET_SECONDS = 15.0


def phantom(cache: Path, small: bool) -> Path:
    """The benchmark study's DICOM folder (generated once, cached: the generator is deterministic)."""
    from workers.phantom import dicom_dir, generate_study

    folder = cache / ("phantom-small" if small else "phantom-full")
    if not (folder / ".complete").exists():
        shutil.rmtree(folder, ignore_errors=True)
        started = time.perf_counter()
        generate_study(folder, "itoh_left", 21, small=small)
        (folder / ".complete").touch()
        print(f"generated phantom in {time.perf_counter() - started:.1f} s -> {folder}")
    return dicom_dir(folder)


def dicom_files(folder: Path) -> list[Path]:
    """The phantom's DICOM files (``<series>/IMnnnn.dcm``)."""
    return sorted(folder.glob("*/*.dcm"))


def service_env(work: Path, port: int, prefix: str, **settings: str) -> dict[str, str]:
    """Environment of a benchmark's listener and workers: this one without any ``MARROWMAP_*``, the
    repository's config, the listener on loopback ``port``, the spool under ``work``, Redis under
    ``prefix``, metrics off, JSON logs; ``settings`` adds or overrides ``MARROWMAP_*`` values."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MARROWMAP_")}
    env.update({
        "MARROWMAP_CONFIG": str(ROOT / "config" / "marrowmap.toml"),
        "MARROWMAP_HOST": "127.0.0.1", "MARROWMAP_PORT": str(port),
        "MARROWMAP_SPOOL_DIR": str(work / "spool"),
        "MARROWMAP_BROKER_URL": REDIS_URL, "MARROWMAP_QUEUE_PREFIX": f"{prefix}.",
        "MARROWMAP_JOB_STORE_PREFIX": prefix, "MARROWMAP_MIN_FREE_DISK_MB": "1",
        "MARROWMAP_LISTENER_METRICS_PORT": "0", "MARROWMAP_WORKER_METRICS_PORT": "0",
        "MARROWMAP_LOG_FORMAT": "json",
    })
    env.update(settings)
    return env


def spawn(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """A ``marrowmap`` subprocess logging to ``log``."""
    with log.open("wb") as out:
        return subprocess.Popen([*MARROWMAP, *args], env=env, stdout=out, stderr=subprocess.STDOUT)


def stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM, then SIGKILL."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _seconds(a: datetime | None, b: datetime | None) -> float | None:
    return None if a is None or b is None else (b - a).total_seconds()


def one_run(orthanc: Orthanc, store: JobStore, study: Path, work: Path,
            worker_pid: int) -> dict[str, Any]:
    """Push the study through Orthanc -> MarrowMap -> Orthanc; return the figures."""
    study_uid = str(dcmread(dicom_files(study)[0], stop_before_pixels=True).StudyInstanceUID)
    for path in dicom_files(study):
        orthanc.upload(path)
    known = {r.job_id for r in store.recent(1000)}
    cpu_before = cpu_seconds(worker_pid)
    push_start = time.time()
    orthanc.send_study(study_uid, "marrowmap")
    push_end = time.time()

    def final_job() -> JobRecord | None:
        for r in store.recent(50):
            if r.job_id not in known and r.study_instance_uid == study_uid and r.state in FINAL_STATES:
                return r
        return None

    job = wait_for(final_job, timeout=600, interval=0.05, what="the job to finish")
    assert job is not None
    worker_cpu = cpu_seconds(worker_pid) - cpu_before
    result = json.loads((work / "spool" / "results" / job.job_id / "result.json").read_text())
    outputs = {o["sop_instance_uid"] for o in result["outputs"]}

    def all_stored() -> float:
        stored = {i["MainDicomTags"]["SOPInstanceUID"] for i in orthanc.instances(study_uid)}
        return time.time() if outputs <= stored else 0.0

    stored_at = wait_for(all_stored, timeout=120, interval=0.05, what="outputs in Orthanc")
    message = job.message or {}
    sealed = datetime.fromisoformat(message["sealed_at"]) if "sealed_at" in message else None
    t = job.times
    stored_dt = datetime.fromtimestamp(stored_at, tz=sealed.tzinfo) if sealed else None
    figures: dict[str, Any] = {
        "job": job.job_id,
        "state": job.state.value,
        "reason": job.reason,
        "instances_in": sum(1 for _ in dicom_files(study)),
        "outputs": len(outputs),
        "push_orthanc_to_marrowmap_s": round(push_end - push_start, 2),
        "stages_s": {
            "sealed->analysis started": _seconds(sealed, t.get("analysing")),
            "analysis (incl. outputs)": _seconds(t.get("analysing"), t.get("analysed")),
            "analysed->sending": _seconds(t.get("analysed"), t.get("sending")),
            "send (C-STORE to Orthanc)": _seconds(t.get("sending"), t.get(job.state.value)),
            "job final->visible in Orthanc REST": _seconds(t.get(job.state.value), stored_dt),
        },
        "analysis_breakdown_s": result.get("timings_s", {}),
        "sealed_to_stored_s": _seconds(sealed, stored_dt),
        "worker_cpu_s": round(worker_cpu, 2),
        "load_average_1min": os.getloadavg()[0],
    }
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--small", action="store_true", help="small phantom (128^2, 16-18 slices)")
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "marrowmap-bench")
    args = parser.parse_args()

    client = redis.Redis.from_url(REDIS_URL)
    client.ping()
    args.cache.mkdir(parents=True, exist_ok=True)
    study = phantom(args.cache, args.small)
    prefix = f"bench{uuid.uuid4().hex[:8]}"
    work = Path(tempfile.mkdtemp(prefix="marrowmap-bench-"))
    port = free_port()
    procs: list[subprocess.Popen[bytes]] = []
    figures: dict[str, Any] = {}
    try:
        with running_orthanc(work / "orthanc",
                             modalities={"marrowmap": Modality("MARROWMAP", port)}) as orthanc:
            env = service_env(work, port, prefix, MARROWMAP_QUIET_SECONDS="1", MARROWMAP_PACS_AE_TITLE=orthanc.aet,
                              MARROWMAP_PACS_HOST="127.0.0.1", MARROWMAP_PACS_PORT=str(orthanc.dicom_port))
            procs.append(spawn(["listen"], env, work / "listener.log"))
            worker_log = work / "worker.log"
            procs.append(spawn(["worker", "--queues", "analysis,send", "--pool", "solo"], env,
                               worker_log))
            wait_for(lambda: "ready." in worker_log.read_text(errors="replace"), timeout=120,
                     what="the worker")
            store = JobStore.from_url(REDIS_URL, prefix)
            figures = one_run(orthanc, store, study, work, procs[-1].pid)
            print(json.dumps(figures, indent=2))
    finally:
        for proc in procs:
            stop(proc)
        keys = list(client.scan_iter(match=f"*{prefix}*", count=1000))
        if keys:
            client.delete(*keys)
        shutil.rmtree(work, ignore_errors=True)
    total = figures.get("sealed_to_stored_s")
    if total is None:
        print("no sealed -> stored figure (see the job state above)")
        return 1
    verdict = "meets" if total <= TARGET_SECONDS else "MISSES"
    print(f"sealed -> all results stored in Orthanc: {total:.2f} s "
          f"({verdict} the {TARGET_SECONDS:.0f} s target); worker CPU {figures['worker_cpu_s']} s; "
          f"load average {figures['load_average_1min']:.1f} on {os.cpu_count()} cores")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
