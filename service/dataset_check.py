"""Check a received encoded data set without decoding it, and pick out the UIDs that place it.

The listener stores the bytes exactly as received. Before answering Success it walks the
element structure once (tags, VRs, lengths, nested items, delimiters) so that garbage and
truncated data sets are refused, and reads the four top-level UIDs it needs. Values are
not decoded; pixel data is not touched.
"""

from __future__ import annotations

import re
import struct
import zlib
from dataclasses import dataclass

_UNDEFINED = 0xFFFFFFFF
_ITEM = 0xFFFEE000
_ITEM_DELIM = 0xFFFEE00D
_SEQ_DELIM = 0xFFFEE0DD
_LONG_VRS = frozenset({b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"})
_SHORT_VRS = frozenset({
    b"AE", b"AS", b"AT", b"CS", b"DA", b"DS", b"DT", b"FL", b"FD", b"IS", b"LO", b"LT", b"PN",
    b"SH", b"SL", b"SS", b"ST", b"TM", b"UI", b"UL", b"US",
})
_WANTED = {
    0x00080016: "sop_class_uid",
    0x00080018: "sop_instance_uid",
    0x0020000D: "study_instance_uid",
    0x0020000E: "series_instance_uid",
}
#: Header values kept as text for judging whether a series is complete (``service.completion``).
HEADER_TAGS = {
    0x00080008: "ImageType",
    0x0008103E: "SeriesDescription",
    0x00180020: "ScanningSequence",
    0x00180022: "ScanOptions",
    0x00180080: "RepetitionTime",
    0x00180081: "EchoTime",
    0x00180082: "InversionTime",
    0x00181030: "ProtocolName",
    0x00200032: "ImagePositionPatient",
    0x00200037: "ImageOrientationPatient",
    0x00201002: "ImagesInAcquisition",
    0x00280008: "NumberOfFrames",
}
_LAST_WANTED = 0x00280008
_PIXEL_DATA = frozenset({0x7FE00008, 0x7FE00009, 0x7FE00010})
_UID_RE = re.compile(r"^(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*$")
_DEFLATED = "1.2.840.10008.1.2.1.99"
_IMPLICIT_LE = "1.2.840.10008.1.2"
_EXPLICIT_BE = "1.2.840.10008.1.2.2"
_MAX_DEPTH = 32
_INFLATE_STEP = 16 * 1024 * 1024


class DatasetDecodeError(ValueError):
    """The bytes are not a complete, well-formed DICOM data set."""


class DatasetTooLargeError(ValueError):
    """A deflated data set inflates to more than the allowed size (a deflate bomb, or a huge element)."""


class MissingAttributeError(ValueError):
    """A UID the listener needs is missing or not a valid UID."""


@dataclass(frozen=True, slots=True)
class InstanceKeys:
    """The UIDs that place an instance in the spool, and the top-level ``HEADER_TAGS`` values (as text)."""

    sop_class_uid: str
    sop_instance_uid: str
    study_instance_uid: str
    series_instance_uid: str
    has_pixel_data: bool
    header: dict[str, str]


def is_valid_uid(value: str) -> bool:
    """True for a syntactically valid UID (digits and dots, at most 64 characters)."""
    return 0 < len(value) <= 64 and _UID_RE.match(value) is not None


def inflate(encoded: bytes, max_bytes: int) -> bytearray:
    """Inflate a deflated data set, stopping past ``max_bytes`` (memory stays bounded by it).

    Inflates in 16 MiB steps into one growing buffer (one whole-size call would hold its output
    twice while joining it). Raises DatasetTooLargeError beyond ``max_bytes`` and
    DatasetDecodeError for broken or truncated deflate streams.
    """
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    out = bytearray()
    pending = encoded
    try:
        while pending and not inflater.eof:
            out += inflater.decompress(pending, _INFLATE_STEP)
            if len(out) > max_bytes:
                raise DatasetTooLargeError(f"deflated data set inflates to more than {max_bytes} bytes")
            pending = inflater.unconsumed_tail
        out += inflater.flush()
    except zlib.error as exc:
        raise DatasetDecodeError(f"deflated data set does not inflate: {exc}") from None
    if not inflater.eof:
        raise DatasetDecodeError("deflated data set is truncated")
    return out


def check_dataset(encoded: bytes, transfer_syntax: str, max_inflated_bytes: int = 256 * 1024 * 1024) -> InstanceKeys:
    """Walk the whole encoded data set; return its placing UIDs and whether it has pixel data.

    A cut exactly between two top-level elements leaves a well-formed smaller data set; for
    images the caller detects it by the missing pixel data (the last element).

    Raises DatasetDecodeError for malformed or truncated bytes, DatasetTooLargeError when a
    deflated data set inflates past ``max_inflated_bytes``, and MissingAttributeError when a
    placing UID is absent or invalid.
    """
    data: bytes | bytearray = inflate(encoded, max_inflated_bytes) if transfer_syntax == _DEFLATED else encoded
    implicit = transfer_syntax == _IMPLICIT_LE
    little = transfer_syntax != _EXPLICIT_BE
    walker = _Walker(data, little)
    found: dict[str, str] = {}
    end = walker.walk(0, len(data), implicit, depth=0, found=found)
    if end != len(data):
        raise DatasetDecodeError(f"unexpected item delimiter at offset {end}")
    values: dict[str, str] = {}
    for name in _WANTED.values():
        value = found.get(name, "")
        if not is_valid_uid(value):
            raise MissingAttributeError(f"{name} missing or invalid")
        values[name] = value
    return InstanceKeys(**values, has_pixel_data=found.get("pixel_data") == "yes", header=walker.header)


class _Walker:
    def __init__(self, data: bytes | bytearray, little: bool) -> None:
        self.data = data
        e = "<" if little else ">"
        self.u16 = struct.Struct(e + "H")
        self.u32 = struct.Struct(e + "I")
        self.tag = struct.Struct(e + "HH")
        self.header: dict[str, str] = {}

    def _read_tag(self, pos: int, end: int) -> int:
        if pos + 8 > end:
            raise DatasetDecodeError(f"truncated element header at offset {pos}")
        group, elem = self.tag.unpack_from(self.data, pos)
        return int((group << 16) | elem)

    def walk(self, pos: int, end: int, implicit: bool, depth: int, found: dict[str, str] | None) -> int:
        """Walk elements from ``pos``; return the offset after the last one.

        Stops at ``end`` or before an item delimiter (whose offset is returned).
        """
        if depth > _MAX_DEPTH:
            raise DatasetDecodeError("sequences nested too deeply")
        data = self.data
        while pos < end:
            tag = self._read_tag(pos, end)
            if tag == _ITEM_DELIM:
                return pos
            if tag in (_ITEM, _SEQ_DELIM):
                raise DatasetDecodeError(f"unexpected item tag at offset {pos}")
            if implicit:
                vr = b""
                length = self.u32.unpack_from(data, pos + 4)[0]
                pos += 8
            else:
                vr = bytes(data[pos + 4:pos + 6])
                if vr in _LONG_VRS:
                    if pos + 12 > end:
                        raise DatasetDecodeError(f"truncated element header at offset {pos}")
                    length = self.u32.unpack_from(data, pos + 8)[0]
                    pos += 12
                elif vr in _SHORT_VRS:
                    length = self.u16.unpack_from(data, pos + 6)[0]
                    pos += 8
                else:
                    raise DatasetDecodeError(f"invalid VR {vr!r} at offset {pos}")
            if found is not None and tag in _PIXEL_DATA:
                found["pixel_data"] = "yes"
            if length == _UNDEFINED:
                # Sequences and encapsulated pixel data; UN of undefined length is implicit LE.
                nested_implicit = implicit or vr == b"UN"
                pos = self._walk_items(pos, end, nested_implicit, depth + 1)
                continue
            if pos + length > end:
                raise DatasetDecodeError(
                    f"truncated: element ({tag >> 16:04X},{tag & 0xFFFF:04X}) needs {length} bytes, "
                    f"{end - pos} left"
                )
            if found is not None and tag <= _LAST_WANTED:
                name = _WANTED.get(tag)
                if name is not None:
                    found[name] = data[pos:pos + length].decode("ascii", "replace").rstrip("\x00 ")
                keyword = HEADER_TAGS.get(tag)
                if keyword is not None and length <= 1024:
                    self.header[keyword] = data[pos:pos + length].decode("ascii", "replace").strip("\x00 ")
            pos += length
        return pos

    def _walk_items(self, pos: int, end: int, implicit: bool, depth: int) -> int:
        """Items of an undefined-length sequence or encapsulated pixel data, up to the delimiter."""
        while True:
            tag = self._read_tag(pos, end)
            length = self.u32.unpack_from(self.data, pos + 4)[0]
            pos += 8
            if tag == _SEQ_DELIM:
                return pos
            if tag != _ITEM:
                raise DatasetDecodeError(f"expected an item or sequence delimiter at offset {pos - 8}")
            if length == _UNDEFINED:
                pos = self.walk(pos, end, implicit, depth, None)
                if self._read_tag(pos, end) != _ITEM_DELIM:
                    raise DatasetDecodeError(f"item without delimiter at offset {pos}")
                pos += 8
            elif pos + length > end:
                raise DatasetDecodeError(f"truncated item at offset {pos}")
            else:
                pos += length
