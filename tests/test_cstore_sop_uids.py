"""The C-STORE SCP checks the SOP Class/Instance UIDs of each data set
against its command.  Plain data sets are read by a walk over their first
element headers (scp_store._plain_sop_uids); it must find what the full
reading with pydicom finds, on every sample file, and leave anything unusual
to that reading."""
import os
import warnings
from pathlib import Path

import pytest
from pydicom.dataset import Dataset
from pynetdicom.dsutils import encode, split_dataset

from orthancd.net import scp_store
from orthancd.net.scp_store import HEAD_LIMIT, read_sop_uids
from orthancd.net.transfer_syntaxes import DEFLATED, is_implicit_vr, is_little_endian
from tests.support.daemon import sample_files



def sample_heads():
    heads = []
    for path in sample_files():
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                meta, offset = split_dataset(Path(path))
            syntax = str(meta.TransferSyntaxUID)
        except Exception:
            continue
        with open(path, "rb") as f:
            f.seek(offset)
            heads.append((os.path.basename(path), syntax, f.read(HEAD_LIMIT)))
    return heads


def read_with_pydicom(head, syntax, complete, monkeypatch):
    with monkeypatch.context() as patch:
        patch.setattr(scp_store, "_plain_sop_uids", lambda head, implicit: None)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                return read_sop_uids(head, syntax, complete)
            except scp_store.SopUidsUnreadable:
                return "unreadable"


def test_plain_reading_finds_what_pydicom_finds_in_every_sample(monkeypatch):
    heads = sample_heads()
    assert len(heads) > 200
    plain = 0
    for name, syntax, head in heads:
        if syntax in DEFLATED or not is_little_endian(syntax):
            continue
        found = scp_store._plain_sop_uids(head, is_implicit_vr(syntax))
        if found is None:
            continue
        plain += 1
        complete = len(head) < HEAD_LIMIT
        assert found == read_with_pydicom(head, syntax, complete, monkeypatch), name
    assert plain > 200  # nearly all of them are plain


def dataset_bytes(implicit, **elements):
    ds = Dataset()
    for keyword, value in elements.items():
        setattr(ds, keyword, value)
    return encode(ds, implicit, True)


@pytest.mark.parametrize("implicit", [True, False])
def test_uids_padded_or_spaced_are_read_as_pydicom_reads_them(implicit):
    head = dataset_bytes(implicit, SOPClassUID="1.2.840.10008.5.1.4.1.1.2",
                         SOPInstanceUID="1.2.3", PatientName="X")
    assert scp_store._plain_sop_uids(head, implicit) == ("1.2.840.10008.5.1.4.1.1.2", "1.2.3")


def test_unusual_heads_are_left_to_pydicom():
    explicit = dataset_bytes(False, SOPClassUID="1.2", SOPInstanceUID="1.3")
    # Explicit VR where implicit was negotiated: pydicom notices and reads it so.
    assert scp_store._plain_sop_uids(explicit, True) is None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert read_sop_uids(explicit, "1.2.840.10008.1.2", True) == ("1.2", "1.3")
    # A multi-valued UID, a UID missing, a head cut short, elements out of order.
    assert scp_store._plain_sop_uids(
        dataset_bytes(False, SOPClassUID=["1.2", "1.4"], SOPInstanceUID="1.3"), False) is None
    assert scp_store._plain_sop_uids(dataset_bytes(False, SOPInstanceUID="1.3"), False) is None
    assert scp_store._plain_sop_uids(explicit[:-3], False) is None
    half = len(dataset_bytes(False, SOPClassUID="1.2"))
    swapped = explicit[half:] + explicit[:half]
    assert scp_store._plain_sop_uids(swapped, False) is None
