"""The structural check of received data sets: complete ones pass in every encoding,
every truncation and garbage fail with a typed error."""

from __future__ import annotations

import zlib
from pathlib import Path

import numpy as np
import pytest
from pydicom.dataset import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
)

from service.dataset_check import DatasetDecodeError, MissingAttributeError, check_dataset
from tests import dicom_factory as factory


def _encode(ds: Dataset, implicit: bool, little: bool) -> bytes:
    buf = DicomBytesIO()
    buf.is_implicit_VR = implicit
    buf.is_little_endian = little
    write_dataset(buf, ds)
    return buf.getvalue()


@pytest.mark.parametrize(("ts", "implicit", "little"), [
    (ExplicitVRLittleEndian, False, True),
    (ImplicitVRLittleEndian, True, True),
    (ExplicitVRBigEndian, False, False),
])
def test_complete_data_sets_pass_and_every_truncation_fails(ts: str, implicit: bool, little: bool) -> None:
    ds = factory.enhanced_mr("check", frames=2, rows=8, cols=8)  # nested sequences
    encoded = _encode(ds, implicit, little)
    keys = check_dataset(encoded, ts)
    assert keys.sop_instance_uid == ds.SOPInstanceUID and keys.series_instance_uid == ds.SeriesInstanceUID
    assert keys.has_pixel_data
    for cut in range(1, len(encoded)):
        try:
            partial = check_dataset(encoded[:cut], ts)
        except (DatasetDecodeError, MissingAttributeError):
            continue
        # only a cut exactly between two top-level elements parses; it has lost the pixel data
        assert not partial.has_pixel_data, f"cut at {cut} not detected"


def test_encapsulated_and_deflated(tmp_path: Path) -> None:
    rle = factory.compressed(factory.study("check-rle")[0])
    path = factory.write([rle], tmp_path)[0]
    encoded = factory.dataset_bytes(path)
    assert check_dataset(encoded, str(rle.file_meta.TransferSyntaxUID)).sop_instance_uid == rle.SOPInstanceUID
    for cut in (len(encoded) - 1, len(encoded) - 8, len(encoded) // 2):
        with pytest.raises(DatasetDecodeError):
            check_dataset(encoded[:cut], str(rle.file_meta.TransferSyntaxUID))
    plain = _encode(factory.study("check-deflate")[0], False, True)
    deflater = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    deflated = deflater.compress(plain) + deflater.flush()
    assert check_dataset(deflated, DeflatedExplicitVRLittleEndian).study_instance_uid
    with pytest.raises(DatasetDecodeError):
        check_dataset(deflated[:-10], DeflatedExplicitVRLittleEndian)


def test_garbage_and_missing_uids() -> None:
    rng = np.random.default_rng(3)
    for _ in range(50):
        with pytest.raises((DatasetDecodeError, MissingAttributeError)):
            check_dataset(rng.bytes(int(rng.integers(1, 4000))), ExplicitVRLittleEndian)
    ds = factory.study("check-missing")[0]
    del ds.SeriesInstanceUID
    with pytest.raises(MissingAttributeError, match="series_instance_uid"):
        check_dataset(_encode(ds, False, True), ExplicitVRLittleEndian)
    ds = factory.study("check-bad-uid")[0]
    with pytest.warns(UserWarning, match="Invalid value for VR UI"):
        ds.StudyInstanceUID = "1.2.3/../../etc"
    with pytest.raises(MissingAttributeError, match="study_instance_uid"):
        check_dataset(_encode(ds, False, True), ExplicitVRLittleEndian)
