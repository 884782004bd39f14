"""Parsing DICOM files the way Orthanc accepts or refuses them.

Orthanc (through DCMTK) reads Part-10 files and also bare datasets without
the 128-byte preamble, guessing the transfer syntax.  Whatever cannot be read
is refused with 'Bad file format' and the details string built below.
"""
import io
import logging
import struct
import warnings

import pydicom
from pydicom.errors import InvalidDicomError

PIXEL_DATA = 0x7FE00010
DEFLATED_TRANSFER_SYNTAX = "1.2.840.10008.1.2.1.99"

# pydicom reports every oddity of real-world files through warnings and its
# logger; the server would print them for each upload.
logging.getLogger("pydicom").setLevel(logging.ERROR)
pydicom.config.settings.reading_validation_mode = pydicom.config.IGNORE


class DicomFormatError(Exception):
    """The payload is not a DICOM file Orthanc would store ('Bad file format')."""

    def __init__(self, details):
        super().__init__(details)
        self.details = details


def invalid_file_details(size):
    return "Cannot parse an invalid DICOM file (size: %d bytes)" % size


def _looks_like_bare_dataset(data):
    """DCMTK only takes a file without preamble when it starts with a
    plausible low group (file meta or identifying groups)."""
    if len(data) < 8:
        return False
    for fmt in ("<H", ">H"):
        group = struct.unpack(fmt, data[:2])[0]
        if group <= 0x0008 and group % 2 == 0:
            return True
    return False


def read_dataset(source, stop_before_pixels=False):
    """Parse bytes or a file path into a pydicom FileDataset.

    With stop_before_pixels the dataset gets a boolean attribute
    `pixel_data_follows` so that JSON renderings can still show the
    PixelData element as Orthanc does.
    """
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
    else:
        with open(source, "rb") as f:
            data = f.read()
    has_preamble = len(data) >= 132 and data[128:132] == b"DICM"
    if not has_preamble and not _looks_like_bare_dataset(data):
        raise DicomFormatError(invalid_file_details(len(data)))
    stream = io.BytesIO(data)
    # Stream positions are meaningless inside a deflated dataset: read it all.
    deflated = DEFLATED_TRANSFER_SYNTAX.encode() in data[:1024]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = pydicom.dcmread(stream, force=True,
                                 stop_before_pixels=stop_before_pixels and not deflated)
            if len(ds) == 0 and not getattr(ds, "file_meta", None):
                raise DicomFormatError(invalid_file_details(len(data)))
            # Force the element walk now: pydicom parses lazily and a broken
            # file must be refused at upload, not when /tags is requested.
            _check_structure(ds, 0)
    except DicomFormatError:
        raise
    except (InvalidDicomError, RecursionError, ValueError, EOFError, OSError,
            struct.error, KeyError, TypeError, AttributeError, IndexError,
            NotImplementedError, UnicodeError):
        raise DicomFormatError(invalid_file_details(len(data)))
    if stop_before_pixels and deflated:
        ds.pixel_data_follows = PIXEL_DATA in ds
        if ds.pixel_data_follows:
            del ds[PIXEL_DATA]
    elif stop_before_pixels:
        position = stream.tell()
        ds.pixel_data_follows = _tag_at(data, position, ds) == PIXEL_DATA
    else:
        ds.pixel_data_follows = False
    return ds


# Orthanc 1.10.1 crashes on pathological nesting; refusing them is safer.
MAX_SEQUENCE_DEPTH = 64


def _check_structure(ds, depth):
    if depth > MAX_SEQUENCE_DEPTH:
        raise DicomFormatError("Too many nested sequences")
    for key in list(ds.keys()):
        element = ds.get_item(key)
        value = getattr(element, "value", None)
        if isinstance(value, pydicom.sequence.Sequence):
            for item in value:
                _check_structure(item, depth + 1)


def _tag_at(data, position, ds):
    if position + 4 > len(data):
        return None
    little = getattr(ds, "is_little_endian", True) is not False
    group, element = struct.unpack("<HH" if little else ">HH", data[position:position + 4])
    return (group << 16) | element
