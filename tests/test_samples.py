"""Every real sample either uploads or is refused with Orthanc's error; none crashes the server."""
import glob
import os


from tests.support.daemon import SAMPLES

ALL_SAMPLES = sorted(p for p in glob.glob(os.path.join(SAMPLES, "**", "*"), recursive=True)
                     if os.path.isfile(p))


def test_there_are_samples():
    assert len(ALL_SAMPLES) > 200


def test_every_sample_uploads_or_is_refused_cleanly(rest):
    stored, refused = 0, []
    for path in ALL_SAMPLES:
        with open(path, "rb") as f:
            answer = rest.post("/instances", f.read())
        if answer.status == 200:
            body = answer.json()
            assert body["Status"] in ("Success", "AlreadyStored")
            stored += 1
            tags = rest.get("/instances/%s/tags" % body["ID"])
            assert tags.status == 200, (path, tags.body[:300])
            assert rest.get("/instances/%s/simplified-tags" % body["ID"]).status == 200
        else:
            # As Orthanc: 400 "Bad file format", or 404 "Inexistent tag" for a
            # file without the UIDs that identify an instance (DICOMDIR, worklists).
            status = answer.json()["OrthancStatus"]
            assert (answer.status, status) in ((400, 15), (404, 21)), \
                (path, answer.status, answer.body[:300])
            refused.append(os.path.relpath(path, SAMPLES))
        assert rest.get("/system").status == 200
    assert stored > 200, refused
    # The index agrees with what was acknowledged.
    stats = rest.get_json("/statistics")
    assert stats["CountInstances"] == len(rest.get_json("/instances"))
