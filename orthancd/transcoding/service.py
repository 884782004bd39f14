"""The transcoder of a server: transcoding with its configuration (the
"DicomLossyTranscodingQuality"), run in the pixels pool, never on the
reactor thread."""
from orthancd.errors import ErrorCode, OrthancError
from orthancd.lazy_modules import LazyModule

# Codecs, pydicom and numpy: imported by the first transcoding
# (orthancd.lazy_modules).
transcoder = LazyModule("orthancd.transcoding.transcoder")
# DicomLossyTranscodingQuality's default (Orthanc's).
DEFAULT_LOSSY_QUALITY = 90


class Transcoder:

    def __init__(self, pool, configuration, default_encoding=lambda: "Latin1"):
        """``default_encoding()``: the current DefaultEncoding (it can change
        at run time)."""
        self.pool = pool
        self.lossy_quality = int(configuration.get("DicomLossyTranscodingQuality",
                                                   DEFAULT_LOSSY_QUALITY))
        self.default_encoding = default_encoding

    def transcode_blocking(self, data, allowed, lossy_quality=None, preserve_uid=False,
                           allow_new_uid=True):
        """For callers already off the reactor: the Transcoded file, or None
        when none of the ``allowed`` syntaxes can be written."""
        quality = self.lossy_quality if lossy_quality is None else lossy_quality
        return transcoder.transcode(data, allowed, allow_new_uid, quality,
                                    self.default_encoding(), preserve_uid)

    def transcode(self, data, allowed, lossy_quality=None, preserve_uid=False):
        """Deferred Transcoded (or None), computed in the pixels pool."""
        return self.pool.run(self.transcode_blocking, data, allowed, lossy_quality,
                             preserve_uid)

    async def to_syntax(self, data, syntax, lossy_quality=None):
        """The file in ``syntax`` or Orthanc's error when it cannot be
        (ServerContext::ReadTranscodedDicom: "Not implemented yet")."""
        transcoded = await self.transcode(data, {syntax}, lossy_quality)
        if transcoded is None:
            raise OrthancError(ErrorCode.NotImplemented)
        return transcoded

    def to_syntax_or_same(self, data, syntax, lossy_quality=None, preserve_uid=False):
        """Blocking: the file's bytes in ``syntax``, or as they are when it
        cannot be transcoded (what Orthanc's jobs do then)."""
        transcoded = self.transcode_blocking(data, {syntax}, lossy_quality, preserve_uid)
        return data if transcoded is None else transcoded.data


def parse_lossy_quality_argument(text):
    """The ``lossy-quality`` GET argument as RestApiGetCall reads an
    unsigned integer (an empty value reads as 1: Orthanc returns ``true``)."""
    if text == "":
        return 1
    if text.isdigit() and int(text) <= 0xFFFFFFFF:
        return int(text)
    raise OrthancError(ErrorCode.ParameterOutOfRange,
                       'Expected a Unsigned Int for GET argument "lossy-quality", found: ' + text)

