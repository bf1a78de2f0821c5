"""Benchmark: load + classify + select time and peak memory for one study folder.

    python benchmarks/load.py                 # 3 series x 30 slices x 512x512 (T1 cor, STIR cor, T2 FS ax)
    python benchmarks/load.py --phantom       # a full-size phantom study (normal case) instead
    python benchmarks/load.py --folder DIR    # any study folder

The study is written first (not timed); the measurement runs in a fresh Python process so
that its peak RSS is the loader's own, and is repeated; tracemalloc peak is taken on a
separate run (tracing slows Python down). Targets: <= 2 s and <= 600 MB on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # tests.io_fixtures: the deterministic MR series writer


def write_study(folder: Path, slices: int, size: int) -> None:
    """T1 coronal, STIR coronal and T2 FS axial, each ``slices`` x ``size`` x ``size`` uint16."""
    import numpy as np

    from tests.io_fixtures import (
        AXIAL,
        CORONAL,
        STIR_COR,
        T1_COR,
        T2FS_AX,
        SeriesSpec,
        centred_geometry,
        write_classic,
    )

    rng = np.random.default_rng(0)
    shape = (slices, size, size)
    spacing = (380.0 / size, 380.0 / size, 4.4)
    for key, headers, orientation in (("t1", T1_COR, CORONAL), ("stir", STIR_COR, CORONAL), ("t2fs", T2FS_AX, AXIAL)):
        volume = rng.integers(0, 4000, size=shape, dtype=np.uint16)
        geometry = centred_geometry(orientation, shape, spacing)
        write_classic(folder, SeriesSpec(volume, geometry, dict(headers), series_key=key))


def write_phantom(folder: Path) -> Path:
    """A full-size phantom under ``folder``; returns its DICOM folder."""
    from workers.phantom import dicom_dir, generate_study

    generate_study(folder, "normal", seed=1, small=False)
    return dicom_dir(folder)


def _peak_rss_mb() -> float:
    """This process's peak resident set (VmHWM; unlike ru_maxrss it is not inherited over exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure(folder: Path, trace: bool) -> dict[str, object]:
    """Run load + select once in this process and report time and memory."""
    import SimpleITK as sitk

    from workers.io.load import load_study
    from workers.io.select import select_series

    rss_before = _peak_rss_mb()
    if trace:
        tracemalloc.start()
    start = time.perf_counter()
    study = load_study(folder)
    loaded_at = time.perf_counter()
    selection = select_series(study.loaded, study.problems)
    end = time.perf_counter()
    peak = tracemalloc.get_traced_memory()[1] if trace else 0
    if trace:
        tracemalloc.stop()
    return {
        "load_classify_s": loaded_at - start,
        "select_s": end - loaded_at,
        "total_s": end - start,
        "maxrss_mb": _peak_rss_mb(),
        "maxrss_before_mb": rss_before,
        "tracemalloc_peak_mb": peak / 2**20,
        "series": [
            f"{s.series_description}: {s.classification.kind.value} {s.classification.plane.value} "
            f"{'x'.join(map(str, sitk.GetArrayViewFromImage(s.image).shape[::-1]))}"
            for s in study.loaded
        ],
        "problems": [p.reason for p in study.problems],
        "fluid": None if selection.fluid_sensitive is None else selection.fluid_sensitive.series_description,
        "t1": None if selection.t1 is None else selection.t1.series_description,
    }


def _child(folder: Path, trace: bool) -> dict[str, object]:
    cmd = [sys.executable, __file__, "--measure", str(folder)] + (["--trace"] if trace else [])
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=600, cwd=ROOT)
    result: dict[str, object] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--slices", type=int, default=30)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--phantom", action="store_true", help="use a full-size phantom study")
    parser.add_argument("--folder", type=Path, help="measure an existing study folder")
    parser.add_argument("--measure", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--trace", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.measure is not None:
        import logging

        logging.disable(logging.INFO)
        print(json.dumps(measure(args.measure, args.trace)))
        return

    with tempfile.TemporaryDirectory(prefix="mm-bench-load-") as tmp:
        folder = args.folder or Path(tmp)
        if args.folder is None:
            start = time.perf_counter()
            if args.phantom:
                folder = write_phantom(folder)
                what = "full-size phantom study 'normal'"
            else:
                write_study(folder, args.slices, args.size)
                what = f"3 series x {args.slices} slices x {args.size}x{args.size} uint16, uncompressed"
            print(f"study: {what} (written in {time.perf_counter() - start:.1f} s)")
        else:
            print(f"study: {folder}")
        runs = [_child(folder, trace=False) for _ in range(args.repeat)]
        traced = _child(folder, trace=True)

    times = sorted(float(r["total_s"]) for r in runs)  # type: ignore[arg-type]
    first = runs[0]
    for line in first["series"]:  # type: ignore[attr-defined]
        print(f"  loaded {line}")
    for line in first["problems"]:  # type: ignore[attr-defined]
        print(f"  problem {line}")
    print(f"  selected fluid-sensitive: {first['fluid']}; T1: {first['t1']}")
    print(f"load+classify+select: median {times[len(times) // 2]:.3f} s, best {times[0]:.3f} s "
          f"over {len(times)} fresh processes (target <= 2 s)")
    print(f"  of which select: {float(first['select_s']) * 1000:.1f} ms")  # type: ignore[arg-type]
    print(f"peak RSS of the measuring process: {max(float(r['maxrss_mb']) for r in runs):.0f} MB "  # type: ignore[arg-type]
          f"(after imports {float(first['maxrss_before_mb']):.0f} MB; target <= 600 MB)")  # type: ignore[arg-type]
    print(f"tracemalloc peak during load: {float(traced['tracemalloc_peak_mb']):.0f} MB")  # type: ignore[arg-type]


if __name__ == "__main__":
    main()
