# ruff: noqa: F811  (pytest fixtures imported from listener_fixtures)
"""Acceptance: non-hip or non-MR studies are accepted with Success and skipped with a reason."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from pydicom.dataset import FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian

from marrowmap.manifest import ManifestSeries
from marrowmap.settings import Settings
from service.routing import decide
from tests import dicom_factory as factory
from tests.listener_fixtures import Harness, harness, pynetdicom_send, wait_for  # noqa: F401


def _series(**kw: object) -> ManifestSeries:
    base: dict[str, object] = {"series_instance_uid": "1.2.3", "modality": "MR", "instance_count": 3,
                               "sop_class_uids": ("1.2.840.10008.5.1.4.1.1.4",)}
    base.update(kw)
    return ManifestSeries.model_validate(base)


def test_routing_rule_explains_each_decision() -> None:
    settings = Settings(_env_file=None)
    hip = decide([_series(body_part_examined="hip")], "", settings)
    assert hip.analyse and "BodyPartExamined hip" in hip.reason
    by_words = decide([_series(series_description="COR STIR Hüfte bds")], "MRT", settings)
    assert by_words.analyse and "hüfte" in by_words.reason
    by_study = decide([_series()], "MRI Pelvis w/o", settings)
    assert by_study.analyse and "study description contains 'pelvis'" in by_study.reason
    knee = decide([_series(body_part_examined="KNEE", series_description="SAG PD FS")], "MRI KNEE", settings)
    assert not knee.analyse and "KNEE" in knee.reason and "no hip/pelvis marker" in knee.reason
    chip = decide([_series(series_description="chip artefact test")], "", settings)
    assert not chip.analyse, "'hip' inside another word is not a hip"
    ct = decide([_series(modality="CT", body_part_examined="PELVIS",
                         sop_class_uids=("1.2.840.10008.5.1.4.1.1.2",))], "CT PELVIS", settings)
    assert not ct.analyse and "modalities seen: CT" in ct.reason
    custom = Settings(_env_file=None, route_body_parts=["KNEE"], route_description_keywords=[])
    assert decide([_series(body_part_examined="KNEE")], "", custom).analyse


@pytest.mark.integration
def test_non_hip_and_non_mr_studies_are_accepted_and_skipped(harness: Harness, tmp_path: Path) -> None:
    studies = {
        "knee": factory.knee_mr("route-knee"),
        "brain": factory.brain_mr("route-brain"),
        "ct": factory.pelvis_ct("route-ct"),
    }
    listener = harness.start_listener()
    for datasets in studies.values():
        for ds in datasets:
            ds.file_meta = FileMetaDataset()
            ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        assert pynetdicom_send(harness.port, datasets) == [0] * len(datasets)

    wait_for(lambda: len(listener.events("study.skipped")) == 3, 20, "three skipped studies")
    skipped = listener.events("study.skipped")
    reasons = {r["study_instance_uid"]: r["reason"] for r in skipped}
    assert "KNEE" in reasons[str(studies["knee"][0].StudyInstanceUID)]
    assert "no hip/pelvis marker" in reasons[str(studies["brain"][0].StudyInstanceUID)]
    assert "modalities seen: CT" in reasons[str(studies["ct"][0].StudyInstanceUID)]
    time.sleep(1.5)
    assert harness.queue_messages() == []
    assert not any((harness.spool / "ready").iterdir()), "skipped studies are cleaned up"
    assert not any((harness.spool / "incoming").iterdir())
    listed = json.loads(harness.cli("status", "--json").stdout)
    assert sorted(r["state"] for r in listed) == ["skipped"] * 3
    assert {r["study_instance_uid"]: r["reason"] for r in listed} == reasons
