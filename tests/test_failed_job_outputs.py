"""Acceptance (issue 13): a study whose analysis fails still gets an SR and a summary image
with the reason, so the radiologist knows MarrowMap saw it (the job then sends them)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset

from marrowmap.settings import Settings
from tests.e2e_pipeline import phantom_study
from workers import pipeline


def test_failed_analysis_still_writes_sr_and_summary_with_the_reason(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("simulated analysis bug")

    # an internal error cannot be caused on purpose with real input (the corpus found none):
    # the one place where a fault is injected, at the analysis boundary
    monkeypatch.setattr(pipeline, "analyze_images", broken)
    study = phantom_study(tmp_path / "phantoms")

    result = pipeline.analyze_study_dir(study, tmp_path / "out", settings=Settings(_env_file=None))

    assert result.status == "failed" and "simulated analysis bug" in result.reason
    assert sorted(o.kind for o in result.outputs) == ["kos", "sc_summary", "sr"]
    sr = dcmread(tmp_path / "out" / next(o.path for o in result.outputs if o.kind == "sr"))
    assert str(sr.StudyInstanceUID) == result.study_instance_uid
    assert any("simulated analysis bug" in text for text in _texts(sr)), "the SR says why"


def _texts(item: Dataset) -> Iterator[str]:
    """Every TEXT value of an SR content tree."""
    if "TextValue" in item:
        yield str(item.TextValue)
    for child in item.get("ContentSequence", []):
        yield from _texts(child)
