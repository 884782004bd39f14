"""OrthancPeerStore: POST stored instances to an Orthanc peer's /instances,
one per step (Orthanc's OrthancPeerStoreJob), optionally transcoded and
gzip-compressed on the way.

Transcoding happens here only to the transfer syntaxes orthancd can write
(``TRANSCODE_TARGETS``); the REST layer refuses the others before the job
exists.  As in Orthanc, an instance that cannot be transcoded goes as it is.
"""
from io import BytesIO

import pydicom

from orthancd import peers
from orthancd.errors import ErrorCode, OrthancError
from orthancd.jobs.instances import InstanceNotStored, SetOfInstancesJob
from orthancd.logs import logger
from orthancd.net.transfer_syntaxes import (
    DEFLATED_EXPLICIT_LITTLE, EXPLICIT_LITTLE, IMPLICIT_LITTLE, KNOWN, UNCOMPRESSED)

log = logger(__name__)

JOB_TYPE = "OrthancPeerStore"
MEGABYTE = 1024 * 1024
RLE_LOSSLESS = "1.2.840.10008.1.2.5"
JPEG_2000_LOSSLESS = "1.2.840.10008.1.2.4.90"
JPEG_LS_LOSSLESS = "1.2.840.10008.1.2.4.80"


def _lossless_encoders():
    """The lossless compressions pydicom can encode here (they keep the
    SOP Instance UID, as Orthanc's lossless transcoding does)."""
    from pydicom.pixels import encoders
    available = []
    for uid, name in ((RLE_LOSSLESS, "RLELosslessEncoder"),
                      (JPEG_2000_LOSSLESS, "JPEG2000LosslessEncoder"),
                      (JPEG_LS_LOSSLESS, "JPEGLSLosslessEncoder")):
        encoder = getattr(encoders, name, None)
        if encoder is not None and encoder.is_available:
            available.append(uid)
    return tuple(available)


TRANSCODE_TARGETS = (EXPLICIT_LITTLE, IMPLICIT_LITTLE, DEFLATED_EXPLICIT_LITTLE) + \
    _lossless_encoders()


def check_transcode_target(uid):
    """Orthanc's error for an unknown transfer syntax UID; orthancd's own
    for a known one it cannot write."""
    if uid not in KNOWN:
        raise OrthancError(ErrorCode.BadFileFormat, "Unknown transfer syntax UID: " + uid)
    if uid not in TRANSCODE_TARGETS:
        raise OrthancError(ErrorCode.NotImplemented,
                           "orthancd cannot transcode to transfer syntax %s; it can transcode "
                           "to: %s" % (uid, ", ".join(TRANSCODE_TARGETS)))


def transcode(data, target):
    """Blocking: the Part-10 ``data`` in ``target``, or ``data`` itself when
    it is already there or cannot be transcoded."""
    try:
        dataset = pydicom.dcmread(BytesIO(data), force=True)
        source = str(dataset.file_meta.get("TransferSyntaxUID", ""))
        if source == target:
            return data
        if source not in UNCOMPRESSED + (DEFLATED_EXPLICIT_LITTLE,) and "PixelData" in dataset:
            dataset.decompress(generate_instance_uid=False)
        if target in (EXPLICIT_LITTLE, IMPLICIT_LITTLE, DEFLATED_EXPLICIT_LITTLE):
            dataset.file_meta.TransferSyntaxUID = target
        else:
            dataset.compress(target, generate_instance_uid=False)
        out = BytesIO()
        dataset.save_as(out, enforce_file_format=True)
        return out.getvalue()
    except Exception as exc:
        log.warn("Cannot transcode to {uid}, sending the instance as it is: {error}",
                 uid=target, error=exc)
        return data


def _prepare(data, transcode_to, compress):
    if transcode_to:
        data = transcode(data, transcode_to)
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
            self._client = await peers.open_peer_client(server, self.peer)
        try:
            data = await server.read_attachment(server.dicom_attachment(instance_id))
        except Exception:
            raise InstanceNotStored(instance_id) from None
        body = await server.file_io.run(_prepare, data, self.transcode_to, self.compress)
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
