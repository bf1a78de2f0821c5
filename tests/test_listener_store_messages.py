"""C-STORE messages converted directly (service.store_messages), P-DATA-TF PDUs decoded without
copies (service.reactor) and read straight into their buffer (service.limits): the same bytes
and primitives as pynetdicom's own conversion, and pynetdicom's way for anything the direct
conversion does not cover."""

from __future__ import annotations

import socket
import struct
import threading
import time
from io import BytesIO
from typing import Any

import pytest
from pydicom.uid import MRImageStorage
from pynetdicom import AE, _config, evt
from pynetdicom.association import Association
from pynetdicom.dimse_messages import C_STORE_RQ, C_STORE_RSP
from pynetdicom.dimse_primitives import C_STORE
from pynetdicom.dsutils import encode
from pynetdicom.pdu import P_DATA_TF
from pynetdicom.pdu_primitives import P_DATA

from service.limits import PduReader, ReceiveLimits
from service.reactor import pdata_tf_views
from service.store_messages import (
    DirectStoreMessages,
    c_store_rq_parameters,
    c_store_rsp_command,
    use_direct_store_messages,
)


def _response(message_id: int, status: int, sop_class: str, sop_instance: str) -> C_STORE:
    rsp = C_STORE()
    rsp.MessageID = message_id
    rsp.MessageIDBeingRespondedTo = message_id
    rsp.AffectedSOPClassUID = sop_class
    rsp.AffectedSOPInstanceUID = sop_instance
    rsp.Status = status
    return rsp


def _pynetdicom_pdvs(rsp: C_STORE, context_id: int) -> list[tuple[int, bytes]]:
    message = C_STORE_RSP()
    message.primitive_to_message(rsp)
    return [pdv for pdata in message.encode_msg(context_id, 16384) for pdv in pdata.presentation_data_value_list]


@pytest.mark.parametrize(("message_id", "status", "sop_instance"), [
    (1, 0x0000, "1.2.3.4"),  # even-length UID
    (65535, 0xA700, "1.2.3.45"),  # odd-length UID: padded with a NUL
    (7, 0xC000, "1.2.826.0.1.3680043.8.498.1234567890123456789012345678901234567"),
    (300, 0xB000, "9"),
])
def test_command_is_byte_identical_to_pynetdicom(message_id: int, status: int, sop_instance: str) -> None:
    for sop_class in (str(MRImageStorage), "1.2.840.10008.5.1.4.1.1.2"):
        rsp = _response(message_id, status, sop_class, sop_instance)
        [(context_id, data)] = _pynetdicom_pdvs(rsp, 5)
        assert context_id == 5
        assert data == b"\x03" + c_store_rsp_command(message_id, status, sop_class, sop_instance)


class _Recorder:
    """Stands in for the DUL: records the P-DATA primitives it is handed."""

    def __init__(self) -> None:
        self.sent: list[P_DATA] = []

    def send_pdu(self, primitive: P_DATA) -> None:
        self.sent.append(primitive)


def _provider() -> tuple[DirectStoreMessages, _Recorder]:
    assoc = Association(AE(), "acceptor")
    assoc.requestor.maximum_length = 16384
    dimse = assoc.dimse
    use_direct_store_messages(dimse)
    assert isinstance(dimse, DirectStoreMessages)
    recorder = _Recorder()
    dimse.assoc.dul = recorder  # type: ignore[assignment]
    return dimse, recorder


def test_direct_response_is_the_pdv_pynetdicom_would_send() -> None:
    dimse, recorder = _provider()
    rsp = _response(3, 0x0000, str(MRImageStorage), "1.2.3.4.5")
    dimse.send_msg(rsp, 7)
    [pdata] = recorder.sent
    assert pdata.presentation_data_value_list == _pynetdicom_pdvs(rsp, 7)


@pytest.mark.parametrize("change", ["error_comment", "sent_handler", "tiny_pdu"])
def test_other_responses_go_pynetdicoms_way(change: str, monkeypatch: pytest.MonkeyPatch) -> None:
    dimse, recorder = _provider()
    rsp = _response(3, 0xC000, str(MRImageStorage), "1.2.3.4.5")
    seen: list[Any] = []
    if change == "error_comment":
        rsp.ErrorComment = "cannot understand"
    elif change == "sent_handler":
        dimse.assoc.bind(evt.EVT_DIMSE_SENT, lambda event: seen.append(event.message))
    else:
        dimse.assoc.requestor.maximum_length = 64
    calls: list[int] = []
    original = C_STORE_RSP.primitive_to_message

    def counted(self: C_STORE_RSP, primitive: Any) -> None:
        calls.append(1)
        original(self, primitive)

    monkeypatch.setattr(C_STORE_RSP, "primitive_to_message", counted)
    dimse.send_msg(rsp, 1)
    assert calls == [1]
    assert recorder.sent
    if change == "sent_handler":
        assert len(seen) == 1


# --- received C-STORE requests ------------------------------------------------------------------

def _request(sop_instance: str = "1.2.3.4.5", data: bytes = b"\x08\x00\x18\x00" + b"x" * 300) -> C_STORE:
    rq = C_STORE()
    rq.MessageID = 12
    rq.AffectedSOPClassUID = str(MRImageStorage)
    rq.AffectedSOPInstanceUID = sop_instance
    rq.Priority = 1
    rq.DataSet = BytesIO(data)
    return rq


def _pdatas(rq: C_STORE, max_pdu: int) -> list[P_DATA]:
    message = C_STORE_RQ()
    message.primitive_to_message(rq)
    return list(message.encode_msg(3, max_pdu))


def _received(pdatas: list[P_DATA], direct: bool) -> Any:
    """The request primitive that an acceptor's DIMSE provider queues for ``pdatas``."""
    previous = _config.LOG_HANDLER_LEVEL
    _config.LOG_HANDLER_LEVEL = "none"  # no EVT_DIMSE_RECV handler: the direct conversion applies
    try:
        assoc = Association(AE(), "acceptor")
    finally:
        _config.LOG_HANDLER_LEVEL = previous
    if direct:
        use_direct_store_messages(assoc.dimse)
    for pdata in pdatas:
        assoc.dimse.receive_primitive(pdata)
    context_id, primitive = assoc.dimse.msg_queue.get(block=False)
    assert context_id == 3
    return primitive


_PARAMETERS = ("MessageID", "AffectedSOPClassUID", "AffectedSOPInstanceUID", "Priority",
               "MoveOriginatorApplicationEntityTitle", "MoveOriginatorMessageID", "_context_id")


@pytest.mark.parametrize("max_pdu", [0, 16384, 64])  # one fragment each / data set in pieces / command too
@pytest.mark.parametrize("move_originator", [False, True])
def test_received_request_is_the_primitive_pynetdicom_makes(max_pdu: int, move_originator: bool) -> None:
    data = bytes(range(256)) * 200
    rq = _request("1.2.826.0.1.3680043.8.498.123", data)
    if move_originator:
        rq.MoveOriginatorApplicationEntityTitle = "MOVER"
        rq.MoveOriginatorMessageID = 77
    pdatas = _pdatas(rq, max_pdu)
    theirs, ours = _received(pdatas, direct=False), _received(pdatas, direct=True)
    for name in _PARAMETERS:
        assert getattr(ours, name) == getattr(theirs, name), name
    assert ours.DataSet.getvalue() == theirs.DataSet.getvalue() == data


def test_command_and_data_in_one_primitive() -> None:
    data = b"\x08\x00\x18\x00" + b"y" * 1000
    command, *fragments = _pdatas(_request(data=data), 400)
    command.presentation_data_value_list.extend(fragments[0].presentation_data_value_list)
    pdatas = [command, *fragments[1:]]
    assert _received(pdatas, direct=True).DataSet.getvalue() == data


def test_plain_request_parameters_are_read_from_the_command_bytes() -> None:
    message = C_STORE_RQ()
    message.primitive_to_message(_request("1.2.3.45"))
    command = encode(message.command_set, True, True)
    assert c_store_rq_parameters(command) == {
        "AffectedSOPClassUID": str(MRImageStorage), "MessageID": 12, "Priority": 1, "AffectedSOPInstanceUID": "1.2.3.45",
    }
    multi = command.replace(b"1.2.3.45", b"1.2\\3.45")
    assert c_store_rq_parameters(multi) is None  # multi-valued UID: pynetdicom's conversion
    assert c_store_rq_parameters(command[:-3]) is None  # truncated
    status = struct.pack("<HHIH", 0x0000, 0x0900, 2, 0)
    assert c_store_rq_parameters(command + status) is None  # an element a plain request does not have


def test_pdata_views_decode_as_pynetdicom() -> None:
    rq = _request(data=b"\x08\x00\x18\x00" + b"z" * 500)
    pdu = P_DATA_TF()
    pdu.from_primitive(_pdatas(rq, 0)[1])
    pdu.presentation_data_value_items += P_DATA_TF().presentation_data_value_items
    two = P_DATA_TF()
    two.from_primitive(P_DATA())
    two.presentation_data_value_items = pdu.presentation_data_value_items * 2  # two PDV items in one PDU
    for encoded in (pdu.encode(), two.encode()):
        theirs = P_DATA_TF()
        theirs.decode(encoded)
        ours = pdata_tf_views(bytearray(encoded))
        assert [(i.presentation_context_id, bytes(i.presentation_data_value)) for i in ours.presentation_data_value_items] \
            == [(i.presentation_context_id, i.presentation_data_value) for i in theirs.presentation_data_value_items]
    with pytest.raises(struct.error):  # a cut item header: pynetdicom's reactor answers Evt19
        pdata_tf_views(bytearray(two.encode()[:-len(two.presentation_data_value_items[1].presentation_data_value) - 3]))


# --- reading a PDU ------------------------------------------------------------------------------

class _SocketHolder:
    """Stands in for pynetdicom's AssociationSocket: the PDU reader only uses ``socket`` and ``close``."""

    def __init__(self, sock: socket.socket) -> None:
        self.socket: socket.socket | None = sock

    def close(self) -> None:
        if self.socket is not None:
            self.socket.close()
        self.socket = None


def test_pdu_reader_reads_a_pdu_arriving_in_pieces_and_a_cut_one() -> None:
    ours, peer = socket.socketpair()
    ours.settimeout(5.0)
    reader = PduReader(_SocketHolder(ours), ReceiveLimits(1 << 20, 1 << 20, 5.0), "test")  # type: ignore[arg-type]
    data = bytes(range(256)) * 600
    body = struct.pack(">LBB", len(data) + 2, 1, 0x02) + data  # one PDV: the last data set fragment
    header = struct.pack(">BBL", 0x04, 0, len(body))

    def send_in_pieces() -> None:
        peer.sendall(header + body[:1000])
        time.sleep(0.05)
        peer.sendall(body[1000:70000])
        time.sleep(0.05)
        peer.sendall(body[70000:])

    threading.Thread(target=send_in_pieces).start()
    assert reader.recv(6) == header
    received = reader.recv(len(body))
    assert isinstance(received, bytearray) and received == body
    assert ours.gettimeout() == 5.0  # the association's own time-out is back
    peer.sendall(struct.pack(">BBL", 0x07, 0, 100) + b"x" * 40)
    peer.close()
    assert len(reader.recv(6)) == 6
    assert reader.recv(100) == b"x" * 40  # the peer closed: pynetdicom sees a short PDU (Evt17)
    ours.close()
