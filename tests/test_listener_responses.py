"""C-STORE responses encoded directly (service.responses): the same bytes as pynetdicom's own encoding,
and pynetdicom's way for any response the direct encoding does not cover."""

from __future__ import annotations

from typing import Any

import pytest
from pydicom.uid import MRImageStorage
from pynetdicom import AE, evt
from pynetdicom.association import Association
from pynetdicom.dimse_messages import C_STORE_RSP
from pynetdicom.dimse_primitives import C_STORE
from pynetdicom.pdu_primitives import P_DATA

from service.responses import DirectStoreResponses, c_store_rsp_command, use_direct_store_responses


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


def _provider() -> tuple[DirectStoreResponses, _Recorder]:
    assoc = Association(AE(), "acceptor")
    assoc.requestor.maximum_length = 16384
    dimse = assoc.dimse
    use_direct_store_responses(dimse)
    assert isinstance(dimse, DirectStoreResponses)
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
