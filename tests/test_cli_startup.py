"""Start-up stays light: the command and the analysis pipeline import the heavy libraries only when
a command needs them (timings are printed by benchmarks/startup.py, never asserted here)."""

from __future__ import annotations

import subprocess
import sys

import pytest


def _loaded(module: str, candidates: tuple[str, ...]) -> list[str]:
    """Which of ``candidates`` a fresh interpreter has loaded after ``import module``."""
    code = f"import sys, {module}; print(' '.join(m for m in {candidates!r} if m in sys.modules))"
    proc = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True, timeout=60)
    return proc.stdout.split()


def test_cli_imports_no_analysis_dicom_or_celery_stack() -> None:
    heavy = ("highdicom", "SimpleITK", "celery", "scipy", "skimage", "PIL", "numpy", "pydicom", "pynetdicom")
    assert _loaded("marrowmap.cli", heavy) == []


@pytest.mark.parametrize("module", ["workers.pipeline", "workers.dicom_out", "workers.dicom_out.findings"])
def test_analysis_defers_the_dicom_builders(module: str) -> None:
    """highdicom (about 1 s of imports) waits until the outputs are built, after the analysis."""
    assert _loaded(module, ("highdicom", "celery")) == []
