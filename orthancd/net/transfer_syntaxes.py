"""The transfer syntaxes Orthanc knows and the option groups that toggle them."""

import fnmatch
from io import BytesIO


IMPLICIT_LITTLE = "1.2.840.10008.1.2"
EXPLICIT_LITTLE = "1.2.840.10008.1.2.1"
DEFLATED_EXPLICIT_LITTLE = "1.2.840.10008.1.2.1.99"
EXPLICIT_BIG = "1.2.840.10008.1.2.2"

UNCOMPRESSED = (EXPLICIT_LITTLE, IMPLICIT_LITTLE, EXPLICIT_BIG)

_JPEG = tuple(f"1.2.840.10008.1.2.4.{n}" for n in range(50, 67)) + ("1.2.840.10008.1.2.4.70",)
_JPEG_LS = ("1.2.840.10008.1.2.4.80", "1.2.840.10008.1.2.4.81")
_JPEG_2000 = tuple(f"1.2.840.10008.1.2.4.{n}" for n in (90, 91, 92, 93))
_JPIP = ("1.2.840.10008.1.2.4.94", "1.2.840.10008.1.2.4.95")
_MPEG2 = ("1.2.840.10008.1.2.4.100", "1.2.840.10008.1.2.4.101")
_MPEG4 = tuple(f"1.2.840.10008.1.2.4.{n}" for n in range(102, 107))
_H265 = ("1.2.840.10008.1.2.4.107", "1.2.840.10008.1.2.4.108")
_RLE = ("1.2.840.10008.1.2.5",)
# Listed by /tools/accepted-transfer-syntaxes, but DCMTK never accepts them
# in an association.
_RETIRED_MIME = ("1.2.840.10008.1.2.6.1", "1.2.840.10008.1.2.6.2")
# Known to Orthanc 1.13.0 (DCMTK 3.6.8+) but in none of the option groups.
_JPEG_XL = ("1.2.840.10008.1.2.4.110", "1.2.840.10008.1.2.4.111", "1.2.840.10008.1.2.4.112")
_HTJ2K = ("1.2.840.10008.1.2.4.201", "1.2.840.10008.1.2.4.202", "1.2.840.10008.1.2.4.203")

# Orthanc's option name -> the transfer syntaxes it enables or disables.
# ("JpegLossless" historically means JPEG-LS in Orthanc.)
GROUP_OPTIONS = {
    "DeflatedTransferSyntaxAccepted": (DEFLATED_EXPLICIT_LITTLE,),
    "JpegTransferSyntaxAccepted": _JPEG,
    "Jpeg2000TransferSyntaxAccepted": _JPEG_2000,
    "JpegLosslessTransferSyntaxAccepted": _JPEG_LS,
    "JpipTransferSyntaxAccepted": _JPIP,
    "Mpeg2TransferSyntaxAccepted": _MPEG2,
    "RleTransferSyntaxAccepted": _RLE,
    "Mpeg4TransferSyntaxAccepted": _MPEG4,
    "H265TransferSyntaxAccepted": _H265,
}

# Every syntax Orthanc 1.13.0 knows, in its enumeration order.
KNOWN = ((IMPLICIT_LITTLE, EXPLICIT_LITTLE, DEFLATED_EXPLICIT_LITTLE, EXPLICIT_BIG)
         + _JPEG + _JPEG_LS + _JPEG_2000 + _JPIP + _MPEG2 + _MPEG4 + _H265 + _RLE
         + _RETIRED_MIME + _JPEG_XL + _HTJ2K)

# Syntaxes whose datasets are deflated on the wire.
DEFLATED = frozenset((DEFLATED_EXPLICIT_LITTLE, "1.2.840.10008.1.2.4.95"))


def accepted_storage_syntaxes(config):
    """The transfer syntaxes accepted for storage contexts, in KNOWN order.

    Mirrors Orthanc: start from ``AcceptedTransferSyntaxes`` (wildcards
    allowed, default every known syntax), then apply each group flag that is
    present in the configuration.
    """
    patterns = config.get("AcceptedTransferSyntaxes")
    if patterns is None:
        accepted = set(KNOWN)
    else:
        if isinstance(patterns, str):
            patterns = [patterns]
        accepted = {uid for uid in KNOWN
                    if any(fnmatch.fnmatchcase(uid, p) for p in patterns)}
    for option, syntaxes in GROUP_OPTIONS.items():
        if option in config:
            if config[option]:
                accepted.update(syntaxes)
            else:
                accepted.difference_update(syntaxes)
    return [uid for uid in KNOWN if uid in accepted]


def negotiable(syntaxes):
    """Those of ``syntaxes`` an association can agree on."""
    return [uid for uid in syntaxes if uid not in _RETIRED_MIME]


def is_implicit_vr(uid):
    return uid == IMPLICIT_LITTLE


def is_little_endian(uid):
    return uid != EXPLICIT_BIG


def encode_in(dataset, transfer_syntax):
    """The bytes of ``dataset`` (no file meta) in ``transfer_syntax``; None
    when pydicom cannot encode it."""
    from pynetdicom.dsutils import encode
    return encode(dataset, is_implicit_vr(transfer_syntax), is_little_endian(transfer_syntax),
                  deflated=transfer_syntax == DEFLATED_EXPLICIT_LITTLE)


def decode_in(data, transfer_syntax):
    """A Dataset from bytes encoded in an uncompressed ``transfer_syntax``
    (identifiers, query answers)."""
    from pydicom.filereader import read_dataset
    return read_dataset(BytesIO(data), is_implicit_vr(transfer_syntax),
                        is_little_endian(transfer_syntax))
