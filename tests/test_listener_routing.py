# ruff: noqa: F811  (pytest fixtures imported from listener_fixtures)
"""Acceptance: non-hip or non-MR studies are accepted with Success and skipped with a reason."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pydicom
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


def test_own_results_and_derived_images_never_become_jobs() -> None:
    settings = Settings(_env_file=None)
    mr_carried = _series(series_instance_uid="1.1", body_part_examined="HIP", new_instance_count=0)
    ours = [_series(series_instance_uid=f"2.{k}", modality=m, sop_class_uids=(c,), own_output=True,
                    new_instance_count=n)
            for k, (m, c, n) in enumerate([("SR", "1.2.840.10008.5.1.4.1.1.88.34", 1),
                                           ("MR", "1.2.840.10008.5.1.4.1.1.7", 19),  # SC overlays keep Modality MR
                                           ("OT", "1.2.840.10008.5.1.4.1.1.30", 1),
                                           ("KO", "1.2.840.10008.5.1.4.1.1.88.59", 1)])]
    back = decide([mr_carried, *ours], "MRI hips", settings)  # the PACS routed our results back
    assert not back.analyse and back.own_results and "only MarrowMap's own results arrived (22 instance(s)" in back.reason
    alone = decide(ours, "", settings)  # results of a study whose images are gone from the spool
    assert not alone.analyse and alone.own_results
    # an MR image series that carries our markers (should one ever exist) is no candidate either
    assert decide([_series(body_part_examined="HIP", own_output=True)], "", settings).own_results
    # new MR images beside our results: the images are analysed
    new_mr = _series(series_instance_uid="1.3", body_part_examined="HIP", new_instance_count=30)
    assert decide([mr_carried, new_mr, *ours], "", settings).analyse
    # another system's object added to an analysed study: no new image, no job (and it is not ours)
    foreign = _series(series_instance_uid="3.1", modality="SR", sop_class_uids=("1.2.840.10008.5.1.4.1.1.88.22",),
                      new_instance_count=1)
    later = decide([mr_carried, foreign], "", settings)
    assert not later.analyse and not later.own_results and "no new MR image" in later.reason
    # DERIVED\SECONDARY MR images (reformats, screen captures) are never what starts an analysis
    mpr = decide([_series(body_part_examined="HIP", derived_secondary=True)], "", settings)
    assert not mpr.analyse and "no MR image series of a routed SOP class" in mpr.reason


@pytest.mark.integration
def test_results_sent_back_are_accepted_logged_and_never_a_job(harness: Harness, tmp_path: Path) -> None:
    from tests.dicom_out_fixtures import make_study
    from workers.dicom_out import build_outputs

    study = make_study(seed_uid="route-own-results")
    listener = harness.start_listener()
    assert pynetdicom_send(harness.port, list(study.full_datasets)) == [0] * len(study.full_datasets)
    wait_for(lambda: len(harness.queue_messages()) == 1, 20, "the study's job")
    outputs = build_outputs(study.result, study.fluid, study.maps, tmp_path / "out", settings=Settings(_env_file=None))
    results = [pydicom.dcmread(tmp_path / "out" / o.path) for o in outputs]
    assert {o.kind for o in outputs} == {"seg", "sr", "sc_overlay", "sc_summary", "pmap", "kos"}
    assert pynetdicom_send(harness.port, results) == [0] * len(results)  # accepted
    wait_for(lambda: listener.events("study.own_results"), 20, "the results batch to be sealed")
    [event] = listener.events("study.own_results")
    assert event["instances"] == len(results) and "results are never analysed" in event["reason"]
    time.sleep(1.5)
    assert len(harness.queue_messages()) == 1  # still only the study's own job
    listed = json.loads(harness.cli("status", "--json").stdout)
    assert len(listed) == 1 and listed[0]["state"] != "skipped"  # no job record for the results either
