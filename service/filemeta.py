"""The File Meta Information of a spooled instance, encoded directly.

The same bytes as pynetdicom's ``encode_file_meta(create_file_meta(...))`` plus Source Application
Entity Title (a test compares them), without building and encoding a pydicom data set per instance:
that took a tenth of the C-STORE handler's time. Group 0002 is always Explicit VR Little Endian.
"""

from __future__ import annotations

import struct

from pynetdicom import PYNETDICOM_IMPLEMENTATION_UID, PYNETDICOM_IMPLEMENTATION_VERSION

_SHORT = struct.Struct("<HH2sH")
_VERSION = struct.pack("<HH2s2sI", 0x0002, 0x0001, b"OB", b"\x00\x00", 2) + b"\x00\x01"


def _element(element: int, vr: bytes, value: str, pad: bytes) -> bytes:
    raw = value.encode("ascii", "replace")
    if len(raw) % 2:
        raw += pad
    return _SHORT.pack(0x0002, element, vr, len(raw)) + raw


def file_meta_bytes(sop_class_uid: str, sop_instance_uid: str, transfer_syntax: str, source_ae: str = "") -> bytes:
    """Encoded group 0002 (with its group length) for one instance; ``source_ae`` is left out when empty."""
    body = b"".join([
        _VERSION,
        _element(0x0002, b"UI", sop_class_uid, b"\x00"),
        _element(0x0003, b"UI", sop_instance_uid, b"\x00"),
        _element(0x0010, b"UI", transfer_syntax, b"\x00"),
        _element(0x0012, b"UI", str(PYNETDICOM_IMPLEMENTATION_UID), b"\x00"),
        _element(0x0013, b"SH", PYNETDICOM_IMPLEMENTATION_VERSION, b" "),
        _element(0x0016, b"AE", source_ae, b" ") if source_ae else b"",
    ])
    return struct.pack("<HH2sHI", 0x0002, 0x0000, b"UL", 4, len(body)) + body
