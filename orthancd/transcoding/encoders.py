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
  JPEG 2000 (.4.91)    the same, lossy: irreversible 9/7 wavelet, one
                       quality layer whose rate OpenJPEG allocates to
                       reach a PSNR (see jpeg_2000_psnr)
  HTJ2K (.4.201, .4.202, .4.203)
                       imagecodecs' OpenJPH (BSD-2), lossless (reversible
                       5/3, no colour transform; .4.203 allows lossy but
                       lossless is valid there too); .4.202 with the RPCL
                       options DICOM asks for: RPCL progression (OpenJPH's
                       own order), a TLM marker, one tile-part per
                       resolution, the lowest resolution at most 64x64

RLE, JPEG 2000 and HTJ2K go beyond Orthanc 1.13.0, whose DCMTK transcoder
does not write them (it answers "Not implemented yet").

Pillow's libjpeg-turbo has no 12-bit nor lossless mode, pydicom 3 encodes
JPEG-LS only through pyjpegls, and GDCM aborts the process on some
parameter errors: imagecodecs covers every syntax Orthanc 1.13.0 writes.
"""
import struct

import math

import imagecodecs
import numpy as np
from pydicom.pixels.encoders import (JPEG2000Encoder, JPEG2000LosslessEncoder,
                                    RLELosslessEncoder)

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


def _stored_values(frame, bits_allocated, bits_stored, signed):
    """``frame``'s unsigned bit patterns as the values a JPEG 2000 coder
    takes: only the ``bits_stored`` low bits, sign-extended from there
    when signed."""
    values = frame.astype("<u%d" % (bits_allocated // 8), copy=False)
    if bits_stored < bits_allocated:
        values = values & ((1 << bits_stored) - 1)
    if signed:
        values = values.astype("<i%d" % (bits_allocated // 8))
        if bits_stored < bits_allocated:
            shift = bits_allocated - bits_stored
            values = (values << shift) >> shift
    return np.ascontiguousarray(values)


def jpeg_2000_lossless(frame, bits_allocated, bits_stored, signed, photometric):
    """``frame``: unsigned values, interleaved."""
    options = _image_options(frame, bits_allocated, bits_stored, signed, photometric)
    return _run(JPEG2000LosslessEncoder.encode,
                _stored_values(frame, bits_allocated, bits_stored, signed), use_mct=False,
                encoding_plugin="pylibjpeg", **options)


def jpeg_2000_psnr(quality, bits_stored):
    """The PSNR (dB) a lossy JPEG 2000 frame is coded for, from Orthanc's
    lossy quality (1..100, the IJG scale of its JPEG encoder).

    The target is an RMS error in stored grey levels, so that one quality
    means the same fidelity at every bit depth: measured on 12-bit MR/CR
    samples, IJG quality q leaves about 0.3 + 0.07 s levels of RMS error,
    s being IJG's scaling percentage (5000/q below 50, 200 - 2q above),
    and growing as the square root of s below quality 50.  Quality 90
    thus gives 1.7 levels (about 67 dB on 12 bits, 43 dB on 8), quality 50
    gives 7.3, quality 100 0.3 (near-lossless, still the irreversible
    wavelet)."""
    scaling = 5000.0 / quality if quality < 50 else 200.0 - 2 * quality
    if scaling <= 100:
        rms_error = 0.3 + 0.07 * scaling
    else:
        rms_error = 7.3 * math.sqrt(scaling / 100.0)
    peak = (1 << bits_stored) - 1
    return 20 * math.log10(peak / rms_error)


def jpeg_2000_lossy(frame, bits_allocated, bits_stored, signed, photometric, quality):
    """``frame``: unsigned values, interleaved; no colour transform, so the
    photometric interpretation stays what it was."""
    options = _image_options(frame, bits_allocated, bits_stored, signed, photometric)
    return _run(JPEG2000Encoder.encode,
                _stored_values(frame, bits_allocated, bits_stored, signed),
                j2k_psnr=[jpeg_2000_psnr(quality, bits_stored)], use_mct=False,
                encoding_plugin="pylibjpeg", **options)


HTJ2K_LOWEST_RESOLUTION = 64
# imagecodecs' HTJ2K.TILEPART.RESOLUTIONS (the enumeration is not exported
# by imagecodecs' lazy loader): a tile-part per resolution.
_TILE_PART_PER_RESOLUTION = 1


def htj2k_lossless(frame, bits_allocated, bits_stored, signed, rpcl_options=False):
    """``frame``: unsigned values, interleaved.  The codestream's precision
    is that of the array (8 or 16 bits): every stored value comes back."""
    values = _stored_values(frame, bits_allocated, bits_stored, signed)
    options = dict(reversible=True, rgb=False)
    if rpcl_options:
        longest = max(frame.shape[0], frame.shape[1])
        levels = max(1, math.ceil(math.log2(max(1, longest) / HTJ2K_LOWEST_RESOLUTION)))
        options.update(tlm=True, tilepart=_TILE_PART_PER_RESOLUTION, resolutions=levels)
    return _run(imagecodecs.htj2k_encode, values, **options)
