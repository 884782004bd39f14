"""The presentation contexts orthancd's C-STORE SCU proposes, beside those
of the live Orthanc 1.13.0 sending the same instances to the same pynetdicom
SCP (DicomStoreUserConnection::ProposeStorageClass): for each storage class
a context per stored syntax, one for the preferred syntax (explicit little
endian by default), and one grouping the uncompressed syntaxes left,
explicit big endian included; and the fallback to big endian when that is
all the peer accepts.
"""
import io
import json
import threading

import numpy as np
import pydicom
import pytest
from pynetdicom import AE, evt

from orthancd.net.storage_sop_classes import DCMTK_ALL_STORAGE
from tests.support.daemon import Daemon, free_port, read_sample
from tests.support.oracle import RealOrthanc, running

IMPLICIT_LITTLE = "1.2.840.10008.1.2"
EXPLICIT_LITTLE = "1.2.840.10008.1.2.1"
EXPLICIT_BIG = "1.2.840.10008.1.2.2"
# (The explicit little endian sample of TransferSyntaxes is of a retired
# class that pynetdicom cannot store.)
SAMPLES = ["Brainix/Flair/IM-0001-0001.dcm",
           "TransferSyntaxes/1.2.840.10008.1.2.4.80.dcm",
           "TransferSyntaxes/1.2.840.10008.1.2.dcm",
           "TransferSyntaxes/1.2.840.10008.1.2.2.dcm"]


class RecordingScp:
    """Stores whatever comes on the syntaxes it accepts, and records each
    association's proposed contexts by calling AE title."""

    def __init__(self, syntaxes):
        self.port = free_port()
        self.lock = threading.Lock()
        self.proposals = []      # (calling AE, [(abstract syntax, (syntaxes...))])
        self.received = []       # (calling AE, transfer syntax, data set)
        ae = AE(ae_title="RECORDER")
        for sop_class in DCMTK_ALL_STORAGE:
            ae.add_supported_context(sop_class, syntaxes)
        handlers = [(evt.EVT_REQUESTED, self._requested), (evt.EVT_C_STORE, self._store)]
        self.server = ae.start_server(("127.0.0.1", self.port), block=False,
                                      evt_handlers=handlers)

    def _requested(self, event):
        request = event.assoc.requestor.primitive
        contexts = [(str(c.abstract_syntax), tuple(str(ts) for ts in c.transfer_syntax))
                    for c in request.presentation_context_definition_list]
        with self.lock:
            self.proposals.append((request.calling_ae_title.strip(), contexts))

    def _store(self, event):
        dataset = event.dataset
        dataset.file_meta = event.file_meta
        with self.lock:
            self.received.append((event.assoc.requestor.primitive.calling_ae_title.strip(),
                                  str(event.context.transfer_syntax), dataset))
        return 0x0000

    def take(self):
        with self.lock:
            proposals, received = self.proposals, self.received
            self.proposals, self.received = [], []
        return proposals, received

    def stop(self):
        self.server.shutdown()


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    anything = RecordingScp([IMPLICIT_LITTLE, EXPLICIT_LITTLE, EXPLICIT_BIG,
                             "1.2.840.10008.1.2.4.80"])
    big_endian_only = RecordingScp([EXPLICIT_BIG])
    pair = (Daemon(tmp_path_factory.mktemp("orthancd")),
            RealOrthanc(tmp_path_factory.mktemp("oracle")))
    try:
        with running(pair) as (ours, theirs):
            clients = {"ORTHANCD": ours.client(), "ORACLE": theirs.client()}
            ids = {}
            for client in clients.values():
                for name, scp in (("anything", anything), ("big", big_endian_only)):
                    answer = client.put("/modalities/" + name, json.dumps(
                        {"AET": "RECORDER", "Host": "127.0.0.1", "Port": scp.port}))
                    assert answer.status == 200
                for sample in SAMPLES:
                    ids[sample] = client.upload(read_sample(*sample.split("/")))["ID"]
            yield clients, ids, anything, big_endian_only
    finally:
        anything.stop()
        big_endian_only.stop()


def _store(client, modality, instances):
    answer = client.post("/modalities/%s/store" % modality,
                         json.dumps({"Resources": instances, "Synchronous": True}))
    assert answer.status == 200, answer.body[:300]


@pytest.mark.parametrize("name", SAMPLES)
def test_proposed_contexts_like_orthanc(setup, name):
    """The contexts proposed for the class of the instance sent are
    1.13.0's, in its order (1.13.0 then fills the association with DCMTK's
    common storage classes)."""
    clients, ids, scp, _ = setup
    proposals = {}
    for aet, client in clients.items():
        _store(client, "anything", [ids[name]])
        sent, received = scp.take()
        assert [sender for sender, _ in sent] == [aet]
        assert [(sender, syntax) for sender, syntax, _ in received] == \
            [(aet, received[0][1])] and received[0][1] in sent[0][1][0][1]
        proposals[aet] = sent[0][1]
    sop_class = proposals["ORTHANCD"][0][0]
    assert proposals["ORTHANCD"] == [c for c in proposals["ORACLE"] if c[0] == sop_class]
    assert EXPLICIT_BIG in [s for _, group in proposals["ORTHANCD"] for s in group]


def test_proposal_of_several_instances():
    """An association carrying several instances proposes each class with
    all the syntaxes stored for it, as 1.13.0 proposes its registered
    classes, within 128 contexts."""
    from orthancd.net.scu import OutgoingInstance, StorageProposal
    jpeg_ls = "1.2.840.10008.1.2.4.80"
    proposal = StorageProposal()
    for sop_class, syntax in (("1.2.3", EXPLICIT_LITTLE), ("1.2.3", jpeg_ls),
                              ("1.2.4", IMPLICIT_LITTLE), ("1.2.3", jpeg_ls)):
        assert proposal.add(OutgoingInstance(None, sop_class, syntax))
    assert proposal.contexts() == [
        ("1.2.3", (EXPLICIT_LITTLE,)), ("1.2.3", (jpeg_ls,)),
        ("1.2.3", (IMPLICIT_LITTLE, EXPLICIT_BIG)),
        ("1.2.4", (IMPLICIT_LITTLE,)), ("1.2.4", (EXPLICIT_LITTLE,)), ("1.2.4", (EXPLICIT_BIG,))]
    # DicomScuPreferredTransferSyntax only when transcoding is allowed.
    strict = StorageProposal()
    assert strict.add(OutgoingInstance(None, "1.2.5", jpeg_ls, may_transcode=False,
                                       preferred="1.2.840.10008.1.2.4.50"))
    assert strict.contexts() == [("1.2.5", (jpeg_ls,)), ("1.2.5", (EXPLICIT_LITTLE,)),
                                 ("1.2.5", (IMPLICIT_LITTLE, EXPLICIT_BIG))]
    full = StorageProposal()
    added = 0
    while full.add(OutgoingInstance(None, "1.2.9.%d" % added, jpeg_ls)):
        added += 1
    assert added == 42 and len(full.contexts()) == 126


def test_big_endian_only_peer(setup):
    """A peer accepting explicit big endian alone gets the JPEG-LS instance
    transcoded to big endian, with its SOP Instance UID and its pixels, as
    1.13.0 sends it."""
    clients, ids, _, scp = setup
    name = "TransferSyntaxes/1.2.840.10008.1.2.4.80.dcm"
    original = pydicom.dcmread(io.BytesIO(read_sample(*name.split("/"))), force=True)
    for aet, client in clients.items():
        _store(client, "big", [ids[name]])
        _, received = scp.take()
        assert [(sender, syntax) for sender, syntax, _ in received] == [(aet, EXPLICIT_BIG)]
        dataset = received[0][2]
        assert dataset.SOPInstanceUID == original.SOPInstanceUID
        assert np.array_equal(dataset.pixel_array, original.pixel_array), aet
