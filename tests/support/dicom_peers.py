"""In-process DICOM peers for parity tests (pynetdicom, in its own threads).

``StorageScp`` accepts every storage class and answers each C-STORE with the
status it is given, recording what it received and which AETs associated;
``find_raw`` and the other requestor helpers return what a server answered
as raw bytes, so that two servers can be compared byte for byte.
"""
from io import BytesIO

import pynetdicom.association as _association
from pydicom.filereader import read_dataset
from pynetdicom import AE, AllStoragePresentationContexts, build_role, evt
from pynetdicom.sop_class import Verification

from tests.support.daemon import free_port

UNCOMPRESSED = ["1.2.840.10008.1.2.1", "1.2.840.10008.1.2"]
COMPRESSED = ["1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.57", "1.2.840.10008.1.2.4.70",
              "1.2.840.10008.1.2.4.80", "1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.4.91",
              "1.2.840.10008.1.2.5"]


class StorageScp:
    """A storage SCP answering ``status`` (or ``status(n)`` for the n-th
    instance) to every C-STORE."""

    def __init__(self, aet, status=0x0000):
        self.aet = aet
        self.port = free_port()
        self.status = status
        self.received = []
        self.associations = []   # (calling AET, called AET)
        ae = AE(ae_title=aet)
        ae.require_called_aet = False
        for context in AllStoragePresentationContexts:
            ae.add_supported_context(context.abstract_syntax, UNCOMPRESSED + COMPRESSED)
        ae.add_supported_context(Verification)
        self._server = ae.start_server(
            ("127.0.0.1", self.port), block=False,
            evt_handlers=[(evt.EVT_C_STORE, self._store), (evt.EVT_REQUESTED, self._requested)])

    def _requested(self, event):
        primitive = event.assoc.requestor.primitive
        self.associations.append((str(primitive.calling_ae_title).strip(),
                                  str(primitive.called_ae_title).strip()))

    def _store(self, event):
        self.received.append(str(event.request.AffectedSOPInstanceUID))
        status = self.status
        return status(len(self.received)) if callable(status) else status

    def clear(self):
        self.received.clear()
        self.associations.clear()

    def stop(self):
        self._server.shutdown()


# pynetdicom decodes the identifiers it receives; the raw bytes are kept
# aside here so that answers are compared as they were sent.
_RAW = []
_decode = _association.decode


def _keep_raw(data, *args, **kwargs):
    raw = data.getvalue() if hasattr(data, "getvalue") else bytes(data)
    _RAW.append((raw, args))
    return _decode(BytesIO(raw), *args, **kwargs)


_association.decode = _keep_raw


def raw_elements(dataset):
    """[(tag, VR, raw value or nested items)] of a dataset read from bytes."""
    out = []
    for tag in sorted(dataset.keys()):
        element = dataset.get_item(tag)
        if getattr(element, "VR", None) == "SQ" or not isinstance(getattr(element, "value", b""),
                                                                 (bytes, type(None))):
            element = dataset[tag]
            if element.VR == "SQ":
                out.append((str(tag), "SQ", [raw_elements(item) for item in element.value]))
                continue
        out.append((str(tag), str(element.VR), element.value))
    return out


def _status(status):
    if status is None or "Status" not in status:
        return "none"
    return "0x%04x" % status.Status


def associate(port, called, contexts, calling="FINDSCU", roles=(), handlers=(),
              dimse_timeout=30):
    ae = AE(ae_title=calling)
    ae.dimse_timeout = dimse_timeout
    for context in contexts:
        if isinstance(context, tuple):
            ae.add_requested_context(*context)
        else:
            ae.add_requested_context(context)
    return ae.associate("127.0.0.1", port, ae_title=called,
                        ext_neg=[build_role(uid, scp_role=True) for uid in roles],
                        evt_handlers=list(handlers))


def find_raw(port, called, query, model, ignored=(0x00080054,), calling="FINDSCU"):
    """(final status, sorted raw answers) of a C-FIND, or the association
    outcome when there is no final answer."""
    # A server that never answers (as both do to some queries) is waited
    # for 10 s, not pynetdicom's 30.
    association = associate(port, called, [model], calling=calling, dimse_timeout=10)
    if not association.is_established:
        return "not established", []
    answers, final = [], None
    for status, _ in association.send_c_find(query, model):
        final = _status(status)
        if final in ("0xff00", "0xff01"):
            raw, args = _RAW[-1]
            dataset = read_dataset(BytesIO(raw), args[0], args[1])
            answers.append([e for e in raw_elements(dataset) if int(e[0][1:5] + e[0][6:10], 16)
                            not in ignored])
        elif final == "none":
            break
    if association.is_established:
        association.release()
    return final, sorted(answers, key=repr)


def retrieve_statuses(responses):
    """[(status, remaining, completed, failed, warning)] of C-MOVE/C-GET responses."""
    out = []
    for status, _ in responses:
        if status is None or "Status" not in status:
            out.append("none")
            break
        out.append((_status(status),) + tuple(status.get(key) for key in (
            "NumberOfRemainingSuboperations", "NumberOfCompletedSuboperations",
            "NumberOfFailedSuboperations", "NumberOfWarningSuboperations")))
    return out
