"""The pixel routes: previews, decoded and rendered frames, raw frames,
numpy, Matlab and PDF (orthancd.pixels does the work, in the pixel pool).

Orthanc's image routes answer a frame that cannot be decoded with an empty
415 (or a redirection to its "unsupported" picture), a frame or argument
out of range with an empty 404; numpy and Matlab report their errors.
"""
import collections
import re

from twisted.internet import defer
from twisted.internet.interfaces import IPushProducer
from zope.interface import implementer

from orthancd.errors import ErrorCode, OrthancError
from orthancd.index.base import UnknownResource
from orthancd.lazy_modules import LazyModule
from orthancd.pixels.extraction_modes import ExtractionMode
from orthancd.pixels.parsed_files import DEFAULT_CAPACITY_MB, ParsedFiles
from orthancd.rest.http import (EmptyAnswer, bool_argument, get_argument, has_argument,
                                no_answer, render_bytes, render_json, request_uri, sized)

# /series/{id}/numpy decodes its slices in this many parallel parts.
SERIES_NUMPY_PARTS = 2

_IMAGE_KINDS = (("png", "image", "png"), ("jpeg", "image", "jpeg"),
                ("pam", "image", "x-portable-arbitrarymap"))

# Decoding, processing and encoding (pydicom, numpy, codecs): imported by
# the first image asked for (orthancd.lazy_modules).
extraction = LazyModule("orthancd.pixels.extraction")
processing = LazyModule("orthancd.pixels.processing")
slice_ordering = LazyModule("orthancd.pixels.slice_ordering")


def negotiate(accept):
    """Orthanc's content negotiation between PNG (the default), JPEG and
    PAM: the most specific media range wins, then the highest quality,
    then the first registered.  None when nothing matches."""
    best, best_rank = None, None
    for media_range in (accept if accept is not None else "*/*").split(","):
        tokens = media_range.split(";")
        if not tokens or "/" not in tokens[0]:
            continue
        parameters = {}
        for token in tokens[1:]:
            if "=" in token:
                key, _, value = token.partition("=")
                value = value.strip()
                if len(value) >= 2 and value[0] == '"' and value[-1] == '"':
                    value = value[1:-1]
                parameters[key.strip()] = value
            else:
                parameters[token.strip()] = ""
        kind_type, _, kind_subtype = tokens[0].partition("/")
        kind_type, kind_subtype = kind_type.strip(), kind_subtype.strip()
        for kind, handler_type, handler_subtype in _IMAGE_KINDS:
            if kind_type == "*" and kind_subtype == "*":
                level = 0
            elif kind_subtype == "*" and kind_type == handler_type:
                level = 1
            elif kind_type == handler_type and kind_subtype == handler_subtype:
                level = 2
            else:
                continue
            rank = (level, _quality(parameters))
            if best_rank is None or best_rank < rank:
                best, best_rank = kind, rank
    return best


def _quality(parameters):
    if "q" not in parameters:
        return 1.0
    value = processing.parse_double(parameters["q"])
    if value is None or not 0.0 <= value <= 1.0:
        raise OrthancError(ErrorCode.BadRequest,
                           "Quality parameter out of range in a HTTP request (must be between "
                           "0 and 1): " + parameters["q"])
    return value


def _image_encoding(request):
    """The encoding asked for; an error found on the way is kept to be
    raised once the frame is decoded, as Orthanc does."""
    try:
        text = get_argument(request, "quality", "90")
        stripped = text.strip(" ")
        quality = int(stripped) if stripped.isdigit() else None
        if quality is None or not 1 <= quality <= 100:
            raise OrthancError(ErrorCode.BadRequest, "Bad quality for a JPEG encoding (must be a "
                               "number between 0 and 100): " + text)
        accept = request.getHeader(b"accept")
        kind = negotiate(None if accept is None else accept.decode("latin-1"))
        return extraction.Encoding(kind, quality)
    except OrthancError as e:
        return extraction.Encoding(refusal=e)


_INTEGER = re.compile(r"^[+-]?\d+$")


def _lexical_unsigned(text):
    """boost::lexical_cast<unsigned int>: "-1" wraps around."""
    if not _INTEGER.match(text):
        return None
    value = int(text)
    if value < 0:
        value += 2 ** 32
    return value if 0 <= value < 2 ** 32 else None


def _rendering(request):
    try:
        values = {}
        for name, key in (("window-width", "window_width"), ("window-center", "window_center")):
            if has_argument(request, name):
                value = processing.parse_double(get_argument(request, name))
                if value is None:
                    raise OrthancError(ErrorCode.ParameterOutOfRange,
                                       "Bad value for argument: " + name)
                values[key] = value
        for name in ("width", "height"):
            values[name] = 0
            if has_argument(request, name):
                text = get_argument(request, name)
                if not _INTEGER.match(text) or not -2 ** 31 <= int(text) < 2 ** 31:
                    raise OrthancError(ErrorCode.ParameterOutOfRange,
                                       "Bad value for argument: " + name)
                if int(text) < 0:
                    raise OrthancError(ErrorCode.ParameterOutOfRange,
                                       "Argument cannot be negative: " + name)
                values[name] = int(text)
        values["smooth"] = False
        if has_argument(request, "smooth"):
            text = get_argument(request, "smooth")
            if text not in ("true", "1", "false", "0"):
                raise OrthancError(ErrorCode.BadRequest)
            values["smooth"] = text in ("true", "1")
        return extraction.Rendering(**values)
    except OrthancError as e:
        return extraction.Rendering(refusal=e)


@implementer(IPushProducer)
class _Flow:
    """The connection's flow control, as a Deferred to wait for: it fires
    at once unless the transport asked to pause (its buffer is full)."""

    def __init__(self):
        self.paused = False
        self.stopped = False
        self._waiting = None

    def pauseProducing(self):
        self.paused = True

    def resumeProducing(self):
        self.paused = False
        waiting, self._waiting = self._waiting, None
        if waiting is not None:
            waiting.callback(None)

    def stopProducing(self):
        self.stopped = True
        self.resumeProducing()

    def wait(self):
        if not self.paused:
            return defer.succeed(None)
        self._waiting = defer.Deferred()
        return self._waiting


# Chunks made ahead of the one being sent.
CHUNKS_AHEAD = 2


async def _send_pooled_chunks(request, count, make, pool):
    """Write chunk 0, 1, ... of an answer, each made by ``make(index)`` in
    ``pool`` while the previous ones are on the wire: the reactor only
    hands finished chunks over, and a chunk's memory is freed (and reused
    for the next) once it is sent."""
    flow = _Flow()
    request.registerProducer(flow, True)
    try:
        pending = collections.deque(pool.run(make, i) for i in range(min(CHUNKS_AHEAD, count)))
        following = len(pending)
        while pending:
            chunk = await pending.popleft()
            if following < count:
                pending.append(pool.run(make, following))
                following += 1
            await flow.wait()
            if flow.stopped:
                break   # the client left
            request.write(chunk)
    finally:
        request.unregisterProducer()


def install(app, server):
    pool = server.pixel_pool
    parsed_files = ParsedFiles(
        server.configuration.get("DicomParserCacheSize", DEFAULT_CAPACITY_MB) * 1024 * 1024)

    def parsed(info):
        """The parsed file of an attachment (in a worker thread)."""
        return parsed_files.get(info.uuid, lambda: server.storage.read(info.uuid))

    def read_and(public_id, function, *args):
        """Deferred ``function(parsed file, *args)``, read and run in the pixel pool."""
        info = server.dicom_attachment(public_id)

        def work():
            return function(parsed(info), *args)
        return pool.run(work)

    async def image_answer(request, public_id, operation, *args):
        """Orthanc's IDecodedFrameHandler: decoding failures become 415 (or
        the "unsupported" picture), a frame or argument out of range an
        empty 404."""
        try:
            body, mime = await read_and(public_id, operation, *args)
        except UnknownResource:
            raise EmptyAnswer(404)
        except extraction.Unanswered:
            raise EmptyAnswer(404)
        except (extraction.DecodingFailed, OrthancError) as e:
            if isinstance(e, OrthancError) and e.code in (ErrorCode.ParameterOutOfRange,
                                                          ErrorCode.UnknownResource):
                raise EmptyAnswer(404)
            if has_argument(request, "returnUnsupportedImage") and \
                    bool_argument(request, "returnUnsupportedImage", True):
                depth = len([part for part in request_uri(request).split("/") if part])
                request.setResponseCode(307)
                request.setHeader(b"Location",
                                  ("../" * (depth - 1) + "app/images/unsupported.png").encode())
                return sized(request, b"")
            raise EmptyAnswer(415)
        request.setHeader(b"Content-Type", mime.encode("ascii"))
        return sized(request, body)

    def frame_number(frame):
        number = _lexical_unsigned(frame)
        if number is None:
            raise EmptyAnswer(404)
        return number

    def encoded(name):
        """extraction.<name> (imported by the first image asked for), with
        the MIME type of the encoding its last argument names."""
        def run(pixels, *args):
            encoding = args[-1]
            body = getattr(extraction, name)(pixels, *args)
            return body, encoding.mime
        return run

    frame_image = encoded("frame_image")
    rendered = encoded("rendered")

    for mode in ExtractionMode:
        def make(mode):
            def instance_image(request, public_id):
                return image_answer(request, public_id, frame_image, 0, mode,
                                    _image_encoding(request))

            def frame_image_route(request, public_id, frame):
                return image_answer(request, public_id, frame_image, frame_number(frame), mode,
                                    _image_encoding(request))
            app.route("/instances/<public_id>/" + mode.value, methods=["GET"],
                      endpoint="pixels_" + mode.value)(instance_image)
            app.route("/instances/<public_id>/frames/<frame>/" + mode.value, methods=["GET"],
                      endpoint="pixels_frame_" + mode.value)(frame_image_route)
        make(mode)

    @app.route("/instances/<public_id>/rendered", methods=["GET"])
    def instance_rendered(request, public_id):
        return image_answer(request, public_id, rendered, 0, _rendering(request),
                            _image_encoding(request))

    @app.route("/instances/<public_id>/frames/<frame>/rendered", methods=["GET"])
    def frame_rendered(request, public_id, frame):
        return image_answer(request, public_id, rendered, frame_number(frame),
                            _rendering(request), _image_encoding(request))

    async def matlab(request, public_id, frame):
        try:
            body = await read_and(public_id, extraction.matlab, frame)
        except extraction.DecodingFailed:
            raise OrthancError(ErrorCode.NotImplemented)
        return render_bytes(request, body, b"text/plain")

    @app.route("/instances/<public_id>/matlab", methods=["GET"])
    def instance_matlab(request, public_id):
        return matlab(request, public_id, 0)

    @app.route("/instances/<public_id>/frames/<frame>/matlab", methods=["GET"])
    def frame_matlab(request, public_id, frame):
        return matlab(request, public_id, frame_number(frame))

    async def raw(request, public_id, frame, compress):
        number = _lexical_unsigned(frame)
        if number is None:
            raise no_answer(request)
        mime, body = await read_and(public_id, extraction.raw_frame, number, compress)
        return render_bytes(request, body, mime.encode("ascii"))

    @app.route("/instances/<public_id>/frames/<frame>/raw", methods=["GET"])
    def frame_raw(request, public_id, frame):
        return raw(request, public_id, frame, False)

    @app.route("/instances/<public_id>/frames/<frame>/raw.gz", methods=["GET"])
    def frame_raw_gz(request, public_id, frame):
        return raw(request, public_id, frame, True)

    @app.route("/instances/<public_id>/frames", methods=["GET"])
    async def frames(request, public_id):
        count = await read_and(public_id, extraction.frames_count)
        return render_json(request, list(range(count)))

    def numpy_arguments(request):
        return bool_argument(request, "rescale", True), bool_argument(request, "compress", False)

    async def answer_numpy(request, volume, compress):
        """The array, once complete (Orthanc's errors come before any byte):
        zipped, or sent frame by frame from the pool without a copy of the
        whole array."""
        if compress:
            return render_bytes(request, await pool.run(volume.answer, True))
        request.setHeader(b"Content-Type", b"application/octet-stream")
        request.setHeader(b"Content-Length", b"%d" % volume.size)
        volume.chunk(0)   # the array is complete (else Orthanc's error, before any byte)
        await _send_pooled_chunks(request, volume.chunks_count, volume.chunk, pool)
        return b""

    @app.route("/instances/<public_id>/numpy", methods=["GET"])
    async def instance_numpy(request, public_id):
        rescale, compress = numpy_arguments(request)
        volume = await read_and(public_id, extraction.numpy_instance, rescale)
        return await answer_numpy(request, volume, compress)

    @app.route("/instances/<public_id>/frames/<frame>/numpy", methods=["GET"])
    async def frame_numpy(request, public_id, frame):
        rescale, compress = numpy_arguments(request)
        if not frame.strip(" ").isdigit() or int(frame) >= 2 ** 32:
            raise OrthancError(ErrorCode.ParameterOutOfRange,
                               'Expected an unsigned integer for the "frame" argument')
        volume = await read_and(public_id, extraction.numpy_frame, int(frame), rescale)
        return await answer_numpy(request, volume, compress)

    @app.route("/series/<public_id>/ordered-slices", methods=["GET"])
    def series_ordered_slices(request, public_id):
        return render_json(request, slice_ordering.ordered_slices_json(server.index, public_id))

    @app.route("/series/<public_id>/numpy", methods=["GET"])
    async def series_numpy(request, public_id):
        rescale, compress = numpy_arguments(request)
        slices = slice_ordering.ordered_slices(server.index, public_id)
        files, index = [], 0
        for instance, frames in slices:
            files.append((server.dicom_attachment(instance), frames, index))
            index += frames
        volume = extraction.NumpyVolume(index, rescale)

        def write(part):
            for info, frames, first in part:
                try:
                    pixels = parsed(info)
                    # Frames of a cached file are kept as decoded; the others
                    # are converted at once, and their file freed.
                    keep = info.uuid in parsed_files
                    for frame in range(frames):
                        volume.write(pixels, frame, first + frame, keep)
                except Exception as e:
                    e.slice_index = first
                    raise
        # The first instance fixes the array's format; the others are decoded
        # in parallel parts (parsing holds the GIL, reading and decoding
        # mostly do not), written each at its place.  Frames are converted
        # (rescaled) as their chunks are sent.
        await pool.run(write, files[:1])
        rest = files[1:]
        parts = [rest[i::SERIES_NUMPY_PARTS] for i in range(SERIES_NUMPY_PARTS)]
        outcomes = await defer.DeferredList([pool.run(write, part) for part in parts if part],
                                            consumeErrors=True)
        # Orthanc stops at the first failing slice, in the volume's order.
        failures = [outcome for ok, outcome in outcomes if not ok]
        if failures:
            min(failures, key=lambda f: getattr(f.value, "slice_index", 0)).raiseException()
        return await answer_numpy(request, volume, compress)

    @app.route("/instances/<public_id>/pdf", methods=["GET"])
    async def pdf(request, public_id):
        document = await read_and(public_id, extraction.pdf)
        if document is None:
            raise no_answer(request)
        return render_bytes(request, document, b"application/pdf")
