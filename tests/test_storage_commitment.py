"""DICOM storage commitment (Push Model) against real peers: the real Orthanc
1.13.0 in both directions, and pynetdicom as a modality that asks, commits
and reports.  What orthancd sends and answers is compared with what the
oracle sends and answers in the same situation."""
import glob
import threading
import time

import pydicom
import pytest
from pydicom.dataset import Dataset
from pynetdicom import AE, build_role, evt
from pynetdicom.sop_class import (
    CTImageStorage,
    MRImageStorage,
    StorageCommitmentPushModel,
    Verification,
)

from orthancd.net import storage_commitment as wire
from orthancd.net.transfer_syntaxes import EXPLICIT_BIG, IMPLICIT_LITTLE, decode_in, encode_in
from orthancd.errors import OrthancError
from orthancd.storage_commitment import Report, ReportRegistry, describe_failure
from tests.support import oracle as oracle_support
from tests.support.daemon import Daemon, free_port, read_sample, sample

SOP_INSTANCE = wire.SOP_INSTANCE
CT = "1.2.840.10008.5.1.4.1.1.2"
MR = "1.2.840.10008.5.1.4.1.1.4"
FLAIR = sorted(glob.glob(sample("Brainix", "Flair", "*.dcm")))[:2]
REPORTS_SIZE = 4


def uids_of(path):
    dataset = pydicom.dcmread(path, stop_before_pixels=True)
    return str(dataset.SOPClassUID), str(dataset.SOPInstanceUID)


def references(pairs, reasons=None):
    items = []
    for position, (sop_class, sop_instance) in enumerate(pairs):
        item = Dataset()
        item.ReferencedSOPClassUID = sop_class
        item.ReferencedSOPInstanceUID = sop_instance
        if reasons is not None:
            item.FailureReason = reasons[position]
        items.append(item)
    return items


def action_information(transaction_uid, pairs):
    dataset = Dataset()
    dataset.TransactionUID = transaction_uid
    dataset.ReferencedSOPSequence = references(pairs)
    return dataset


def event_information(transaction_uid, successes, failures=(), reasons=()):
    dataset = Dataset()
    dataset.TransactionUID = transaction_uid
    dataset.ReferencedSOPSequence = references(successes)
    if failures:
        dataset.FailedSOPSequence = references(failures, list(reasons))
    return dataset


def plain(dataset):
    """A data set as comparable Python values, element order included."""
    out = []
    for element in dataset:
        if element.VR == "SQ":
            out.append((element.keyword, [plain(item) for item in element.value]))
        else:
            out.append((element.keyword, element.value if element.VR == "US"
                        else str(element.value)))
    return out


def command(message):
    return [(element.keyword, element.value if element.VR in ("US", "UL") else str(element.value))
            for element in message.command_set if element.keyword != "MessageID"]


class Peer:
    """A modality played by pynetdicom: it answers N-ACTION (and records it),
    receives N-EVENT-REPORT and C-STORE, and can ask or report itself."""

    def __init__(self, aet="PEER"):
        self.aet = aet
        self.port = free_port()
        self.action_status = 0x0000
        self.records = []
        self._lock = threading.Lock()
        self._server = None

    def start(self):
        ae = AE(self.aet)
        ae.require_called_aet = False
        ae.add_supported_context(StorageCommitmentPushModel, scu_role=True, scp_role=True)
        for abstract in (Verification, CTImageStorage, MRImageStorage):
            ae.add_supported_context(abstract)
        self._server = ae.start_server(("127.0.0.1", self.port), block=False, evt_handlers=[
            (evt.EVT_N_ACTION, self._on_action),
            (evt.EVT_N_EVENT_REPORT, self._on_report),
            (evt.EVT_C_STORE, lambda event: 0x0000),
            (evt.EVT_DIMSE_RECV, self._on_message),
        ])
        return self

    def stop(self):
        self._server.shutdown()

    def _record(self, **record):
        with self._lock:
            self.records.append(record)

    def _on_message(self, event):
        self._record(kind=type(event.message).__name__,
                     calling=event.assoc.requestor.ae_title,
                     command=command(event.message))

    def _on_action(self, event):
        self._record(kind="action", calling=event.assoc.requestor.ae_title,
                     dataset=event.action_information)
        return self.action_status, None

    def _on_report(self, event):
        requestor = event.assoc.requestor
        roles = [(str(item.sop_class_uid), item.scu_role, item.scp_role)
                 for item in requestor.user_information
                 if type(item).__name__ == "SCP_SCU_RoleSelectionNegotiation"]
        self._record(kind="report", calling=requestor.ae_title,
                     event_type=event.request.EventTypeID, dataset=event.event_information,
                     contexts=[(str(cx.abstract_syntax), [str(ts) for ts in cx.transfer_syntax])
                               for cx in requestor.requested_contexts],
                     roles=roles)
        return 0x0000, None

    def wait_for(self, predicate, count=1, timeout=15):
        deadline = time.time() + timeout
        while time.time() < deadline:
            with self._lock:
                found = [r for r in self.records if predicate(r)]
            if len(found) >= count:
                return found
            time.sleep(0.05)
        raise AssertionError("expected %d records, got %d" % (count, len(found)))

    def clear(self):
        with self._lock:
            self.records = []

    # -- the peer as requestor -------------------------------------------------

    def associate(self, port, called, calling=None, scp_role=False):
        ae = AE(calling or self.aet)
        ae.add_requested_context(StorageCommitmentPushModel)
        ae.add_requested_context(Verification)
        kwargs = {"ext_neg": [build_role(StorageCommitmentPushModel, scp_role=True)]} \
            if scp_role else {}
        # Orthanc leaves a malformed request unanswered: do not wait long.
        ae.dimse_timeout = 3
        received = []
        association = ae.associate("127.0.0.1", port, ae_title=called, evt_handlers=[
            (evt.EVT_DIMSE_RECV, lambda event: received.append(event.message))], **kwargs)
        association.received = received
        return association

    def ask(self, port, called, dataset, action_type=1, calling=None,
            instance=SOP_INSTANCE):
        """Send N-ACTION; returns (status or None, response command or None,
        how the association ended: see ``_finish``)."""
        association = self.associate(port, called, calling)
        if not association.is_established:
            return None, None, "not established"
        if not _accepted(association, "scu"):
            association.release()
            return None, None, "context refused"
        status, _ = association.send_n_action(dataset, action_type, StorageCommitmentPushModel,
                                              instance)
        outcome = _finish(association)
        return (status.Status if "Status" in status else None), _response(association), outcome

    def report(self, port, called, dataset, event_type, calling=None):
        association = self.associate(port, called, calling, scp_role=True)
        if not association.is_established:
            return None, None, "not established"
        if not _accepted(association, "scp"):
            association.release()
            return None, None, "context refused"
        status, _ = association.send_n_event_report(dataset, event_type,
                                                    StorageCommitmentPushModel, SOP_INSTANCE)
        outcome = _finish(association)
        return (status.Status if "Status" in status else None), _response(association), outcome


def _accepted(association, role):
    return any(cx.abstract_syntax == wire.SOP_CLASS and getattr(cx, "as_" + role)
               for cx in association.accepted_contexts)


def _response(association):
    return next((command(m) for m in association.received if "RSP" in type(m).__name__), None)


def _finish(association):
    """Release after an answer ("released"); otherwise the server ended the
    association, or left it unanswered past the DIMSE timeout ("ended")."""
    if association.received and association.is_established:
        association.release()
        return "released"
    if association.is_established:
        association.abort()
    return "ended"


@pytest.fixture(scope="module")
def nodes(tmp_path_factory):
    root = tmp_path_factory.mktemp("stgcmt")
    (root / "orthancd").mkdir()
    (root / "oracle").mkdir()
    peer = Peer().start()
    ours = Daemon(root / "orthancd")
    theirs = oracle_support.RealOrthanc(root / "oracle")
    shared = {
        # LocalAet is not used for storage commitment (DicomAet or the called AET is).
        "peer": {"AET": "PEER", "Host": "127.0.0.1", "Port": peer.port, "LocalAet": "UNUSED"},
        "nocommit": {"AET": "NOCOMMIT", "Host": "127.0.0.1", "Port": peer.port,
                     "AllowStorageCommitment": False},
        "down": ["DOWN", "127.0.0.1", free_port()],
    }
    ours.options["DicomModalities"] = dict(
        shared, oracle={"AET": "ORACLE", "Host": "127.0.0.1", "Port": theirs.dicom_port})
    theirs.options["DicomModalities"] = dict(
        shared, oracle={"AET": "ORTHANCD", "Host": "127.0.0.1", "Port": ours.dicom_port})
    for node in (ours, theirs):
        node.options["StorageCommitmentReportsSize"] = REPORTS_SIZE
    ours.start()
    theirs.start()
    try:
        yield ours, theirs, peer
    finally:
        ours.stop()
        theirs.stop()
        peer.stop()


@pytest.fixture(scope="module")
def flair(nodes):
    """The two Flair instances, stored on both servers."""
    ours, theirs, _ = nodes
    uploaded = []
    for path in FLAIR:
        data = read_sample(*path.split("/")[-3:])
        uploaded.append(ours.client().upload(data))
        assert theirs.client().upload(data)["ID"] == uploaded[-1]["ID"]
    return uploaded


def wait_report(client, transaction_uid, timeout=15):
    deadline = time.time() + timeout
    while True:
        answer = client.get("/storage-commitment/" + transaction_uid)
        assert answer.status == 200, answer.body
        if answer.json()["Status"] != "Pending" or time.time() > deadline:
            return answer


# -- orthancd as SCP ------------------------------------------------------------


def test_scp_reports_like_orthanc(nodes, flair):
    """The peer asks both servers about a stored instance, the same one
    under another SOP class, and a missing one: same N-ACTION-RSP, then an
    N-EVENT-REPORT on a new association, as the AET the peer called."""
    ours, theirs, peer = nodes
    asked = [uids_of(FLAIR[0]), (CT, uids_of(FLAIR[1])[1]), ("1.2.3", "1.2.3.4.5.6")]
    reports = {}
    for node, called in ((ours, "ORTHANCD"), (theirs, "ORACLE")):
        peer.clear()
        status, response, _ = peer.ask(node.dicom_port, called,
                                       action_information("1.2.3.%d" % node.dicom_port, asked))
        assert status == 0x0000
        report = peer.wait_for(lambda r: r["kind"] == "report")[0]
        request = peer.wait_for(lambda r: r["kind"] == "N_EVENT_REPORT_RQ")[0]
        reports[called] = (response, report, request)
    (our_response, ours_report, our_request), (their_response, theirs_report, their_request) = \
        reports["ORTHANCD"], reports["ORACLE"]
    assert our_response == their_response
    assert our_request["command"] == their_request["command"]
    assert ours_report["calling"] == "ORTHANCD" and theirs_report["calling"] == "ORACLE"
    assert ours_report["event_type"] == theirs_report["event_type"] == 2
    assert ours_report["contexts"] == theirs_report["contexts"]
    assert ours_report["roles"] == theirs_report["roles"] == [(wire.SOP_CLASS, False, True)]
    expected = [("TransactionUID", None),
                ("FailedSOPSequence", [
                    [("ReferencedSOPClassUID", CT), ("ReferencedSOPInstanceUID", asked[1][1]),
                     ("FailureReason", 0x0119)],
                    [("ReferencedSOPClassUID", "1.2.3"), ("ReferencedSOPInstanceUID", "1.2.3.4.5.6"),
                     ("FailureReason", 0x0112)]]),
                ("ReferencedSOPSequence", [
                    [("ReferencedSOPClassUID", MR), ("ReferencedSOPInstanceUID", asked[0][1])]])]
    for report, port in ((ours_report, ours.dicom_port), (theirs_report, theirs.dicom_port)):
        found = plain(report["dataset"])
        assert found[0] == ("TransactionUID", "1.2.3.%d" % port)
        assert found[1:] == expected[1:]


def test_scp_answers_as_called_aet_and_empty_request(nodes):
    """An empty request is answered with an empty success list, by the AET
    the modality called (not DicomAet), to the modality with that AET."""
    ours, theirs, peer = nodes
    for node in (ours, theirs):
        peer.clear()
        status, _, _ = peer.ask(node.dicom_port, "ANYNAME", action_information("1.2.99", []))
        assert status == 0x0000
        report = peer.wait_for(lambda r: r["kind"] == "report")[0]
        assert report["calling"] == "ANYNAME"
        assert report["event_type"] == 1
        assert plain(report["dataset"]) == [("TransactionUID", "1.2.99"),
                                            ("ReferencedSOPSequence", [])]


@pytest.mark.parametrize("case", ["action type", "sop instance", "no sequence",
                                  "item without uid", "no transaction"])
def test_scp_malformed_requests_end_the_association(nodes, case):
    ours, theirs, peer = nodes
    dataset = action_information("1.2.77", [(CT, "1.2.3")])
    action_type, instance = 1, SOP_INSTANCE
    if case == "action type":
        action_type = 2
    elif case == "sop instance":
        instance = "1.2.3.4"
    elif case == "no sequence":
        del dataset.ReferencedSOPSequence
    elif case == "item without uid":
        del dataset.ReferencedSOPSequence[0].ReferencedSOPInstanceUID
    else:
        del dataset.TransactionUID
    for node, called in ((ours, "ORTHANCD"), (theirs, "ORACLE")):
        peer.clear()
        status, response, outcome = peer.ask(node.dicom_port, called, dataset, action_type,
                                             instance=instance)
        assert (status, response, outcome) == (None, None, "ended"), called
    time.sleep(0.5)
    assert not [r for r in peer.records if r["kind"] == "report"]


def test_scp_refuses_modalities_not_allowed(nodes):
    """No commitment for an unknown AET nor for AllowStorageCommitment false.
    (Orthanc accepts the presentation context then ends the association on
    the request; orthancd, like for the other services, refuses the context.)"""
    ours, theirs, peer = nodes
    for node, called in ((ours, "ORTHANCD"), (theirs, "ORACLE")):
        for calling in ("STRANGER", "NOCOMMIT"):
            peer.clear()
            status, response, _ = peer.ask(node.dicom_port, called,
                                           action_information("1.2.55", []), calling=calling)
            assert status is None and response is None, (called, calling)
    time.sleep(0.5)
    assert not [r for r in peer.records if r["kind"] == "report"]


def test_scp_report_to_unreachable_modality(nodes):
    """The request is acknowledged even if the report cannot be delivered."""
    ours, theirs, peer = nodes
    for node, called in ((ours, "ORTHANCD"), (theirs, "ORACLE")):
        status, _, outcome = peer.ask(node.dicom_port, called, action_information("1.2.56", []),
                                      calling="DOWN")
        assert (status, outcome) == (0x0000, "released")


# -- reports received (orthancd as SCU's listener) -------------------------------


def test_reports_render_like_orthanc(nodes):
    """N-EVENT-REPORTs sent by the peer become the same /storage-commitment
    JSON on both servers, byte for byte, whether asked for or not."""
    ours, theirs, peer = nodes
    cases = [
        (2, event_information("2.25.11", [(CT, "1.2.1")],
                              [(CT, "1.2.%d" % n) for n in range(8)],
                              [0x0112, 0x0119, 0x0110, 0x0213, 0x0122, 0x0131, 0x9999, 0])),
        (1, event_information("2.25.12", [(CT, "1.2.1"), (MR, "1.2.2")])),
        # Event 1: the failed list is not read at all.
        (1, event_information("2.25.13", [], [(CT, "1.2.3")], [0x0112])),
    ]
    no_successes = event_information("2.25.14", [], [(CT, "1.2.3")], [0x0112])
    del no_successes.ReferencedSOPSequence
    cases.append((2, no_successes))
    for event_type, dataset in cases:
        answers = []
        for node, called in ((ours, "ORTHANCD"), (theirs, "ORACLE")):
            status, response, _ = peer.report(node.dicom_port, called, dataset, event_type)
            assert status == 0x0000
            answer = node.client().get("/storage-commitment/" + dataset.TransactionUID)
            answers.append((response, answer.status, answer.headers["Content-Type"], answer.body))
        assert answers[0] == answers[1]


@pytest.mark.parametrize("case", ["event type", "failures without reason",
                                  "event 2 without failures", "event 1 without successes",
                                  "unknown AET"])
def test_malformed_reports_are_dropped(nodes, case):
    ours, theirs, peer = nodes
    uid = "2.25.2%d" % abs(hash(case) % 1000)
    dataset, event_type, calling = event_information(uid, [(CT, "1.2")]), 1, None
    if case == "event type":
        event_type = 3
    elif case == "failures without reason":
        dataset, event_type = event_information(uid, [], [(CT, "1.2")], [0x0112]), 2
        del dataset.FailedSOPSequence[0].FailureReason
    elif case == "event 2 without failures":
        event_type = 2
    elif case == "event 1 without successes":
        del dataset.ReferencedSOPSequence
    else:
        calling = "STRANGER"
    for node, called in ((ours, "ORTHANCD"), (theirs, "ORACLE")):
        status, response, _ = peer.report(node.dicom_port, called, dataset, event_type, calling)
        assert status is None and response is None, called
        answer = node.client().get("/storage-commitment/" + uid)
        assert answer.status == 404


# -- orthancd as SCU --------------------------------------------------------------


def test_scu_request_like_orthanc(nodes, flair):
    """Both servers ask the peer about the same instances: same association
    proposal, same N-ACTION command and data set, same calling AET rules
    (DicomAet, whatever the modality's LocalAet)."""
    ours, theirs, peer = nodes
    body = {"Resources": [flair[0]["ParentSeries"]],
            "DicomInstances": [["1.2.3", "4.5.6"],
                               {"SOPClassUID": CT, "SOPInstanceUID": "7.8.9"}]}
    seen = []
    for node in (ours, theirs):
        peer.clear()
        answer = node.client().post("/modalities/peer/storage-commitment", body)
        assert answer.status == 200, answer.body
        transaction_uid = answer.json()["ID"]
        assert answer.json() == {"ID": transaction_uid,
                                 "Path": "/storage-commitment/" + transaction_uid}
        assert transaction_uid.startswith("2.25.")
        action = peer.wait_for(lambda r: r["kind"] == "action")[0]
        request = peer.wait_for(lambda r: r["kind"] == "N_ACTION_RQ")[0]
        found = plain(action["dataset"])
        assert found[0] == ("TransactionUID", transaction_uid)
        pending = node.client().get("/storage-commitment/" + transaction_uid)
        seen.append((action["calling"], request["command"], found[1:], pending.body))
    ours_seen, theirs_seen = seen
    assert ours_seen[0] == "ORTHANCD" and theirs_seen[0] == "ORACLE"
    assert ours_seen[1] == theirs_seen[1]
    # The series' instances may come in another order.
    ours_items, theirs_items = ours_seen[2][0][1], theirs_seen[2][0][1]
    assert sorted(map(str, ours_items[:2])) == sorted(map(str, theirs_items[:2]))
    assert ours_items[2:] == theirs_items[2:]
    assert len(ours_items) == 4
    assert ours_seen[3] == theirs_seen[3]  # still Pending: the peer never reports


def test_orthancd_and_orthanc_commit_for_each_other(nodes, flair):
    """orthancd asks Orthanc and Orthanc asks orthancd about the same
    instances; each report comes back on the asker's listener, the same."""
    ours, theirs, _ = nodes
    body = {"Resources": [flair[0]["ID"]],
            "DicomInstances": [list(uids_of(FLAIR[1])),
                               [CT, uids_of(FLAIR[1])[1]], [CT, "1.2.3.4"]]}
    reports = []
    for node in (ours, theirs):
        answer = node.client().post("/modalities/oracle/storage-commitment", body)
        assert answer.status == 200, answer.body
        report = wait_report(node.client(), answer.json()["ID"]).json()
        reports.append(report)
    assert reports[0]["RemoteAET"] == "ORACLE" and reports[1]["RemoteAET"] == "ORTHANCD"
    assert reports[0]["Status"] == "Failure"
    for report in reports:
        del report["RemoteAET"]
    assert reports[0] == reports[1]
    assert [f["FailureReason"] for f in reports[0]["Failures"]] == [0x0119, 0x0112]


def test_store_then_commit_and_remove(nodes, flair, tmp_path):
    """"StorageCommitment": true chains C-STORE and the request (to Orthanc,
    which then holds the instance); /remove deletes what it committed."""
    ours, theirs, _ = nodes
    rest = ours.client()
    extra = rest.upload(read_sample("Beaufix", "IM-0001-0001.dcm"))
    answer = rest.post("/modalities/oracle/store",
                       {"Resources": [extra["ID"]], "StorageCommitment": True})
    assert answer.status == 200, answer.body
    stored = answer.json()
    transaction_uid = stored["StorageCommitmentTransactionUID"]
    assert stored["InstancesCount"] == 1 and transaction_uid.startswith("2.25.")
    report = wait_report(rest, transaction_uid)
    assert report.json()["Status"] == "Success", report.body
    assert report.json()["Success"] == [dict(zip(("SOPClassUID", "SOPInstanceUID"),
                                                 uids_of(sample("Beaufix", "IM-0001-0001.dcm"))))]
    removed = rest.post("/storage-commitment/%s/remove" % transaction_uid)
    assert (removed.status, removed.headers["Content-Type"], removed.body) == \
        (200, "application/json", b"{}")
    assert rest.get("/instances/" + extra["ID"]).status == 404
    assert rest.get("/instances/" + flair[0]["ID"]).status == 200
    # The other way round: what Orthanc stores into orthancd is committed.
    other = theirs.client()
    sent = other.upload(read_sample("Beaufix", "IM-0001-0002.dcm"))
    answer = other.post("/modalities/oracle/store",
                        {"Resources": [sent["ID"]], "StorageCommitment": True})
    assert answer.status == 200, answer.body
    report = wait_report(other, answer.json()["StorageCommitmentTransactionUID"]).json()
    assert (report["RemoteAET"], report["Status"]) == ("ORTHANCD", "Success")
    assert rest.get("/instances/" + sent["ID"]).status == 200


def test_rest_errors_like_orthanc(nodes, flair):
    ours, theirs, _ = nodes
    requests = [
        ("POST", "/modalities/peer/storage-commitment", b"not json"),
        ("POST", "/modalities/peer/storage-commitment", [1]),
        ("POST", "/modalities/peer/storage-commitment", {}),
        ("POST", "/modalities/peer/storage-commitment", {"Resources": "x"}),
        ("POST", "/modalities/peer/storage-commitment", {"Resources": [1]}),
        ("POST", "/modalities/peer/storage-commitment", {"Resources": [{"a": [1]}]}),
        ("POST", "/modalities/peer/storage-commitment", {"Resources": ["nope"]}),
        ("POST", "/modalities/peer/storage-commitment", {"Resources": [""]}),
        ("POST", "/modalities/peer/storage-commitment", {"Resources": "x", "DicomInstances": 1}),
        ("POST", "/modalities/peer/storage-commitment", {"Resources": ["nope"],
                                                         "DicomInstances": 1}),
        ("POST", "/modalities/peer/storage-commitment", {"DicomInstances": "x"}),
        ("POST", "/modalities/peer/storage-commitment", {"DicomInstances": [1]}),
        ("POST", "/modalities/peer/storage-commitment", {"DicomInstances": ["x"]}),
        ("POST", "/modalities/peer/storage-commitment", {"DicomInstances": [["a"]]}),
        ("POST", "/modalities/peer/storage-commitment", {"DicomInstances": [["a", 1]]}),
        ("POST", "/modalities/peer/storage-commitment", {"DicomInstances": [{"SOPClassUID": "a"}]}),
        ("POST", "/modalities/peer/storage-commitment", {"DicomInstances": [["", "x"]]}),
        ("POST", "/modalities/peer/storage-commitment", {"DicomInstances": [], "Timeout": "x"}),
        ("POST", "/modalities/peer/storage-commitment", {"DicomInstances": [], "Timeout": 1.5}),
        ("POST", "/modalities/peer/storage-commitment", {"DicomInstances": [], "Timeout": True}),
        ("POST", "/modalities/peer/storage-commitment", {"DicomInstances": [], "Timeout": -1}),
        ("POST", "/modalities/nowhere/storage-commitment", b"not json"),
        ("POST", "/modalities/nowhere/storage-commitment", {"DicomInstances": []}),
        ("GET", "/modalities/peer/storage-commitment", None),
        ("POST", "/modalities/peer/store", {"Resources": [flair[0]["ID"]],
                                            "StorageCommitment": "yes"}),
        ("GET", "/storage-commitment/2.25.404", None),
        ("POST", "/storage-commitment/2.25.404/remove", b""),
        ("GET", "/storage-commitment/2.25.404/remove", None),
        ("POST", "/storage-commitment/2.25.404", b""),
        ("DELETE", "/storage-commitment/2.25.404", None),
    ]
    for method, path, body in requests:
        answers = []
        for node in (ours, theirs):
            answer = node.client().request(method, path, body)
            # The Content-Type of error bodies (text/plain in 1.13.0) is
            # rendered for all routes in one place (rest/app.py): not
            # compared here.
            content_type = answer.headers.get("Content-Type") if answer.status < 400 else None
            answers.append((answer.status, content_type, answer.headers.get("Allow"),
                            answer.body))
        assert answers[0] == answers[1], (method, path, body)


def test_remove_refused_unless_success(nodes):
    ours, theirs, peer = nodes
    for node, called in ((ours, "ORTHANCD"), (theirs, "ORACLE")):
        dataset = event_information("2.25.31", [], [(CT, "1.2")], [0x0112])
        assert peer.report(node.dicom_port, called, dataset, 2)[0] == 0x0000
    pending = []
    for node in (ours, theirs):
        transaction_uid = node.client().post("/modalities/peer/storage-commitment",
                                             {"DicomInstances": []}).json()["ID"]
        pending.append(transaction_uid)
    answers = []
    for node, transaction_uid in zip((ours, theirs), pending):
        failed = node.client().post("/storage-commitment/2.25.31/remove")
        still = node.client().post("/storage-commitment/%s/remove" % transaction_uid)
        answers.append((failed.status, failed.body,
                        still.status, still.body.replace(transaction_uid.encode(), b"UID")))
    assert answers[0] == answers[1]
    assert answers[0][0] == 500


def test_scu_errors_like_orthanc(nodes):
    """The peer refuses the request, or never answers it in time."""
    ours, theirs, peer = nodes
    body = {"DicomInstances": [["1.2", "3.4"]], "Timeout": 1}
    try:
        peer.action_status = 0x0110
        answers = [node.client().post("/modalities/peer/storage-commitment", body)
                   for node in (ours, theirs)]
    finally:
        peer.action_status = 0x0000
    assert answers[0].status == answers[1].status == 500
    assert answers[0].body == answers[1].body


def test_reports_kept_are_the_most_recently_used(nodes):
    ours, theirs, _ = nodes
    outcomes = []
    for node in (ours, theirs):
        rest = node.client()
        created = [rest.post("/modalities/peer/storage-commitment",
                             {"DicomInstances": []}).json()["ID"] for _ in range(REPORTS_SIZE)]
        assert rest.get("/storage-commitment/" + created[0]).status == 200
        created.append(rest.post("/modalities/peer/storage-commitment",
                                 {"DicomInstances": []}).json()["ID"])
        outcomes.append([rest.get("/storage-commitment/" + uid).status for uid in created])
    assert outcomes[0] == outcomes[1] == [200, 404, 200, 200, 200]


# -- units -------------------------------------------------------------------------


@pytest.mark.parametrize("transfer_syntax", wire.TRANSFER_SYNTAXES)
def test_data_sets_round_trip(transfer_syntax):
    successes = [wire.Reference(CT, "1.2.3"), wire.Reference(MR, "1.2.34")]
    failures = [wire.Failure(CT, "9.8", 0x0112)]
    request = wire.encode_request("2.25.5", successes, transfer_syntax)
    assert wire.decode_request(request, transfer_syntax) == ("2.25.5", successes)
    report = wire.encode_report("2.25.5", successes, failures, transfer_syntax)
    assert wire.decode_report(report, transfer_syntax, 2) == ("2.25.5", successes, failures)
    assert wire.decode_report(report, transfer_syntax, 1) == ("2.25.5", successes, [])
    assert [e.keyword for e in decode_in(report, transfer_syntax)] == [
        "TransactionUID", "FailedSOPSequence", "ReferencedSOPSequence"]
    assert "FailedSOPSequence" not in decode_in(
        wire.encode_report("2.25.5", successes, [], transfer_syntax), transfer_syntax)


@pytest.mark.filterwarnings("ignore:End of file reached before delimiter")
def test_big_endian_and_garbage_data_sets():
    dataset = action_information("1.2.3", [(CT, "4.5")])
    data = encode_in(dataset, EXPLICIT_BIG)
    assert wire.decode_request(data, EXPLICIT_BIG) == ("1.2.3", [wire.Reference(CT, "4.5")])
    for garbage in (b"\x08\x00\x95\x11\xff\xff\xff\xff", b"", b"\x01"):
        with pytest.raises(wire.MalformedMessage):
            wire.decode_request(garbage, IMPLICIT_LITTLE)


def test_report_registry_is_lru():
    registry = ReportRegistry(2)
    registry.store("a", Report("X"))
    registry.store("b", Report("X"))
    registry.get("a")
    registry.store("c", Report("X"))
    assert registry.get("a") and registry.get("c")
    with pytest.raises(OrthancError) as error:
        registry.get("b")
    assert error.value.http_status == 404
    registry.store("a", Report("Y", [], []))  # replacing does not evict
    assert len(registry) == 2 and registry.get("a").status == "Success"
    unlimited = ReportRegistry(0)
    for n in range(500):
        unlimited.store(str(n), Report("X"))
    assert len(unlimited) == 500


def test_report_json():
    pending = Report("PACS")
    assert pending.to_json() == {"RemoteAET": "PACS", "Status": "Pending"}
    failed = Report("PACS", [wire.Reference(CT, "1")], [wire.Failure(CT, "2", 0x4242)])
    assert failed.to_json()["Status"] == "Failure"
    assert failed.to_json()["Failures"][0]["Description"] == "Unknown failure reason"
    assert describe_failure(0x0112).startswith("One or more of the elements")


def test_permissions_of_storage_commitment():
    from orthancd.net import access
    from orthancd.net.settings import ServerSettings
    raw = {"DicomModalities": {
        "both": {"AET": "BOTH", "Host": "h", "Port": 1, "AllowStorageCommitment": False,
                 "AllowNAction": True},
        "report": {"AET": "REPORT", "Host": "h", "Port": 1, "AllowEventReport": False},
        "short": ["SHORT", "h", 1]}}
    policy = access.AccessPolicy(ServerSettings.from_config(raw))
    allowed = {aet: {kind for kind in (access.N_ACTION, access.N_EVENT_REPORT)
                     if policy.is_allowed_request(aet, "h", kind)}
               for aet in ("BOTH", "REPORT", "SHORT", "STRANGER")}
    assert allowed == {"BOTH": set(), "REPORT": {access.N_ACTION},
                       "SHORT": {access.N_ACTION, access.N_EVENT_REPORT}, "STRANGER": set()}
