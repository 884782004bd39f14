"""Fast tests of the DICOM upper layer: no sockets, a fake clock."""

import os
import random

import pytest
from pydicom.dataset import Dataset
from pynetdicom import fsm as pynetdicom_fsm
from pynetdicom.dsutils import encode
from twisted.internet import defer
from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport

from orthancd.net import dimse, fsm, pdu
from orthancd.net.negotiation import requestor_primitive
from orthancd.net import scp_store
from orthancd.net.scp_store import IncomingInstance
from orthancd.net.server import DicomServerFactory
from orthancd.net.transfer_syntaxes import EXPLICIT_LITTLE, IMPLICIT_LITTLE, accepted_storage_syntaxes

CT = "1.2.840.10008.5.1.4.1.1.2"
VERIFICATION = "1.2.840.10008.1.1"
JPEG_BASELINE = "1.2.840.10008.1.2.4.50"


# -- framing and the state table ----------------------------------------------

def test_state_table_matches_ps3_8():
    assert fsm.TRANSITIONS == pynetdicom_fsm.TRANSITION_TABLE


def test_transition_returns_action_and_next_state():
    assert fsm.transition("Sta1", fsm.TRANSPORT_INDICATION) == ("AE-5", "Sta2")
    assert fsm.transition("Sta6", fsm.P_DATA_PDU) == ("DT-2", "Sta6")
    assert fsm.transition("Sta2", fsm.ASSOCIATE_RQ_PDU) == ("AE-6", ("Sta3", "Sta13"))
    with pytest.raises(fsm.InvalidTransition):
        fsm.transition("Sta1", fsm.P_DATA_PDU)


def test_framer_handles_any_chunking():
    pdus = [pdu.p_data_tf(1, 3, b"x" * n) for n in (0, 1, 17, 5000)] + [pdu.release_rq()]
    stream = b"".join(pdus)
    rng = random.Random(7)
    for _ in range(50):
        framer = pdu.PduFramer()
        got = []
        offset = 0
        while offset < len(stream):
            step = rng.randint(1, 40)
            got += framer.feed(stream[offset:offset + step])
            offset += step
        assert [pdu.frame(t, body) for t, body in got] == pdus
        assert framer.pending_bytes == 0
    assert len(pdu.PduFramer().feed(stream)) == len(pdus)


def test_framer_rejects_unknown_type_and_huge_pdu():
    with pytest.raises(pdu.PduError):
        pdu.PduFramer().feed(b"\x09\x00\x00\x00\x00\x00")
    with pytest.raises(pdu.PduError):
        pdu.PduFramer(max_pdu_length=100).feed(b"\x04\x00\x00\x00\x10\x00")


def test_pdv_iteration():
    body = pdu.p_data_tf(5, 2, b"abc")[6:] + pdu.p_data_tf(7, 1, b"")[6:]
    assert [(c, h, bytes(f)) for c, h, f in pdu.iter_pdvs(body)] == [(5, 2, b"abc"), (7, 1, b"")]
    with pytest.raises(pdu.PduError):
        list(pdu.iter_pdvs(b"\x00\x00\x00\x09\x01\x00"))


def test_storage_syntax_flags():
    everything = accepted_storage_syntaxes({})
    assert everything[:2] == [IMPLICIT_LITTLE, EXPLICIT_LITTLE] and JPEG_BASELINE in everything
    no_jpeg = accepted_storage_syntaxes({"JpegTransferSyntaxAccepted": False})
    assert JPEG_BASELINE not in no_jpeg and IMPLICIT_LITTLE in no_jpeg
    only = accepted_storage_syntaxes({"AcceptedTransferSyntaxes": ["1.2.840.10008.1.2"]})
    assert only == [IMPLICIT_LITTLE]


# -- the acceptor on a StringTransport -----------------------------------------

class FakeServices:
    def __init__(self, tmp_path):
        self.temporary_directory = str(tmp_path)
        self.calls = []

    def store_file(self, path, origin):
        with open(path, "rb") as f:
            content = f.read()
        d = defer.Deferred()
        self.calls.append((path, content, origin, d))
        return d


class ServicesStoringWhereWritten(FakeServices):
    """Services that take a received file in the thread that wrote it
    (OrthancServer.store_received): the work runs once it is complete."""

    def store_received(self, writer, origin):
        d = defer.Deferred()

        def work(path):
            with open(path, "rb") as f:
                content = f.read()
            os.unlink(path)  # as the storage area moves it
            path.moved = True
            self.calls.append((path, content, origin, d))
        writer.after_close(work).addErrback(d.errback)
        return d


class ServicesStoringBytes(ServicesStoringWhereWritten):
    """Services that also store an instance received in memory
    (OrthancServer.store_bytes)."""

    def store_bytes(self, data, origin):
        d = defer.Deferred()
        self.calls.append((None, data, origin, d))
        return d


class Result:
    def __init__(self, status):
        self.status = status


class DicomFormatError(Exception):
    pass


class Peer:
    """Drives one server protocol and decodes what it answers."""

    def __init__(self, tmp_path, config=None, remote_ip="10.0.0.7", services=None, beside=None):
        """``beside``: a Peer whose server (listener) this one connects to."""
        if beside is not None:
            self.clock, self.services, self.factory = beside.clock, beside.services, beside.factory
        else:
            self.clock = Clock()
            self.services = services if services is not None else FakeServices(tmp_path)
            base = {"DicomAet": "ORTHANCD"}
            base.update(config or {})
            self.factory = DicomServerFactory(base, self.services, self.clock)
        self.protocol = self.factory.buildProtocol(None)
        self.transport = StringTransport(peerAddress=IPv4Address("TCP", remote_ip, 5555))
        self.protocol.makeConnection(self.transport)
        self.framer = pdu.PduFramer()

    def send(self, data, chunk=None):
        if chunk is None:
            self.protocol.dataReceived(data)
        else:
            for i in range(0, len(data), chunk):
                self.protocol.dataReceived(data[i:i + chunk])

    def received(self):
        out = self.framer.feed(self.transport.value())
        self.transport.clear()
        return out

    def associate(self, contexts, calling="SCU", called="ORTHANCD", chunk=None):
        request = requestor_primitive(calling, called, contexts, 16384)
        self.send(pdu.encode_associate(request), chunk)
        (pdu_type, body), = self.received()
        return pdu_type, pdu.decode_associate(pdu_type, body)

    def command(self, context_id, fields, dataset=None):
        fields = dict(fields)
        fields["CommandDataSetType"] = dimse.HAS_DATASET if dataset is not None else dimse.NO_DATASET
        encoded = dimse.encode_command(fields)
        self.send(pdu.p_data_tf(context_id, 0x01, encoded[:10]))
        self.send(pdu.p_data_tf(context_id, 0x03, encoded[10:]))

    def responses(self):
        commands = []
        for pdu_type, body in self.received():
            assert pdu_type == pdu.P_DATA_TF
            for _cid, control, fragment in pdu.iter_pdvs(body):
                assert control == 0x03
                commands.append(dimse.decode_command(bytes(fragment)))
        return commands


def results(response):
    return {cx.context_id: (cx.result, str(cx.transfer_syntax[0]))
            for cx in response.presentation_context_definition_results_list}


def test_association_negotiation_outcomes(tmp_path):
    peer = Peer(tmp_path, {"JpegTransferSyntaxAccepted": False})
    assert peer.protocol.state == "Sta2"
    pdu_type, ac = peer.associate([
        (VERIFICATION, [IMPLICIT_LITTLE]),
        (CT, [IMPLICIT_LITTLE, EXPLICIT_LITTLE]),
        (CT, [JPEG_BASELINE]),
        ("1.2.3.4.5.6.7", [IMPLICIT_LITTLE]),
    ], chunk=3)
    assert pdu_type == pdu.ASSOCIATE_AC
    # Storage contexts keep the requestor's preferred syntax (Orthanc 1.13.0).
    assert results(ac) == {1: (0, IMPLICIT_LITTLE), 3: (0, IMPLICIT_LITTLE),
                           5: (4, JPEG_BASELINE), 7: (3, IMPLICIT_LITTLE)}
    assert peer.protocol.state == "Sta6"
    assert [t[2] for t in peer.protocol.transitions] == ["AE-5", "AE-6", "AE-7"]
    assert ac.maximum_length_received == 16384


def test_unknown_sop_class_accepted(tmp_path):
    peer = Peer(tmp_path, {"UnknownSopClassAccepted": True})
    _, ac = peer.associate([("1.2.3.4.5.6.7", [IMPLICIT_LITTLE])])
    assert results(ac) == {1: (0, IMPLICIT_LITTLE)}


def test_called_aet_check(tmp_path):
    peer = Peer(tmp_path, {"DicomCheckCalledAet": True})
    pdu_type, rj = peer.associate([(VERIFICATION, [IMPLICIT_LITTLE])], called="WRONG")
    assert pdu_type == pdu.ASSOCIATE_RJ
    assert (rj.result, rj.result_source, rj.diagnostic) == (1, 1, 7)
    assert peer.protocol.state == "Sta13"
    peer.clock.advance(31)
    assert peer.transport.disconnecting
    # Case-insensitive by default, like Orthanc.
    peer = Peer(tmp_path, {"DicomCheckCalledAet": True})
    assert peer.associate([(VERIFICATION, [IMPLICIT_LITTLE])], called="orthancd")[0] == pdu.ASSOCIATE_AC


def test_unknown_calling_aet(tmp_path):
    closed = {"DicomAlwaysAllowEcho": False, "DicomAlwaysAllowStore": False,
              "DicomModalities": {"known": ["KNOWN", "10.0.0.7", 104],
                                  "noecho": {"AET": "NOECHO", "Host": "1.1.1.1", "Port": 1,
                                             "AllowEcho": False}}}
    pdu_type, rj = Peer(tmp_path, closed).associate([(VERIFICATION, [IMPLICIT_LITTLE])], calling="STRANGER")
    assert pdu_type == pdu.ASSOCIATE_RJ and rj.diagnostic == 3
    _, ac = Peer(tmp_path, closed).associate([(VERIFICATION, [IMPLICIT_LITTLE]), (CT, [IMPLICIT_LITTLE])],
                                             calling="KNOWN")
    assert results(ac) == {1: (0, IMPLICIT_LITTLE), 3: (0, IMPLICIT_LITTLE)}
    # Orthanc 1.13.0 accepts the contexts whatever the AET may do: the
    # request it may not make aborts the association later on.
    _, ac = Peer(tmp_path, closed).associate([(VERIFICATION, [IMPLICIT_LITTLE]), (CT, [IMPLICIT_LITTLE])],
                                             calling="NOECHO")
    assert results(ac) == {1: (0, IMPLICIT_LITTLE), 3: (0, IMPLICIT_LITTLE)}
    _, ac = Peer(tmp_path, {"DicomAlwaysAllowEcho": False}).associate(
        [(VERIFICATION, [IMPLICIT_LITTLE]), (CT, [IMPLICIT_LITTLE])], calling="STRANGER")
    assert results(ac) == {1: (0, IMPLICIT_LITTLE), 3: (0, IMPLICIT_LITTLE)}


def test_artim_expires_without_associate_request(tmp_path):
    peer = Peer(tmp_path)
    peer.clock.advance(29)
    assert not peer.transport.disconnecting
    peer.clock.advance(2)
    assert peer.transport.disconnecting and peer.protocol.state == "Sta1"


def test_echo_and_release(tmp_path):
    peer = Peer(tmp_path)
    peer.associate([(VERIFICATION, [IMPLICIT_LITTLE])])
    peer.command(1, {"AffectedSOPClassUID": VERIFICATION, "CommandField": dimse.C_ECHO_RQ, "MessageID": 7})
    (rsp,) = peer.responses()
    assert (rsp.CommandField, rsp.MessageIDBeingRespondedTo, rsp.Status) == (dimse.C_ECHO_RSP, 7, 0)
    peer.send(pdu.release_rq())
    assert peer.received() == [(pdu.RELEASE_RP, b"\x00" * 4)]
    assert peer.protocol.state == "Sta13"
    peer.clock.advance(31)
    assert peer.transport.disconnecting


def test_unsupported_command_gets_failure_status(tmp_path):
    peer = Peer(tmp_path)
    peer.associate([(CT, [IMPLICIT_LITTLE])])
    peer.command(1, {"AffectedSOPClassUID": CT, "CommandField": dimse.C_FIND_RQ, "MessageID": 3,
                     "Priority": 0}, dataset=b"")
    peer.send(pdu.p_data_tf(1, 0x02, b""))
    (rsp,) = peer.responses()
    assert (rsp.CommandField, rsp.Status) == (dimse.C_FIND_RSP, dimse.UNRECOGNIZED_OPERATION)
    assert peer.protocol.state == "Sta6"


def ct_dataset(uid="1.2.3.4.5"):
    ds = Dataset()
    ds.SOPClassUID = CT
    ds.SOPInstanceUID = uid
    ds.PatientName = "Doe^John"
    ds.PixelData = os.urandom(30000)
    ds["PixelData"].VR = "OB"
    return encode(ds, True, True)


def store_fields(uid="1.2.3.4.5"):
    return {"AffectedSOPClassUID": CT, "CommandField": dimse.C_STORE_RQ, "MessageID": 1,
            "Priority": 0, "AffectedSOPInstanceUID": uid}


def send_dataset(peer, data, fragment=4000, finish=True):
    for i in range(0, len(data), fragment):
        last = finish and i + fragment >= len(data)
        peer.send(pdu.p_data_tf(1, 0x02 if last else 0x00, data[i:i + fragment]), chunk=997)


def test_store_streams_to_temp_file_and_answers_after_storage(tmp_path):
    peer = Peer(tmp_path)
    peer.associate([(CT, [IMPLICIT_LITTLE])], calling="MODALITY")
    data = ct_dataset()
    peer.command(1, store_fields(), dataset=data)
    send_dataset(peer, data)
    (path, content, origin, d), = peer.services.calls
    assert content.endswith(data) and content[128:132] == b"DICM"
    from pydicom import dcmread
    stored = dcmread(path)
    assert stored.file_meta.TransferSyntaxUID == IMPLICIT_LITTLE
    assert stored.file_meta.MediaStorageSOPInstanceUID == "1.2.3.4.5"
    assert origin == {"RemoteAET": "MODALITY", "CalledAET": "ORTHANCD",
                      "RemoteIP": "10.0.0.7", "Origin": "DicomProtocol"}
    assert peer.responses() == []          # nothing before the storage is durable
    d.callback(Result("Success"))
    (rsp,) = peer.responses()
    assert (rsp.CommandField, rsp.Status, rsp.AffectedSOPInstanceUID) == (dimse.C_STORE_RSP, 0, "1.2.3.4.5")
    assert os.listdir(tmp_path) == []      # the temporary file is cleaned up


@pytest.mark.parametrize("error,status", [(DicomFormatError("bad"), 0xC000),
                                          (IOError("disk full"), 0xA700)])
def test_store_failure_statuses(tmp_path, error, status):
    peer = Peer(tmp_path)
    peer.associate([(CT, [IMPLICIT_LITTLE])])
    data = ct_dataset()
    peer.command(1, store_fields(), dataset=data)
    send_dataset(peer, data)
    peer.services.calls[0][3].errback(error)
    (rsp,) = peer.responses()
    assert rsp.Status == status


def test_store_mismatching_instance_uid(tmp_path):
    peer = Peer(tmp_path)
    peer.associate([(CT, [IMPLICIT_LITTLE])])
    data = ct_dataset("9.9.9")
    peer.command(1, store_fields("1.2.3.4.5"), dataset=data)
    send_dataset(peer, data)
    (rsp,) = peer.responses()
    assert rsp.Status == dimse.ERROR_DATASET_DOES_NOT_MATCH_SOP_CLASS
    assert peer.services.calls == [] and os.listdir(tmp_path) == []


def test_store_without_sop_uids_cannot_be_understood(tmp_path):
    peer = Peer(tmp_path)
    peer.associate([(CT, [IMPLICIT_LITTLE])])
    ds = Dataset()
    ds.PatientName = "X"
    data = encode(ds, True, True)
    peer.command(1, store_fields(), dataset=data)
    send_dataset(peer, data)
    (rsp,) = peer.responses()
    assert rsp.Status == dimse.ERROR_CANNOT_UNDERSTAND


def test_abort_mid_store_stores_nothing(tmp_path, monkeypatch):
    # Small batches: the file exists once the first fragments are written.
    monkeypatch.setattr(IncomingInstance, "BATCH_SIZE", 4096)
    peer = Peer(tmp_path)
    peer.associate([(CT, [IMPLICIT_LITTLE])])
    data = ct_dataset()
    peer.command(1, store_fields(), dataset=data)
    send_dataset(peer, data[:12000], finish=False)
    assert len(os.listdir(tmp_path)) == 1
    peer.send(pdu.abort())
    assert peer.protocol.state == "Sta1" and peer.transport.disconnecting
    assert os.listdir(tmp_path) == [] and peer.services.calls == []


def test_connection_lost_mid_store_stores_nothing(tmp_path):
    peer = Peer(tmp_path)
    peer.associate([(CT, [IMPLICIT_LITTLE])])
    data = ct_dataset()
    peer.command(1, store_fields(), dataset=data)
    send_dataset(peer, data[:5000], finish=False)
    peer.protocol.connectionLost(None)
    assert os.listdir(tmp_path) == [] and peer.services.calls == []


def test_idle_timeout_aborts(tmp_path):
    peer = Peer(tmp_path, {"DicomScpTimeout": 5})
    peer.associate([(CT, [IMPLICIT_LITTLE])])
    peer.clock.advance(4)
    assert peer.received() == []
    peer.clock.advance(2)
    assert peer.received() == [(pdu.ABORT, b"\x00\x00\x00\x00")]
    assert peer.transport.disconnecting


def test_idle_timer_paused_while_storing(tmp_path):
    peer = Peer(tmp_path, {"DicomScpTimeout": 5})
    peer.associate([(CT, [IMPLICIT_LITTLE])])
    data = ct_dataset()
    peer.command(1, store_fields(), dataset=data)
    send_dataset(peer, data)
    peer.clock.advance(60)                 # our storage is slow, the peer is not idle
    assert not peer.transport.disconnecting
    peer.services.calls[0][3].callback(Result("AlreadyStored"))
    assert peer.responses()[0].Status == 0
    peer.clock.advance(6)
    assert peer.transport.disconnecting


def test_each_pdu_of_a_stalling_data_set_restarts_the_idle_count(tmp_path):
    peer = Peer(tmp_path, {"DicomScpTimeout": 5})
    peer.associate([(CT, [IMPLICIT_LITTLE])])
    data = ct_dataset()
    peer.command(1, store_fields(), dataset=data)
    for start in range(0, 12000, 4000):
        peer.clock.advance(4)  # 4 s between PDUs: 12 s in all, never 5 s idle
        send_dataset(peer, data[start:start + 4000], finish=False)
    assert not peer.transport.disconnecting
    peer.clock.advance(4.9)
    assert not peer.transport.disconnecting
    peer.clock.advance(0.2)
    assert peer.received()[-1] == (pdu.ABORT, b"\x00\x00\x00\x00")
    assert peer.transport.disconnecting


def test_store_where_written_answers_after_storage(tmp_path):
    peer = Peer(tmp_path, services=ServicesStoringWhereWritten(tmp_path))
    peer.associate([(CT, [IMPLICIT_LITTLE])])
    data = ct_dataset()
    peer.command(1, store_fields(), dataset=data)
    send_dataset(peer, data)
    (path, content, origin, d), = peer.services.calls
    assert content.endswith(data) and content[128:132] == b"DICM"
    assert origin["RemoteAET"] == "SCU"
    assert peer.responses() == []
    d.callback(Result("Success"))
    (rsp,) = peer.responses()
    assert rsp.Status == 0 and os.listdir(tmp_path) == []


def test_store_where_written_refuses_what_cannot_be_written(tmp_path):
    peer = Peer(tmp_path, services=ServicesStoringWhereWritten(tmp_path / "missing"))
    peer.associate([(CT, [IMPLICIT_LITTLE])])
    data = ct_dataset()
    peer.command(1, store_fields(), dataset=data)
    send_dataset(peer, data)
    assert peer.services.calls == []
    (rsp,) = peer.responses()
    assert rsp.Status == 0xA700


def test_store_is_kept_in_memory(tmp_path):
    first = Peer(tmp_path, services=ServicesStoringBytes(tmp_path))
    first.associate([(CT, [IMPLICIT_LITTLE])])
    data = ct_dataset()
    first.command(1, store_fields(), dataset=data)
    send_dataset(first, data)
    # Alone: kept in memory, handed over as a Part-10 file, nothing written.
    (path, in_memory, _, first_stored), = first.services.calls
    assert path is None and in_memory.endswith(data) and in_memory[128:132] == b"DICM"
    assert os.listdir(tmp_path) == []
    # While that one is being stored, another association sends one: the
    # same bytes, the same way.
    second = Peer(tmp_path, remote_ip="10.0.0.8", beside=first)
    second.associate([(CT, [IMPLICIT_LITTLE])], calling="OTHER")
    second.command(1, store_fields(), dataset=data)
    send_dataset(second, data)
    path, second_in_memory, origin, second_stored = first.services.calls[1]
    assert path is None and second_in_memory == in_memory
    assert origin == {"RemoteAET": "OTHER", "CalledAET": "ORTHANCD",
                      "RemoteIP": "10.0.0.8", "Origin": "DicomProtocol"}
    assert os.listdir(tmp_path) == []
    assert second.responses() == []        # nothing before the storage is durable
    second_stored.callback(Result("Success"))
    assert [r.Status for r in second.responses()] == [0]
    first_stored.callback(Result("Success"))
    assert [r.Status for r in first.responses()] == [0]


def store_beside_another(tmp_path):
    """Two associations of one listener: the first one's data set is half
    received when the second one's C-STORE starts (the test sends its data)."""
    first = Peer(tmp_path, services=ServicesStoringBytes(tmp_path))
    first.associate([(CT, [IMPLICIT_LITTLE])])
    second = Peer(tmp_path, beside=first)
    second.associate([(CT, [IMPLICIT_LITTLE])])
    data = ct_dataset()
    first.command(1, store_fields(), dataset=data)
    send_dataset(first, data[:4000], finish=False)
    second.command(1, store_fields(), dataset=data)
    return first, second, data


def test_store_side_by_side_outgrowing_the_memory_limit_is_streamed(tmp_path, monkeypatch):
    monkeypatch.setattr(scp_store, "IN_MEMORY_LIMIT", 10000)
    first, second, data = store_beside_another(tmp_path)
    send_dataset(second, data)             # 30 kB: past the limit, written as it comes
    (path, content, _, stored), = first.services.calls
    assert path is not None and content.endswith(data) and content[128:132] == b"DICM"
    stored.callback(Result("Success"))
    assert [r.Status for r in second.responses()] == [0]
    send_dataset(first, data[4000:])
    assert first.services.calls[1][1] == content


@pytest.mark.parametrize("error,status", [(DicomFormatError("bad"), 0xC000),
                                          (IOError("disk full"), 0xA700)])
def test_store_in_memory_failure_statuses(tmp_path, error, status):
    first, second, data = store_beside_another(tmp_path)
    send_dataset(second, data)
    (path, _, _, stored), = first.services.calls
    assert path is None
    stored.errback(error)
    assert [r.Status for r in second.responses()] == [status]


def test_abort_mid_store_in_memory_stores_nothing(tmp_path):
    first, second, data = store_beside_another(tmp_path)
    send_dataset(second, data[:12000], finish=False)
    second.send(pdu.abort())
    first.protocol.connectionLost(None)
    assert first.services.calls == [] and os.listdir(tmp_path) == []


def test_connections_read_in_large_gulps(tmp_path):
    from orthancd.net.acceptor import RECEIVE_SIZE
    factory = DicomServerFactory({"DicomAet": "ORTHANCD"}, FakeServices(tmp_path), Clock())
    protocol = factory.buildProtocol(None)
    transport = StringTransport(peerAddress=IPv4Address("TCP", "10.0.0.7", 5555))
    transport.bufferSize = 65536  # Twisted's default for TCP connections
    protocol.makeConnection(transport)
    assert transport.bufferSize == RECEIVE_SIZE >= 1 << 20


def test_release_waits_for_running_store(tmp_path):
    peer = Peer(tmp_path)
    peer.associate([(CT, [IMPLICIT_LITTLE])])
    data = ct_dataset()
    peer.command(1, store_fields(), dataset=data)
    send_dataset(peer, data)
    peer.send(pdu.release_rq())
    assert peer.received() == []
    peer.services.calls[0][3].callback(Result("Success"))
    out = peer.received()
    assert [t for t, _ in out] == [pdu.P_DATA_TF, pdu.RELEASE_RP]


def test_garbage_aborts(tmp_path):
    peer = Peer(tmp_path)
    peer.associate([(CT, [IMPLICIT_LITTLE])])
    peer.send(pdu.p_data_tf(1, 0x00, b"dataset before any command"))
    assert peer.received()[0][0] == pdu.ABORT
    assert peer.protocol.state == "Sta13"


def test_pdv_on_unaccepted_context_aborts(tmp_path):
    peer = Peer(tmp_path)
    peer.associate([(CT, [IMPLICIT_LITTLE])])
    peer.command(3, {"AffectedSOPClassUID": VERIFICATION, "CommandField": dimse.C_ECHO_RQ, "MessageID": 1})
    assert peer.received()[0][0] == pdu.ABORT


def test_large_response_respects_peer_max_pdu(tmp_path):
    peer = Peer(tmp_path)
    peer.associate([(CT, [IMPLICIT_LITTLE])])
    peer.protocol.peer_maximum_pdu_length = 100
    peer.protocol.send_command(1, {"CommandField": dimse.C_ECHO_RSP, "Status": 0,
                                   "MessageIDBeingRespondedTo": 1}, b"z" * 1000)
    sizes = [len(body) for _, body in peer.received()]
    assert max(sizes) <= 100 and len(sizes) >= 11
