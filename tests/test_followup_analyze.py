"""``marrowmap analyze --prior`` on phantoms: itoh_left baseline, then followup_resolved / followup_improved
of the same patient. The comparison in result.json, the SR, the findings and the summary agree."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import pytest
from click.testing import CliRunner
from PIL import Image
from pydicom.dataset import Dataset

from marrowmap.cli import main
from tests.analysis_fixtures import Analysed, AnalysedFactory, analysed
from tests.phantom_fixtures import StudyFactory, dciodvfy_errors, phantom_study
from workers.analysis.result import AnalysisResult
from workers.dicom_out.summary_comparison import comparison_key_image, comparison_rows
from workers.followup.compare import prior_ref_of
from workers.followup.prior import KEY_IMAGE_FILE, PriorStudy, load_prior
from workers.pipeline import _with_comparison

__all__ = ["analysed", "phantom_study"]
pytestmark = pytest.mark.slow

SEED = 0  # the patient of the session's itoh_left analysis


@dataclass(frozen=True)
class FollowUp:
    case: str
    result: AnalysisResult
    out: Path
    baseline: Analysed


def _analyze_with_prior(study: Path, out: Path, prior_json: Path) -> AnalysisResult:
    run = CliRunner().invoke(main, ["analyze", str(study), "--out", str(out), "--prior", str(prior_json)])
    assert run.exit_code == 0, run.output
    return AnalysisResult.model_validate_json((out / "result.json").read_bytes())


@pytest.fixture(scope="module", params=["followup_resolved", "followup_improved"])
def follow_up(request: pytest.FixtureRequest, analysed: AnalysedFactory, phantom_study: StudyFactory,  # noqa: F811
              tmp_path_factory: pytest.TempPathFactory) -> Iterator[FollowUp]:
    baseline = analysed("itoh_left", seed=SEED)
    study, _ = phantom_study(request.param, seed=SEED)
    out = tmp_path_factory.mktemp(request.param)
    yield FollowUp(request.param, _analyze_with_prior(study, out, baseline.out / "result.json"), out, baseline)


def test_baseline_has_no_comparison(analysed: AnalysedFactory) -> None:  # noqa: F811
    base = analysed("itoh_left", seed=SEED).result
    assert base.comparison is None and "Compared with" not in base.findings_text
    assert base.study_date == "20260302" and base.accession_number


def test_comparison_values(follow_up: FollowUp) -> None:
    result, base = follow_up.result, follow_up.baseline.result
    comparison = result.comparison
    assert comparison is not None, result.quality.warnings
    assert comparison.prior.study_instance_uid == base.study_instance_uid
    assert (comparison.prior.study_date, comparison.prior.accession_number) == (base.study_date, base.accession_number)
    right, left = comparison.sides["right"], comparison.sides["left"]
    assert right.status == "no_oedema"
    assert (right.volume_ml_prior, right.volume_ml_current) == (base.sides["right"].oedema_volume_ml,
                                                                result.sides["right"].oedema_volume_ml)
    then, now = base.sides["left"].oedema_volume_ml, result.sides["left"].oedema_volume_ml
    assert then is not None and now is not None and then > 10.0
    assert (left.volume_ml_prior, left.volume_ml_current) == (then, now)
    assert left.change_pct == pytest.approx(100.0 * (now - then) / then, abs=0.05)
    if follow_up.case == "followup_resolved":
        assert left.status == "resolved" and result.sides["left"].present is False
        assert f"left hip bone marrow oedema has resolved ({then:.1f} mL -> {now:.1f} mL)" in result.findings_text
    else:
        assert left.status == "improved" and left.change_pct is not None and -75.0 < left.change_pct < -25.0
        assert (f"left hip bone marrow oedema has improved ({then:.1f} mL -> {now:.1f} mL, "
                f"{left.change_pct:+.0f} %)") in result.findings_text
    assert "no right hip bone marrow oedema at either time" in result.findings_text
    rows = {row[0]: row[1:] for row in comparison_rows(comparison)}
    assert rows["Change status"] == ("NO OEDEMA", left.status.upper())
    assert rows["Volume then \u2192 now"][1] == f"{then:.1f} mL \u2192 {now:.1f} mL"


def _items(items: Any) -> Iterator[Dataset]:
    for item in items:
        yield item
        yield from _items(item.get("ContentSequence", []))


def _groups(sr: Dataset) -> dict[str, Dataset]:
    """Measurement groups by tracking identifier."""
    out = {}
    for item in _items(sr.ContentSequence):
        if item.ValueType == "CONTAINER":
            for child in item.get("ContentSequence", []):
                if child.ValueType == "TEXT" and child.ConceptNameCodeSequence[0].CodeValue == "112039":
                    out[str(child.TextValue)] = item
    return out


def _children(group: Dataset) -> dict[str, list[Dataset]]:
    by_name: dict[str, list[Dataset]] = {}
    for child in group.ContentSequence:
        by_name.setdefault(str(child.ConceptNameCodeSequence[0].CodeMeaning), []).append(child)
    return by_name


def _first_outline_image(group: Dataset) -> str:
    scoord = next(i for i in group.ContentSequence if i.ValueType == "SCOORD")
    return str(scoord.ContentSequence[0].ReferencedSOPSequence[0].ReferencedSOPInstanceUID)


def _num(children: dict[str, list[Dataset]], name: str) -> list[float]:
    return [float(c.MeasuredValueSequence[0].NumericValue) for c in children.get(name, [])]


def test_sr_carries_the_comparison(follow_up: FollowUp) -> None:
    result = follow_up.result
    comparison = result.comparison
    assert comparison is not None
    [sr_file] = [o for o in result.outputs if o.kind == "sr"]
    path = follow_up.out / sr_file.path
    assert not dciodvfy_errors(path)
    assert not dciodvfy_errors(follow_up.out / next(o.path for o in result.outputs if o.kind == "sc_summary"))
    groups = _groups(pydicom.dcmread(path))
    for side, c in comparison.sides.items():
        name = side.capitalize()
        [baseline_id] = [k for k in groups if k.startswith(f"{name} hip BME at prior MRI")]
        [change_id] = [k for k in groups if k.startswith(f"{name} hip BME since")]
        base, change = _children(groups[baseline_id]), _children(groups[change_id])
        assert base["Time Point Type"][0].ConceptCodeSequence[0].CodeMeaning == "Baseline"
        assert [float(v.MeasuredValueSequence[0].NumericValue) for v in change["Time Point Order"]] == [2.0]
        assert _num(base, "Volume") == [c.volume_ml_prior]
        assert _num(change, "Volume") == [c.volume_ml_current]
        assert _num(change, "Change in bone marrow oedema volume since prior study") == [c.change_ml]
        pct = _num(change, "Percent change in bone marrow oedema volume since prior study")
        assert pct == ([] if c.change_pct is None else [pytest.approx(c.change_pct)])
        assert _num(base, "Extent") == [c.head_pct_prior, c.neck_pct_prior]
        assert _num(base, "Hip joint effusion volume") == [c.effusion_ml_prior]
        [status] = change["Bone marrow oedema change since prior study"]
        assert status.ConceptCodeSequence[0].CodeValue == {"resolved": "413322009", "improved": "19776001",
                                                            "no_oedema": "260388006"}[c.status]  # SNOMED CT
        assert change_id.endswith(c.status.replace("_", " "))
        assert comparison.prior.study_instance_uid == base["Study Instance UID"][0].UID
        assert base["Study Date"][0].Date == comparison.prior.study_date
        assert base["Accession Number"][0].TextValue == comparison.prior.accession_number
        prior_uid = change["Study Instance UID of the prior study compared with"][0].UID
        assert prior_uid == comparison.prior.study_instance_uid
        # the hip's own finding and its comparison sit on different slices (OHIF prints their numbers there)
        [own_id] = [k for k in groups if k in (f"{name} hip BME", f"{name} hip: no BME")]
        assert _first_outline_image(groups[own_id]) != _first_outline_image(groups[change_id])
    stored = json.loads((follow_up.out / "result.json").read_text())
    assert stored["comparison"] == comparison.model_dump(mode="json")


def test_summary_shows_the_prior_key_slice_beside_the_current(follow_up: FollowUp) -> None:
    prior = load_prior(follow_up.baseline.out / "result.json")
    prior_key = prior.key_image()
    current_key = np.asarray(Image.open(follow_up.out / KEY_IMAGE_FILE).convert("RGB"))
    assert prior_key is not None and prior_key.shape == current_key.shape
    both = comparison_key_image(follow_up.result, current_key, prior_key)
    assert both.shape[1] > 2 * current_key.shape[1] and both.shape[0] > current_key.shape[0]
    assert comparison_key_image(follow_up.baseline.result, current_key, prior_key) is current_key  # no comparison


def test_prior_that_is_not_earlier_gives_a_warning_not_a_comparison(follow_up: FollowUp) -> None:
    later = PriorStudy(prior_ref_of(follow_up.result), follow_up.result)
    base = follow_up.baseline.result
    checked = _with_comparison(base, later)
    assert checked.comparison is None
    assert any("no comparison with the prior study" in w and "not earlier" in w for w in checked.quality.warnings)


def test_cli_refuses_a_prior_that_was_not_analysed(tmp_path: Path, analysed: AnalysedFactory) -> None:  # noqa: F811
    bad = tmp_path / "result.json"
    bad.write_text(analysed("itoh_left", seed=SEED).result.model_copy(
        update={"status": "not_applicable", "reason": "knee"}).model_dump_json())
    run = CliRunner().invoke(main, ["analyze", str(tmp_path), "--out", str(tmp_path / "o"), "--prior", str(bad)])
    assert run.exit_code == 2 and "was not analysed" in run.output
