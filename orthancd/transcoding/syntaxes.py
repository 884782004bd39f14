"""The transfer syntaxes of transcoding.

Orthanc 1.13.0 transcodes with DCMTK only (no plugin): it decodes the
uncompressed syntaxes, JPEG (all processes), JPEG-LS and RLE, and writes
the uncompressed syntaxes, JPEG baseline, extended and lossless, and
JPEG-LS.  RLE and JPEG 2000 it never writes, nor decodes JPEG 2000 (its
transcoder fails, and each caller does what Orthanc does then).

orthancd does all Orthanc does, in the same order of preference, and
beyond: it decodes JPEG 2000 and HTJ2K too (orthancd.pixels' codecs), and
writes RLE, JPEG 2000 (lossless and lossy) and HTJ2K, tried after
Orthanc's targets so that whatever Orthanc can do comes out as Orthanc
does it; the lossless ones first, lossy JPEG 2000 last.
"""
from orthancd.errors import ErrorCode, OrthancError
from orthancd.net.transfer_syntaxes import KNOWN

IMPLICIT_LITTLE = "1.2.840.10008.1.2"
EXPLICIT_LITTLE = "1.2.840.10008.1.2.1"
DEFLATED_LITTLE = "1.2.840.10008.1.2.1.99"
EXPLICIT_BIG = "1.2.840.10008.1.2.2"
JPEG_BASELINE = "1.2.840.10008.1.2.4.50"          # process 1
JPEG_EXTENDED = "1.2.840.10008.1.2.4.51"          # processes 2 and 4
JPEG_LOSSLESS = "1.2.840.10008.1.2.4.57"          # process 14
JPEG_LOSSLESS_SV1 = "1.2.840.10008.1.2.4.70"      # process 14, selection value 1
JPEG_LS_LOSSLESS = "1.2.840.10008.1.2.4.80"
JPEG_LS_LOSSY = "1.2.840.10008.1.2.4.81"
RLE = "1.2.840.10008.1.2.5"
JPEG_2000_LOSSLESS = "1.2.840.10008.1.2.4.90"
JPEG_2000_LOSSY = "1.2.840.10008.1.2.4.91"
HTJ2K_LOSSLESS = "1.2.840.10008.1.2.4.201"
HTJ2K_RPCL_LOSSLESS = "1.2.840.10008.1.2.4.202"
HTJ2K = "1.2.840.10008.1.2.4.203"                 # lossless or lossy: written lossless
JPEG_2000 = ("1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.4.91", "1.2.840.10008.1.2.4.201",
             "1.2.840.10008.1.2.4.202", "1.2.840.10008.1.2.4.203")

UNCOMPRESSED = frozenset((IMPLICIT_LITTLE, EXPLICIT_LITTLE, EXPLICIT_BIG, DEFLATED_LITTLE))

# The order DcmtkTranscoder tries the allowed syntaxes in.
TRANSCODER_ORDER = (IMPLICIT_LITTLE, EXPLICIT_LITTLE, EXPLICIT_BIG, DEFLATED_LITTLE,
                    JPEG_BASELINE, JPEG_EXTENDED, JPEG_LOSSLESS, JPEG_LOSSLESS_SV1,
                    JPEG_LS_LOSSLESS, JPEG_LS_LOSSY,
                    # beyond Orthanc 1.13.0:
                    RLE, JPEG_2000_LOSSLESS, HTJ2K_LOSSLESS, HTJ2K_RPCL_LOSSLESS, HTJ2K,
                    JPEG_2000_LOSSY)
LOSSY = frozenset((JPEG_BASELINE, JPEG_EXTENDED, JPEG_LS_LOSSY, JPEG_2000_LOSSY))

# What DCMTK's registered decoders read (besides the uncompressed ones).
_JPEG_PROCESSES = tuple("1.2.840.10008.1.2.4.%d" % n for n in range(50, 67)) + (JPEG_LOSSLESS_SV1,)
JPEG_FAMILY = frozenset(_JPEG_PROCESSES)
DECODABLE = frozenset(_JPEG_PROCESSES + (JPEG_LS_LOSSLESS, JPEG_LS_LOSSY, RLE) + JPEG_2000)
# What orthancd writes (the uncompressed ones aside).
ENCODABLE = frozenset(TRANSCODER_ORDER) - UNCOMPRESSED

# Orthanc 1.13.0's DicomTransferSyntax enumeration: what 1.10 knew, the
# JPEG XL and the High-Throughput JPEG 2000 syntaxes.
KNOWN_TRANSFER_SYNTAXES = frozenset(KNOWN) | {
    "1.2.840.10008.1.2.4.110", "1.2.840.10008.1.2.4.111", "1.2.840.10008.1.2.4.112",
    "1.2.840.10008.1.2.4.201", "1.2.840.10008.1.2.4.202", "1.2.840.10008.1.2.4.203"}

# Videos and special syntaxes that ingest transcoding leaves alone
# (ServerContext's IsTranscodableTransferSyntax).
NOT_TRANSCODABLE_AT_INGEST = frozenset(
    ["1.2.840.10008.1.2.4.%d" % n for n in range(100, 109)] +
    ["1.2.840.10008.1.2.6.1", "1.2.840.10008.1.2.6.2"])


def is_known(uid):
    return uid in KNOWN_TRANSFER_SYNTAXES


def lookup(uid):
    """Orthanc's GetTransferSyntax of a REST argument: the UID when Orthanc
    knows it, else its error."""
    if not is_known(uid):
        raise OrthancError(ErrorCode.ParameterOutOfRange, "Unknown transfer syntax: " + uid)
    return uid


def is_uncompressed_at_ingest(uid):
    """ServerContext's IsUncompressedTransferSyntax (deflate not included)."""
    return uid in (IMPLICIT_LITTLE, EXPLICIT_LITTLE, EXPLICIT_BIG)
