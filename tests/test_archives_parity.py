"""ZIP archives and DICOMDIR media as Orthanc 1.13.0 makes them.

orthancd and the real Orthanc 1.13.0 get the same instances (real samples
and crafted ones: UTF-8 and Latin-1 names, characters that file systems
refuse, duplicated folder names, series without instance numbers, shared
instance numbers, missing tags, a 20 MB instance); every archive request
goes to both, and what is deterministic must agree: status, headers, error
bodies, the names in the ZIP (and their UTF-8 flag and sizes), the DICOMDIR
records, the job's JSON.  The archives of orthancd are also unzipped and
checked: bytes identical to the stored files, DICOMDIR readable by pydicom's
FileSet and DCMTK, valid for dicom3tools' dciodvfy and dcentvfy.
"""
import http.client
import io
import json
import os
import random
import re
import socket
import subprocess
import time
import warnings
import zipfile

import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.fileset import FileSet
from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage

from tests.support import oracle
from tests.support.daemon import Daemon, read_sample

ROOT_UID = "1.2.826.0.1.3680043.10.4242."
OPTIONS = {"MediaArchiveSize": 2, "StableAge": 3600}


class Answer:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers
        self.body = body

    def json(self):
        return json.loads(self.body)

    @property
    def zip(self):
        return zipfile.ZipFile(io.BytesIO(self.body))

    def __repr__(self):
        return "<%d %s %r>" % (self.status, self.headers.get("content-type"), self.body[:300])


def send(server, method, path, body=None):
    if isinstance(body, (dict, list)):
        body = json.dumps(body).encode()
    elif isinstance(body, str):
        body = body.encode()
    connection = http.client.HTTPConnection("127.0.0.1", server.http_port, timeout=120)
    try:
        connection.request(method, path, body=body)
        response = connection.getresponse()
        return Answer(response.status, {k.lower(): v for k, v in response.getheaders()},
                      response.read())
    finally:
        connection.close()


def crafted(sop, series, study, patient_id, patient_name, charset="ISO_IR 192", pixels=16,
            **tags):
    """A small secondary capture written by pydicom."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = ROOT_UID + sop
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    if charset:
        ds.SpecificCharacterSet = charset
    ds.SOPClassUID = SecondaryCaptureImageStorage
    ds.SOPInstanceUID = ROOT_UID + sop
    ds.PatientID = patient_id
    ds.PatientName = patient_name
    ds.StudyInstanceUID = ROOT_UID + study
    ds.SeriesInstanceUID = ROOT_UID + series
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")   # values pydicom finds dubious ('mr'), on purpose
        for name, value in tags.items():
            setattr(ds, name, value)
    ds.Columns = min(pixels, 4096)
    ds.Rows = pixels // ds.Columns
    ds.BitsAllocated = ds.BitsStored = 8
    ds.HighBit = 7
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.PixelRepresentation = 0
    ds.PixelData = random.Random(sop).randbytes(pixels)
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def crafted_instances():
    files = [
        # Names with UTF-8, slashes, colons, '?', '*', a backslash, runs of spaces.
        crafted("1.1.1", "1.1", "1", "PÄT/1", "Müller^Jürgen",
                StudyDescription="Étude: crâne/cou?*", AccessionNumber="ACC\\X", Modality="OT",
                SeriesNumber="3", SeriesDescription="desc  with   spaces", InstanceNumber="7"),
        # Three series with the same name in one study.
        crafted("2.1.1", "2.1", "2", "DUP", "DUP", StudyDescription="S", Modality="CT",
                SeriesNumber="1", SeriesDescription="same"),
        crafted("2.2.1", "2.2", "2", "DUP", "DUP", StudyDescription="S", Modality="CT",
                SeriesNumber="1", SeriesDescription="same"),
        crafted("2.3.1", "2.3", "2", "DUP", "DUP", StudyDescription="S", Modality="CT",
                SeriesNumber="1", SeriesDescription="same"),
        # Long values, a lower-case modality, an instance number past 2^32.
        crafted("5.1.1", "5.1", "5", "LONG", "L" * 64, StudyDescription="D" * 64,
                AccessionNumber="A" * 16, Modality="mr", SeriesNumber="12345678",
                SeriesDescription="S" * 64, InstanceNumber="123456789012"),
        # Latin-1, empty series number and description.
        crafted("6.1.1", "6.1", "6", "LAT", "Fran\xe7ois", charset="ISO_IR 100",
                StudyDescription="\xe9t\xe9", Modality="CT", SeriesNumber="",
                SeriesDescription=""),
        # No character set, no tags but the identifiers.
        crafted("7.1.1", "7.1", "7", "", "", charset=None),
    ]
    # 20 instances without InstanceNumber (all at index 0: ordered as
    # Orthanc's std::sort leaves them), a one-letter modality.
    files += [crafted("3.1.%d" % (20 - i), "3.1", "3", "NOIN", "^^^", Modality="X")
              for i in range(20)]
    # Instance numbers shared by several instances.
    files += [crafted("4.1.%d" % i, "4.1", "4", "DUPIN", "", InstanceNumber="5") for i in range(3)]
    files.append(crafted("4.1.9", "4.1", "4", "DUPIN", "", InstanceNumber="2"))
    return files


SAMPLES = ["Brainix/Flair/IM-0001-000%d.dcm" % i for i in range(1, 6)] + \
    ["Knee/T1/IM-0001-000%d.dcm" % i for i in range(1, 4)] + \
    ["PatientWith2studies/TEST_1_study_1234.dcm", "PatientWith2studies/TEST_1_study_2345.dcm",
     "DummyCT.dcm", "Issue124.dcm"]
BIG_PIXELS = 20 * 1024 * 1024


class Pair:
    def __init__(self, tmp_path_factory, **options):
        self.ours = Daemon(tmp_path_factory.mktemp("orthancd"), **options).start()
        try:
            self.theirs = oracle.RealOrthanc(tmp_path_factory.mktemp("oracle"), **options).start()
        except BaseException:
            self.ours.stop()
            raise

    def upload(self, data):
        for server in (self.ours, self.theirs):
            answer = send(server, "POST", "/instances", data)
            assert answer.status == 200, (server, answer)
        return answer.json()

    def get_json(self, path):
        return send(self.theirs, "GET", path).json()

    def both(self, method, path, body=None):
        return send(self.ours, method, path, body), send(self.theirs, method, path, body)

    def stop(self):
        self.ours.stop()
        self.theirs.stop()


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    servers = Pair(tmp_path_factory, **OPTIONS)
    try:
        for name in SAMPLES:
            servers.upload(read_sample(name))
        for data in crafted_instances():
            servers.upload(data)
        big = servers.upload(crafted("8.1.1", "8.1", "8", "BIG", "Big^File", pixels=BIG_PIXELS,
                                     Modality="OT", InstanceNumber="1"))
        servers.big_study = big["ParentStudy"]
        yield servers
    finally:
        servers.stop()


def study_ids(pair, without_big=True):
    return [s for s in pair.get_json("/studies") if not (without_big and s == pair.big_study)]


# -- comparing archives -------------------------------------------------------

def members(answer):
    """(name, UTF-8 flag, size) of every file of a ZIP answer."""
    return [(info.filename, bool(info.flag_bits & 0x800), info.file_size)
            for info in answer.zip.infolist()]


_VOLATILE = re.compile(r"\[(\d{8}|\d{6}\.000000)\]")


def dicomdir_dump(data, folder):
    """dcmdump of a DICOMDIR without what differs by design: the file meta
    group (UIDs generated, implementation), the byte offsets (they follow
    from the meta group's length), and today's date and time (the study
    date of a study without one)."""
    path = os.path.join(folder, "DICOMDIR")
    with open(path, "wb") as f:
        f.write(data)
    dump = subprocess.run(["/usr/bin/dcmdump", "-q", path], capture_output=True, text=True,
                          check=True).stdout
    today = time.strftime("%Y%m%d", time.gmtime())
    lines = []
    for line in dump.splitlines():
        if line.startswith("(0002,") or "offset=$" in line or " up " in line:
            continue
        if today in line or ".000000]" in line:
            line = _VOLATILE.sub("[NOW]", line)
        lines.append(line)
    return lines


def assert_same_archive(ours, theirs, context, tmp_path=None):
    assert (ours.status, theirs.status) == (200, 200), (context, ours, theirs)
    for header in ("content-type", "content-disposition", "connection", "transfer-encoding",
                   "x-content-type-options"):
        assert ours.headers.get(header) == theirs.headers.get(header), (context, header)
    # Sizes differ (deflate level, DICOMDIR meta group); a length is sent or not alike.
    assert ("content-length" in ours.headers) == ("content-length" in theirs.headers), context
    if "content-length" in ours.headers:
        assert int(ours.headers["content-length"]) == len(ours.body)
    our_members, their_members = members(ours), members(theirs)
    if "DICOMDIR" in ours.zip.namelist():
        # The DICOMDIR's file meta group is orthancd's, not DCMTK's.
        our_members = [m for m in our_members if m[0] != "DICOMDIR"]
        their_members = [m for m in their_members if m[0] != "DICOMDIR"]
        assert dicomdir_dump(ours.zip.read("DICOMDIR"), tmp_path) == \
            dicomdir_dump(theirs.zip.read("DICOMDIR"), tmp_path), context
    assert our_members == their_members, context


# -- synchronous archives and media ------------------------------------------

def test_resource_archives_match(pair, tmp_path):
    for plural in ("patients", "studies", "series"):
        for public_id in pair.get_json("/" + plural):
            if public_id in (pair.big_study,):
                continue
            for kind in ("archive", "media"):
                path = "/%s/%s/%s" % (plural, public_id, kind)
                ours, theirs = pair.both("GET", path)
                assert_same_archive(ours, theirs, path, tmp_path)


def test_post_variants_match(pair, tmp_path):
    """POST /{level}/{id}/archive: the top folder is the level's own (a
    series alone for a series), Utf8 names, extended media, file name."""
    for study in study_ids(pair):
        for kind, body in (("archive", {"Utf8": True}), ("archive", {"Filename": "a\"b\r\n.zip"}),
                           ("media", {"Extended": True}), ("media", [1])):
            path = "/studies/%s/%s" % (study, kind)
            ours, theirs = pair.both("POST", path, body)
            assert_same_archive(ours, theirs, (path, body), tmp_path)
    for series in pair.get_json("/series")[:6]:
        path = "/series/%s/archive" % series
        ours, theirs = pair.both("POST", path, {"Synchronous": True, "Utf8": True})
        assert_same_archive(ours, theirs, path, tmp_path)


def test_extended_media_and_batches_match(pair, tmp_path):
    studies = study_ids(pair)
    series = pair.get_json("/series")
    instances = pair.get_json("/instances")
    patients = pair.get_json("/patients")
    requests = [("GET", "/studies/%s/media?extended" % s, None) for s in studies[:4]]
    requests += [
        ("POST", "/tools/create-archive", {"Resources": [instances[0], series[0], studies[3]]}),
        ("POST", "/tools/create-archive", [instances[2], instances[1], patients[1], instances[2]]),
        ("POST", "/tools/create-media", {"Resources": [instances[0], series[1], studies[2]],
                                         "Utf8": True}),
        ("POST", "/tools/create-media-extended", [instances[5], series[1], patients[0]]),
        ("POST", "/tools/create-media-extended", {"Resources": studies[:3], "Extended": False}),
        ("POST", "/tools/create-archive", {"Resources": []}),
        ("POST", "/tools/create-media", {"Resources": []}),
        ("GET", "/tools/create-media-extended?resources=%s,%s" % (instances[5], series[1]), None),
        ("GET", "/tools/create-archive?resources=%s,%s,%s&filename=x.zip"
         % (instances[5], series[2], instances[5]), None),
        ("GET", "/tools/create-media?resources=", None),
        ("GET", "/tools/create-archive?resources=%s," % instances[3], None),
    ]
    for method, path, body in requests:
        ours, theirs = pair.both(method, path, body)
        assert_same_archive(ours, theirs, (method, path, body), tmp_path)


def test_archive_holds_the_stored_files(pair, tmp_path):
    """Every file of a patient's archive is the stored DICOM file, byte for
    byte; `unzip -t` finds the archive sound."""
    patient = pair.get_json("/patients")[0]
    answer = send(pair.ours, "GET", "/patients/%s/archive" % patient)
    path = tmp_path / "archive.zip"
    path.write_bytes(answer.body)
    subprocess.run(["unzip", "-tq", str(path)], check=True, capture_output=True)
    stored = {}
    for instance in send(pair.ours, "GET", "/patients/%s/instances" % patient).json():
        stored[send(pair.ours, "GET", "/instances/%s/file" % instance["ID"]).body] = instance["ID"]
    found = [answer.zip.read(name) for name in answer.zip.namelist()]
    assert sorted(found) == sorted(stored)


def verifier_findings(dicomdir):
    """What dciodvfy and dcentvfy say of a DICOMDIR (their error and
    warning lines)."""
    findings = []
    for tool in ("dciodvfy", "dcentvfy"):
        checked = subprocess.run(["/usr/bin/" + tool, str(dicomdir)], capture_output=True,
                                 text=True)
        findings += sorted({line for line in (checked.stdout + checked.stderr).splitlines()
                            if line.startswith(("Error", "Warning"))})
    return findings


def test_media_is_valid_for_pydicom_dcmtk_and_dicom3tools(pair, tmp_path):
    """pydicom's FileSet and DCMTK read every media; dciodvfy and dcentvfy
    find no error in those of real studies, and in those of crafted ones
    (tags missing) the same findings as in Orthanc's."""
    clean = 0
    for study in study_ids(pair):
        path = "/studies/%s/media?extended" % study
        ours, theirs = pair.both("GET", path)
        findings = []
        for server, answer in (("ours", ours), ("theirs", theirs)):
            folder = tmp_path / server / study
            answer.zip.extractall(folder)
            findings.append(verifier_findings(folder / "DICOMDIR"))
        assert findings[0] == findings[1], (path, findings)
        clean += not any(line.startswith("Error") for line in findings[0])

        folder = tmp_path / "ours" / study
        subprocess.run(["/usr/bin/dcmdump", "-q", str(folder / "DICOMDIR")], check=True,
                       capture_output=True)
        try:
            FileSet(pydicom.dcmread(str(tmp_path / "theirs" / study / "DICOMDIR")))
        except ValueError:
            # A PATIENT record without PatientID (a file without one): pydicom
            # refuses Orthanc's media as well.
            with pytest.raises(ValueError):
                FileSet(pydicom.dcmread(str(folder / "DICOMDIR")))
            continue
        fileset = FileSet(pydicom.dcmread(str(folder / "DICOMDIR")))
        images = [name for name in ours.zip.namelist() if name.startswith("IMAGES/")]
        assert len(fileset) == len(images)
        for instance in fileset:
            assert os.path.exists(instance.path)
            assert instance.load().SOPInstanceUID == instance.ReferencedSOPInstanceUIDInFile
    assert clean >= 4   # Brainix, Knee and the two studies of PatientWith2studies


def test_big_file_is_streamed_through(pair, tmp_path):
    """A file bigger than what is deflated at once goes through in chunks,
    sizes in a data descriptor: still the stored bytes."""
    path = "/studies/%s/archive" % pair.big_study
    ours, theirs = pair.both("GET", path)
    assert_same_archive(ours, theirs, path, tmp_path)
    (name,) = ours.zip.namelist()
    assert ours.zip.getinfo(name).flag_bits & 0x08
    instance = send(pair.ours, "GET", "/studies/%s/instances" % pair.big_study).json()[0]
    assert ours.zip.read(name) == send(pair.ours, "GET", "/instances/%s/file" % instance["ID"]).body
    media = send(pair.ours, "GET", "/studies/%s/media" % pair.big_study)
    assert media.zip.testzip() is None


# -- errors -------------------------------------------------------------------

def test_errors_match(pair):
    study = study_ids(pair)[0]
    series = pair.get_json("/series")[0]
    instance = pair.get_json("/instances")[0]
    requests = [
        ("POST", "/tools/create-archive", "[1]"), ("POST", "/tools/create-archive", "nojson"),
        ("POST", "/tools/create-archive", b""), ("POST", "/tools/create-archive", "3"),
        ("POST", "/tools/create-archive", {"Resources": "x"}),
        ("POST", "/tools/create-archive", {}),
        ("POST", "/tools/create-media", {"Resources": ["nope", 3]}),
        ("POST", "/tools/create-media-extended", {"Resources": [instance, 3]}),
        ("POST", "/tools/create-archive", {"Resources": [instance], "Priority": "high"}),
        ("GET", "/tools/create-archive", None),
        ("GET", "/tools/create-media?resources=nope", None),
        ("GET", "/tools/create-archive?resources=,%s" % instance, None),
        ("GET", "/studies/nope/archive", None), ("GET", "/studies/%s/media" % series, None),
        ("POST", "/studies/nope/archive", {}), ("POST", "/patients/%s/media" % study, {}),
        ("POST", "/studies/nope/archive", {"Synchronous": "x"}),
        ("POST", "/studies/%s/archive" % study, {"Synchronous": "x"}),
        ("POST", "/studies/%s/archive" % study, {"Asynchronous": 1}),
        ("POST", "/studies/%s/archive" % study, {"Priority": 1.5}),
        ("POST", "/studies/%s/archive" % study, {"Priority": True}),
        ("POST", "/studies/%s/archive" % study, {"Priority": 2 ** 31}),
        ("POST", "/studies/%s/archive" % study, {"Transcode": "nope"}),
        ("POST", "/studies/%s/archive" % study, {"Transcode": 3}),
        ("POST", "/studies/%s/archive" % study, {"Utf8": "x"}),
        ("POST", "/studies/%s/media" % study, {"Extended": "x"}),
        ("POST", "/studies/%s/archive" % study,
         {"Transcode": "1.2.840.10008.1.2.1", "LossyQuality": "x"}),
        ("POST", "/studies/%s/archive" % study,
         {"Transcode": "1.2.840.10008.1.2.1", "LossyQuality": -1}),
        ("POST", "/studies/%s/archive" % study, b""), ("POST", "/studies/%s/archive" % study, "x"),
        ("GET", "/studies/%s/archive?transcode=nope" % study, None),
        ("GET", "/studies/nope/archive?transcode=nope", None),
        ("GET", "/studies/%s/archive?transcode=1.2.840.10008.1.2.1&lossy-quality=x" % study, None),
        ("GET", "/instances/%s/archive" % instance, None),
        ("DELETE", "/studies/%s/archive" % study, None), ("PUT", "/tools/create-media", None),
    ]
    for method, path, body in requests:
        ours, theirs = pair.both(method, path, body)
        context = (method, path, body, ours, theirs)
        assert ours.status == theirs.status, context
        assert ours.headers.get("content-type") == theirs.headers.get("content-type"), context
        assert ours.headers.get("allow") == theirs.headers.get("allow"), context
        if theirs.body[:1] == b"{":
            assert ours.json() == theirs.json(), context
        else:
            assert ours.body == theirs.body, context


# -- jobs ---------------------------------------------------------------------

def wait_for_job(server, job_id):
    for _ in range(600):
        info = send(server, "GET", "/jobs/" + job_id).json()
        if info["State"] in ("Success", "Failure"):
            return info
        time.sleep(0.05)
    raise AssertionError("job %s did not finish" % job_id)


def latest_job(server):
    jobs = send(server, "GET", "/jobs?expand").json()
    return max(jobs, key=lambda job: job["CreationTime"])


# What of a job's JSON is the same on both servers (the archive's exact
# size depends on the deflate level and on the DICOMDIR's meta group).
_JOB_FIELDS = ("Type", "State", "Priority", "Progress", "ErrorCode", "ErrorDescription",
               "ErrorDetails", "UserData")


def comparable_job(info):
    out = {key: info.get(key) for key in _JOB_FIELDS}
    out["Content"] = {k: v for k, v in info["Content"].items()
                      if k not in ("ArchiveSize", "ArchiveSizeMB")}
    return out


def test_synchronous_archive_is_a_job(pair):
    study = study_ids(pair)[1]
    for kind in ("archive", "media"):
        ours, theirs = pair.both("GET", "/studies/%s/%s" % (study, kind))
        assert ours.status == theirs.status == 200
        # Orthanc may mark its job done just after the answer ends.
        our_job, their_job = [wait_for_job(server, latest_job(server)["ID"])
                              for server in (pair.ours, pair.theirs)]
        assert comparable_job(our_job) == comparable_job(their_job)
        assert int(our_job["Content"]["ArchiveSize"]) == len(ours.body)


def test_asynchronous_archive_output(pair, tmp_path):
    study = study_ids(pair)[0]
    body = {"Asynchronous": True, "UserData": "for me", "Priority": 3, "Filename": "my\".zip"}
    for kind in ("media", "archive"):
        path = "/studies/%s/%s" % (study, kind)
        submitted = pair.both("POST", path, body)
        assert [a.status for a in submitted] == [200, 200]
        assert [sorted(a.json()) for a in submitted] == [["ID", "Path"]] * 2
        jobs = [a.json()["ID"] for a in submitted]
        assert [a.json()["Path"] for a in submitted] == ["/jobs/" + j for j in jobs]
        infos = [wait_for_job(server, job) for server, job in zip((pair.ours, pair.theirs), jobs)]
        assert comparable_job(infos[0]) == comparable_job(infos[1])

        outputs = [send(server, "GET", "/jobs/%s/archive" % job)
                   for server, job in zip((pair.ours, pair.theirs), jobs)]
        assert_same_archive(outputs[0], outputs[1], path, tmp_path)
        assert int(outputs[0].headers["content-length"]) == len(outputs[0].body) == \
            int(infos[0]["Content"]["ArchiveSize"])

        # The output goes once deleted; a second deletion and a download fail alike.
        for method in ("DELETE", "DELETE", "GET"):
            ours, theirs = [send(server, method, "/jobs/%s/archive" % job)
                            for server, job in zip((pair.ours, pair.theirs), jobs)]
            assert ours.status == theirs.status, (method, ours, theirs)
            assert ours.body.replace(jobs[0].encode(), b"ID") == \
                theirs.body.replace(jobs[1].encode(), b"ID")
        # An archive job cannot be resubmitted.
        ours, theirs = [send(server, "POST", "/jobs/%s/resubmit" % job, b"")
                        for server, job in zip((pair.ours, pair.theirs), jobs)]
        assert (ours.status, ours.body) == (theirs.status, theirs.body)


def test_media_archive_size_keeps_the_latest(pair):
    """MediaArchiveSize 2: a third asynchronous archive drops the least
    recently used one (a download counts as a use)."""
    studies = study_ids(pair)

    def scenario(server):
        def archive(study):
            job = send(server, "POST", "/studies/%s/archive" % study,
                       {"Asynchronous": True}).json()["ID"]
            wait_for_job(server, job)
            return job

        def available(*jobs):
            return [send(server, "GET", "/jobs/%s/archive" % job).status for job in jobs]
        first, second = archive(studies[1]), archive(studies[2])
        seen = [available(first)]
        third = archive(studies[3])
        seen.append(available(first, second, third))
        fourth = archive(studies[4])
        seen.append(available(first, second, third, fourth))
        send(server, "DELETE", "/jobs/%s" % fourth)
        seen.append(available(third))
        return seen

    assert scenario(pair.ours) == scenario(pair.theirs) == \
        [[200], [200, 404, 200], [404, 404, 200, 200], [200]]


def test_client_leaving_fails_the_job(pair):
    """A client that stops reading and leaves: orthancd holds no more than
    its socket buffers meanwhile, and the job fails as Orthanc's does when
    it notices (Orthanc itself buffers the whole archive and succeeds)."""
    sock = socket.create_connection(("127.0.0.1", pair.ours.http_port))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.sendall(b"GET /studies/%s/archive HTTP/1.1\r\nHost: x\r\n\r\n" % pair.big_study.encode())
    assert sock.recv(64).startswith(b"HTTP/1.1 200 OK")
    time.sleep(1)
    job = latest_job(pair.ours)
    assert job["State"] == "Running"
    assert int(job["Content"]["ArchiveSize"]) < BIG_PIXELS
    sock.close()
    info = wait_for_job(pair.ours, job["ID"])
    assert (info["State"], info["ErrorCode"], info["ErrorDetails"]) == \
        ("Failure", 9, "HTTP client has disconnected while creating an archive in "
                       "synchronous mode")
    assert send(pair.ours, "GET", "/system").status == 200


def _datasets(answer):
    """The data sets of a ZIP answer (file meta group aside), by name."""
    out = {}
    for name in answer.zip.namelist():
        dataset = pydicom.dcmread(io.BytesIO(answer.zip.read(name)))
        out[name] = (dataset.file_meta.TransferSyntaxUID,
                     [(e.tag, e.VR if e.VR != "UN" else None, e.value) for e in dataset])
    return out


def _without_pixels(datasets):
    return {name: (uid, [e for e in elements if e[0] != 0x7FE00010])
            for name, (uid, elements) in datasets.items()}


def test_transcode_between_uncompressed_syntaxes(pair):
    """Transcode is checked as 1.13.0 checks it and shows in the job; files
    already in the requested syntax are archived as stored, the others
    transcoded (orthancd.transcoding): the same data sets as Orthanc's
    (pixel data decoded from lossy JPEG may differ by one grey level, so
    only their size is compared).  Where Orthanc cannot transcode a file
    (JPEG 2000, which its DCMTK does not decode) it leaves it out; orthancd
    decodes it and archives it."""
    studies = study_ids(pair)[:6]
    compared = 0
    for syntax in ("1.2.840.10008.1.2", "1.2.840.10008.1.2.1"):
        for study in studies:
            body = {"Transcode": syntax, "LossyQuality": 50, "Asynchronous": True}
            submitted = pair.both("POST", "/studies/%s/archive" % study, body)
            infos = [wait_for_job(server, answer.json()["ID"])
                     for server, answer in zip((pair.ours, pair.theirs), submitted)]
            assert infos[0]["State"] == infos[1]["State"] == "Success"
            assert (infos[0]["Content"]["Transcode"], infos[0]["Content"]["LossyQuality"]) == \
                (syntax, 50)
            outputs = [send(server, "GET", "/jobs/%s/archive" % info["ID"])
                       for server, info in zip((pair.ours, pair.theirs), infos)]
            ours, theirs = _datasets(outputs[0]), _datasets(outputs[1])
            assert set(theirs) <= set(ours)
            mine = {name: ours[name] for name in theirs}
            assert _without_pixels(mine) == _without_pixels(theirs), (study, syntax)
            for name in theirs:
                pixels = [[len(e[2]) for e in d[1] if e[0] == 0x7FE00010]
                          for d in (mine[name], theirs[name])]
                assert pixels[0] == pixels[1], name
            assert {uid for uid, _ in ours.values()} == {syntax}
            compared += 1
    assert compared == 2 * len(studies)


def test_transcode_to_a_compressed_syntax(pair):
    """JPEG-LS lossless, as 1.13.0: the same files, in the same syntax,
    keeping their SOP Instance UIDs."""
    compared = 0
    for study in study_ids(pair)[:3]:
        path = "/studies/%s/archive?transcode=1.2.840.10008.1.2.4.80" % study
        ours, theirs = (_datasets(send(server, "GET", path))
                        for server in (pair.ours, pair.theirs))
        assert set(theirs) <= set(ours)
        for name in theirs:
            assert ours[name][0] == theirs[name][0] == "1.2.840.10008.1.2.4.80"
            uids = [[e[2] for e in d[1] if e[0] == 0x00080018]
                    for d in (ours[name], theirs[name])]
            assert uids[0] == uids[1]
            compared += 1
    assert compared > 0


# -- configuration ------------------------------------------------------------

@pytest.fixture(scope="module")
def configured(tmp_path_factory):
    """UTF-8 names by default (ZipUseUtf8), archives sent once complete
    (SynchronousZipStream off)."""
    servers = Pair(tmp_path_factory, ZipUseUtf8=True, SynchronousZipStream=False,
                   StableAge=3600)
    try:
        servers.upload(crafted_instances()[0])
        yield servers
    finally:
        servers.stop()


def test_zip_use_utf8_and_unstreamed_archives(configured, tmp_path):
    (study,) = configured.get_json("/studies")
    for method, path in (("GET", "/studies/%s/archive" % study),
                         ("POST", "/studies/%s/archive" % study),
                         ("GET", "/tools/create-archive?resources=" + study),
                         ("POST", "/tools/create-media-extended")):
        body = {"Resources": [study]} if path.startswith("/tools") and method == "POST" else \
            ({} if method == "POST" else None)
        ours, theirs = configured.both(method, path, body)
        assert_same_archive(ours, theirs, (method, path), tmp_path)
    names = members(send(configured.ours, "POST", "/studies/%s/archive" % study, {}))
    assert names[0][1], names   # UTF-8 by default in POST bodies
    # The temporary file of a synchronous archive is no job output.
    for server in (configured.ours, configured.theirs):
        job = wait_for_job(server, latest_job(server)["ID"])
        assert send(server, "GET", "/jobs/%s/archive" % job["ID"]).status == 404
