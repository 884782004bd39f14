"""The MD5s of attachments, derived from their content the first time
somebody asks for them.

Orthanc computes the MD5 of every file it stores (StoreMD5ForAttachments)
and shows it in /{level}/{id}/attachments/{name}/info, /md5, the ETag of
every attachment route and the "Attachments" of /tools/find.  orthancd
names each file after the SHA-256 of its content already: an MD5 on the
ingest path hashed every byte a second time, 0.7 ms per 513 KiB instance,
a fifth of the CPU an upload costs, for values few clients read.  So the
storage area records content it writes uncompressed with its MD5s unknown
(None, orthancd.storage.area.StoredFile), and the first reader derives them
here: the file is read and hashed in the file I/O pool, checked against its
name on the way (a changed file gets no MD5 of what it holds now: it is
corrupted), and the index records them, so they are computed once per file.
"""
from twisted.internet import defer

from orthancd.errors import ErrorCode, OrthancError
from orthancd.ingest import attachment_salts
from orthancd.logs import logger
from orthancd.storage.area import ContentCorrupted


class AttachmentChecksums:
    log = logger(__name__)

    def __init__(self, storage, index, file_io):
        self._storage = storage
        self._index = index
        self._file_io = file_io

    def complete(self, public_id, level, content_type, info):
        """Deferred StoredFile: ``info`` (of that attachment) with both its
        MD5s, derived and recorded when they were not known.  Fails with
        orthancd.storage.area.ContentCorrupted when the file no longer holds
        what it was stored with, or FileNotFoundError."""
        if not info.md5_pending:
            return defer.succeed(info)
        d = self._file_io.run(self._storage.derive_md5s, info,
                              attachment_salts(level, public_id, content_type))

        def derived(md5s):
            complete = info.with_md5s(info.md5 if info.md5 is not None else md5s[0],
                                      info.uncompressed_md5 if info.uncompressed_md5 is not None
                                      else md5s[1])
            # Recorded before the answer: a write that names these MD5s in
            # its If-Match (a revision) then finds them in the index.
            recorded = self._index.record_attachment_md5s(public_id, level, content_type,
                                                          complete)
            recorded.addErrback(self._not_recorded, public_id)
            recorded.addCallback(lambda _: complete)
            return recorded
        d.addCallback(derived)
        return d

    def _not_recorded(self, failure, public_id):
        # The resource went meanwhile, or the index stops: the MD5s are
        # still right for this answer, and derived again next time.
        self.log.info("MD5s of an attachment of {id} not recorded: {error}", id=public_id,
                      error=failure.getErrorMessage())

    @defer.inlineCallbacks
    def complete_for_answer(self, public_id, level, content_type, info):
        """As ``complete``, failing with the OrthancError an answer shows
        (CorruptedFile, InexistentFile) when the MD5s cannot be derived."""
        try:
            complete = yield self.complete(public_id, level, content_type, info)
        except ContentCorrupted as e:
            raise OrthancError(ErrorCode.CorruptedFile, str(e))
        except FileNotFoundError:
            raise OrthancError(ErrorCode.InexistentFile)
        return complete

    @defer.inlineCallbacks
    def complete_all(self, public_id, level, attachments):
        """{content type: StoredFile} with every MD5 known (as
        ``complete_for_answer``)."""
        out = {}
        for content_type, info in attachments.items():
            out[content_type] = yield self.complete_for_answer(public_id, level, content_type,
                                                               info)
        return out
