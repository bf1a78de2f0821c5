"""Phantom B in the accuracy benchmark: which generator, which cases and seeds, where the cache is.

The generic code (running the generator, loading ``truth.json``) lives in
``tests/phantom_b_fixtures.py`` so that the tests can use phantom B too; this module adds what
only the benchmark needs.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # tests.phantom_b_fixtures

from tests.phantom_b_fixtures import (  # noqa: E402
    PHANTOM_B,
    PHANTOM_B_CASES,
    PhantomBSkipped,
    PhantomBTruth,
    phantom_b_study,
)

__all__ = ["DEFAULT_SEEDS", "PHANTOM_B_CASES", "PhantomBSkipped", "PhantomBTruth", "cached_study",
           "locate"]

DEFAULT_SEEDS: tuple[int, ...] = (11, 12, 13, 14, 15)


def locate(cli_path: Path | None) -> Path:
    """The generator script: ``--phantom-b``, else ``MARROWMAP_PHANTOM_B``, else ``<repo>/../shared``."""
    script = cli_path or PHANTOM_B
    if not script.is_file():
        raise SystemExit(f"phantom B generator not found at {script} (set --phantom-b or MARROWMAP_PHANTOM_B)")
    return script


def cached_study(cache: Path, case: str, seed: int, script: Path) -> PhantomBTruth:
    """The study ``cache/b/<case>_s<seed>``, generated on first use and reused afterwards."""
    return PhantomBTruth.load(phantom_b_study(case, seed, cache / "b", script))
