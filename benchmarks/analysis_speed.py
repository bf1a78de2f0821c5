# mypy: disallow-untyped-calls=False
"""Speed and peak memory of the analysis of a 3-series x 30-slice 512x512 study.

    python benchmarks/analysis_speed.py [--runs 3] [--case itoh_left]

The full-size phantom (T1 512^2, STIR and axial T2 FS 384^2, 30 slices each) is generated
once and its 384^2 series are resampled to 512^2 (PixelSpacing and ImagePositionPatient
adjusted), so all three series are 30 x 512 x 512. Each run is a fresh Python process that
calls ``workers.pipeline.analyze_study_dir`` (load, select, analyse, write maps; no DICOM
outputs); its wall time, per-stage times and peak RSS (ru_maxrss) are printed.
Targets (issue 4): <= 10 s and <= 1.5 GB on the 2-core machine.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pydicom
from scipy import ndimage

from workers.phantom.study import dicom_dir, generate_study

MATRIX = 512

CHILD = """
import json, resource, sys, time
from pathlib import Path
from marrowmap.logs import configure_logging
configure_logging("WARNING", "console")
start = time.perf_counter()
from workers.pipeline import analyze_study_dir
imported = time.perf_counter() - start
result = analyze_study_dir(Path(sys.argv[1]), Path(sys.argv[2]), dicom_outputs=False)
print(json.dumps({"status": result.status, "timings": result.timings_s, "import_s": imported,
                  "maxrss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))
"""


def upsample_series(folder: Path, matrix: int) -> None:
    """Resample every instance of a series folder to ``matrix`` x ``matrix`` in place."""
    for f in sorted(folder.glob("*.dcm")):
        ds = pydicom.dcmread(f)
        if int(ds.Rows) == matrix:
            continue
        arr = ds.pixel_array.astype(np.float32)
        zoom = matrix / arr.shape[0], matrix / arr.shape[1]
        new = np.clip(ndimage.zoom(arr, zoom, order=1), 0, np.iinfo(np.uint16).max).astype(np.uint16)
        old_sp = [float(v) for v in ds.PixelSpacing]
        new_sp = [old_sp[0] * arr.shape[0] / matrix, old_sp[1] * arr.shape[1] / matrix]
        iop = np.asarray([float(v) for v in ds.ImageOrientationPatient])
        row_dir, col_dir = iop[:3], iop[3:]
        # keep the image edge fixed: the first pixel centre moves by half a pixel difference
        ipp = (np.asarray([float(v) for v in ds.ImagePositionPatient])
               - 0.5 * (old_sp[1] - new_sp[1]) * row_dir - 0.5 * (old_sp[0] - new_sp[0]) * col_dir)
        if ds.file_meta.TransferSyntaxUID.is_compressed:
            ds.decompress()
        ds.PixelData = new.tobytes()
        ds.Rows, ds.Columns = matrix, matrix
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
        ds.PixelSpacing = [f"{v:.6f}" for v in new_sp]
        ds.ImagePositionPatient = [f"{v:.6f}" for v in ipp]
        ds.save_as(f)


def prepare(cache: Path, case: str) -> Path:
    folder = cache / f"speed_{case}_512"
    marker = folder / "upsampled"
    if not marker.is_file():
        generate_study(folder, case, 0)
        for series in sorted(p for p in dicom_dir(folder).iterdir() if p.is_dir()):
            upsample_series(series, MATRIX)
        marker.write_text("ok")
    return dicom_dir(folder)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--case", default="itoh_left")
    parser.add_argument("--cache", type=Path, default=Path("/tmp/marrowmap-phantom-cache"))
    parser.add_argument("--out", type=Path, default=Path("/tmp/marrowmap-speed"))
    args = parser.parse_args(argv)
    study = prepare(args.cache, args.case)
    sizes = []
    for series in sorted(p for p in study.iterdir() if p.is_dir()):
        files = sorted(series.glob("*.dcm"))
        ds = pydicom.dcmread(files[0], stop_before_pixels=True)
        sizes.append(f"{series.name}: {len(files)} x {ds.Rows} x {ds.Columns}")
    print("study: " + "; ".join(sizes))
    walls, rss, totals = [], [], []
    for run in range(args.runs):
        start = time.perf_counter()
        proc = subprocess.run([sys.executable, "-c", CHILD, str(study), str(args.out / f"run{run}")],
                              capture_output=True, text=True, timeout=600, check=True)
        wall = time.perf_counter() - start
        info = json.loads(proc.stdout.strip().splitlines()[-1])
        walls.append(wall)
        totals.append(info["timings"]["total"])
        rss.append(info["maxrss_kb"] / 1024.0)
        stages = ", ".join(f"{k} {v:.2f}" for k, v in info["timings"].items())
        print(f"run {run}: status={info['status']} analyze_study_dir {info['timings']['total']:.2f} s "
              f"(process wall {wall:.2f} s incl. imports {info['import_s']:.2f} s), peak RSS {rss[-1]:.0f} MB; {stages}")
    print(f"\nanalyze_study_dir time: median {statistics.median(totals):.2f} s, min {min(totals):.2f} s "
          f"(target <= 10 s); peak memory: max {max(rss):.0f} MB (target <= 1536 MB)")
    print(f"load average during the runs: {', '.join(f'{v:.1f}' for v in __import__('os').getloadavg())}; "
          f"children CPU s: {resource.getrusage(resource.RUSAGE_CHILDREN).ru_utime:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
