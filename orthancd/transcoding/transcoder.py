"""transcode(file bytes, allowed syntaxes) as Orthanc 1.13.0's DCMTK
transcoder (DcmtkTranscoder::Transcode):

- a file already in one of the allowed syntaxes comes back as it is;
- else the allowed syntaxes are tried in DCMTK's order (uncompressed ones
  first, then JPEG baseline, extended, lossless, lossless SV1, JPEG-LS
  lossless, JPEG-LS near-lossless; then, beyond Orthanc, RLE, JPEG 2000
  lossless, HTJ2K and lossy JPEG 2000), the first that works wins;
- lossy targets need leave to give the instance a new SOP Instance UID
  (JPEG-LS near-lossless is silently skipped without it), JPEG baseline
  needs 8 bits stored, JPEG extended at most 12;
- None when nothing works: each caller then does what Orthanc does when
  its transcoder fails.

Blocking (CPU-bound): callers run it in the pixels pool.
"""
from dataclasses import dataclass
from typing import Optional

from pydicom.dataelem import DataElement
from pydicom.encaps import encapsulate

from orthancd.logs import logger
from orthancd.modification import values
from orthancd.modification.dataset import EditedFile
from orthancd.pixels.information import parse_unsigned
from orthancd.transcoding import attributes, encoders, syntaxes
from orthancd.transcoding.native import NativePixels
from orthancd.transcoding.service import DEFAULT_LOSSY_QUALITY

log = logger(__name__)

PIXEL_DATA = 0x7FE00010
SAMPLES_PER_PIXEL = 0x00280002
PHOTOMETRIC_INTERPRETATION = 0x00280004
PLANAR_CONFIGURATION = 0x00280006
BITS_ALLOCATED = 0x00280100
BITS_STORED = 0x00280101
HIGH_BIT = 0x00280102
PIXEL_REPRESENTATION = 0x00280103
# The palette of a PALETTE COLOR image, gone once it is compressed as YCbCr.
_PALETTE_TAGS = (0x00281101, 0x00281102, 0x00281103, 0x00281199, 0x00281201, 0x00281202,
                 0x00281203, 0x00281221, 0x00281222, 0x00281223)

JPEG_LS_NEAR = 2       # DCMTK's near-lossless deviation, as Orthanc asks it
LOSSLESS_PREDICTORS = {syntaxes.JPEG_LOSSLESS: 6, syntaxes.JPEG_LOSSLESS_SV1: 1}


def _htj2k(rpcl_options):
    def encode(frame, bits_allocated, bits_stored, signed, photometric):
        return encoders.htj2k_lossless(frame, bits_allocated, bits_stored, signed, rpcl_options)
    return encode


HTJ2K_OPTIONS = {syntaxes.HTJ2K_LOSSLESS: _htj2k(False),
                 syntaxes.HTJ2K_RPCL_LOSSLESS: _htj2k(True),
                 syntaxes.HTJ2K: _htj2k(False)}


@dataclass
class Transcoded:
    data: bytes
    transfer_syntax: str
    # The new SOP Instance UID a lossy compression gave, else None.
    new_sop_instance_uid: Optional[str] = None
    original_uid: Optional[str] = None

    @property
    def changed(self):
        return self.new_sop_instance_uid is not None


class _Refused(Exception):
    """This target cannot be written for this file."""


def source_syntax(data, default_encoding="Latin1"):
    return EditedFile.parse(data, default_encoding).transfer_syntax


def transcode(data, allowed, allow_new_uid=True, lossy_quality=DEFAULT_LOSSY_QUALITY,
              default_encoding="Latin1", preserve_uid=False):
    """The Part-10 file ``data`` in one of the ``allowed`` syntaxes, or
    None when DCMTK's transcoder would fail.  ``preserve_uid``: a lossy
    compression keeps the SOP Instance UID (what a modification job puts
    back, to keep the references within the hierarchy)."""
    allowed = frozenset(allowed)
    lossy_quality = min(100, max(1, int(lossy_quality)))
    try:
        edited = EditedFile.parse(data, default_encoding)
    except Exception:
        return None
    source = edited.transfer_syntax
    if not syntaxes.is_known(source):
        return None
    if source in allowed:
        # Nothing to change; DCMTK writes the file anew all the same.
        try:
            return Transcoded(edited.serialize(source), source)
        except Exception:
            return Transcoded(data, source)
    bits_stored = parse_unsigned(edited.string(BITS_STORED))
    reasons = []
    for target in syntaxes.TRANSCODER_ORDER:
        if target not in allowed:
            continue
        if target in syntaxes.LOSSY and not allow_new_uid:
            continue
        if target == syntaxes.JPEG_BASELINE and bits_stored is not None and bits_stored != 8:
            continue
        if target == syntaxes.JPEG_EXTENDED and bits_stored is not None and bits_stored > 12:
            continue
        if edited is None:
            edited = EditedFile.parse(data, default_encoding)
        try:
            transcoded = _write(edited, source, target, lossy_quality)
            if preserve_uid and transcoded.changed:
                _put(edited, attributes.SOP_INSTANCE_UID, transcoded.original_uid)
                transcoded = Transcoded(edited.serialize(target), target)
            return transcoded
        except Exception as e:
            # Whatever fails (a refusal, a codec, a malformed element met
            # while writing), this target cannot be had: as DCMTK's
            # failures, Orthanc's callers then do without.
            reasons.append("%s: %s" % (target, e))
            edited = None  # possibly half-changed: the next attempt starts again
    log.warn("Unable to transcode from {source} to one of {allowed}: {reasons}",
             source=source, allowed=", ".join(sorted(allowed)), reasons="; ".join(reasons))
    return None


def _write(edited, source, target, quality):
    dataset = edited.dataset
    if PIXEL_DATA not in dataset:
        # Nothing to decode nor to encode: only the encoding changes.
        return Transcoded(edited.serialize(target), target)
    if target in syntaxes.UNCOMPRESSED:
        if source not in syntaxes.UNCOMPRESSED:
            _decompress(edited, NativePixels(dataset, source))
        return Transcoded(edited.serialize(target), target)
    native = NativePixels(dataset, source)
    original_uid = edited.string(attributes.SOP_INSTANCE_UID)
    if target in (syntaxes.JPEG_BASELINE, syntaxes.JPEG_EXTENDED):
        uid = _compress_jpeg_lossy(edited, native, target, quality)
    elif target in LOSSLESS_PREDICTORS:
        uid = _compress_jpeg_lossless(edited, native, target)
    elif target in (syntaxes.JPEG_LS_LOSSLESS, syntaxes.JPEG_LS_LOSSY):
        uid = _compress_jpeg_ls(edited, native, target)
    elif target == syntaxes.RLE:
        uid = _compress_lossless(edited, native, encoders.rle)
    elif target == syntaxes.JPEG_2000_LOSSLESS:
        uid = _compress_lossless(edited, native, encoders.jpeg_2000_lossless)
    elif target == syntaxes.JPEG_2000_LOSSY:
        uid = _compress_jpeg_2000_lossy(edited, native, quality)
    elif target in HTJ2K_OPTIONS:
        uid = _compress_lossless(edited, native, HTJ2K_OPTIONS[target])
    else:
        raise _Refused(target)
    return Transcoded(edited.serialize(target), target, uid, original_uid)


def _put(edited, tag, text):
    edited.put(values.string_element(tag, text, edited.encoding, "", False))


def _decompress(edited, native):
    """Native pixel data in place of the encapsulated one."""
    data = b"".join(native.native_frame_bytes(i) for i in range(native.count))
    vr = "OW" if native.bits_allocated > 8 else "OB"
    edited.put(values.raw_element(PIXEL_DATA, vr, data, edited.encoding))
    _put_image_module(edited, native, native.photometric, native.planar)


def _put_image_module(edited, native, photometric, planar):
    if edited.string(PHOTOMETRIC_INTERPRETATION) != photometric:
        _put(edited, PHOTOMETRIC_INTERPRETATION, photometric)
    if native.samples == 3 and (edited.has(PLANAR_CONFIGURATION) or planar):
        if edited.string(PLANAR_CONFIGURATION) != str(planar):
            _put(edited, PLANAR_CONFIGURATION, str(planar))


def _encapsulate(edited, codestreams):
    element = DataElement(PIXEL_DATA, "OB", encapsulate(codestreams, has_bot=True))
    element.is_undefined_length = True
    edited.put(element)
    return sum(len(c) for c in codestreams)


def _as_rgb_8_bits(edited, photometric, was_palette=True):
    """The image module of colour pixel data compressed from RGB: a
    palette's bits become 8-bit samples."""
    for tag in _PALETTE_TAGS:
        edited.remove(tag)
    _put(edited, SAMPLES_PER_PIXEL, "3")
    _put(edited, PHOTOMETRIC_INTERPRETATION, photometric)
    _put(edited, PLANAR_CONFIGURATION, "0")
    if was_palette:
        for tag, text in ((BITS_ALLOCATED, "8"), (BITS_STORED, "8"), (HIGH_BIT, "7"),
                          (PIXEL_REPRESENTATION, "0")):
            _put(edited, tag, text)


def _compress_jpeg_lossy(edited, native, target, quality):
    color = native.samples == 3 or native.is_palette
    bits = 8 if native.bits_stored <= 8 else 12
    if color and bits != 8:
        raise _Refused("colour JPEG is 8 bits")
    codestreams = []
    for index in range(native.count):
        if color:
            frame = native.rgb_frame(index)
        else:
            frame = native.frame(index) & ((1 << native.bits_stored) - 1)
            frame = frame.astype("u1" if bits == 8 else "<u2", copy=False)
        codestreams.append(encoders.jpeg_lossy(frame, bits, quality))
    samples = 3 if color else 1
    uncompressed = native.count * native.rows * native.columns * samples * (1 if bits == 8 else 2)
    compressed = _encapsulate(edited, codestreams)
    if color:
        _as_rgb_8_bits(edited, "YBR_FULL_422", native.is_palette)
    else:
        _put_image_module(edited, native, native.photometric, 0)
    ratio = attributes.ratio_text(uncompressed, compressed)
    if target == syntaxes.JPEG_BASELINE:
        process = "JPEG baseline"
    else:
        process = "JPEG extended sequential %d bit" % bits
    attributes.describe(edited, "Lossy compression with %s, IJG quality factor %d, "
                                "compression ratio %s" % (process, quality, ratio))
    attributes.mark_lossy(edited, ratio, "ISO_10918_1")
    return attributes.new_instance(edited)


def _compress_jpeg_lossless(edited, native, target):
    predictor = LOSSLESS_PREDICTORS[target]
    codestreams = [encoders.jpeg_lossless(native.frame(i), predictor, native.bits_allocated)
                   for i in range(native.count)]
    compressed = _encapsulate(edited, codestreams)
    _put_image_module(edited, native, native.photometric, 0)
    ratio = attributes.ratio_text(native.count * native.frame_size, compressed)
    attributes.describe(edited, "Lossless JPEG compression, selection value %d, point "
                                "transform 0, compression ratio %s" % (predictor, ratio))
    return None


def _compress_jpeg_ls(edited, native, target):
    lossy = target == syntaxes.JPEG_LS_LOSSY
    if lossy and (native.bits_stored > 12 or native.is_palette):
        raise _Refused("DCMTK's near-lossless JPEG-LS: at most 12 bits, no palette")
    near = JPEG_LS_NEAR if lossy else 0
    codestreams = []
    for index in range(native.count):
        frame = native.frame(index)
        if native.bits_stored < native.bits_allocated and lossy:
            frame = frame & ((1 << native.bits_stored) - 1)
        codestreams.append(encoders.jpeg_ls(frame, near))
    compressed = _encapsulate(edited, codestreams)
    _put_image_module(edited, native, native.photometric, 0)
    if not lossy:
        return None
    ratio = attributes.ratio_text(native.count * native.frame_size, compressed)
    attributes.describe(edited, "near lossless JPEG-LS compression, factor %s (NEAR=%d)"
                        % (ratio, near))
    attributes.mark_lossy(edited, ratio, "ISO_14495_1")
    return attributes.new_instance(edited)


def _compress_jpeg_2000_lossy(edited, native, quality):
    """Lossy JPEG 2000, frame by frame, in the photometric interpretation
    the native values have (no colour transform; a palette is looked up
    into 8-bit RGB first, as for JPEG: its indexes cannot be compressed
    lossily); marked as DCMTK marks its lossy compressions, with JPEG
    2000's method, and a new instance."""
    if native.is_palette:
        frames = (native.rgb_frame(i) for i in range(native.count))
        bits_allocated, bits_stored, signed, photometric = 8, 8, False, "RGB"
    else:
        frames = (native.frame(i) for i in range(native.count))
        bits_allocated, bits_stored = native.bits_allocated, native.bits_stored
        signed, photometric = native.is_signed, native.photometric
    codestreams = [encoders.jpeg_2000_lossy(frame, bits_allocated, bits_stored, signed,
                                            photometric, quality) for frame in frames]
    compressed = _encapsulate(edited, codestreams)
    if native.is_palette:
        _as_rgb_8_bits(edited, "RGB")
        uncompressed = native.count * native.rows * native.columns * 3
    else:
        _put_image_module(edited, native, native.photometric, 0)
        uncompressed = native.count * native.frame_size
    ratio = attributes.ratio_text(uncompressed, compressed)
    attributes.describe(edited, "Lossy compression with JPEG 2000, quality factor %d, "
                                "compression ratio %s" % (quality, ratio))
    attributes.mark_lossy(edited, ratio, "ISO_15444_1")
    return attributes.new_instance(edited)


def _compress_lossless(edited, native, encode):
    """RLE, JPEG 2000 lossless or HTJ2K, frame by frame, in the photometric
    interpretation the native values have (interleaved)."""
    codestreams = [encode(native.frame(i), native.bits_allocated, native.bits_stored,
                          native.is_signed, native.photometric)
                   for i in range(native.count)]
    _encapsulate(edited, codestreams)
    _put_image_module(edited, native, native.photometric, 0)
    return None
