"""PDU framing and the few PDUs we encode by hand.

Association PDUs (A-ASSOCIATE-RQ/AC/RJ) are rare and rich, so they go through
pynetdicom's codecs.  P-DATA-TF, A-RELEASE and A-ABORT are trivial and hot, so
they are packed and unpacked here directly without intermediate objects.
"""

import struct

from pynetdicom.pdu import A_ASSOCIATE_AC, A_ASSOCIATE_RJ, A_ASSOCIATE_RQ

ASSOCIATE_RQ = 0x01
ASSOCIATE_AC = 0x02
ASSOCIATE_RJ = 0x03
P_DATA_TF = 0x04
RELEASE_RQ = 0x05
RELEASE_RP = 0x06
ABORT = 0x07

KNOWN_PDU_TYPES = frozenset(range(0x01, 0x08))

_HEADER = struct.Struct(">BxL")
_PDV_HEADER = struct.Struct(">LBB")

# A-ABORT sources and reasons, PS3.8 9.3.8.
ABORT_SOURCE_SERVICE_USER = 0
ABORT_SOURCE_SERVICE_PROVIDER = 2
ABORT_REASON_NOT_SPECIFIED = 0
ABORT_REASON_UNRECOGNIZED_PDU = 1
ABORT_REASON_UNEXPECTED_PDU = 2
ABORT_REASON_UNRECOGNIZED_PDU_PARAMETER = 4
ABORT_REASON_UNEXPECTED_PDU_PARAMETER = 5
ABORT_REASON_INVALID_PDU_PARAMETER = 6

# Refuse PDUs bigger than this whatever was negotiated: a peer announcing a
# gigabyte PDU would otherwise make us buffer it.
PDU_LENGTH_HARD_LIMIT = 64 * 1024 * 1024


class PduError(Exception):
    """The byte stream does not follow the PDU syntax."""


class PduFramer:
    """Cut an arbitrary chunked byte stream into ``(pdu_type, body)`` pairs.

    ``feed`` accepts any chunk boundaries (a PDU split in one-byte pieces, or
    many PDUs in one chunk) and returns the complete PDUs found so far.
    """

    def __init__(self, max_pdu_length=PDU_LENGTH_HARD_LIMIT):
        self._buffer = bytearray()
        self._max_pdu_length = max_pdu_length

    def feed(self, data):
        # PDUs lying whole in an immutable chunk are handed out as views of
        # it (no copy: a received data set is a few hundred of them); only
        # a PDU split across chunks is assembled in the buffer.
        buffer = self._buffer
        direct = not buffer and isinstance(data, bytes)
        if not direct:
            buffer += data
        source = data if direct else buffer
        pdus = []
        offset = 0
        available = len(source)
        with memoryview(source) as view:
            while available - offset >= 6:
                pdu_type, length = _HEADER.unpack_from(source, offset)
                if pdu_type not in KNOWN_PDU_TYPES:
                    raise PduError(f"unrecognized PDU type 0x{pdu_type:02x}")
                if length > self._max_pdu_length:
                    raise PduError(f"PDU of {length} bytes exceeds the limit")
                end = offset + 6 + length
                if end > available:
                    break
                body = view[offset + 6:end]
                if not direct:
                    # A copy: the buffer is reused (and resized) below.
                    with body:
                        body = bytes(body)
                pdus.append((pdu_type, body))
                offset = end
            if direct:
                buffer += view[offset:]
        if offset and not direct:
            del buffer[:offset]
        return pdus

    @property
    def pending_bytes(self):
        return len(self._buffer)


def frame(pdu_type, body):
    """Return the PDU of ``pdu_type`` carrying ``body``, header included."""
    return _HEADER.pack(pdu_type, len(body)) + body


def iter_pdvs(body):
    """Yield ``(context_id, control_header, fragment)`` from a P-DATA-TF body."""
    offset = 0
    end = len(body)
    view = memoryview(body)
    while offset < end:
        if end - offset < 6:
            raise PduError("truncated PDV item")
        item_length, context_id, control = _PDV_HEADER.unpack_from(body, offset)
        if item_length < 2 or offset + 4 + item_length > end:
            raise PduError("PDV item length does not fit the PDU")
        yield context_id, control, view[offset + 6:offset + 4 + item_length]
        offset += 4 + item_length


def p_data_tf(context_id, control, fragment):
    """One P-DATA-TF PDU carrying a single PDV; returns the full PDU bytes."""
    item_length = len(fragment) + 2
    return (_HEADER.pack(P_DATA_TF, item_length + 4)
            + _PDV_HEADER.pack(item_length, context_id, control) + bytes(fragment))


def p_data_tf_series(context_id, flag, data, fragment_size):
    """``data`` cut into P-DATA-TF PDUs of one PDV each, ``flag`` (0x01 for a
    command) on every one and the last-fragment bit on the last; returns all
    the PDUs as one bytes object, to be written at once."""
    view = memoryview(data)
    total = len(view)
    parts = []
    offset = 0
    while True:
        piece = view[offset:offset + fragment_size]
        offset += fragment_size
        last = offset >= total
        item_length = len(piece) + 2
        parts.append(_HEADER.pack(P_DATA_TF, item_length + 4)
                     + _PDV_HEADER.pack(item_length, context_id, flag | (0x02 if last else 0)))
        parts.append(piece)
        if last:
            return b"".join(parts)


def release_rq():
    return frame(RELEASE_RQ, b"\x00\x00\x00\x00")


def release_rp():
    return frame(RELEASE_RP, b"\x00\x00\x00\x00")


def abort(source=ABORT_SOURCE_SERVICE_USER, reason=ABORT_REASON_NOT_SPECIFIED):
    return frame(ABORT, bytes((0, 0, source, reason)))


def parse_abort(body):
    """Return ``(source, reason)`` of an A-ABORT body."""
    if len(body) != 4:
        raise PduError("A-ABORT body must be 4 bytes")
    return body[2], body[3]


def decode_associate(pdu_type, body):
    """Decode an A-ASSOCIATE-RQ/AC/RJ into pynetdicom's primitive."""
    codec = {ASSOCIATE_RQ: A_ASSOCIATE_RQ, ASSOCIATE_AC: A_ASSOCIATE_AC,
             ASSOCIATE_RJ: A_ASSOCIATE_RJ}[pdu_type]()
    try:
        codec.decode(frame(pdu_type, body))
        return codec.to_primitive()
    except Exception as exc:  # pynetdicom raises a mix of struct/Value errors
        raise PduError(f"malformed associate PDU: {exc}") from exc


def encode_associate(primitive):
    """Encode an A-ASSOCIATE primitive as RQ, AC or RJ depending on its content."""
    if primitive.result is None:
        codec = A_ASSOCIATE_RQ()
    elif primitive.result == 0x00:
        codec = A_ASSOCIATE_AC()
    else:
        codec = A_ASSOCIATE_RJ()
    codec.from_primitive(primitive)
    return codec.encode()
