"""The "Transcode" option of modifications and anonymizations, as Orthanc
1.13.0 has it (the transcoding itself: orthancd.transcoding).

- an instance-level route accepts any transfer syntax Orthanc knows
  (ParameterOutOfRange otherwise), transcodes the stored file first
  ("Not implemented yet" when it cannot be), then modifies it;
- a job (ResourceModificationJob::SetTranscode) accepts any syntax Orthanc
  knows (BadFileFormat otherwise), modifies each instance, then transcodes
  it keeping its new SOP Instance UID, or keeps the original transfer
  syntax when the transcoder fails; its instances then skip
  IngestTranscoding.
"""
from orthancd.errors import ErrorCode, OrthancError
from orthancd.transcoding import syntaxes

is_known = syntaxes.is_known


def check_for_instance(uid):
    """The Transcode field of /instances/{id}/modify or /anonymize."""
    return syntaxes.lookup(uid)


def check_for_job(uid):
    """The Transcode field of a modification job."""
    if not is_known(uid):
        raise OrthancError(ErrorCode.BadFileFormat, "Unknown transfer syntax UID: " + uid)
    return uid


def for_job(server, data, uid):
    """Blocking (pixels pool): a modified instance's bytes in ``uid``, its
    SOP Instance UID kept; as they are when they cannot be transcoded."""
    return server.transcoder.to_syntax_or_same(data, uid, preserve_uid=True)
