"""Hand-made DICOM files for tests: every element written byte for byte (odd
lengths, odd values, any VR), so that edge cases reach both servers intact."""
import itertools
import struct
import time

_LONG_VRS = {"OB", "OD", "OF", "OL", "OV", "OW", "SQ", "SV", "UC", "UN", "UR", "UT", "UV"}
_COUNTER = itertools.count(1)
EXPLICIT_LITTLE = "1.2.840.10008.1.2.1"
IMPLICIT_LITTLE = "1.2.840.10008.1.2"


def element(tag, vr, value, implicit=False):
    """One element: (gggg,eeee) VR length value (explicit VR little endian,
    or implicit VR when asked)."""
    head = struct.pack("<HH", tag >> 16, tag & 0xFFFF)
    if implicit:
        return head + struct.pack("<I", len(value)) + value
    if vr in _LONG_VRS:
        return head + vr.encode() + b"\0\0" + struct.pack("<I", len(value)) + value
    return head + vr.encode() + struct.pack("<H", len(value)) + value


def item(*elements):
    """A sequence item of defined length holding already encoded elements."""
    body = b"".join(elements)
    return b"\xfe\xff\x00\xe0" + struct.pack("<I", len(body)) + body


def _even(text):
    data = text.encode("ascii")
    return data + b"\0" if len(data) % 2 else data


def unique_uid():
    return "1.2.826.0.1.3680043.10.1234.%d.%d" % (int(time.time() * 1000), next(_COUNTER))


def dicom_file(elements, charset=None, implicit=False, uid=None):
    """A Part-10 file of a secondary capture with ``elements`` ((tag, VR,
    raw value) triples) added to its identifiers, all sorted by tag."""
    uid = uid or unique_uid()
    transfer_syntax = IMPLICIT_LITTLE if implicit else EXPLICIT_LITTLE
    meta = b"".join([
        element(0x00020001, "OB", b"\0\1"),
        element(0x00020002, "UI", _even("1.2.840.10008.5.1.4.1.1.7")),
        element(0x00020003, "UI", _even(uid)),
        element(0x00020010, "UI", _even(transfer_syntax)),
        element(0x00020012, "UI", _even("1.2.826.0.1.3680043.10.1234")),
    ])
    meta = element(0x00020000, "UL", struct.pack("<I", len(meta))) + meta
    dataset = [(0x00080016, "UI", _even("1.2.840.10008.5.1.4.1.1.7")),
               (0x00080018, "UI", _even(uid)),
               (0x00100020, "LO", b"CRAFTED "),
               (0x0020000D, "UI", _even(uid + ".1")),
               (0x0020000E, "UI", _even(uid + ".2"))]
    if charset is not None:
        dataset.append((0x00080005, "CS", charset + b" " * (len(charset) % 2)))
    dataset += list(elements)
    body = b"".join(element(tag, vr, value, implicit) for tag, vr, value in sorted(dataset))
    return b"\0" * 128 + b"DICM" + meta + body
