"""The "Transcode" option of modifications and anonymizations.

Orthanc 1.13.0 accepts any transfer syntax it knows (LookupTransferSyntax)
and refuses others.  orthancd has no image codec yet: it changes the
encoding between the uncompressed syntaxes (implicit or explicit VR, little
or big endian, deflated), which needs no codec, and cannot produce or
decode compressed pixel data.  Where Orthanc's transcoder fails, Orthanc
keeps the original transfer syntax in a job and answers "Not implemented
yet" for a single instance; orthancd does the same whenever it would need
a codec.
"""
from orthancd.errors import ErrorCode, OrthancError
from orthancd.modification.dataset import UNCOMPRESSED_SYNTAXES
from orthancd.net.transfer_syntaxes import KNOWN

# Orthanc 1.13.0's DicomTransferSyntax enumeration: what 1.10 knew, the
# JPEG XL and the High-Throughput JPEG 2000 syntaxes.
KNOWN_TRANSFER_SYNTAXES = frozenset(KNOWN) | {
    "1.2.840.10008.1.2.4.110", "1.2.840.10008.1.2.4.111", "1.2.840.10008.1.2.4.112",
    "1.2.840.10008.1.2.4.201", "1.2.840.10008.1.2.4.202", "1.2.840.10008.1.2.4.203"}


def is_known(uid):
    return uid in KNOWN_TRANSFER_SYNTAXES


def check_for_instance(uid):
    """The Transcode field of /instances/{id}/modify or /anonymize."""
    if not is_known(uid):
        raise OrthancError(ErrorCode.ParameterOutOfRange, "Unknown transfer syntax: " + uid)
    return uid


def check_for_job(uid):
    """The Transcode field of a modification job (ResourceModificationJob::
    SetTranscode)."""
    if not is_known(uid):
        raise OrthancError(ErrorCode.BadFileFormat, "Unknown transfer syntax UID: " + uid)
    return uid


def can_transcode(source, target):
    """Whether orthancd can write a file of syntax ``source`` in ``target``."""
    return source == target or (source in UNCOMPRESSED_SYNTAXES and target in UNCOMPRESSED_SYNTAXES)


def target_for_instance(edited, uid):
    """The syntax to write a single modified instance in, or Orthanc's
    "Not implemented yet" when it takes a codec."""
    if not can_transcode(edited.transfer_syntax, uid):
        raise OrthancError(ErrorCode.NotImplemented)
    return uid


def target_for_job(edited, uid):
    """The syntax to store an instance of a job in: the original one when
    transcoding takes a codec (as Orthanc when its transcoder fails)."""
    return uid if can_transcode(edited.transfer_syntax, uid) else edited.transfer_syntax
