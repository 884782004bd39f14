"""What the archive jobs of one server share: the index and storage they
read, the pool that deflates, where temporary archives go and how many are
kept, and the configuration of archive names."""
from orthancd.archives.job import ArchiveJob
from orthancd.archives.outputs import MediaArchive
from orthancd.archives.plan import ArchiveContent


class Archives:

    def __init__(self, server, pool):
        """``pool``: the threads that read and deflate the files."""
        configuration = server.configuration
        self.server = server
        self.reactor = server.reactor
        self.index = server.index
        self.storage = server.storage
        self.file_io = server.file_io
        self.pool = pool
        self.media_archive = MediaArchive(configuration.get("MediaArchiveSize", 1))
        self.default_utf8 = bool(configuration.get("ZipUseUtf8", False))
        self.streams_synchronous = bool(configuration.get("SynchronousZipStream", True))
        self.lossy_quality = int(configuration.get("DicomLossyTranscodingQuality", 90))

    @property
    def temporary_directory(self):
        """TemporaryDirectory, else the storage area's (emptied at start-up,
        so nothing a crash leaves behind lasts)."""
        return self.server.configuration.temporary_directory or self.server.temporary_directory

    def default_encoding(self):
        return self.server.default_encoding

    def content(self, job_level):
        """An empty archive whose top folders are of ``job_level``'s patient."""
        return ArchiveContent(self.index, job_level)

    def job(self, content, options, sink=None):
        return ArchiveJob(self, content, options, sink)
