"""C-STORE responses encoded directly, without a pydicom data set per response.

pynetdicom sends a C-STORE-RSP by building a pydicom ``Dataset`` of its command set, encoding
it once to learn the group length and again to send it: about a third of the listener's CPU
per received instance. The response of the listener is always the same seven elements of
which only the message ID, the status and the two UIDs vary, so :class:`DirectStoreResponses`
encodes those bytes itself (:func:`c_store_rsp_command`, byte for byte what pynetdicom sends; a
test compares them) and hands pynetdicom's DUL the same P-DATA primitive. Anything else (other
messages, a response with an error comment or offending element, a peer whose maximum PDU is
too small for one fragment, an ``EVT_DIMSE_SENT`` handler that wants pynetdicom's message
object) goes the usual way.
"""

from __future__ import annotations

import struct
from typing import Any

from pynetdicom import evt
from pynetdicom.dimse import DIMSEServiceProvider
from pynetdicom.dimse_primitives import C_STORE
from pynetdicom.pdu_primitives import P_DATA

_C_STORE_RSP = 0x8001
_NO_DATA_SET = 0x0101
#: A PDV item adds 6 bytes (length, context ID, control header) to a P-DATA-TF PDU's 6-byte header.
_PDU_OVERHEAD = 12
_LAST_COMMAND_FRAGMENT = b"\x03"
_UL = struct.Struct("<HHII")
_US = struct.Struct("<HHIH")
_HEADER = struct.Struct("<HHI")


def _ui(element: int, uid: str) -> bytes:
    raw = uid.encode("ascii")
    if len(raw) % 2:
        raw += b"\x00"
    return _HEADER.pack(0x0000, element, len(raw)) + raw


def c_store_rsp_command(message_id: int, status: int, sop_class_uid: str, sop_instance_uid: str) -> bytes:
    """The command set of a C-STORE-RSP without error comment or offending element (Implicit VR Little Endian)."""
    body = b"".join([
        _ui(0x0002, sop_class_uid),
        _US.pack(0x0000, 0x0100, 2, _C_STORE_RSP),
        _US.pack(0x0000, 0x0120, 2, message_id),
        _US.pack(0x0000, 0x0800, 2, _NO_DATA_SET),
        _US.pack(0x0000, 0x0900, 2, status),
        _ui(0x1000, sop_instance_uid),
    ])
    return _UL.pack(0x0000, 0x0000, 4, len(body)) + body


def _plain_store_response(primitive: Any) -> bool:
    """A C-STORE response carrying only message ID, status and the two UIDs."""
    return (
        isinstance(primitive, C_STORE)
        and primitive.MessageIDBeingRespondedTo is not None
        and primitive.Status is not None
        and primitive.ErrorComment is None
        and primitive.OffendingElement is None
        and bool(primitive.AffectedSOPClassUID)
        and bool(primitive.AffectedSOPInstanceUID)
    )


class DirectStoreResponses(DIMSEServiceProvider):
    """pynetdicom's DIMSE provider whose plain C-STORE responses skip the pydicom encoding."""

    def send_msg(self, primitive: Any, context_id: int) -> None:
        """Send a plain C-STORE response as one P-DATA primitive; anything else as pynetdicom does."""
        if not _plain_store_response(primitive) or self.assoc.get_handlers(evt.EVT_DIMSE_SENT):
            super().send_msg(primitive, context_id)
            return
        command = c_store_rsp_command(
            int(primitive.MessageIDBeingRespondedTo), int(primitive.Status),
            str(primitive.AffectedSOPClassUID), str(primitive.AffectedSOPInstanceUID),
        )
        max_pdu = self.maximum_pdu_size
        if max_pdu and len(command) + _PDU_OVERHEAD > max_pdu:
            super().send_msg(primitive, context_id)
            return
        pdata = P_DATA()
        pdata.presentation_data_value_list.append((context_id, _LAST_COMMAND_FRAGMENT + command))
        self.dul.send_pdu(pdata)


def use_direct_store_responses(dimse: DIMSEServiceProvider) -> None:
    """Make an association's DIMSE provider a :class:`DirectStoreResponses` (same object, same state)."""
    dimse.__class__ = DirectStoreResponses
