"""IngestTranscoding (ServerContext::TranscodeAndStore of Orthanc 1.13.0):
incoming instances are transcoded to one syntax before they are stored,
unless they are in it already, are videos or special syntaxes, or the
IngestTranscodingOfUncompressed / IngestTranscodingOfCompressed options
leave them alone (an uncompressed file without pixel data is never
compressed).  When the transcoder fails, the file is stored as it came."""
import io

from orthancd.config import ConfigurationError
from orthancd.transcoding import syntaxes

PIXEL_DATA = 0x7FE00010


def configured(configuration, transcoder):
    """The IngestTranscoding of a configuration, None when it is not set;
    Orthanc refuses to start on an unknown syntax."""
    target = configuration.get("IngestTranscoding")
    if not target:
        return None
    if not syntaxes.is_known(target):
        raise ConfigurationError("Unknown transfer syntax for ingest transcoding: " + target)
    return IngestTranscoding(transcoder, target,
                             bool(configuration.get("IngestTranscodingOfUncompressed", True)),
                             bool(configuration.get("IngestTranscodingOfCompressed", True)))


def _source_syntax(head):
    """The transfer syntax of the file meta information, None without."""
    from pydicom.filereader import read_preamble, _read_file_meta_info
    try:
        stream = io.BytesIO(head)
        read_preamble(stream, False)
        meta = _read_file_meta_info(stream)
    except Exception:
        return None
    uid = meta.get("TransferSyntaxUID")
    return str(uid) if uid else None


class IngestTranscoding:

    def __init__(self, transcoder, target, of_uncompressed=True, of_compressed=True):
        self.transcoder = transcoder
        self.target = target
        self.of_uncompressed = of_uncompressed
        self.of_compressed = of_compressed

    def applies_to(self, source, has_pixel_data):
        if source is None or source == self.target:
            return False
        if source in syntaxes.NOT_TRANSCODABLE_AT_INGEST:
            return False
        if syntaxes.is_uncompressed_at_ingest(source):
            if not self.of_uncompressed:
                return False
            return syntaxes.is_uncompressed_at_ingest(self.target) or has_pixel_data()
        return self.of_compressed

    def transcode_blocking(self, source):
        """``source``: the file's bytes or path.  The transcoded bytes, or
        None to store the file as it came."""
        if isinstance(source, (bytes, bytearray, memoryview)):
            data = bytes(source)
        else:
            with open(source, "rb") as f:
                data = f.read()
        syntax = _source_syntax(data[:65536])
        from orthancd.modification.dataset import EditedFile
        parsed = []

        def parse():
            if not parsed:
                try:
                    parsed.append(EditedFile.parse(data))
                except Exception:
                    parsed.append(None)
            return parsed[0]
        if syntax is None and parse() is not None:
            # No meta information: DCMTK finds the syntax from the data set.
            syntax = parse().transfer_syntax
        if not self.applies_to(syntax, lambda: parse() is not None and
                               PIXEL_DATA in parse().dataset):
            return None
        transcoded = self.transcoder.transcode_blocking(data, {self.target})
        return None if transcoded is None else transcoded.data

    def transcode(self, source):
        """Deferred transcode_blocking, in the pixels pool."""
        return self.transcoder.pool.run(self.transcode_blocking, source)

