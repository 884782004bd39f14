"""Changing the transfer syntax of the files of an archive ("Transcode").

orthancd has no codecs for compressed pixel data yet: only the files that
need no codec are transcoded, between implicit and explicit VR little
endian (deflated or not), whose pixel data keep their bytes; a file already
in the requested syntax is archived as stored.  Any other change is refused
up front (NotImplemented) rather than leaving files out of the archive.
"""
import io

import pydicom

from orthancd.errors import ErrorCode, OrthancError
from orthancd.net.part10 import file_header
from orthancd.net.transfer_syntaxes import (DEFLATED_EXPLICIT_LITTLE, EXPLICIT_LITTLE,
                                            IMPLICIT_LITTLE, encode_in)

# Same byte order, no compression of the pixel data: re-encoding the data
# set is enough.
_WITHOUT_CODEC = frozenset((IMPLICIT_LITTLE, EXPLICIT_LITTLE, DEFLATED_EXPLICIT_LITTLE))


def check(source, target):
    """Whether a file in ``source`` must be transcoded to be in ``target``;
    raises NotImplemented when orthancd cannot do it."""
    if source == target:
        return False
    if source in _WITHOUT_CODEC and target in _WITHOUT_CODEC:
        return True
    raise OrthancError(ErrorCode.NotImplemented,
                       "Transcoding from %s to %s is not available in orthancd" % (source, target))


def transcode(data, target):
    """The Part-10 file ``data`` re-encoded in ``target`` (blocking)."""
    dataset = pydicom.dcmread(io.BytesIO(data), force=True)
    body = encode_in(dataset, target)
    if body is None:
        raise OrthancError(ErrorCode.BadFileFormat, "Cannot encode the file in " + target)
    return file_header(str(dataset.SOPClassUID), str(dataset.SOPInstanceUID), target) + body
