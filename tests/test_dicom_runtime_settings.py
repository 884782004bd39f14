"""/tools/accepted-transfer-syntaxes and /tools/unknown-sop-class-accepted
change what the DICOM listener accepts, from the next association on."""
import os
import subprocess

from tests.support.daemon import sample

STORESCU = "/usr/bin/storescu"
UNCOMPRESSED_CT = sample("SignedCT.dcm")  # Explicit VR Little Endian


def storescu(daemon, path, *options):
    env = dict(os.environ, TCP_NODELAY="1")
    return subprocess.run([STORESCU, *options, "-aet", "TESTSCU", "-aec", "ORTHANCD",
                           "127.0.0.1", str(daemon.dicom_port), path],
                          env=env, capture_output=True, text=True, timeout=60)


def test_accepted_transfer_syntaxes_apply_to_new_associations(fresh_daemon):
    rest = fresh_daemon.client()
    only_jpeg = rest.put("/tools/accepted-transfer-syntaxes", '["1.2.840.10008.1.2.4.5*"]')
    assert only_jpeg.status == 200
    assert only_jpeg.json()[0] == "1.2.840.10008.1.2.4.50"
    # Only explicit little endian proposed: no context can be accepted.
    refused = storescu(fresh_daemon, UNCOMPRESSED_CT, "-xe")
    assert refused.returncode != 0
    assert rest.get_json("/statistics")["CountInstances"] == 0
    everything = rest.put("/tools/accepted-transfer-syntaxes", '"*"')
    assert "1.2.840.10008.1.2.1" in everything.json()
    accepted = storescu(fresh_daemon, UNCOMPRESSED_CT, "-xe")
    assert accepted.returncode == 0, accepted.stderr
    assert rest.get_json("/statistics")["CountInstances"] == 1
    # As Orthanc 1.13.0: a JSON value of the wrong type is refused, a body
    # without JSON means no pattern (test_rest_plumbing_parity compares).
    assert rest.put("/tools/accepted-transfer-syntaxes", "5").status == 400
    assert rest.put("/tools/accepted-transfer-syntaxes", "not json").json() == []


def send_with_pynetdicom(daemon, path):
    """storescu refuses SOP classes it does not know: pynetdicom proposes any."""
    import pydicom
    from pynetdicom import AE
    dataset = pydicom.dcmread(path)
    ae = AE(ae_title="TESTSCU")
    ae.add_requested_context(dataset.SOPClassUID, dataset.file_meta.TransferSyntaxUID)
    association = ae.associate("127.0.0.1", daemon.dicom_port, ae_title="ORTHANCD")
    try:
        if not association.is_established:
            return None
        if not association.accepted_contexts:
            return "refused"
        return association.send_c_store(dataset).Status
    finally:
        if association.is_established:
            association.release()


def test_unknown_sop_class_accepted(fresh_daemon):
    rest = fresh_daemon.client()
    unknown = sample("UnknownSopClassUid.dcm")
    assert send_with_pynetdicom(fresh_daemon, unknown) in (None, "refused")
    assert rest.put("/tools/unknown-sop-class-accepted", "1").status == 200
    assert rest.get("/tools/unknown-sop-class-accepted").text == "1"
    assert send_with_pynetdicom(fresh_daemon, unknown) == 0
    assert rest.get_json("/statistics")["CountInstances"] == 1
