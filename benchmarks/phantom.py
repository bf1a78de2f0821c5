"""Phantom generation time and peak memory, small and full size.

    python benchmarks/phantom.py [--case itoh_left] [--seed 0] [--full/--no-full]

Prints wall and CPU seconds per study, the peak resident memory of the process and
the truth volumes. The machine is shared, so CPU seconds are the stable figure.
"""

from __future__ import annotations

import resource
import tempfile
import time
from pathlib import Path

import click

from workers.phantom import generate_study


def _one(case: str, seed: int, small: bool, variants: tuple[str, ...]) -> None:
    with tempfile.TemporaryDirectory(prefix="mm-phantom-bench-") as tmp:
        wall, cpu = time.perf_counter(), time.process_time()
        truth = generate_study(Path(tmp), case, seed, variants=variants, small=small)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        files = sum(s.n_files for s in truth.series)
        size_mb = sum(p.stat().st_size for p in Path(tmp).rglob("*.dcm")) / 1e6
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    sides = ", ".join(f"{k} {v.volume_ml:.1f} mL (mask {v.mask_volume_ml:.1f})"
                      for k, v in truth.sides.items())
    label = f"{case}{'+' + '+'.join(variants) if variants else ''} {'small' if small else 'full'}"
    click.echo(f"{label:38s} wall {wall:6.1f} s  cpu {cpu:6.1f} s  peak RSS {peak_mb:6.0f} MB  "
               f"{len(truth.series)} series / {files} files / {size_mb:.1f} MB  oedema: {sides}")


@click.command()
@click.option("--case", default="itoh_left", show_default=True)
@click.option("--seed", default=0, show_default=True)
@click.option("--full/--no-full", default=True, show_default=True, help="Also time a full-size study.")
def main(case: str, seed: int, full: bool) -> None:
    """Time phantom generation (small mode twice: the second reuses the cached model)."""
    _one(case, seed, True, ())
    _one(case, seed, True, ("rle",))
    _one(case, seed + 1, True, ())
    if full:
        _one(case, seed, False, ())


if __name__ == "__main__":
    main()
