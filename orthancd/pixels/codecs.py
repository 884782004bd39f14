"""The compressed transfer syntaxes, decoded by the field's codecs through
pydicom 3's decoder framework.

Which codec decodes what, chosen so that the pixels are those DCMTK gives
Orthanc 1.13.0 (compared sample by sample in tests/test_pixels_parity.py):

  JPEG baseline/extended, 8 bits (.4.50, .4.51)  Pillow (libjpeg-turbo: the
      IJG decoder DCMTK embeds, same IDCT, upsampling and YCbCr conversion)
  JPEG extended, 12 bits (.4.51)                 GDCM (IJG 12-bit build);
      pylibjpeg-libjpeg refuses some real files
  JPEG lossless (.4.57, .4.70), JPEG-LS (.4.80, .4.81)
                                                 pylibjpeg-libjpeg, then GDCM
  JPEG 2000 (.4.90, .4.91), HTJ2K (.4.201-.4.203) pylibjpeg-openjpeg, then GDCM
  RLE lossless (.5)                              pylibjpeg-rle, then pydicom

Before any codec runs, the dimensions its codestream declares are checked
against the dataset's: a frame never makes a codec allocate more than the
dataset announces (decompression bombs).
"""
import struct

import numpy as np
from pydicom.encaps import encapsulate
from pydicom.pixels import get_decoder



JPEG_BASELINE = "1.2.840.10008.1.2.4.50"
JPEG_EXTENDED = "1.2.840.10008.1.2.4.51"
JPEG_LOSSLESS = ("1.2.840.10008.1.2.4.57", "1.2.840.10008.1.2.4.70")
JPEG_LS = ("1.2.840.10008.1.2.4.80", "1.2.840.10008.1.2.4.81")
JPEG_2000 = ("1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.4.91", "1.2.840.10008.1.2.4.201",
             "1.2.840.10008.1.2.4.202", "1.2.840.10008.1.2.4.203")
RLE = "1.2.840.10008.1.2.5"

# GDCM is no fallback through pydicom: on a corrupt codestream it may hand
# back a blank image instead of failing.
_PLUGINS = {JPEG_BASELINE: ("pillow", "pylibjpeg"),
            JPEG_EXTENDED: ("pillow", "pylibjpeg"),
            RLE: ("pylibjpeg", "pydicom")}
for _uid in JPEG_LOSSLESS + JPEG_LS + JPEG_2000:
    _PLUGINS[_uid] = ("pylibjpeg",)

SUPPORTED = frozenset(_PLUGINS)


class CodecError(Exception):
    """The codec could not decode the frame."""


def decode(syntax, frame, information, as_rgb=True):
    """One compressed frame -> numpy array (rows, columns[, samples])."""
    if syntax not in _PLUGINS:
        raise CodecError("no codec")
    declared = codestream_size(syntax, frame)
    if declared is not None and (declared[1] != information.width or
                                 declared[0] not in (0, information.height)):
        # (A JPEG height of 0 is given later, by a DNL marker.)
        raise CodecError("the codestream is %dx%d, the dataset says %dx%d"
                         % (declared[1], declared[0], information.width, information.height))
    try:
        return _decode_with_plugins(syntax, frame, information, as_rgb)
    except CodecError:
        if syntax == JPEG_EXTENDED and information.bits_stored > 8 and _complete_jpeg(frame):
            return _gdcm_jpeg_12_bits(frame, information)
        raise


def _decode_with_plugins(syntax, frame, information, as_rgb):
    decoder = get_decoder(syntax)
    options = dict(rows=information.height, columns=information.width,
                   samples_per_pixel=information.samples_per_pixel,
                   bits_allocated=information.bits_allocated,
                   bits_stored=information.bits_stored,
                   pixel_representation=int(information.is_signed),
                   photometric_interpretation=information.photometric or "MONOCHROME2",
                   number_of_frames=1,
                   planar_configuration=int(information.is_planar))
    # pydicom's decoders take encapsulated pixel data: the frame as its
    # only fragment.
    encapsulated = encapsulate([bytes(frame)], has_bot=False)
    errors = []
    for plugin in _PLUGINS[syntax]:
        if plugin not in decoder.available_plugins:
            continue
        try:
            array, _ = decoder.as_array(encapsulated, decoding_plugin=plugin, as_rgb=as_rgb,
                                        **options)
            return array
        except Exception as e:  # each codec has its own exceptions
            errors.append("%s: %s" % (plugin, e))
    raise CodecError("; ".join(errors) or "no codec available")


def _complete_jpeg(frame):
    """A frame header, a scan and the end marker: GDCM does not report a
    codestream that lacks them, it decodes it as a blank image."""
    try:
        _jpeg_size(frame)
    except (CodecError, struct.error):
        return False
    data = bytes(frame).rstrip(b"\0\xff")
    return b"\xff\xda" in data and data.endswith(b"\xff\xd9")


def _gdcm_jpeg_12_bits(frame, information):
    try:
        import gdcm
    except ImportError:
        raise CodecError("GDCM is not installed")
    fragment = gdcm.Fragment()
    fragment.SetByteStringValue(frame)
    fragments = gdcm.SequenceOfFragments.New()
    fragments.AddFragment(fragment)
    element = gdcm.DataElement(gdcm.Tag(0x7FE0, 0x0010))
    element.SetValue(fragments.__ref__())
    image = gdcm.Image()
    image.SetNumberOfDimensions(2)
    image.SetDimensions((information.width, information.height, 1))
    image.SetDataElement(element)
    photometric = gdcm.PhotometricInterpretation.GetPIType(information.photometric or "MONOCHROME2")
    image.SetPhotometricInterpretation(gdcm.PhotometricInterpretation(photometric))
    image.SetTransferSyntax(gdcm.TransferSyntax(gdcm.TransferSyntax.GetTSType(JPEG_EXTENDED)))
    image.SetPixelFormat(gdcm.PixelFormat(information.samples_per_pixel, 16,
                                          information.bits_stored, information.bits_stored - 1,
                                          int(information.is_signed)))
    buffer = image.GetBuffer()
    if buffer is None:
        raise CodecError("GDCM cannot decode this frame")
    data = buffer.encode("utf-8", "surrogateescape")
    expected = information.width * information.height * information.samples_per_pixel * 2
    if len(data) != expected:
        raise CodecError("GDCM decoded %d bytes instead of %d" % (len(data), expected))
    dtype = "<i2" if information.is_signed else "<u2"
    shape = (information.height, information.width)
    if information.samples_per_pixel > 1:
        shape += (information.samples_per_pixel,)
    return np.frombuffer(data, dtype).reshape(shape)


# -- the dimensions a codestream declares --

def codestream_size(syntax, frame):
    """(rows, columns) from the frame's own header, None when not found."""
    try:
        if syntax in JPEG_2000:
            return _j2k_size(frame)
        if syntax == RLE:
            return None
        return _jpeg_size(frame)
    except struct.error:
        raise CodecError("truncated codestream")


_JPEG_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC} | {0xF7}


def _jpeg_size(frame):
    """From the SOF (or JPEG-LS SOF55) marker segment."""
    return jpeg_frame_header(frame)[:2]


def jpeg_frame_header(frame):
    """(rows, columns, components) of the SOF (or JPEG-LS SOF55) marker
    segment."""
    position, size = 2, len(frame)
    if size < 4 or frame[0] != 0xFF or frame[1] != 0xD8:
        raise CodecError("not a JPEG codestream")
    while position + 4 <= size:
        if frame[position] != 0xFF:
            raise CodecError("corrupt JPEG marker")
        marker = frame[position + 1]
        if marker == 0xFF:
            position += 1
            continue
        if marker in (0x01,) or 0xD0 <= marker <= 0xD7:
            position += 2
            continue
        length = struct.unpack_from(">H", frame, position + 2)[0]
        if marker in _JPEG_SOF:
            return struct.unpack_from(">HHB", frame, position + 5)
        if marker == 0xDA:
            break
        position += 2 + length
    raise CodecError("no frame header in the JPEG codestream")


def _j2k_size(frame):
    """From the SIZ marker segment of the codestream (possibly in a JP2 box)."""
    data = bytes(frame[:4096])
    start = data.find(b"\xff\x4f\xff\x51")
    if start < 0:
        raise CodecError("no SIZ marker in the JPEG 2000 codestream")
    xsiz, ysiz, xosiz, yosiz = struct.unpack_from(">IIII", data, start + 8)
    return ysiz - yosiz, xsiz - xosiz
