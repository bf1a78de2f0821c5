"""Receive benchmark: MarrowMap listener vs dcmtk storescp, both fed by the same dcmtk storescu.

One command::

    python benchmarks/receive.py [--instances 400] [--rounds 5] [--parallel 4]

generates a study of N MR instances of 512 x 512 x 16 bit, then, alternating in one run on
loopback, sends it with ``/usr/bin/storescu`` in one association to ``marrowmap listen``
(durable spool: every instance fsync'd before its response) and to ``/usr/bin/storescp``
writing files (no fsync), ``--rounds`` times each; then splits it over ``--parallel``
concurrent associations for both. Prints instances/s for both, the ratio of the medians, the
load average (``/proc/loadavg``) before and after, and the server CPU per instance.
storescu runs with its defaults otherwise: it sends P-DATA PDUs of at most 128 KiB (dcmtk's limit,
whatever larger maximum the receiver accepts), 6 per instance here.
``TCP_NODELAY=1`` is set for storescu and storescp (Debian's dcmtk leaves Nagle on otherwise,
~40 ms per instance); a storescp median below 100 instances/s means Nagle delays (or a starved
machine), and the benchmark stops with an error rather than print a meaningless ratio.
Never run in CI; no timing is asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, generate_uid

ROOT = "1.2.826.0.1.3680043.8.498."


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def make_study(folder: Path, count: int) -> list[Path]:
    """``count`` 512x512x16-bit MR instances of one hip study (deterministic UIDs and pixels)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    study = generate_uid(ROOT, ["bench-study"])
    series = generate_uid(ROOT, ["bench-series"])
    paths = []
    for i in range(count):
        ds = Dataset()
        ds.SOPClassUID = MRImageStorage
        ds.SOPInstanceUID = generate_uid(ROOT, ["bench", str(i)])
        ds.StudyInstanceUID = study
        ds.SeriesInstanceUID = series
        ds.Modality = "MR"
        ds.BodyPartExamined = "HIP"
        ds.SeriesDescription = "COR STIR"
        ds.PatientName = "Bench^Mark"
        ds.PatientID = "BENCH"
        ds.InstanceNumber = i + 1
        ds.Rows = ds.Columns = 512
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.BitsAllocated = 16
        ds.BitsStored = 12
        ds.HighBit = 11
        ds.PixelRepresentation = 0
        ds.PixelData = rng.integers(0, 4096, (512, 512), dtype=np.uint16).tobytes()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        path = folder / f"{i:04d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


def wait_port(port: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise RuntimeError(f"nothing listens on port {port}")


#: A storescp slower than this shows Nagle delays (or a starved machine), not storescp's speed.
NAGLE_SUSPECT_RATE = 100.0


def send(port: int, called: str, paths: list[Path], env: dict[str, str], parallel: int = 1) -> float:
    """Seconds storescu needs to send ``paths``, split over ``parallel`` concurrent associations."""
    started = time.perf_counter()
    procs = [subprocess.Popen(["/usr/bin/storescu", "-aec", called, "127.0.0.1", str(port),
                               *map(str, paths[i::parallel])], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
             for i in range(parallel)]
    for proc in procs:
        _, err = proc.communicate(timeout=600)
        if proc.returncode != 0:
            raise RuntimeError(f"storescu to {called} failed: {err.decode(errors='replace')[-500:]}")
    return time.perf_counter() - started


def loadavg() -> str:
    """The 1, 5 and 15 minute load averages (``/proc/loadavg``)."""
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process and its reaped children (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = sum(int(fields[i]) for i in (11, 12, 13, 14))  # utime stime cutime cstime
    return ticks / os.sysconf("SC_CLK_TCK")


def _last_association(log: Path) -> dict[str, float]:
    """The listener's last 'association.closed' record (counts and timings)."""
    last: dict[str, float] = {}
    time.sleep(0.3)
    for line in log.read_text(errors="replace").splitlines():
        if '"association.closed"' in line:
            last = json.loads(line)
    return last


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instances", type=int, default=400)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--parallel", type=int, default=4, help="Concurrent associations of the last part.")
    parser.add_argument("--workdir", type=Path, default=None, help="Where to put the study and both outputs "
                        "(default: a temporary folder on the same disk as the current directory).")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="mm-bench-", dir=args.workdir or Path.cwd()))
    dcmtk_env = dict(os.environ, TCP_NODELAY="1")
    procs: list[subprocess.Popen[bytes]] = []
    try:
        print(f"generating {args.instances} MR instances 512x512x16 bit in {work} ...", flush=True)
        paths = make_study(work / "study", args.instances)
        mm_port, scp_port = free_port(), free_port()
        mm_env = {k: v for k, v in os.environ.items() if not k.startswith("MARROWMAP_")}
        mm_env.update({
            "MARROWMAP_PORT": str(mm_port), "MARROWMAP_HOST": "127.0.0.1",
            "MARROWMAP_SPOOL_DIR": str(work / "spool"),
            "MARROWMAP_QUIET_SECONDS": "3600",  # receive only: no sealing during the benchmark
            "MARROWMAP_EARLY_COMPLETION": "false",
            "MARROWMAP_MIN_FREE_DISK_MB": "1", "MARROWMAP_LOG_LEVEL": "INFO", "MARROWMAP_LOG_FORMAT": "json",
            "MARROWMAP_LISTENER_METRICS_PORT": "0",
            "MARROWMAP_MAX_CONNECTIONS_PER_PEER": str(max(4, args.parallel)),
            "MARROWMAP_BROKER_URL": os.environ.get("MARROWMAP_BROKER_URL", "redis://127.0.0.1:6379/15"),
        })
        mm_log = work / "listener.log"
        with open(mm_log, "wb") as log:
            procs.append(subprocess.Popen([sys.executable, "-c", "from marrowmap.cli import main; main()", "listen"],
                                          env=mm_env, stderr=log))
        scp_out = work / "storescp"
        scp_out.mkdir()
        procs.append(subprocess.Popen(["/usr/bin/storescp", "-aet", "STORESCP", "--output-directory", str(scp_out),
                                       str(scp_port)], env=dcmtk_env))
        wait_port(mm_port)
        wait_port(scp_port)
        load_before = loadavg()
        mm_times, scp_times, mm_cpu, scp_cpu = [], [], [], []
        mm_pid, scp_pid = procs[0].pid, procs[1].pid
        for r in range(args.rounds):
            before = cpu_seconds(mm_pid)
            mm_times.append(send(mm_port, "MARROWMAP", paths, dcmtk_env))
            mm_cpu.append(cpu_seconds(mm_pid) - before)
            before = cpu_seconds(scp_pid)
            scp_times.append(send(scp_port, "STORESCP", paths, dcmtk_env))
            scp_cpu.append(cpu_seconds(scp_pid) - before)
            for f in scp_out.iterdir():
                f.unlink()
            # the next round stores new files on both sides (re-sent SOP Instance UIDs would replace)
            shutil.rmtree(work / "spool" / "incoming", ignore_errors=True)
            assoc = _last_association(mm_log)
            print(f"round {r + 1}: marrowmap {args.instances / mm_times[-1]:7.1f} inst/s   "
                  f"storescp {args.instances / scp_times[-1]:7.1f} inst/s   "
                  f"(marrowmap handler: {assoc.get('store_s', 0):.2f} s of {assoc.get('duration_s', 0):.2f} s "
                  f"in the association; CPU per instance: marrowmap "
                  f"{1000 * mm_cpu[-1] / args.instances:.2f} ms, storescp {1000 * scp_cpu[-1] / args.instances:.2f} ms; "
                  f"load {loadavg()})", flush=True)
        shutil.rmtree(work / "spool" / "incoming", ignore_errors=True)
        par_mm = args.instances / send(mm_port, "MARROWMAP", paths, dcmtk_env, args.parallel)
        par_scp = args.instances / send(scp_port, "STORESCP", paths, dcmtk_env, args.parallel)
        mm = args.instances / statistics.median(mm_times)
        scp = args.instances / statistics.median(scp_times)
        mb = sum(p.stat().st_size for p in paths) / 1e6
        print(f"\nmedian of {args.rounds} alternated rounds, {args.instances} instances ({mb:.0f} MB) per round, "
              f"one association:")
        print(f"  marrowmap listen (durable, fsync) : {mm:7.1f} instances/s  ({mm * mb / args.instances:6.1f} MB/s)")
        print(f"  dcmtk storescp (no fsync)         : {scp:7.1f} instances/s  ({scp * mb / args.instances:6.1f} MB/s)")
        print(f"  ratio marrowmap / storescp        : {mm / scp:7.2f}  (range "
              f"{min(a / b for a, b in zip(scp_times, mm_times, strict=True)):.2f}-"
              f"{max(a / b for a, b in zip(scp_times, mm_times, strict=True)):.2f}; target >= 0.3)")
        print(f"  server CPU per instance (median)  : marrowmap {1000 * statistics.median(mm_cpu) / args.instances:.2f} ms, "
              f"storescp {1000 * statistics.median(scp_cpu) / args.instances:.2f} ms")
        print(f"{args.parallel} concurrent associations: marrowmap {par_mm:7.1f} instances/s, "
              f"storescp {par_scp:7.1f} instances/s (ratio {par_mm / par_scp:.2f})")
        print(f"load average (1, 5, 15 min) before: {load_before}, after: {loadavg()}, on {os.cpu_count()} CPUs")
        if scp < NAGLE_SUSPECT_RATE:
            sys.exit(f"FAIL: storescp received only {scp:.0f} instances/s (< {NAGLE_SUSPECT_RATE:.0f}): Nagle "
                     "delays (is TCP_NODELAY honoured by this dcmtk?) or a starved machine; the ratio is meaningless")
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
