"""One frame of native values -> one codestream, with imagecodecs
(BSD-3: libjpeg-turbo 3 and CharLS).

  JPEG baseline (.4.50), extended 8 and 12 bits (.4.51)
                       libjpeg-turbo, lossy, IJG quality scale; colour as
                       YCbCr with 4:2:2 chroma subsampling (as DCMTK)
  JPEG lossless (.4.57 predictor 6, .4.70 predictor 1)
                       libjpeg-turbo, precision = bits allocated (DCMTK's
                       "true lossless": every stored bit comes back)
  JPEG-LS (.4.80, .4.81 with NEAR=2)
                       CharLS
  RLE lossless (.5)    pydicom 3's encoder (pylibjpeg-rle when present,
                       else pydicom's own; never GDCM, which aborts the
                       process on some inputs)
  JPEG 2000 lossless (.4.90)
                       pydicom 3's encoder with pylibjpeg-openjpeg
                       (OpenJPEG, reversible 5/3 wavelet, no colour
                       transform)

RLE and JPEG 2000 go beyond Orthanc 1.13.0, whose DCMTK transcoder does
not write them (it answers "Not implemented yet").

Pillow's libjpeg-turbo has no 12-bit nor lossless mode, pydicom 3 encodes
JPEG-LS only through pyjpegls, and GDCM aborts the process on some
parameter errors: imagecodecs covers every syntax Orthanc 1.13.0 writes.
"""
import struct

import imagecodecs
import numpy as np
from pydicom.pixels.encoders import JPEG2000LosslessEncoder, RLELosslessEncoder

_APP14 = 0xEE
_SOF3 = 0xC3
_SOS = 0xDA


class CannotEncode(Exception):
    """The encoder refused the frame."""


def _run(encode, *args, **kwargs):
    try:
        return bytes(encode(*args, **kwargs))
    except Exception as e:  # imagecodecs raises its own per codec
        raise CannotEncode(str(e)) from e


def jpeg_lossy(frame, bits, quality):
    """``frame``: uint8 (8 bits) or uint16 values below 4096 (12 bits);
    colour frames are RGB."""
    if frame.ndim == 3:
        return _run(imagecodecs.jpeg8_encode, np.ascontiguousarray(frame), level=quality,
                    colorspace="RGB", outcolorspace="YCbCr", subsampling="422",
                    bitspersample=bits)
    return _run(imagecodecs.jpeg8_encode, np.ascontiguousarray(frame), level=quality,
                bitspersample=bits)


def jpeg_lossless(frame, predictor, precision):
    if frame.ndim == 3:
        return _as_dcmtk_colour(_run(imagecodecs.jpeg8_encode, np.ascontiguousarray(frame),
                                     lossless=True, predictor=predictor,
                                     bitspersample=precision, colorspace="RGB",
                                     outcolorspace="RGB"))
    return _run(imagecodecs.jpeg8_encode, np.ascontiguousarray(frame), lossless=True,
                predictor=predictor, bitspersample=precision)


def jpeg_ls(frame, near):
    return _run(imagecodecs.jpegls_encode, np.ascontiguousarray(frame), level=near)


def _as_dcmtk_colour(codestream):
    """A lossless colour codestream as DCMTK writes it: components numbered
    0, 1, 2 and no Adobe marker.  libjpeg-turbo names them "R", "G", "B"
    with an Adobe marker, which decoders take for "RGB whatever the
    Photometric Interpretation says" (wrong for YBR_FULL pixel data)."""
    data = bytearray(codestream)
    out = bytearray(data[:2])
    position = 2
    ids = {}
    while position + 4 <= len(data) and data[position] == 0xFF:
        marker = data[position + 1]
        length = struct.unpack_from(">H", data, position + 2)[0]
        segment = bytearray(data[position:position + 2 + length])
        if marker == _APP14:
            position += 2 + length
            continue
        if marker == _SOF3:
            for k in range(segment[9]):
                ids[segment[10 + 3 * k]] = k
                segment[10 + 3 * k] = k
        elif marker == _SOS:
            for k in range(segment[4]):
                segment[5 + 2 * k] = ids.get(segment[5 + 2 * k], segment[5 + 2 * k])
            out += segment + data[position + 2 + length:]
            return bytes(out)
        out += segment
        position += 2 + length
    return bytes(codestream)


def _image_options(frame, bits_allocated, bits_stored, signed, photometric):
    return dict(rows=frame.shape[0], columns=frame.shape[1],
                samples_per_pixel=frame.shape[2] if frame.ndim == 3 else 1,
                bits_allocated=bits_allocated, bits_stored=bits_stored,
                pixel_representation=int(signed), photometric_interpretation=photometric,
                number_of_frames=1, planar_configuration=0)


def rle(frame, bits_allocated, bits_stored, signed, photometric):
    """``frame``: unsigned values, interleaved; RLE keeps every stored byte
    (segments are byte planes), so the bytes go as they are."""
    options = _image_options(frame, bits_allocated, bits_stored, signed, photometric)
    data = np.ascontiguousarray(frame).astype(frame.dtype.newbyteorder("<"), copy=False)
    # Never GDCM's: on some inputs it aborts the whole process.
    plugin = "pylibjpeg" if "pylibjpeg" in RLELosslessEncoder.available_plugins else "pydicom"
    return _run(RLELosslessEncoder.encode, data.tobytes(), encoding_plugin=plugin, **options)


def jpeg_2000_lossless(frame, bits_allocated, bits_stored, signed, photometric):
    """``frame``: unsigned values, interleaved; only the ``bits_stored``
    low bits are coded (sign-extended from there when signed)."""
    options = _image_options(frame, bits_allocated, bits_stored, signed, photometric)
    values = frame.astype("<u%d" % (bits_allocated // 8), copy=False)
    if bits_stored < bits_allocated:
        values = values & ((1 << bits_stored) - 1)
    if signed:
        values = values.astype("<i%d" % (bits_allocated // 8))
        if bits_stored < bits_allocated:
            shift = bits_allocated - bits_stored
            values = (values << shift) >> shift
    return _run(JPEG2000LosslessEncoder.encode, np.ascontiguousarray(values), use_mct=False,
                encoding_plugin="pylibjpeg", **options)
