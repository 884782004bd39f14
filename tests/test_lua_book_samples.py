"""Lua samples used verbatim, against the live Orthanc 1.13.0:

* the Orthanc Book's read-only IncomingHttpRequestFilter
  (../shared/reference/orthanc-book/faq-security.rst, read from the page);
* Orthanc's IncomingFindRequestFilter.lua sample
  (OrthancServer/Resources/Samples/Lua/), which takes a private creator
  out of C-FIND queries.

Both servers run the Book's filter from LuaScripts, with authentication on
and three users; every request is sent by each user to both, and the
answers must agree.
"""
import base64
import os
import urllib.error
import urllib.request

import pytest
from pydicom.dataset import Dataset
from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelFind

from tests.support import oracle
from tests.support.daemon import ROOT, Daemon, read_sample
from tests.support.dicom_peers import find_raw

BOOK_PAGE = os.path.join(os.path.dirname(ROOT), "shared", "reference", "orthanc-book",
                         "faq-security.rst")
USERS = {"user": "user-password", "admin": "admin-password", "other": "other-password"}

# OrthancServer/Resources/Samples/Lua/IncomingFindRequestFilter.lua
INCOMING_FIND_REQUEST_FILTER = """-- This example solves the following problem:
-- https://groups.google.com/d/msg/orthanc-users/PLWKqVVaXLs/n_0x4vKhAgAJ

function IncomingFindRequestFilter(source, origin)
   -- First display the content of the C-Find query
   PrintRecursive(source)
   PrintRecursive(origin)

   -- Remove the "PrivateCreator" tag from the query
   local v = source
   v['5555,0010'] = nil

   return v
end
"""


def book_read_only_filter():
    """The code block after "read-only access::" in the Book's page."""
    with open(BOOK_PAGE, encoding="utf-8") as page:
        lines = page.read().splitlines()
    start = next(n for n, line in enumerate(lines) if line.rstrip().endswith("read-only access::"))
    block = []
    for line in lines[start + 1:]:
        if line.strip() and not line.startswith("    "):
            break
        block.append(line[4:])
    text = "\n".join(block).strip() + "\n"
    assert text.startswith("function IncomingHttpRequestFilter(")
    return text


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    script = tmp_path_factory.mktemp("lua") / "read-only.lua"
    script.write_text(book_read_only_filter())
    options = {"LuaScripts": [str(script)], "ExecuteLuaEnabled": True,
               "AuthenticationEnabled": True, "RegisteredUsers": USERS,
               "DicomAlwaysAllowFind": True}
    pair = (oracle.RealOrthanc(tmp_path_factory.mktemp("oracle"), **options),
            Daemon(tmp_path_factory.mktemp("orthancd"), **options))
    with oracle.running(pair):
        yield pair


def call(server, method, path, user=None, body=None):
    request = urllib.request.Request(server.url + path, data=body, method=method)
    if user is not None:
        token = base64.b64encode(("%s:%s" % (user, USERS[user])).encode()).decode()
        request.add_header("Authorization", "Basic " + token)
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return answer.status, answer.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def test_book_read_only_filter_like_orthanc(servers):
    data = read_sample("DummyCT.dcm")
    requests = [("GET", "/system", None), ("GET", "/patients", None),
                ("POST", "/instances", data), ("POST", "/tools/find",
                                                b'{"Level": "Study", "Query": {}}'),
                ("DELETE", "/patients/nope", None), ("PUT", "/tools/metrics", b"1")]
    for method, path, body in requests:
        for user in (None, "user", "admin", "other"):
            answers = [call(server, method, path, user, body) for server in servers]
            assert answers[1][0] == answers[0][0], (method, path, user)
            if answers[0][0] != 200:  # (/system names each server)
                assert answers[1][1] == answers[0][1], (method, path, user)


def test_incoming_find_request_filter_sample_like_orthanc(servers):
    """With the sample, a query carrying a private creator (and a private
    tag of its block) answers as 1.13.0 does."""
    for server in servers:
        status, _ = call(server, "POST", "/tools/execute-script", "admin",
                         INCOMING_FIND_REQUEST_FILTER.encode())
        assert status == 200
    query = Dataset()
    query.QueryRetrieveLevel = "STUDY"
    query.StudyInstanceUID = ""
    query.PatientName = ""
    query.add_new(0x55550010, "LO", "MY CREATOR")
    query.add_new(0x55551001, "LO", "")
    outcomes = [find_raw(server.dicom_port, "ANY", query,
                         StudyRootQueryRetrieveInformationModelFind) for server in servers]
    assert outcomes[1] == outcomes[0]
    assert outcomes[0][0] == "0x0000" and outcomes[0][1]
