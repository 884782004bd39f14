"""Frames as stored: how many an instance has, the bytes of each (one
fragment run per frame in encapsulated pixel data), as Orthanc's
DicomFrameIndex finds them; the encapsulated PDF; Philips' PMSCT_RLE1."""
import struct

from orthancd.errors import ErrorCode, OrthancError
from orthancd.pixels.information import NUMBER_OF_FRAMES, ImageInformation, parse_unsigned, tag_text

PIXEL_DATA = 0x7FE00010
SOP_CLASS_UID = 0x00080016
ENCAPSULATED_DOCUMENT = 0x00420011
MIME_TYPE_OF_ENCAPSULATED_DOCUMENT = 0x00420012
PMSCT_CONTENT = 0x07A1100A
PMSCT_COMPRESSION_TYPE = 0x07A11011

ENCAPSULATED_PDF_STORAGE = "1.2.840.10008.5.1.4.1.1.104.1"
RT_DOSE_STORAGE = "1.2.840.10008.5.1.4.1.1.481.2"

IMPLICIT_LITTLE_ENDIAN = "1.2.840.10008.1.2"
EXPLICIT_LITTLE_ENDIAN = "1.2.840.10008.1.2.1"
DEFLATED_LITTLE_ENDIAN = "1.2.840.10008.1.2.1.99"
EXPLICIT_BIG_ENDIAN = "1.2.840.10008.1.2.2"
JPEG_BASELINE = "1.2.840.10008.1.2.4.50"
JPEG_2000_SYNTAXES = ("1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.4.91")
# In a video, the number of frames does not match the fragments: Orthanc
# sees one frame, the whole bitstream.
VIDEO_SYNTAXES = frozenset("1.2.840.10008.1.2.4.%d" % n for n in range(100, 109))

_ITEM = 0xFFFEE000
_SEQUENCE_DELIMITER = 0xFFFEE0DD


def transfer_syntax(dataset):
    meta = getattr(dataset, "file_meta", None)
    uid = None
    if meta is not None:
        uid = meta.get("TransferSyntaxUID")
    if uid:
        return str(uid).strip("\x00 ")
    if getattr(dataset, "is_little_endian", None) is False:
        return EXPLICIT_BIG_ENDIAN
    if getattr(dataset, "is_implicit_VR", None):
        return IMPLICIT_LITTLE_ENDIAN
    return EXPLICIT_LITTLE_ENDIAN


def is_encapsulated(dataset):
    element = dataset.get(PIXEL_DATA)
    return element is not None and bool(getattr(element, "is_undefined_length", False))


def frames_count(dataset):
    """Orthanc's count: NumberOfFrames, 1 when absent, 1 for videos."""
    if transfer_syntax(dataset) in VIDEO_SYNTAXES:
        return 1
    text = tag_text(dataset, NUMBER_OF_FRAMES)
    if text is None:
        return 1
    count = parse_unsigned(text)
    if count is None:
        raise OrthancError(ErrorCode.BadFileFormat, "Invalid number of frames")
    return count


def fragments(value):
    """The items of encapsulated pixel data (the first is the offset table)."""
    items = []
    position, size = 0, len(value)
    while position + 8 <= size:
        group, element, length = struct.unpack_from("<HHI", value, position)
        tag = (group << 16) | element
        if tag == _SEQUENCE_DELIMITER:
            break
        position += 8
        if tag != _ITEM or length == 0xFFFFFFFF or position + length > size:
            raise OrthancError(ErrorCode.BadFileFormat)
        items.append((position, length))
        position += length
    return items


def native_pixel_bytes(dataset):
    """Native pixel data as DCMTK holds it in memory: in host (little)
    endian order, words swapped when the file is big endian and the value
    is made of words (OW)."""
    element = dataset.get(PIXEL_DATA)
    value = element.value if element is not None else None
    if not value:
        return b""
    if transfer_syntax(dataset) == EXPLICIT_BIG_ENDIAN and element.VR in ("OW", "OB or OW"):
        import numpy as np
        even = len(value) - len(value) % 2
        swapped = np.frombuffer(value, dtype=">u2", count=even // 2).astype("<u2").tobytes()
        return swapped + bytes(value[even:])
    return value


class FrameIndex:
    """Where each frame lies in the pixel data (Orthanc's DicomFrameIndex)."""

    def __init__(self, dataset):
        self.count = frames_count(dataset)
        self._frames = None      # encapsulated: one list of (offset, length) per frame
        self._native = None      # native: (bytes, frame size)
        self._value = None
        if self.count == 0:
            return
        information = ImageInformation(dataset)
        if PIXEL_DATA in dataset:
            if is_encapsulated(dataset):
                self._value = dataset[PIXEL_DATA].value
                self._frames = _fragment_index(self._value, fragments(self._value), self.count)
            else:
                frame_size = information.frame_size()
                data = native_pixel_bytes(dataset)
                if len(data) < frame_size * self.count:
                    raise OrthancError(ErrorCode.BadFileFormat)
                self._native = (data, frame_size)
        elif is_psmct_rle1(dataset):
            frame_size = information.frame_size()
            data = decode_psmct_rle1(dataset)
            if data is None or len(data) < frame_size * self.count:
                raise OrthancError(ErrorCode.BadFileFormat)
            self._native = (data, frame_size)

    @property
    def encapsulated(self):
        return self._frames is not None

    def raw_frame(self, index):
        if index >= self.count:
            raise OrthancError(ErrorCode.ParameterOutOfRange)
        if self._frames is not None:
            value = self._value
            return b"".join(bytes(value[o:o + n]) for o, n in self._frames[index])
        if self._native is not None:
            data, size = self._native
            return bytes(data[index * size:(index + 1) * size])
        raise OrthancError(ErrorCode.BadFileFormat, "Cannot access a raw frame")


def _fragment_index(value, items, count):
    if len(items) < count + 1:
        raise OrthancError(ErrorCode.BadFileFormat)
    data_items = items[1:]
    if len(items) == count + 1:
        return [[item] for item in data_items]
    offsets = _offset_table(value, items[0])
    if len(offsets) != count or offsets[0] != 0:
        raise OrthancError(ErrorCode.BadFileFormat)
    frames = [[] for _ in range(count)]
    current, offset = 0, 0
    for position, length in data_items:
        if current + 1 < count and offset == offsets[current + 1]:
            current += 1
        frames[current].append((position, length))
        offset += length + 8
    if current + 1 != count:
        raise OrthancError(ErrorCode.BadFileFormat)
    return frames


def _offset_table(value, item):
    position, length = item
    if length == 0:
        # An empty offset table: one frame made of all the fragments.
        return [0]
    if length % 4:
        raise OrthancError(ErrorCode.BadFileFormat)
    return list(struct.unpack_from("<%dI" % (length // 4), value, position))


def raw_frame_mime(dataset):
    syntax = transfer_syntax(dataset)
    if syntax == JPEG_BASELINE:
        return "image/jpeg"
    if syntax in JPEG_2000_SYNTAXES:
        return "image/jp2"
    return "application/octet-stream"


def extract_pdf(dataset):
    """The PDF of an Encapsulated PDF instance, None otherwise."""
    sop = tag_text(dataset, SOP_CLASS_UID)
    mime = tag_text(dataset, MIME_TYPE_OF_ENCAPSULATED_DOCUMENT)
    if sop != ENCAPSULATED_PDF_STORAGE or mime != "application/pdf":
        return None
    element = dataset.get(ENCAPSULATED_DOCUMENT)
    if element is None or element.value is None:
        return None
    pdf = bytes(element.value)
    # Values have an even length: a last byte that is neither CR nor LF
    # (the end of "%%EOF\r\n") is padding.
    if pdf and pdf[-1] not in (10, 13):
        pdf = pdf[:-1]
    return pdf


# -- Philips' private run-length compression (PMSCT_RLE1) --

def is_psmct_rle1(dataset):
    element = dataset.get(PMSCT_COMPRESSION_TYPE)
    content = dataset.get(PMSCT_CONTENT)
    if element is None or content is None or not content.value:
        return False
    value = element.value
    if isinstance(value, bytes):
        value = value.decode("latin-1")
    return isinstance(value, str) and value.strip(" \x00") == "PMSCT_RLE1"


def decode_psmct_rle1(dataset):
    """16-bit little-endian pixels from the escape-coded, delta-coded
    content of (07a1,100a), or None when it is not there."""
    if not is_psmct_rle1(dataset):
        return None
    source = bytes(dataset[PMSCT_CONTENT].value)
    # Run-length pass: 0xa5, count, value stands for count + 1 values.
    expanded = bytearray()
    i, n = 0, len(source)
    while i < n:
        byte = source[i]
        if byte == 0xA5:
            if i + 2 >= n:
                raise OrthancError(ErrorCode.BadFileFormat, "Truncated PMSCT_RLE1 escape sequence")
            expanded += bytes((source[i + 2],)) * (source[i + 1] + 1)
            i += 3
        else:
            expanded.append(byte)
            i += 1
    # Delta pass: 0x5a, low, high is an absolute value; any other byte is
    # a signed difference from the previous value.
    output = bytearray()
    delta, i, n = 0, 0, len(expanded)
    while i < n:
        byte = expanded[i]
        if byte == 0x5A:
            if i + 2 >= n:
                raise OrthancError(ErrorCode.BadFileFormat, "Truncated PMSCT_RLE1 delta sequence")
            value = expanded[i + 1] | (expanded[i + 2] << 8)
            i += 3
        else:
            value = (delta + (byte - 256 if byte > 127 else byte)) & 0xFFFF
            i += 1
        output += struct.pack("<H", value)
        delta = value
    return bytes(output)
