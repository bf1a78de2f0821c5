"""Throughput of the analysis workers: studies per hour with 1 and 2 worker processes, peak RSS per process.

    python benchmarks/throughput.py [--studies 10] [--processes 1 2]

Runs the real thing on loopback: ``marrowmap listen`` receives ``--studies`` copies of the
3 series x 30 slices x 512^2 phantom of ``benchmarks/analysis_speed.py`` (each copy with its own
patient, study, series and instance UIDs) from dcmtk ``storescu``, seals them and queues them in
the local Redis (db 13, own key prefixes, deleted after). Once every study is queued,
``marrowmap worker --queues analysis --concurrency N`` (prefork) is started and works the queue
off; sending is left out (no send worker). Studies per hour = studies / (first analysis start ->
last analysis end, from the job store's state times). Peak RSS is each pool process's VmHWM.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import redis  # noqa: E402
from analysis_speed import prepare  # noqa: E402
from pydicom import dcmread  # noqa: E402
from pydicom.uid import UID  # noqa: E402

from benchmarks.roundtrip import REDIS_URL, service_env, spawn, stop  # noqa: E402
from marrowmap.jobstore import JobRecord, JobState, JobStore  # noqa: E402
from tests.listener_fixtures import STORESCU  # noqa: E402
from tests.orthanc_harness import wait_for  # noqa: E402
from tests.pacs_peers import free_port  # noqa: E402

ANALYSIS_OVER = frozenset({JobState.ANALYSED, JobState.NOT_APPLICABLE, JobState.FAILED, JobState.SENDING,
                           JobState.SENT, JobState.PARTIALLY_SENT, JobState.SEND_FAILED})


def _uid(*parts: str) -> str:
    """A UID under 2.25 derived from ``parts`` (same parts, same UID)."""
    return "2.25." + str(int(hashlib.sha256("/".join(parts).encode()).hexdigest()[:30], 16))


def copy_studies(source: Path, target: Path, count: int) -> list[Path]:
    """``count`` copies of the study under ``source``, each a different patient and study (new UIDs)."""
    folders = []
    for k in range(count):
        folder = target / f"study{k:02d}"
        for path in sorted(source.rglob("*.dcm")):
            ds = dcmread(path)
            ds.PatientID, ds.PatientName = f"THROUGHPUT{k:02d}", f"Throughput^{k:02d}"
            ds.StudyInstanceUID = _uid(str(k), str(ds.StudyInstanceUID))
            ds.SeriesInstanceUID = _uid(str(k), str(ds.SeriesInstanceUID))
            ds.SOPInstanceUID = _uid(str(k), str(ds.SOPInstanceUID))
            ds.file_meta.MediaStorageSOPInstanceUID = UID(ds.SOPInstanceUID)
            out = folder / path.relative_to(source)
            out.parent.mkdir(parents=True, exist_ok=True)
            ds.save_as(out, enforce_file_format=True)
        folders.append(folder)
    return folders


def peak_rss_mb(pid: int) -> float:
    """VmHWM (peak resident set) of a process, MB; 0 when it is gone."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:  # the process has ended
        return 0.0
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024.0
    return 0.0


def children(pid: int) -> list[int]:
    """Direct child processes of ``pid`` (the prefork pool of a worker)."""
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def one_run(studies: list[Path], processes: int, work: Path) -> dict[str, float]:
    """Queue every study through the listener, then let ``processes`` pool processes analyse them."""
    prefix = f"thru{uuid.uuid4().hex[:8]}"
    port = free_port()
    env = service_env(work, port, prefix, MARROWMAP_QUIET_SECONDS="1")
    store = JobStore.from_url(REDIS_URL, prefix)
    procs: list[subprocess.Popen[bytes]] = []
    try:
        procs.append(spawn(["listen"], env, work / "listener.log"))
        echo = ["/usr/bin/echoscu", "-aet", "THROUGHPUT", "-aec", "MARROWMAP", "127.0.0.1", str(port)]
        wait_for(lambda: subprocess.run(echo, capture_output=True, check=False).returncode == 0, timeout=60,
                 interval=0.5, what="the listener to answer C-ECHO")
        for folder in studies:
            files = sorted(str(p) for p in folder.rglob("*.dcm"))
            subprocess.run([STORESCU, "-aet", "THROUGHPUT", "-aec", "MARROWMAP", "127.0.0.1", str(port), *files],
                           check=True, capture_output=True, timeout=300)
        wait_for(lambda: sum(1 for r in store.recent(100) if r.state == JobState.QUEUED) >= len(studies),
                 timeout=120, what="every study queued")
        worker = spawn(["worker", "--queues", "analysis", "--concurrency", str(processes)], env, work / "worker.log")
        procs.append(worker)
        peaks: dict[int, float] = {}

        def all_analysed() -> bool:
            for child in children(worker.pid):
                peaks[child] = max(peaks.get(child, 0.0), peak_rss_mb(child))
            return sum(1 for r in store.recent(100) if r.state in ANALYSIS_OVER) >= len(studies)

        wait_for(all_analysed, timeout=3600, interval=0.5, what="every study analysed")
        jobs: list[JobRecord] = store.recent(100)
    finally:
        for proc in procs:
            stop(proc)
        client = redis.Redis.from_url(REDIS_URL)
        keys = list(client.scan_iter(match=f"*{prefix}*", count=1000))
        if keys:
            client.delete(*keys)
    starts = [r.times["analysing"] for r in jobs if "analysing" in r.times]
    ends = [r.times[s] for r in jobs for s in ("analysed", "not_applicable", "failed") if s in r.times]
    span = (max(ends) - min(starts)).total_seconds()
    per_job = [(r.times[s] - r.times["analysing"]).total_seconds() for r in jobs
               for s in ("analysed", "not_applicable", "failed") if s in r.times and "analysing" in r.times]
    states = sorted({r.state.value for r in jobs})
    print(f"  {processes} process(es): states {', '.join(states)}; span {span:.1f} s; "
          f"per study median {statistics.median(per_job):.1f} s")
    return {"studies_per_hour": len(studies) / span * 3600.0, "span_s": span,
            "per_study_s": statistics.median(per_job), "peak_rss_mb": max(peaks.values(), default=0.0)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--studies", type=int, default=10)
    parser.add_argument("--processes", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--cache", type=Path, default=Path("/tmp/marrowmap-phantom-cache"))
    args = parser.parse_args(argv)
    redis.Redis.from_url(REDIS_URL).ping()
    source = prepare(args.cache, "itoh_left")
    work = Path(tempfile.mkdtemp(prefix="marrowmap-throughput-"))
    try:
        studies = copy_studies(source, work / "studies", args.studies)
        rows = []
        for processes in args.processes:
            before = " ".join(Path("/proc/loadavg").read_text().split()[:3])
            run_dir = work / f"run{processes}"
            run_dir.mkdir()
            rows.append((processes, before, one_run(studies, processes, run_dir)))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"\n{args.studies} studies (3 x 30 x 512^2 each) on {os.cpu_count()} cores:")
    print("processes | studies/hour | span s | per study s | peak RSS per process MB | load before")
    for processes, before, f in rows:
        print(f"{processes:9d} | {f['studies_per_hour']:12.0f} | {f['span_s']:6.1f} | {f['per_study_s']:11.1f} | "
              f"{f['peak_rss_mb']:23.0f} | {before}")
    print(f"load average after: {' '.join(Path('/proc/loadavg').read_text().split()[:3])}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
