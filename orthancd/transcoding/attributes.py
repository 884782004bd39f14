"""What DCMTK writes in a data set when it compresses its pixel data
(dcmjpeg / dcmjpls encoders, DcmCodec::newInstance), as Orthanc 1.13.0's
files show it:

- a derivation description naming the compression, before the previous
  one in brackets;
- after a lossy compression: Lossy Image Compression "01", the ratio and
  method appended to the previous ones, Image Type value 1 "DERIVED", a
  new SOP Instance UID, the former instance as the Source Image Sequence
  ("Uncompressed predecessor") and "Lossy Compression" as the Derivation
  Code Sequence (each replacing what the sequence held).
"""
from orthancd.dicom.uids import generate_uid
from orthancd.ids import ResourceLevel
from orthancd.modification import values

IMAGE_TYPE = 0x00080008
SOP_CLASS_UID = 0x00080016
SOP_INSTANCE_UID = 0x00080018
DERIVATION_DESCRIPTION = 0x00082111
SOURCE_IMAGE_SEQUENCE = 0x00082112
DERIVATION_CODE_SEQUENCE = 0x00089215
REFERENCED_SOP_CLASS_UID = 0x00081150
REFERENCED_SOP_INSTANCE_UID = 0x00081155
PURPOSE_OF_REFERENCE_CODE_SEQUENCE = 0x0040A170
CODE_VALUE = 0x00080100
CODING_SCHEME_DESIGNATOR = 0x00080102
CODE_MEANING = 0x00080104
LOSSY_IMAGE_COMPRESSION = 0x00282110
LOSSY_IMAGE_COMPRESSION_RATIO = 0x00282112
LOSSY_IMAGE_COMPRESSION_METHOD = 0x00282114

MAXIMUM_DESCRIPTION_LENGTH = 1024  # VR ST


def ratio_text(uncompressed_bytes, compressed_bytes):
    """DCMTK's compression ratio: five significant digits."""
    return "%.5g" % (uncompressed_bytes / max(1, compressed_bytes))


def _put_string(edited, tag, text):
    edited.put(values.string_element(tag, text, edited.encoding, "", False))


def _strings(edited, tag):
    text = edited.string(tag)
    return text.split("\\") if text else []


def describe(edited, text):
    """Prepend ``text`` to the Derivation Description."""
    previous = edited.string(DERIVATION_DESCRIPTION)
    if previous:
        text = "%s [%s]" % (text, previous)
    _put_string(edited, DERIVATION_DESCRIPTION, text[:MAXIMUM_DESCRIPTION_LENGTH])


def mark_lossy(edited, ratio, method):
    """The attributes of an image that went through lossy compression."""
    _put_string(edited, LOSSY_IMAGE_COMPRESSION, "01")
    ratios = _strings(edited, LOSSY_IMAGE_COMPRESSION_RATIO)
    methods = _strings(edited, LOSSY_IMAGE_COMPRESSION_METHOD)
    methods += [""] * (len(ratios) - len(methods))
    _put_string(edited, LOSSY_IMAGE_COMPRESSION_RATIO, "\\".join(ratios + [ratio]))
    _put_string(edited, LOSSY_IMAGE_COMPRESSION_METHOD, "\\".join(methods + [method]))


def _code_item(encoding, value, scheme, meaning):
    item = values.new_item(encoding)
    for tag, text in ((CODE_VALUE, value), (CODING_SCHEME_DESIGNATOR, scheme),
                      (CODE_MEANING, meaning)):
        item[tag] = values.string_element(tag, text, encoding, "", False)
    return item


def _put_item(edited, tag, item):
    """The sequence becomes this one item (DCMTK replaces what was there)."""
    edited.put(values.sequence_element(tag, [item]))


def new_instance(edited):
    """DcmCodec::newInstance and the image type update: the data set
    becomes a new, derived instance.  Returns the new SOP Instance UID."""
    encoding = edited.encoding
    image_type = _strings(edited, IMAGE_TYPE)
    if image_type:
        _put_string(edited, IMAGE_TYPE, "\\".join(["DERIVED"] + image_type[1:]))
    source = values.new_item(encoding)
    source[REFERENCED_SOP_CLASS_UID] = values.string_element(
        REFERENCED_SOP_CLASS_UID, edited.string(SOP_CLASS_UID) or "", encoding, "", False)
    source[REFERENCED_SOP_INSTANCE_UID] = values.string_element(
        REFERENCED_SOP_INSTANCE_UID, edited.string(SOP_INSTANCE_UID) or "", encoding, "", False)
    source[PURPOSE_OF_REFERENCE_CODE_SEQUENCE] = values.sequence_element(
        PURPOSE_OF_REFERENCE_CODE_SEQUENCE,
        [_code_item(encoding, "121320", "DCM", "Uncompressed predecessor")])
    _put_item(edited, SOURCE_IMAGE_SEQUENCE, source)
    _put_item(edited, DERIVATION_CODE_SEQUENCE,
                 _code_item(encoding, "113040", "DCM", "Lossy Compression"))
    uid = generate_uid(ResourceLevel.INSTANCE)
    _put_string(edited, SOP_INSTANCE_UID, uid)
    return uid
