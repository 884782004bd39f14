"""Editing a parsed DICOM file (a pydicom dataset) the way Orthanc's
ParsedDicomFile edits it through DCMTK, and writing it back.

Elements nobody touches stay raw: their bytes go back to the file as they
came.  Sequences are opened (parsed into items) only where a path or the
anonymization walk goes.  Written back, the file gets a new file meta
header made from the data set alone (DCMTK's validateMetaInfo on a fresh
DcmFileFormat), with DCMTK's implementation identifiers, and every
sequence and item with an explicit length, as DCMTK writes them.
"""
import zlib

import numpy as np
import pydicom
from pydicom.charset import default_encoding
from pydicom.dataelem import RawDataElement
from pydicom.dataset import FileMetaDataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import correct_ambiguous_vr, write_data_element, write_file_meta_info
from pydicom.sequence import Sequence
from pydicom.uid import UID

from orthancd.dicom import charsets, elements
from orthancd.dicom.reading import read_dataset
from orthancd.modification import values

SPECIFIC_CHARACTER_SET = 0x00080005
SOP_CLASS_UID = 0x00080016
SOP_INSTANCE_UID = 0x00080018
IMPLICIT_LITTLE_ENDIAN = "1.2.840.10008.1.2"
EXPLICIT_LITTLE_ENDIAN = "1.2.840.10008.1.2.1"
EXPLICIT_BIG_ENDIAN = "1.2.840.10008.1.2.2"
DEFLATED_LITTLE_ENDIAN = "1.2.840.10008.1.2.1.99"
UNCOMPRESSED_SYNTAXES = (IMPLICIT_LITTLE_ENDIAN, EXPLICIT_LITTLE_ENDIAN, EXPLICIT_BIG_ENDIAN,
                         DEFLATED_LITTLE_ENDIAN)

PIXEL_DATA = 0x7FE00010
# DCMTK's UID for "a file of unknown SOP class" (UID_PrivateGenericFileSOPClass).
UNKNOWN_SOP_CLASS_UID = "1.2.276.0.7230010.3.1.0.1"

# What DCMTK 3.7.0 (the one Orthanc 1.13.0 is built with) writes in the
# file meta header of the files it saves.
IMPLEMENTATION_CLASS_UID = "1.2.276.0.7230010.3.0.3.7.0"
IMPLEMENTATION_VERSION_NAME = "OFFIS_DCMTK_370"

# Orthanc's ORTHANC_MAXIMUM_TAG_LENGTH: longer values are left out of its
# DICOM summaries.
MAXIMUM_SUMMARY_LENGTH = 256

# What the anonymization walk tells to do with an element.
KEEP, REMOVE, REPLACE = "keep", "remove", "replace"


class EditedFile:
    """One parsed DICOM file being modified."""

    def __init__(self, dataset, default_encoding="Latin1"):
        self.dataset = dataset
        self.default_encoding = default_encoding
        implicit, little = getattr(dataset, "original_encoding", (None, None))
        if implicit is None:
            implicit = getattr(dataset, "is_implicit_VR", False) or False
            little = getattr(dataset, "is_little_endian", True)
            if little is None:
                little = True
        self.is_implicit_vr = implicit
        self.is_little_endian = little

    @classmethod
    def parse(cls, data, default_encoding="Latin1"):
        return cls(read_dataset(data), default_encoding)

    # -- what the file says --

    @property
    def charset(self):
        return elements.dataset_encoding(self.dataset, self.default_encoding)

    @property
    def encoding(self):
        return values.Encoding(self.is_implicit_vr, self.is_little_endian, self.charset.encoding)

    @property
    def transfer_syntax(self):
        meta = getattr(self.dataset, "file_meta", None)
        if meta is not None and 0x00020010 in meta:
            uid = meta.get_item(0x00020010, keep_deferred=True).value
            if isinstance(uid, bytes):
                uid = uid.decode("ascii", "ignore")
            uid = str(uid or "").rstrip("\0 ")
            if uid:
                return uid
        if self.is_implicit_vr:
            return IMPLICIT_LITTLE_ENDIAN
        return EXPLICIT_LITTLE_ENDIAN if self.is_little_endian else EXPLICIT_BIG_ENDIAN

    def has(self, tag):
        return tag in self.dataset

    def string(self, tag):
        """ParsedDicomFile::GetTagValue of a top-level element as text
        (None when absent): what a DICOM identifier reads as."""
        if tag not in self.dataset:
            return None
        raw = self.dataset.get_item(tag, keep_deferred=True)
        vr = _vr_of(raw, tag, None, self.dataset)
        if isinstance(raw, RawDataElement):
            value = elements.decode_leaf(raw.value or b"", vr, tag, None, self.charset,
                                         raw.is_little_endian)
        else:
            value = elements._converted_leaf(raw, vr, tag, None, self.charset)
        return value if isinstance(value, str) else ""

    def module_strings(self, tags):
        """{tag: text} of the top-level text elements among ``tags``, as
        Orthanc's DICOM summary holds them: values over 256 bytes, binary
        values and sequences are not part of it."""
        found = {}
        for tag in tags:
            if tag not in self.dataset:
                continue
            raw = self.dataset.get_item(tag, keep_deferred=True)
            vr = _vr_of(raw, tag, None, self.dataset)
            if vr not in elements.STRING_VRS or len(_raw_bytes(raw)) > MAXIMUM_SUMMARY_LENGTH:
                continue
            found[tag] = self.string(tag)
        return found

    # -- editing the top level --

    def remove(self, tag):
        if tag in self.dataset:
            del self.dataset[tag]

    def remove_private_tags(self, kept=frozenset()):
        for tag in list(self.dataset.keys()):
            if (tag >> 16) % 2 == 1 and int(tag) not in kept:
                del self.dataset[tag]

    def put(self, element):
        self.dataset[element.tag] = element

    # -- paths into sequences --

    def visit_path(self, path, visit):
        """Call ``visit(item, tag)`` on every item (the dataset itself for a
        top-level path) holding the final tag of ``path``, following the
        sequences of its prefix (FromDcmtkBridge::IDicomPathVisitor)."""
        self._visit_path(self.dataset, path, 0, visit)

    def _visit_path(self, item, path, level, visit):
        if level == len(path.prefix):
            visit(item, path.final)
            return
        sequence, index = path.prefix[level]
        items = sequence_items(item, sequence)
        if items is None:
            return
        for position, child in enumerate(items):
            if index is None or index == position:
                self._visit_path(child, path, level + 1, visit)

    def remove_path(self, path):
        def remove(item, tag):
            if tag in item:
                del item[tag]
        self.visit_path(path, remove)

    def clear_path(self, path, only_if_exists=True):
        """Replace a value by an empty one of the dictionary's VR
        (DcmItem::insertEmptyElement)."""
        encoding = self.encoding

        def clear(item, tag):
            if only_if_exists and tag not in item:
                return
            vr = values.element_vr(tag, None)
            item[tag] = values.empty_element(tag, vr, encoding)
        self.visit_path(path, clear)

    def replace_path(self, path, make_element, insert_if_absent=True):
        """Put a fresh element made by ``make_element()`` in every item the
        path reaches (the element is built once, errors before any change)."""
        element = make_element()

        def replace(item, tag):
            if tag not in item and not insert_if_absent:
                return
            item[tag] = _copy(element)
        self.visit_path(path, replace)

    # -- the anonymization walk --

    def walk(self, visitor):
        """FromDcmtkBridge::Apply: show every element, nested ones included,
        to ``visitor`` (see modification.RelationshipsVisitor), then apply
        what it answers: keep, remove, or (strings only) replace."""
        self._walk(self.dataset, visitor, (), (), self.charset)

    def _walk(self, item, visitor, parent_tags, parent_indexes, charset):
        encoding = self.encoding
        creators = elements.private_creators(item)
        removed = []
        for tag in sorted(item.keys()):
            tag = int(tag)
            raw = item.get_item(tag, keep_deferred=True)
            vr = _vr_of(raw, tag, elements.creator_of(tag, creators), item)
            if vr == "SQ":
                items = sequence_items(item, tag)
                if items is not None:
                    if visitor.visit_other(parent_tags, parent_indexes, tag) == REMOVE:
                        removed.append(tag)
                        continue
                    for position, child in enumerate(items):
                        self._walk(child, visitor, parent_tags + (tag,),
                                   parent_indexes + (position,), charset)
                    continue
            if vr in elements.STRING_VRS:
                data = _raw_bytes(raw)
                text = charsets.decode(elements.machine_string(data), charset,
                                       vr not in charsets.SINGLE_VALUE_VRS)
                action, new_value = visitor.visit_string(parent_tags, parent_indexes, tag, text)
                if action == REPLACE:
                    item[tag] = values.raw_element(
                        tag, vr, values._padded(encoding.encode_text(new_value), vr), encoding)
                elif action == REMOVE:
                    removed.append(tag)
            elif visitor.visit_other(parent_tags, parent_indexes, tag) == REMOVE:
                removed.append(tag)
        for tag in removed:
            del item[tag]

    # -- writing --

    def serialize(self, transfer_syntax=None):
        """The file as DCMTK saves it: a fresh file meta header made from
        the data set, explicit lengths, the group lengths the file had
        recalculated, in ``transfer_syntax`` (by default the file's own;
        only uncompressed syntaxes can be switched to)."""
        dataset = self.dataset
        target = UID(transfer_syntax or self.transfer_syntax)
        _explicit_lengths(dataset)
        meta = FileMetaDataset()
        meta.FileMetaInformationVersion = b"\x00\x01"
        # DCMTK names an absent SOP class with its own private UID.
        meta.MediaStorageSOPClassUID = self.string(SOP_CLASS_UID) or UNKNOWN_SOP_CLASS_UID
        meta.MediaStorageSOPInstanceUID = self.string(SOP_INSTANCE_UID) or ""
        meta.TransferSyntaxUID = target
        meta.ImplementationClassUID = IMPLEMENTATION_CLASS_UID
        meta.ImplementationVersionName = IMPLEMENTATION_VERSION_NAME
        group_lengths = set()
        for tag in list(dataset.keys()):
            if tag & 0xFFFF == 0 and not _invalid_in_data_set(tag >> 16):
                group_lengths.add(tag >> 16)
                del dataset[tag]
        implicit = target == IMPLICIT_LITTLE_ENDIAN
        little = target != EXPLICIT_BIG_ENDIAN
        if little != self.is_little_endian:
            _swap_words(dataset)
        if (implicit, little) == (self.is_implicit_vr, self.is_little_endian):
            # Strings stay in the bytes they were read in, even when (0008,0005)
            # changed (Orthanc converts nothing but the values it writes).
            dataset.set_original_encoding(implicit, little, dataset._character_set)
        if PIXEL_DATA in dataset:
            pixels = dataset.get_item(PIXEL_DATA, keep_deferred=True)
            if not isinstance(pixels, RawDataElement):
                pixels.is_undefined_length = target.is_compressed
            elif pixels.length == 0xFFFFFFFF and pixels.VR == "OW":
                # DCMTK writes encapsulated pixel data as OB.
                dataset[PIXEL_DATA] = pixels._replace(VR="OB")
        out = DicomBytesIO()
        out.is_implicit_VR, out.is_little_endian = False, True
        out.write(b"\0" * 128 + b"DICM")
        write_file_meta_info(out, meta, enforce_standard=True)
        body = DicomBytesIO()
        body.is_implicit_VR, body.is_little_endian = implicit, little
        _write_dataset(body, dataset, group_lengths)
        data = body.getvalue()
        if target == DEFLATED_LITTLE_ENDIAN:
            compressor = zlib.compressobj(wbits=-zlib.MAX_WBITS)
            data = compressor.compress(data) + compressor.flush()
        out.write(data)
        return out.getvalue()


def _write_dataset(fp, dataset, group_lengths):
    """pydicom's write_dataset, but with the group lengths of
    ``group_lengths`` written (recalculated) as DCMTK does."""
    get_item = dataset.get_item
    if ((fp.is_implicit_VR, fp.is_little_endian) != dataset.original_encoding
            or dataset.original_character_set != dataset._character_set):
        # Transcoding: every element is converted.
        dataset = correct_ambiguous_vr(dataset, fp.is_little_endian)
        get_item = dataset.__getitem__
    encodings = dataset.get("SpecificCharacterSet", default_encoding)
    groups = {group: [] for group in group_lengths}
    for tag in sorted(dataset.keys()):
        groups.setdefault(tag >> 16, []).append(tag)
    for group in sorted(groups):
        if group not in group_lengths:
            for tag in groups[group]:
                write_data_element(fp, get_item(tag), encodings)
            continue
        buffer = DicomBytesIO()
        buffer.is_implicit_VR, buffer.is_little_endian = fp.is_implicit_VR, fp.is_little_endian
        for tag in groups[group]:
            write_data_element(buffer, get_item(tag), encodings)
        fp.write_tag(group << 16)
        if not fp.is_implicit_VR:
            fp.write(b"UL")
            fp.write_US(4)
        else:
            fp.write_UL(4)
        fp.write_UL(len(buffer.getvalue()))
        fp.write(buffer.getvalue())


def _raw_bytes(element):
    if isinstance(element, RawDataElement):
        return element.value or b""
    return elements._value_bytes(element.value)


def _vr_of(raw, tag, creator, item):
    """The VR DCMTK sees: the file's (explicit VR), else the dictionary's;
    UN elements the dictionary knows are taken as what it says."""
    vr = elements._element_vr(raw, tag, creator, item)
    if vr == "UN" and not isinstance(raw, RawDataElement):
        return vr
    if vr in ("ox", "px"):
        return "OB"
    return vr


def sequence_items(item, tag):
    """The items of a sequence element, opened for editing; None when the
    element is absent or not a sequence."""
    if tag not in item:
        return None
    raw = item.get_item(tag, keep_deferred=True)
    vr = _vr_of(raw, tag, elements.creator_of(tag, elements.private_creators(item)), item)
    if vr != "SQ":
        return None
    try:
        element = item[tag]
    except Exception:
        return None  # a broken nested sequence stays as it is
    value = element.value
    if isinstance(value, Sequence):
        return value
    if value is None or value == b"" or value == []:
        element.value = Sequence([])
        return element.value
    return None


def _dcmtk_string(raw, vr):
    """A text value as DCMTK writes back what it read: up to its first
    NUL, without its trailing padding (NULs for UIDs, spaces otherwise),
    padded again to an even length."""
    data = raw.value or b""
    padding = b"\0" if vr == "UI" else b" "
    nul = data.find(b"\0")
    if nul >= 0 and vr != "UI":
        data = data[:nul]
    data = data.rstrip(padding)
    if len(data) % 2:
        data += padding
    if data == raw.value or (not data and not raw.value):
        return raw
    return raw._replace(value=data, length=len(data))


# The VRs whose values are lists of binary words, kept as bytes by pydicom:
# their byte order is the transfer syntax's.
_WORD_SIZES = {"OW": 2, "OF": 4, "OL": 4, "OD": 8, "OV": 8}


def _swap_words(item):
    """Change the byte order of the word values of a data set (nested ones
    included), for a file written in the other endianness."""
    creators = elements.private_creators(item)
    for tag in list(item.keys()):
        raw = item.get_item(tag, keep_deferred=True)
        if not isinstance(raw, RawDataElement):
            if isinstance(raw.value, Sequence):
                for child in raw.value:
                    _swap_words(child)
            continue
        vr = _vr_of(raw, int(tag), elements.creator_of(int(tag), creators), item)
        if int(tag) == PIXEL_DATA and raw.VR is None:
            # Read without VR (implicit), DCMTK holds pixel data as OW,
            # whatever the bits allocated, and writes it so.
            vr = "OW"
            raw = raw._replace(VR="OW")
        if vr == "SQ":
            for child in sequence_items(item, int(tag)) or ():
                _swap_words(child)
            continue
        size = _WORD_SIZES.get(vr)
        if size is None or raw.length == 0xFFFFFFFF or not raw.value:
            continue
        data = raw.value
        usable = len(data) - len(data) % size
        swapped = np.frombuffer(data, "<u%d" % size, usable // size).byteswap().tobytes()
        item[tag] = raw._replace(value=swapped + bytes(data[usable:]))


def _invalid_in_data_set(group):
    """DCMTK's removeInvalidGroups: the command and file meta groups, and
    the groups no data set may hold, go (nested items included)."""
    return group in (0x0000, 0x0002) or (group % 2 == 1 and (group <= 7 or group == 0xFFFF))


def _explicit_lengths(item):
    """Open every sequence, to be written with explicit lengths (DCMTK's
    EET_ExplicitLength), keep the bytes of the strings inside as they are
    (no character set conversion when writing), with DCMTK's padding."""
    creators = None
    for tag in list(item.keys()):
        if _invalid_in_data_set(tag >> 16):
            del item[tag]
            continue
        raw = item.get_item(tag, keep_deferred=True)
        if isinstance(raw, RawDataElement):
            if creators is None:
                creators = elements.private_creators(item)
            vr = _vr_of(raw, int(tag), elements.creator_of(int(tag), creators), item)
            if vr in elements.STRING_VRS and raw.length != 0xFFFFFFFF:
                fixed = _dcmtk_string(raw, vr)
                if fixed is not raw:
                    item[tag] = fixed
                continue
            if vr != "SQ":
                continue
            if sequence_items(item, int(tag)) is None:
                continue
        elif not isinstance(raw.value, Sequence):
            continue
        element = item[tag]
        element.is_undefined_length = False
        for child in element.value:
            child.is_undefined_length_sequence_item = False
            _explicit_lengths(child)
            child._read_charset = child._character_set


def _copy(element):
    """An independent copy of a built element (one per item it goes to)."""
    if isinstance(element, RawDataElement):
        return element
    items = [_copy_item(child) for child in element.value]
    return values.sequence_element(element.tag, items)


def _copy_item(item):
    copy = pydicom.dataset.Dataset()
    copy.set_original_encoding(*item.original_encoding, None)
    copy.is_undefined_length_sequence_item = False
    for tag in item.keys():
        copy[tag] = _copy(item.get_item(tag, keep_deferred=True))
    return copy
