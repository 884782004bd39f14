"""DICOM Part-10 file header: preamble, "DICM" and the file meta group."""

from pydicom.dataset import FileMetaDataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_file_meta_info

from orthancd.net import identity

PREAMBLE = b"\x00" * 128 + b"DICM"


def file_header(sop_class_uid, sop_instance_uid, transfer_syntax_uid):
    """Bytes to put in front of a data set received on the network."""
    meta = FileMetaDataset()
    meta.FileMetaInformationVersion = b"\x00\x01"
    meta.MediaStorageSOPClassUID = sop_class_uid
    meta.MediaStorageSOPInstanceUID = sop_instance_uid
    meta.TransferSyntaxUID = transfer_syntax_uid
    meta.ImplementationClassUID = identity.IMPLEMENTATION_CLASS_UID
    meta.ImplementationVersionName = identity.IMPLEMENTATION_VERSION_NAME
    buffer = DicomBytesIO()
    buffer.is_little_endian = True
    buffer.is_implicit_VR = False
    write_file_meta_info(buffer, meta, enforce_standard=True)
    return PREAMBLE + buffer.getvalue()
