"""C-STORE requests and responses converted directly, without a pydicom data set per message.

pynetdicom turns every DIMSE command set into a pydicom ``Dataset``: it decodes a C-STORE-RQ's
command set, then walks its elements (value conversion, keyword look-up) to fill the request
primitive; it builds a C-STORE-RSP as a ``Dataset`` and encodes it twice (once for the group
length). For the listener that was about a third of its CPU per received instance (the
response) and another tenth (the request). Both messages are a handful of fixed elements, so
:class:`DirectStoreMessages` does them itself:

* a plain C-STORE-RQ command set (the elements pynetdicom's own C-STORE-RQ has, no multi-valued
  UID, no Move Originator AE title) is read from its bytes into the same ``C_STORE`` primitive,
  through the primitive's own validating setters (a bad value raises as in pynetdicom, which then
  aborts the association); any other command set is converted by pynetdicom;
* a plain C-STORE-RSP (message ID, status, the two UIDs; no error comment or offending element)
  is encoded by :func:`c_store_rsp_command`, byte for byte what pynetdicom sends (a test compares
  them), and handed to pynetdicom's DUL as the same P-DATA primitive. Other messages, a peer
  whose maximum PDU is too small for one fragment, or an ``EVT_DIMSE_SENT`` handler that wants
  pynetdicom's message object go pynetdicom's way.
"""

from __future__ import annotations

import struct
from io import BytesIO
from typing import Any, cast

from pynetdicom import evt
from pynetdicom.dimse import DIMSEServiceProvider
from pynetdicom.dimse_messages import C_STORE_RQ, DIMSEMessage
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
_ELEMENT = struct.Struct("<HHI")
_U16 = struct.Struct("<H")

# Command elements of a C-STORE-RQ (group 0000) and the request primitive's parameter each one sets.
_UID_PARAMETERS = {0x0002: "AffectedSOPClassUID", 0x1000: "AffectedSOPInstanceUID"}
_US_PARAMETERS = {0x0110: "MessageID", 0x0700: "Priority", 0x1031: "MoveOriginatorMessageID"}
_NOT_PARAMETERS = frozenset({0x0000, 0x0100, 0x0800})  # group length, command field, data set type


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


def c_store_rq_parameters(command: bytes) -> dict[str, Any] | None:
    """The request primitive's parameters of a plain C-STORE-RQ command set, None for any other.

    Values are decoded as pydicom does (UIDs without trailing NULs and spaces); parameters are
    returned in the order of their elements, as pynetdicom sets them.
    """
    parameters: dict[str, Any] = {}
    pos, end = 0, len(command)
    while pos < end:
        if pos + 8 > end:
            return None
        group, element, length = _ELEMENT.unpack_from(command, pos)
        pos += 8
        if group != 0x0000 or pos + length > end:
            return None
        value = command[pos:pos + length]
        pos += length
        if element in _NOT_PARAMETERS:
            continue
        name = _UID_PARAMETERS.get(element)
        if name is not None:
            text = value.decode("iso8859").rstrip("\x00 ")
            if "\\" in text:  # multi-valued: pynetdicom warns and takes the first value
                return None
            parameters[name] = text
            continue
        name = _US_PARAMETERS.get(element)
        if name is None or length != 2:
            return None
        parameters[name] = _U16.unpack(value)[0]
    return parameters


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


class DirectStoreRequest(C_STORE_RQ):
    """A received C-STORE-RQ message whose data set fragments are joined once, and whose request
    primitive is read from the command bytes.

    pynetdicom writes each fragment into a ``BytesIO`` that grows by copying, and the handler's
    ``encoded_dataset()`` copies it out again; here the fragments (views of the received PDUs, see
    ``service.reactor``) are kept until the last one and joined into the bytes that the data set's
    ``BytesIO`` shares.
    """

    _fragments: list[Any]

    def decode_msg(self, primitive: P_DATA, assoc: Any = None) -> bool:
        """Add a P-DATA primitive's data set fragments; True once the last one arrived."""
        items = primitive.presentation_data_value_list if primitive.__class__ is P_DATA else None
        if not items or self._data_set_file is not None or any(data[0] & 1 for _, data in items):
            self._join_fragments()  # anything but plain data set fragments: pynetdicom's handling
            return super().decode_msg(primitive, assoc)
        for _, data in items:
            self._fragments.append(data[1:])
            if data[0] & 2:  # the last fragment
                self._join_fragments()
                return True
        return False

    def _join_fragments(self) -> None:
        """Put the fragments received so far after the data set bytes pynetdicom already holds."""
        if not self._fragments:
            return
        data_set = cast(BytesIO, self.data_set)
        head = data_set.getvalue()
        self.data_set = BytesIO(b"".join([head, *self._fragments]) if head else b"".join(self._fragments))
        self._fragments = []

    def message_to_primitive(self) -> Any:
        """The C-STORE request primitive; pynetdicom's conversion for a command set that is not plain."""
        parameters = c_store_rq_parameters(self.encoded_command_set.getvalue())
        if parameters is None:
            self.__class__ = cast(Any, C_STORE_RQ)  # pynetdicom picks the primitive by the message's class name
            return self.message_to_primitive()
        primitive = C_STORE()
        for name, value in parameters.items():
            setattr(primitive, name, value)  # the primitive's setters validate, as in pynetdicom
        primitive.DataSet = self.data_set
        primitive._context_id = self.context_id
        primitive._dataset_path = self._data_set_path
        primitive._dataset_file = self._data_set_file
        return primitive


class IncomingMessage(DIMSEMessage):
    """pynetdicom's message being received; becomes a :class:`DirectStoreRequest` once its command
    set shows a C-STORE-RQ (pynetdicom sets its class from the Command Field), unless an
    ``EVT_DIMSE_RECV`` handler will see it (pynetdicom's look up handlers by the exact class)."""

    def decode_msg(self, primitive: P_DATA, assoc: Any = None) -> bool:
        """Add a P-DATA primitive's fragments (pynetdicom), then pick the C-STORE-RQ conversion."""
        complete = super().decode_msg(primitive, assoc)
        kind: type = type(self)  # pynetdicom has just set it from the Command Field
        if kind is C_STORE_RQ and assoc is not None and not assoc.get_handlers(evt.EVT_DIMSE_RECV):
            self.__class__ = cast(Any, DirectStoreRequest)
            cast(DirectStoreRequest, self)._fragments = []
        return complete


class DirectStoreMessages(DIMSEServiceProvider):
    """pynetdicom's DIMSE provider with direct C-STORE request and response conversion."""

    def receive_primitive(self, primitive: P_DATA) -> None:
        """Collect a P-DATA primitive into the current message (pynetdicom), as an :class:`IncomingMessage`."""
        if self.message is None:
            message = DIMSEMessage()  # (pynetdicom's message classes initialise by their class name)
            message.__class__ = IncomingMessage
            self.message = message
        super().receive_primitive(primitive)

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


def use_direct_store_messages(dimse: DIMSEServiceProvider) -> None:
    """Make an association's DIMSE provider a :class:`DirectStoreMessages` (same object, same state)."""
    dimse.__class__ = DirectStoreMessages
