"""The listener's directly encoded File Meta Information equals pynetdicom's (plus the source AE)."""

from __future__ import annotations

import pytest
from pydicom.uid import UID
from pynetdicom.dsutils import create_file_meta, encode_file_meta

from service.filemeta import file_meta_bytes


@pytest.mark.parametrize(("sop_class", "sop", "syntax", "source_ae"), [
    ("1.2.840.10008.5.1.4.1.1.4", "1.2.3.4", "1.2.840.10008.1.2.1", "STORESCU"),  # even UIDs, even AE
    ("1.2.840.10008.5.1.4.1.1.4.1", "1.2.33.4", "1.2.840.10008.1.2", "AE1"),  # odd lengths: padded
    ("1.2.840.10008.5.1.4.1.1.7", "1.22.3.45", "1.2.840.10008.1.2.4.50", ""),  # no source AE
])
def test_file_meta_bytes_match_pynetdicom(sop_class: str, sop: str, syntax: str, source_ae: str) -> None:
    meta = create_file_meta(sop_class_uid=UID(sop_class), sop_instance_uid=UID(sop), transfer_syntax=UID(syntax))
    if source_ae:
        meta.SourceApplicationEntityTitle = source_ae
    assert file_meta_bytes(sop_class, sop, syntax, source_ae) == encode_file_meta(meta)
