"""A quick reading of ordinary DICOM headers, for the ingest path.

Every instance stored has its header parsed.  With pydicom, plus the walks
of orthancd.dicom.reading that make it refuse what DCMTK refuses, that parse
is the largest share of the CPU an upload costs the daemon, and it holds the
GIL that the reactor and the index writer need.  Most files are plain: a
Part-10 header whose group length DCMTK and pydicom agree on, little endian,
explicit or implicit VR, elements in order up to the pixel data.  For those,
one walk over the element headers gives what the ingest path needs: the
top-level elements, as the RawDataElements pydicom would have made of them,
for summarize(); and the facts about the pixel data.

Anything else (big endian, deflated, no preamble, a meta group DCMTK and
pydicom would split differently, a VR pydicom would guess, elements out of
order or repeated, undefined lengths other than sequences, a file cut
short...) gives None: the caller reads the file with
reading.read_dataset, which decides every refusal.  So this module never
refuses a file: it only takes those it knows the full reading takes, and
takes them the same way (tests/test_header_scan.py compares both on every
sample file).
"""
import mmap
import os
import re
import struct
import warnings

import pydicom
from pydicom.charset import convert_encodings, default_encoding
from pydicom.datadict import dictionary_VR
from pydicom.dataelem import RawDataElement, convert_raw_data_element, empty_value_for_VR
from pydicom.filereader import ENCODED_VR, data_element_generator
from pydicom.sequence import Sequence
from pydicom.tag import BaseTag
from pydicom.valuerep import EXPLICIT_VR_LENGTH_32
from pydicom.values import convert_string

from orthancd.dicom import dictionary
from orthancd.dicom.elements import is_misaligned
from orthancd.dicom.reading import (DEFLATED_TRANSFER_SYNTAX, MISALIGNED_VRS, PIXEL_DATA,
                                    GuardedStream, check_structure, unexpected_pixel_data_vr,
                                    walk_elements, read_dataset)
from orthancd.dicom.summary import summarize

IMPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2"
EXPLICIT_VR_BIG_ENDIAN = "1.2.840.10008.1.2.2"
BITS_ALLOCATED = 0x00280100
# Where pydicom stops a header read with stop_before_pixels.
_PIXEL_TAGS = frozenset((0x7FE00010, 0x7FE00009, 0x7FE00008))
# A real header has a few hundred top-level elements; a flood goes to the
# full reading, which has its own budget.
_MAX_ELEMENTS = 20000
_UNDEFINED = 0xFFFFFFFF
_SEQUENCE_END = 0xFFFEE0DD

_META_START = struct.Struct("<HH2sHI")  # (0002,0000) UL 4 <group length>
_EXPLICIT = struct.Struct("<HH2sH")
_IMPLICIT = struct.Struct("<HHI")
_LONG_LENGTH = struct.Struct("<I")
_VR_NAMES = {vr: vr.decode("ascii") for vr in ENCODED_VR}
_LONG_VRS = frozenset(vr.encode("ascii") for vr in EXPLICIT_VR_LENGTH_32)
# A transfer syntax UID as pydicom and DCMTK both read it: digits and dots,
# with at most the one NUL of even-length padding.
_PLAIN_UID = re.compile(rb"[0-9.]+\x00?\Z")
_DEFLATED = DEFLATED_TRANSFER_SYNTAX.encode("ascii")
_NOT_PLAIN = (struct.error, ValueError, IndexError)


class HeaderFacts:
    """What the ingest path reads from a parsed header besides its summary
    (stands for the pydicom dataset where no one needs more)."""
    __slots__ = ("pixel_data_offset", "pixel_data_vr")

    def __init__(self, pixel_data_offset, pixel_data_vr):
        self.pixel_data_offset = pixel_data_offset
        self.pixel_data_vr = pixel_data_vr


class _MetaValue:
    __slots__ = ("value",)

    def __init__(self, value):
        self.value = value


class RawHeader:
    """The top-level elements of a header up to its pixel data, with what
    summarize() and the pixel-data facts read of a pydicom dataset."""
    __slots__ = ("_elements", "file_meta", "original_encoding")

    def __init__(self, elements, transfer_syntax, implicit):
        self._elements = elements
        self.file_meta = {0x00020010: _MetaValue(transfer_syntax)}
        self.original_encoding = (implicit, True)

    def __contains__(self, tag):
        return tag in self._elements

    def get_item(self, tag, keep_deferred=False):
        return self._elements[tag]

    def keys(self):
        return self._elements.keys()

    def get(self, tag, default=None):
        """The element converted as pydicom's Dataset.get converts it."""
        raw = self._elements.get(tag)
        if raw is None:
            return default
        return convert_raw_data_element(raw) if isinstance(raw, RawDataElement) else raw


def read_instance_header(source, default_encoding, dataset_needed=True):
    """(InstanceSummary, header) of a DICOM file (bytes, or the path of a
    file): the header is the pydicom dataset (reading.read_dataset, without
    the pixel data) when ``dataset_needed``, else HeaderFacts when the file
    is plain enough for the quick reading.  Raises what read_dataset and
    summarize raise on files they refuse."""
    if not dataset_needed:
        quick = _quick_summary(source, default_encoding)
        if quick is not None:
            return quick
    dataset = read_dataset(source, stop_before_pixels=True)
    return summarize(dataset, default_encoding), dataset


def _quick_summary(source, default_encoding):
    if isinstance(source, (bytes, bytearray, memoryview)):
        return _summary_of(bytes(source) if not isinstance(source, bytes) else source,
                           default_encoding)
    with open(source, "rb") as f:
        if os.fstat(f.fileno()).st_size < 144:
            return None
        with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
            return _summary_of(data, default_encoding)


def _summary_of(data, default_encoding):
    scanned = scan_header(data)
    if scanned is None:
        return None
    header, facts = scanned
    try:
        return summarize(header, default_encoding), facts
    except Exception:
        # Missing identifiers and the like: the full reading gives the error.
        return None


def scan_header(data):
    """(RawHeader, HeaderFacts) of a plain Part-10 file (bytes or a
    mapping), or None when it must be read by reading.read_dataset."""
    try:
        return _scan(data)
    except _NOT_PLAIN:
        return None


def plain_top_elements(data, implicit, last_tag):
    """{tag: RawDataElement, or the DataElement of a sequence} of the
    top-level elements up to ``last_tag`` of a plain little endian data set
    (``data``: its first bytes, without file meta), as scan_header reads
    them; None when they are not plain (or cut short before an element past
    ``last_tag``), and the full reading must decide."""
    try:
        walked = _data_set(data, 0, implicit, last_tag)
    except _NOT_PLAIN:
        return None
    return None if walked is None else walked[0]


def _scan(data):
    size = len(data)
    if size < 152 or data[128:132] != b"DICM" or _DEFLATED in data[:1024]:
        return None
    group, element, vr, length, meta_length = _META_START.unpack_from(data, 132)
    if (group, element, vr, length) != (0x0002, 0x0000, b"UL", 4):
        return None
    transfer_syntax, start = _meta_group(data, meta_length)
    if transfer_syntax is None:
        return None
    if transfer_syntax == IMPLICIT_VR_LITTLE_ENDIAN:
        implicit = True
    elif (transfer_syntax in (EXPLICIT_VR_BIG_ENDIAN, DEFLATED_TRANSFER_SYNTAX)
          or transfer_syntax in pydicom.uid.PrivateTransferSyntaxes):
        return None
    else:
        implicit = False  # as pydicom reads any other syntax
    walked = _data_set(data, start, implicit)
    if walked is None:
        return None
    elements, stop = walked
    header = RawHeader(elements, transfer_syntax, implicit)
    offset = vr = None
    if stop is not None:
        try:
            # The pixel data and what follows must not be cut short either.
            walk_elements(data, stop, not implicit, True)
        except Exception:
            return None
        tag = struct.unpack_from("<HH", data, stop)
        if (tag[0] << 16 | tag[1]) == PIXEL_DATA:
            offset = stop
            try:
                vr = unexpected_pixel_data_vr(data, stop, header)
            except Exception:
                return None
    return header, HeaderFacts(offset, vr)


def _meta_group(data, meta_length):
    """(transfer syntax, where the data set starts) when the meta group is
    plain: elements of group 0002 only, in order, ending exactly where the
    group length says and followed by a data set element; else (None, 0)."""
    position, end, size = 144, 144 + meta_length, len(data)
    if end + 8 > size:
        return None, 0
    previous, transfer_syntax = 0x00020000, None
    while position < end:
        group, element, vr, length = _EXPLICIT.unpack_from(data, position)
        tag = group << 16 | element
        if group != 0x0002 or tag <= previous or vr not in _VR_NAMES:
            return None, 0
        if vr in _LONG_VRS:
            length = _LONG_LENGTH.unpack_from(data, position + 8)[0]
            position += 12
        else:
            position += 8
        if length == _UNDEFINED or position + length > end:
            return None, 0
        if tag == 0x00020010:
            value = data[position:position + length]
            if not _PLAIN_UID.match(value):
                return None, 0
            transfer_syntax = value.rstrip(b"\0").decode("ascii")
        position += length
        previous = tag
    # pydicom reads on while the groups are 0002 (and a command set after).
    if struct.unpack_from("<H", data, end)[0] in (0x0000, 0x0002):
        return None, 0
    return transfer_syntax, end


def _data_set(data, position, implicit, last_tag=None):
    """({tag: RawDataElement or DataElement of a sequence}, where the pixel
    data starts or None) of the top level of the data set (up to
    ``last_tag``, when given), or None."""
    size = len(data)
    elements = {}
    previous = 0
    first = True
    explicit = not implicit
    while position < size:
        if position + 8 > size or len(elements) > _MAX_ELEMENTS:
            return None
        if implicit:
            group, element, length = _IMPLICIT.unpack_from(data, position)
            if first and 0x40 < data[position + 4] < 0x5B and 0x40 < data[position + 5] < 0x5B:
                return None  # pydicom would read it as explicit VR
            vr = None
            header = 8
        else:
            group, element, vr_bytes, length = _EXPLICIT.unpack_from(data, position)
            vr = _VR_NAMES.get(vr_bytes)
            if vr is None:
                return None  # pydicom would guess
            if vr_bytes in _LONG_VRS:
                if position + 12 > size:
                    return None
                length = _LONG_LENGTH.unpack_from(data, position + 8)[0]
                header = 12
            else:
                header = 8
        tag = group << 16 | element
        if tag in _PIXEL_TAGS:
            return elements, position
        if last_tag is not None and tag > last_tag:
            return elements, None
        if tag <= previous or group in (0x0000, 0x0002) or group >= 0xFFFE:
            return None
        first = False
        previous = tag
        start = position + header
        if length == _UNDEFINED:
            found = _sequence(data, position, start, tag, vr, implicit, elements)
            if found is None:
                return None
            elements[tag], position = found
            continue
        end = start + length
        if end > size:
            return None
        vr_name = vr if explicit else dictionary.lookup_vr(tag)
        if vr_name in MISALIGNED_VRS and is_misaligned(length, vr_name):
            return None
        if vr_name == "SQ":
            try:
                walk_elements(data, start, explicit, True, end=end, in_sequence=True)
            except Exception:
                return None
        value = data[start:end] if length else empty_value_for_VR(vr, raw=True)
        elements[tag] = RawDataElement(BaseTag(tag), vr, length, value, start, implicit, True)
        position = end
    return elements, None


def _encoding_so_far(elements):
    raw = elements.get(0x00080005)
    if raw is None:
        return default_encoding
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # as the full reading: no warning per upload
        return convert_encodings(convert_string(raw.value or b"", True))


def _sequence(data, position, start, tag, vr, implicit, elements):
    """(the DataElement pydicom makes of an undefined-length sequence, where
    it ends), checked as reading._read checks it, or None.  ``elements``:
    those before it (pydicom parses the items in the character set read
    so far)."""
    if implicit:
        try:
            if dictionary_VR(tag) != "SQ":
                return None
        except KeyError:
            return None
    elif vr != "SQ":
        return None
    try:
        end = walk_elements(data, start, not implicit, True, until=_SEQUENCE_END, in_sequence=True)
        stream = GuardedStream(data)
        stream.seek(position)
        element = next(data_element_generator(stream, implicit, True,
                                              encoding=_encoding_so_far(elements)))
        if stream.tell() != end or not isinstance(element.value, Sequence):
            return None
        for item in element.value:
            check_structure(item, 1)
    except Exception:
        return None
    return element, end
