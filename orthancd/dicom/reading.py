"""Parsing DICOM files the way Orthanc accepts or refuses them.

Orthanc (through DCMTK) reads Part-10 files and also bare datasets without
the 128-byte preamble, guessing the transfer syntax.  Whatever cannot be read
is refused with 'Bad file format' and the details string built below.
"""
import io
import mmap
import os
import re
import struct
import warnings

import pydicom
from pydicom.dataelem import RawDataElement

from orthancd.dicom import dictionary
from orthancd.dicom.elements import is_misaligned
from orthancd.dicom.format_error import DicomFormatError, invalid_file_details

PIXEL_DATA = 0x7FE00010
DEFLATED_TRANSFER_SYNTAX = "1.2.840.10008.1.2.1.99"


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
        return _read(bytes(source), GuardedStream, stop_before_pixels)
    # A file is mapped, not read: only its header is parsed, and the
    # truncation walk only looks at element headers.
    with open(source, "rb") as f:
        if os.fstat(f.fileno()).st_size == 0:
            return _read(b"", GuardedStream, stop_before_pixels)
        with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
            dataset = _read(data, GuardedStream, stop_before_pixels)
    # Everything was read: drop pydicom's reference to the (closed) mapping.
    dataset.buffer = None
    return dataset


# Hostile files (an inflated zip or gzip member, mostly) can hold hundreds of
# megabytes of tiny elements.  A run of zero bytes reads as empty (0000,0000)
# elements, which DCMTK ignores as duplicates: both walks below jump over such
# runs at C speed.  Any other flood of elements is cut short by a budget far
# above what real headers hold (enhanced multi-frame headers have some 10^5):
# pydicom needs a few seconds for it.
MAX_ELEMENT_READS = 2000000
_EIGHT_ZEROS = bytes(8)
_NON_ZERO = re.compile(rb"[^\x00]")


class _TooManyElements(Exception):
    pass


_ZERO_CHUNK = bytes(1 << 20)


def _zero_run_end(data, position, end):
    """Where the run of whole 8-byte zero blocks starting at ``position`` ends."""
    stop = position
    while stop < end:
        # Whole chunks compare at memcmp speed; the last one is searched.
        size = min(len(_ZERO_CHUNK), end - stop)
        if data[stop:stop + size] != _ZERO_CHUNK[:size]:
            found = _NON_ZERO.search(data, stop, stop + size)
            stop = found.start()
            break
        stop += size
    return position + (stop - position) // 8 * 8


class GuardedStream:
    """The stream pydicom parses, over bytes or a mapping: it skips runs of
    empty elements after the first and stops a flood of reads."""

    def __init__(self, data):
        self._data = data
        self._position = 0
        self._reads = 0

    def read(self, size=-1):
        self._reads += 1
        if self._reads > MAX_ELEMENT_READS:
            raise _TooManyElements()
        start = self._position
        stop = len(self._data) if size is None or size < 0 else min(start + size, len(self._data))
        chunk = self._data[start:stop]
        self._position = stop
        if size == 8 and chunk == _EIGHT_ZEROS:
            # Whether a header or a value was read, an element boundary follows.
            self._position = _zero_run_end(self._data, stop, len(self._data))
        return chunk

    def seek(self, offset, whence=0):
        if whence == 1:
            offset += self._position
        elif whence == 2:
            offset += len(self._data)
        self._position = max(offset, 0)
        return self._position

    def tell(self):
        return self._position


def _read(data, stream_of, stop_before_pixels):
    has_preamble = len(data) >= 132 and data[128:132] == b"DICM"
    if not has_preamble and not _looks_like_bare_dataset(data):
        raise DicomFormatError(invalid_file_details(len(data)))
    stream = stream_of(data)
    # Stream positions are meaningless inside a deflated dataset: read it all.
    deflated = DEFLATED_TRANSFER_SYNTAX.encode() in data[:1024]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = pydicom.dcmread(stream, force=True,
                                 stop_before_pixels=stop_before_pixels and not deflated)
            if has_preamble and not deflated:
                ds = _split_meta_as_dcmtk(data, stream, ds, stop_before_pixels)
            if len(ds) == 0 and not getattr(ds, "file_meta", None):
                raise DicomFormatError(invalid_file_details(len(data)))
            # Force the element walk now: pydicom parses lazily and a broken
            # file must be refused at upload, not when /tags is requested.
            check_structure(ds, 0)
    except DicomFormatError:
        raise
    except Exception:
        # The parser's boundary with untrusted bytes: whatever pydicom raises
        # on them (InvalidDicomError, struct.error, ValueError, RecursionError,
        # unsupported-feature errors...) means "not a file we can store".
        raise DicomFormatError(invalid_file_details(len(data)))
    if not deflated:
        _check_not_truncated(data, ds, has_preamble)
    if stop_before_pixels and deflated:
        ds.pixel_data_follows = PIXEL_DATA in ds
        if ds.pixel_data_follows:
            del ds[PIXEL_DATA]
    elif stop_before_pixels:
        position = stream.tell()
        ds.pixel_data_follows = _tag_at(data, position, ds) == PIXEL_DATA
    else:
        ds.pixel_data_follows = False
    # Where the PixelData element starts in the file (Orthanc's PixelDataOffset);
    # like Orthanc, only for Part-10 files (with their preamble).
    ds.pixel_data_offset = position if getattr(ds, "pixel_data_follows", False) and \
        stop_before_pixels and not deflated and has_preamble else None
    ds.pixel_data_vr = None
    if ds.pixel_data_offset is not None:
        ds.pixel_data_vr = unexpected_pixel_data_vr(data, position, ds)
    return ds


def unexpected_pixel_data_vr(data, position, ds):
    """The VR of native pixel data written explicitly in the file when it is
    not the one implied by BitsAllocated (OB up to 8 bits, OW above): Orthanc
    records it as the PixelDataVR metadata."""
    implicit, little = getattr(ds, "original_encoding", None) or (None, None)
    if implicit is None:
        implicit = getattr(ds, "is_implicit_VR", False)
        little = getattr(ds, "is_little_endian", True)
    vr = bytes(data[position + 4:position + 6])
    if implicit or not (vr.isalpha() and vr.isupper()) or position + 12 > len(data):
        return None
    if vr in _LONG_LENGTH_VRS:
        length = struct.unpack("<I" if little is not False else ">I",
                               data[position + 8:position + 12])[0]
        if length == _UNDEFINED:
            return None  # encapsulated (compressed) pixel data
    bits = ds.get(0x00280100)
    try:
        bits = int(bits.value) if bits is not None and bits.value not in (None, "") else 0
    except (TypeError, ValueError):
        bits = 0
    expected = b"OB" if bits <= 8 else b"OW"
    return None if vr == expected else vr.decode("ascii")


def _dcmtk_meta_end(data):
    """Where DCMTK ends the file meta group: after as many bytes as its
    group length (0002,0000) announces, whatever the groups of the elements
    found there; without a group length, at the first element outside group
    0002.  None when the header cannot be walked."""
    try:
        position = 132
        group, element = struct.unpack("<HH", data[position:position + 4])
        if (group, element) != (0x0002, 0x0000) or data[position + 4:position + 6] != b"UL" \
                or struct.unpack("<H", data[position + 6:position + 8])[0] != 4:
            return walk_elements(data, position, True, True, stop_group=0x0002)
        header_length = struct.unpack("<I", data[position + 8:position + 12])[0]
        start = position = position + 12
        while position - start < header_length and position < len(data):
            position = walk_elements(data, position, True, True, end=_element_end(data, position))
        return position
    except (_Truncated, _Misaligned, struct.error):
        return None


def _element_end(data, position):
    """End of the explicit VR little endian element starting at ``position``
    (defined lengths only: the file meta group has no sequences)."""
    vr = data[position + 4:position + 6]
    if vr in _LONG_LENGTH_VRS:
        return position + 12 + struct.unpack("<I", data[position + 8:position + 12])[0]
    return position + 8 + struct.unpack("<H", data[position + 6:position + 8])[0]


def _split_meta_as_dcmtk(data, stream, ds, stop_before_pixels):
    """pydicom reads the file meta group as long as the tags are in group
    0002; DCMTK trusts the group length.  When they disagree (a data set
    element inside the announced length, or group 0002 elements after it),
    read the two parts again where DCMTK puts the boundary."""
    dcmtk_end = _dcmtk_meta_end(data)
    if dcmtk_end is None or dcmtk_end == dataset_offset(data):
        return ds
    meta = pydicom.filereader.read_dataset(io.BytesIO(bytes(data[132:dcmtk_end])), False, True)
    transfer_syntax = pydicom.uid.UID(str(meta.get("TransferSyntaxUID", "")).rstrip("\0 ") or
                                      pydicom.uid.ImplicitVRLittleEndian)
    implicit = transfer_syntax.is_implicit_VR if transfer_syntax.is_transfer_syntax else False
    little = transfer_syntax.is_little_endian if transfer_syntax.is_transfer_syntax else True
    stream.seek(dcmtk_end)
    stop_when = pydicom.filereader._at_pixel_data if stop_before_pixels else None
    dataset = pydicom.filereader.read_dataset(stream, implicit, little, stop_when=stop_when)
    group_2 = pydicom.dataset.FileMetaDataset({tag: meta.get_item(tag, keep_deferred=True)
                                               for tag in meta.keys() if tag >> 16 == 0x0002})
    result = pydicom.dataset.FileDataset(stream, dataset, bytes(data[:128]), group_2,
                                         implicit, little)
    for tag in meta.keys():
        if tag >> 16 != 0x0002:
            # Kept in the meta group as DCMTK does (pydicom would refuse them there).
            result.file_meta._dict[tag] = meta.get_item(tag, keep_deferred=True)
    result.set_original_encoding(implicit, little, dataset._character_set)
    return result


def dataset_offset(data):
    """Where the data set starts in a Part-10 file's bytes (after the file
    meta group); None when ``data`` has no Part-10 header or it is cut short."""
    if len(data) < 132 or data[128:132] != b"DICM":
        return None
    try:
        return walk_elements(data, 132, True, True, stop_group=0x0002)
    except (_Truncated, _TooManyElements, _Misaligned, struct.error):
        return None


MISALIGNED_VRS = frozenset(("AT", "OL", "OF", "OD", "OV"))
# Orthanc crashes on pathological nesting; refusing them is safer.
MAX_SEQUENCE_DEPTH = 64


def check_structure(ds, depth):
    if depth > MAX_SEQUENCE_DEPTH:
        raise DicomFormatError("Too many nested sequences")
    for key in list(ds.keys()):
        element = ds.get_item(key, keep_deferred=True)
        if isinstance(element, RawDataElement) and element.length != _UNDEFINED:
            vr = element.VR or dictionary.lookup_vr(int(key))
            if vr in MISALIGNED_VRS and is_misaligned(element.length, vr):
                # DCMTK stops reading there: Orthanc says 'Bad file format', no details.
                raise DicomFormatError(None)
        value = getattr(element, "value", None)
        if isinstance(value, pydicom.sequence.Sequence):
            for item in value:
                check_structure(item, depth + 1)


def _tag_at(data, position, ds):
    if position + 4 > len(data):
        return None
    little = getattr(ds, "is_little_endian", True) is not False
    group, element = struct.unpack("<HH" if little else ">HH", data[position:position + 4])
    return (group << 16) | element


# -- truncation: DCMTK refuses a file whose last element is cut short; pydicom
# quietly stops at the end of the buffer, so the element lengths are walked here.

_LONG_LENGTH_VRS = {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN",
                    b"UR", b"UT", b"UV"}
_ITEM, _ITEM_END, _SEQUENCE_END = 0xFFFEE000, 0xFFFEE00D, 0xFFFEE0DD
_UNDEFINED = 0xFFFFFFFF


class _Truncated(Exception):
    pass


class _Misaligned(Exception):
    """An AT or O[DFLV] element (in an explicit VR item) whose length DCMTK
    cannot split into values."""


def _check_not_truncated(data, ds, has_preamble):
    original = getattr(ds, "original_encoding", None) or (None, None)
    implicit, little = original
    if implicit is None:
        implicit = getattr(ds, "is_implicit_VR", False)
        little = getattr(ds, "is_little_endian", True)
    try:
        position = 132 if has_preamble else 0
        if has_preamble or bytes(data[:2]) == b"\x02\x00":
            # The file meta group (also found without the preamble) is
            # always explicit VR little endian.
            position = walk_elements(data, position, True, True, stop_group=0x0002)
        walk_elements(data, position, not implicit, little is not False)
    except (_Truncated, _TooManyElements, struct.error, RecursionError):
        # Too deep a nesting is refused like a broken file (Orthanc crashes).
        raise DicomFormatError(invalid_file_details(len(data)))
    except _Misaligned:
        raise DicomFormatError(None)


def walk_elements(data, position, explicit, little, end=None, stop_group=None, until=None,
          budget=None, in_sequence=False):
    """Skip elements from ``position``; return where the walk stopped.  Stops at
    ``end``, at the first tag outside ``stop_group``, or after the delimiter
    ``until``.  Items are walked into when ``in_sequence`` (not the fragments
    of encapsulated pixel data)."""
    end = len(data) if end is None else end
    order = "<" if little else ">"
    budget = [MAX_ELEMENT_READS] if budget is None else budget
    while position < end:
        if position + 8 > end:
            raise _Truncated()
        budget[0] -= 1
        if budget[0] < 0:
            raise _TooManyElements()
        group, element = struct.unpack(order + "HH", data[position:position + 4])
        tag = (group << 16) | element
        if stop_group is not None and group != stop_group:
            return position
        if tag == 0 and data[position:position + 8] == _EIGHT_ZEROS:
            position = max(_zero_run_end(data, position, end), position + 8)
            continue
        if group == 0xFFFE:
            length = struct.unpack(order + "I", data[position + 4:position + 8])[0]
            position += 8
            if tag == until:
                return position
            if tag == _ITEM:
                if length == _UNDEFINED:
                    position = walk_elements(data, position, explicit, little, until=_ITEM_END,
                                     budget=budget)
                elif in_sequence:
                    if position + length > end:
                        raise _Truncated()
                    walk_elements(data, position, explicit, little, end=position + length, budget=budget)
                    position += length
                else:
                    position += length
                continue
            if length != _UNDEFINED:
                position += length
            continue
        vr = data[position + 4:position + 6]
        if explicit and vr.isalpha() and vr.isupper():
            vr_name = vr.decode("ascii")
            if vr in _LONG_LENGTH_VRS:
                if position + 12 > end:
                    raise _Truncated()
                length = struct.unpack(order + "I", data[position + 8:position + 12])[0]
                position += 12
            else:
                length = struct.unpack(order + "H", data[position + 6:position + 8])[0]
                position += 8
        else:
            vr_name = dictionary.lookup_vr(tag) if group != 0x0002 else None
            length = struct.unpack(order + "I", data[position + 4:position + 8])[0]
            position += 8
        if length == _UNDEFINED:
            # A sequence (or encapsulated pixel data); UN content is implicit VR.
            nested_explicit = explicit and vr != b"UN"
            position = walk_elements(data, position, nested_explicit, little, until=_SEQUENCE_END,
                             budget=budget, in_sequence=vr_name in ("SQ", "UN", None))
            continue
        if vr_name in MISALIGNED_VRS and is_misaligned(length, vr_name):
            raise _Misaligned()
        if vr_name == "SQ":
            if position + length > end:
                raise _Truncated()
            walk_elements(data, position, explicit, little, end=position + length, budget=budget,
                  in_sequence=True)
        position += length
        if position > end:
            raise _Truncated()
    if until is not None and end == len(data):
        raise _Truncated()
    return position
