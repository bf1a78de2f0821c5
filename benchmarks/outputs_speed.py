# mypy: disallow-untyped-calls=False
"""Speed of the DICOM output stage (SEG, Parametric Map, SR, overlays, summary, KOS, file writes).

    python benchmarks/outputs_speed.py [--runs 3] [--case itoh_left] [--profile 25] [--dciodvfy]

The study is the 3 series x 30 slices x 512^2 phantom of ``benchmarks/analysis_speed.py``
(generated once, cached). Each run is a fresh Python process that calls
``workers.pipeline.analyze_study_dir`` after ``load_standard_tables`` (as a worker does at start;
its time is printed apart); the figure is the ``outputs`` stage (everything after the analysis:
``build_outputs``), wall time and CPU time (the latter depends less on the machine's load), and the
CPU time by part (``SUBSTAGES``; overlays include the study's display window, "other" is the rest:
sampling the maps on the source frames, headers, UIDs, the key image PNG). The runs must write
byte-identical files (determinism); with
``--profile N`` one more run prints the N most expensive functions of the output stage (cProfile,
cumulative time), and ``--dciodvfy`` checks every output with dicom3tools. Target: <= 1.5 s.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

from analysis_speed import prepare

TARGET_S = 1.5
#: CPU time of the output stage by part: (part, function of workers.dicom_out.build counted in it)
SUBSTAGES = (("seg", "build_seg"), ("pmap", "build_pmap"), ("sr", "build_sr"), ("overlays", "fused_image"),
             ("overlays", "overlay_frame"), ("overlays", "key_image"), ("summary", "summary_image"),
             ("sc objects", "build_sc"), ("kos", "build_kos"), ("file writes", "_write"))

CHILD = """
import cProfile, io, json, pstats, sys, time
from pathlib import Path
from marrowmap.logs import configure_logging
configure_logging("WARNING", "console")
import workers.dicom_out.build as outputs
import workers.pipeline as pipeline
start = time.perf_counter()
outputs.load_standard_tables()  # as the worker does at start
tables = time.perf_counter() - start
top, profiler, build, cpu = int(sys.argv[3]), cProfile.Profile(), outputs.build_outputs, []
parts = {}
def timed(part, function):
    def call(*args, **kwargs):
        start = time.process_time()
        try:
            return function(*args, **kwargs)
        finally:
            parts[part] = parts.get(part, 0.0) + time.process_time() - start
    return call
for part, name in SUBSTAGES:
    if hasattr(outputs, name):  # older builds lack some (e.g. fused_image): their time is in their caller's part
        setattr(outputs, name, timed(part, getattr(outputs, name)))
outputs.DisplayScale.for_frames = timed("overlays", outputs.DisplayScale.for_frames)
def measured(*args, **kwargs):
    start = time.process_time()
    try:
        return profiler.runcall(build, *args, **kwargs) if top else build(*args, **kwargs)
    finally:
        cpu.append(time.process_time() - start)
outputs.build_outputs = measured
result = pipeline.analyze_study_dir(Path(sys.argv[1]), Path(sys.argv[2]))
if top:
    text = io.StringIO()
    pstats.Stats(profiler, stream=text).sort_stats("cumulative").print_stats(top)
    print(text.getvalue(), file=sys.stderr)
print(json.dumps({"status": result.status, "timings": result.timings_s, "outputs": len(result.outputs),
                  "tables_s": tables, "cpu_s": sum(cpu), "parts": parts}))
"""


def run_child(study: Path, out: Path, top: int) -> dict[str, object]:
    """One analysis + output build in a fresh process; its result.json figures."""
    shutil.rmtree(out, ignore_errors=True)
    proc = subprocess.run([sys.executable, "-c", f"SUBSTAGES = {SUBSTAGES!r}\n{CHILD}", str(study), str(out), str(top)],
                          capture_output=True, text=True, timeout=600, check=True)
    if top:
        print(proc.stderr)
    info: dict[str, object] = json.loads(proc.stdout.strip().splitlines()[-1])
    return info


def digest(folder: Path) -> str:
    """One hash over every DICOM output file (names and bytes)."""
    h = hashlib.sha256()
    for path in sorted((folder / "dicom").glob("*.dcm")):
        h.update(path.name.encode())
        h.update(path.read_bytes())
    return h.hexdigest()[:16]


def dciodvfy_errors(folder: Path) -> dict[str, int]:
    """Per output file, the number of ``Error`` lines dciodvfy prints."""
    counts = {}
    for path in sorted((folder / "dicom").glob("*.dcm")):
        proc = subprocess.run(["dciodvfy", "-new", str(path)], capture_output=True, text=True, check=False)
        counts[path.name] = sum(1 for line in (proc.stdout + proc.stderr).splitlines() if line.startswith("Error"))
    return counts


def cpu_by_part(parts: list[object], cpus: list[float]) -> str:
    """'seg 0.15 s, sr 0.30 s, ..., other 0.10 s': each part's median CPU time over the runs."""
    runs = [dict(p) for p in parts if isinstance(p, dict)]
    names = list(dict.fromkeys(part for part, _ in SUBSTAGES))
    medians = {n: statistics.median(float(r.get(n, 0.0)) for r in runs) for n in names}
    medians["other"] = statistics.median(c - sum(float(v) for v in r.values()) for r, c in zip(runs, cpus, strict=True))
    return ", ".join(f"{n} {v:.2f} s" for n, v in medians.items())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--case", default="itoh_left")
    parser.add_argument("--profile", type=int, default=0, metavar="N", help="print the N costliest functions")
    parser.add_argument("--dciodvfy", action="store_true", help="validate every output with dciodvfy")
    parser.add_argument("--cache", type=Path, default=Path("/tmp/marrowmap-phantom-cache"))
    parser.add_argument("--out", type=Path, default=Path("/tmp/marrowmap-outputs-speed"))
    args = parser.parse_args(argv)
    study = prepare(args.cache, args.case)
    stages, cpus, digests, parts = [], [], [], []
    for run in range(args.runs):
        info = run_child(study, args.out / f"run{run}", 0)
        timings = info["timings"]
        assert isinstance(timings, dict)
        stages.append(float(timings["outputs"]))
        cpus.append(float(info["cpu_s"]))  # type: ignore[arg-type]
        parts.append(info["parts"])
        digests.append(digest(args.out / f"run{run}"))
        print(f"run {run}: status={info['status']} {info['outputs']} outputs, outputs stage {stages[-1]:.2f} s "
              f"(CPU {cpus[-1]:.2f} s), "
              f"analysis total {timings['total']:.2f} s, highdicom tables at start {info['tables_s']:.2f} s, "
              f"sha256 {digests[-1]}")
    if args.profile:
        run_child(study, args.out / "profile", args.profile)
    print(f"\noutputs stage: median {statistics.median(stages):.2f} s, min {min(stages):.2f} s "
          f"(target <= {TARGET_S} s); CPU median {statistics.median(cpus):.2f} s; "
          f"byte-identical across runs: {'yes' if len(set(digests)) == 1 else 'NO'}")
    print(f"CPU by part (median of the runs): {cpu_by_part(parts, cpus)}")
    if args.dciodvfy:
        errors = dciodvfy_errors(args.out / "run0")
        print(f"dciodvfy errors: {sum(errors.values())} ({', '.join(f'{k} {v}' for k, v in errors.items())})")
    print(f"load average: {' '.join(Path('/proc/loadavg').read_text().split()[:3])}; cores: {os.cpu_count()}")
    return 0 if len(set(digests)) == 1 else 1


if __name__ == "__main__":
    sys.exit(main())
