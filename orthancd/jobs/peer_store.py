"""OrthancPeerStore: POST stored instances to an Orthanc peer's /instances,
one per step (Orthanc's OrthancPeerStoreJob), optionally transcoded (by
orthancd.transcoding, in the pixels pool) and gzip-compressed on the way.
As in Orthanc, an instance that cannot be transcoded goes as it is.

orthancd.peers (treq, twisted.web's client) is imported when a job runs or
shows itself, not when the server starts.
"""
from orthancd.errors import ErrorCode, OrthancError
from orthancd.jobs.instances import InstanceNotStored, SetOfInstancesJob
from orthancd.logs import logger
from orthancd.transcoding import syntaxes as transcoding_syntaxes

log = logger(__name__)

JOB_TYPE = "OrthancPeerStore"
MEGABYTE = 1024 * 1024


def check_transcode_target(uid):
    """OrthancPeerStoreJob::SetTranscode: any syntax Orthanc knows (one
    the transcoder cannot write sends the instances as they are)."""
    if not transcoding_syntaxes.is_known(uid):
        raise OrthancError(ErrorCode.BadFileFormat, "Unknown transfer syntax UID: " + uid)


def _prepare(server, data, transcode_to, compress):
    """Blocking (pixels pool): the body to post."""
    from orthancd import peers
    if transcode_to:
        data = server.transcoder.to_syntax_or_same(data, transcode_to)
    return peers.gzip_compress(data) if compress else bytes(data)


class OrthancPeerStoreJob(SetOfInstancesJob):
    job_type = JOB_TYPE

    def __init__(self, server, peer, transcode_to=None, compress=False, **kwargs):
        """``peer``: a parsed OrthancPeers entry (orthancd.config.parse_peer)."""
        super().__init__(**kwargs)
        self._server = server
        self.peer = dict(peer)
        self.transcode_to = transcode_to
        self.compress = bool(compress)
        self.size = 0
        self._client = None

    async def handle_instance(self, instance_id):
        server = self._server
        if self._client is None:
            from orthancd import peers
            self._client = await peers.open_peer_client(server, self.peer)
        try:
            data = await server.read_attachment(server.dicom_attachment(instance_id))
        except Exception:
            raise InstanceNotStored(instance_id) from None
        pool = server.pixel_pool if self.transcode_to else server.file_io
        body = await pool.run(_prepare, server, data, self.transcode_to, self.compress)
        self.size += len(body)
        answer = await self._client.post_instance(body, self.compress)
        if not answer.ok:
            if self.compress:
                log.error('Cannot send DICOM over HTTP using "gzip" as "Content-Encoding": '
                          'make sure that the version of the remote Orthanc server is >= 1.6.0')
            raise OrthancError(ErrorCode.NetworkProtocol)

    def stop(self, reason):
        client, self._client = self._client, None
        if client is not None:
            client.close()

    def public_content(self):
        from orthancd import peers
        content = super().public_content()
        content["Peer"] = peers.public_description(self.peer)
        content["Compress"] = self.compress
        if self.transcode_to:
            content["Transcode"] = self.transcode_to
        content["Size"] = str(self.size)
        content["SizeMB"] = self.size // MEGABYTE
        return content

    def serialize(self):
        saved = super().serialize()
        saved.update({"Peer": self.peer, "Compress": self.compress, "Size": str(self.size)})
        if self.transcode_to:
            saved["Transcode"] = self.transcode_to
        return saved

    @classmethod
    def unserialize(cls, server, saved):
        job = cls(server, saved["Peer"], saved.get("Transcode"), saved.get("Compress", False))
        job.restore(saved)
        job.size = int(saved.get("Size", "0"))
        return job
