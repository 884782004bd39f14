"""/tools/count-resources from the index, orthancd against the real
Orthanc 1.13.0.

Orthanc counts in its database alone: identifier tags (PatientName,
StudyDate...) by their normalized values (upper-cased, '_' and '%' as
spaces, accents dropped, trimmed), other main tags by their values.  A
count constraining one identifier tag reads the identifiers entries alone;
a count on another tag reads no resource either while the index holds that
tag's values exactly as they are (upper-cased), and checks each candidate
once one value is not.  The same crafted studies go to both servers, the
same counts and finds too: before the values that make the index inexact
arrive, with them, and after they are deleted again.

Deletes: the files removed after a delete are forgotten by the next
delete's own index operation, or by a delayed one.
"""
import dataclasses
import io
import json
import time

import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian

from orthancd.ids import ResourceLevel
from orthancd.index.base import MetadataType
from orthancd.index.lmdb_index import LmdbResourceIndex
from tests.support import oracle
from tests.support.daemon import Daemon
from tests.test_index_lmdb import ImmediateReactor, Summary, stored, wait

UID_ROOT = "1.2.826.0.1.3680043.8.498.10"
# (PatientName, StudyDate, Modality): values the index holds exactly.
PLAIN = [("COUNT^ALPHA", "20100101", "CT"), ("COUNT^ALPHA", "20110202", "MR"),
         ("COUNT^BETA", "20120303", "CT"), ("COUNT^GAMMA", "20130404", "CT"),
         ("OTHER^DELTA", "20140505", "MR"), ("COUNT^BETA", "20150606", "US")]
# Values whose indexed form differs from the upper-cased value.
INEXACT = [("count^alpha", "20100101", "ct"), ("COUNT_ALPHA", "20110202", "CT"),
           ("COUNT^ÉPSILON", "20120303", "MR"), (" COUNT^ALPHA", "20130404", "CT"),
           ("COUNT%BETA", "20160707", "MR"), ("COUNT^" + "L" * 420, "20170808", "Ct"),
           ("COUNT^ZETA", "20180909", "C_T")]

COUNTS = [
    {"Level": "Study", "Query": {"PatientName": "COUNT*"}},
    {"Level": "Study", "Query": {"PatientName": "count*"}},
    {"Level": "Study", "Query": {"PatientName": "COUNT^ALPHA"}},
    {"Level": "Study", "Query": {"PatientName": "count^alpha"}},
    {"Level": "Study", "Query": {"PatientName": "COUNT ALPHA"}},
    {"Level": "Study", "Query": {"PatientName": "COUNT^ALPHA\\COUNT^BETA"}},
    {"Level": "Study", "Query": {"PatientName": "COUNT^?ETA"}},
    {"Level": "Study", "Query": {"PatientName": "*ALPHA"}},
    {"Level": "Study", "Query": {"PatientName": "COUNT^B*"}},
    {"Level": "Study", "Query": {"PatientName": "COUNT^" + "L" * 420}},
    {"Level": "Study", "Query": {"PatientName": "COUNT^" + "L" * 400 + "*"}},
    {"Level": "Study", "Query": {"StudyDate": "20110101-20130101"}},
    {"Level": "Study", "Query": {"StudyDate": "-20120303"}},
    {"Level": "Study", "Query": {"StudyDate": "20120303-"}},
    {"Level": "Study", "Query": {"StudyDate": "20120303"}},
    {"Level": "Study", "Query": {"PatientName": "COUNT*", "StudyDate": "20110101-"}},
    {"Level": "Series", "Query": {"PatientName": "COUNT*"}},
    {"Level": "Series", "Query": {"Modality": "CT"}},
    {"Level": "Series", "Query": {"Modality": "ct"}},
    {"Level": "Series", "Query": {"Modality": "C*"}},
    {"Level": "Series", "Query": {"Modality": "*T"}},
    {"Level": "Series", "Query": {"Modality": "C?T"}},
    {"Level": "Series", "Query": {"Modality": "CT\\MR"}},
    {"Level": "Instance", "Query": {"Modality": "MR"}},
    {"Level": "Instance", "Query": {"StudyDate": "20100101-20121231"}},
    {"Level": "Patient", "Query": {"PatientName": "COUNT^A*"}},
]


def _instance(n, name, date, modality):
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    meta.MediaStorageSOPInstanceUID = "%s.3.%d" % (UID_ROOT, n)
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.PatientID = "COUNT%d" % n
    ds.PatientName = name
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.StudyInstanceUID = "%s.1.%d" % (UID_ROOT, n)
    ds.SeriesInstanceUID = "%s.2.%d" % (UID_ROOT, n)
    ds.StudyDate, ds.Modality = date, modality
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    pair = (Daemon(tmp_path_factory.mktemp("orthancd")),
            oracle.RealOrthanc(tmp_path_factory.mktemp("oracle")))
    with oracle.running(pair):
        yield tuple(server.client() for server in pair)


def _post(client, path, body):
    answer = client.post(path, json.dumps(body).encode())
    return answer.status, answer.json()


def _store(clients, offset, rows):
    ids = []
    for n, row in enumerate(rows, offset):
        data = _instance(n, *row)
        for client in clients:
            answer = client.post("/instances", data)
            assert answer.status == 200
        ids.append(answer.json()["ID"])
    return ids


def _same_counts(clients):
    ours, theirs = clients
    for body in COUNTS:
        counted = _post(ours, "/tools/count-resources", body)
        assert counted == _post(theirs, "/tools/count-resources", body), body
        assert _post(ours, "/tools/find", body) == _post(theirs, "/tools/find", body), body


def test_counts_like_orthanc_while_the_index_is_exact_then_not(servers):
    _store(servers, 0, PLAIN)
    _same_counts(servers)
    inexact = _store(servers, 100, INEXACT)
    _same_counts(servers)
    for public_id in inexact:
        for client in servers:
            assert client.delete("/instances/%s" % public_id).status == 200
    _same_counts(servers)


@dataclasses.dataclass
class NamedSummary(Summary):
    patient_name: str = "DOE^JOHN"

    @property
    def main_tags(self):
        tags = super().main_tags
        tags[ResourceLevel.PATIENT]["PatientName"] = self.patient_name
        tags[ResourceLevel.STUDY]["StudyDate"] = "20200101"
        return tags


def test_the_index_knows_which_tags_it_holds_exactly(tmp_path):
    tags = {ResourceLevel.PATIENT: [(0x00100010, "PatientName")],
            ResourceLevel.STUDY: [(0x00080020, "StudyDate")]}
    index = LmdbResourceIndex(str(tmp_path / "index"), ImmediateReactor(), identifier_tags=tags)
    index.set_normalizer(lambda value: value.upper().strip())
    index.open()
    index.writer.startService()

    def store(n, name):
        summary = NamedSummary("P%d" % n, "S%d" % n, "SE%d" % n, "I%d" % n, patient_name=name)
        return wait(index.store_instance(summary, stored("f%d" % n),
                                         {ResourceLevel.INSTANCE: {MetadataType.Origin: "Test"}},
                                         False, None))

    def exact(level, tag):
        return index.indexes_exactly(level, tag)

    try:
        store(1, "PLAIN^NAME")
        assert exact(ResourceLevel.PATIENT, 0x00100010)
        # Patient tags are indexed with the studies too.
        assert exact(ResourceLevel.STUDY, 0x00100010)
        outcome = store(2, " spaced^name")
        assert not exact(ResourceLevel.PATIENT, 0x00100010)
        assert not exact(ResourceLevel.STUDY, 0x00100010)
        assert exact(ResourceLevel.STUDY, 0x00080020)
        wait(index.delete_resource(outcome.ids[ResourceLevel.PATIENT], ResourceLevel.PATIENT))
        assert exact(ResourceLevel.PATIENT, 0x00100010)
        store(3, "x" * 500)  # longer than the index keeps
        assert not exact(ResourceLevel.PATIENT, 0x00100010)
    finally:
        wait(index.writer.stopService())
        index.close()
    # An index written before the counters existed gets them counted once.
    again = LmdbResourceIndex(str(tmp_path / "index"), ImmediateReactor(), identifier_tags=tags)
    again.set_normalizer(lambda value: value.upper().strip())
    again.open()
    with again.env.begin(write=True) as txn:
        meta = again.db["meta"]
        for key, _ in list(txn.cursor(db=meta)):
            if key.startswith(b"count:inexact:") or key == b"inexact-counted":
                txn.delete(key, db=meta)
    assert not again.indexes_exactly(ResourceLevel.PATIENT, 0x00100010)
    again.close()
    again.open()
    try:
        assert not again.indexes_exactly(ResourceLevel.PATIENT, 0x00100010)
        assert again.indexes_exactly(ResourceLevel.STUDY, 0x00080020)
    finally:
        again.close()


class _ManualReactor(ImmediateReactor):
    """Delayed calls run when the test says so."""

    def __init__(self):
        self.delayed = []

    def callLater(self, delay, f, *args):
        call = _ManualCall(f, args)
        self.delayed.append(call)
        return call


class _ManualCall:
    def __init__(self, f, args):
        self.f, self.args, self.cancelled, self.called = f, args, False, False

    def active(self):
        return not (self.cancelled or self.called)

    def cancel(self):
        self.cancelled = True

    def run(self):
        if self.active():
            self.called = True
            self.f(*self.args)


def test_removed_files_are_forgotten_by_the_next_delete(tmp_path):
    """A delete forgets, in its own index operation, the files removed after
    the previous ones; without a next delete, a delayed operation does."""
    reactor = _ManualReactor()
    index = LmdbResourceIndex(str(tmp_path / "index"), reactor)
    index.open()
    index.writer.startService()
    try:
        outcomes = [wait(index.store_instance(Summary("P", "S", "SE", "I%d" % n),
                                              stored("file%d" % n), {}, False, None))
                    for n in range(3)]
        first = wait(index.delete_resource(outcomes[0].ids[ResourceLevel.INSTANCE],
                                           ResourceLevel.INSTANCE))
        assert [f.uuid for f in first.obsolete_files] == ["file0"]
        assert index.released_files() == ["file0"]
        wait(index.forget_released(["file0"]))  # file0 is gone from the storage area
        assert index.released_files() == ["file0"]  # not forgotten yet
        operations = index.writer.committed_operations
        wait(index.delete_resource(outcomes[1].ids[ResourceLevel.INSTANCE],
                                   ResourceLevel.INSTANCE))
        assert index.released_files() == ["file1"]  # file0 forgotten with the delete
        assert index.writer.committed_operations == operations + 1
        wait(index.forget_released(["file1"]))
        assert index.released_files() == ["file1"]
        for call in reactor.delayed:  # no other delete came: the delayed call forgets
            call.run()
        deadline = time.time() + 10
        while index.released_files() and time.time() < deadline:
            time.sleep(0.01)
        assert index.released_files() == []
    finally:
        wait(index.writer.stopService())
        index.close()
