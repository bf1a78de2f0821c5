"""Start-up of the ``marrowmap`` command: ``--help``, and the first progress line of ``analyze``.

    python benchmarks/startup.py [--runs 5]

Each figure is the median of ``--runs`` fresh processes (wall time from the spawn). ``analyze``
runs on the 3 series x 30 slices x 512^2 phantom of ``benchmarks/analysis_speed.py`` (generated
once, cached) and is stopped once its first progress line (``[  0.0s] ...``) is read. Targets
(issue 15, on a quiet machine): ``--help`` < 1 s, first progress line < 2 s. The load average
is printed before and after: on a busy machine the figures grow with it.
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from analysis_speed import prepare

MARROWMAP = Path(sys.executable).with_name("marrowmap")
PROGRESS = re.compile(r"^\[\s*\d+\.\d+s\] ")
HEAVY = ("highdicom", "SimpleITK", "celery", "scipy", "skimage", "PIL", "numpy", "pydicom", "pynetdicom")


def loadavg() -> str:
    """The 1, 5 and 15 minute load averages."""
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def help_seconds() -> float:
    """Wall time of ``marrowmap --help``."""
    start = time.perf_counter()
    subprocess.run([str(MARROWMAP), "--help"], check=True, capture_output=True, timeout=60)
    return time.perf_counter() - start


def first_progress_seconds(study: Path, out: Path) -> float:
    """Wall time from spawning ``marrowmap analyze`` to its first progress line; the process is then stopped."""
    start = time.perf_counter()
    proc = subprocess.Popen([str(MARROWMAP), "analyze", str(study), "--out", str(out)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stderr is not None
        for line in proc.stderr:
            if PROGRESS.match(line):
                return time.perf_counter() - start
        raise RuntimeError(f"marrowmap analyze ended (status {proc.wait()}) without a progress line")
    finally:
        proc.kill()
        proc.wait()


def heavy_modules_of_cli() -> list[str]:
    """The heavy modules that ``import marrowmap.cli`` loads (none is the goal)."""
    code = f"import sys, marrowmap.cli; print(' '.join(m for m in {HEAVY!r} if m in sys.modules))"
    proc = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True, timeout=60)
    return proc.stdout.split()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--cache", type=Path, default=Path("/tmp/marrowmap-phantom-cache"))
    args = parser.parse_args(argv)
    study = prepare(args.cache, "itoh_left")
    before = loadavg()
    helps = [help_seconds() for _ in range(args.runs)]
    with tempfile.TemporaryDirectory(prefix="marrowmap-startup-") as tmp:
        firsts = [first_progress_seconds(study, Path(tmp) / f"run{i}") for i in range(args.runs)]
    print(f"marrowmap --help: median {statistics.median(helps):.2f} s "
          f"(min {min(helps):.2f}, max {max(helps):.2f}; target < 1 s)")
    print(f"marrowmap analyze, first progress line: median {statistics.median(firsts):.2f} s "
          f"(min {min(firsts):.2f}, max {max(firsts):.2f}; target < 2 s)")
    print(f"heavy modules loaded by 'import marrowmap.cli': {' '.join(heavy_modules_of_cli()) or 'none'}")
    print(f"load average before: {before}; after: {loadavg()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
