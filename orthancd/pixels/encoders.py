"""Encoders of decoded images: PNG, JPEG, PAM, numpy (.npy / .npz), Matlab.

The PNG encoder is our own: rows filtered with numpy and deflated with
zlib in bands, so that a large image is encoded without a second full copy
of it, and with compression settings chosen for speed (previews are
deflate-bound; see bench/pixels_bench.py)."""
import io
import struct
import zipfile
import zlib

import numpy as np

from orthancd.pixels.image import PixelFormat, internal_error_at, not_implemented_at

# Previews are deflate-bound.  Rows filtered with "Up" are mostly runs of
# the same byte: zlib's run-length strategy (matches at distance 1 only)
# deflates them about twice as fast as its fastest general level (1), and
# into smaller files: over the 210 decodable sample frames, 17.5 MB against
# 18.9 MB at level 1 and 17.2 MB at libpng's default (level 6, three times
# slower still).  Any zlib stream is a valid PNG, whatever its strategy.
PNG_COMPRESSION_LEVEL = 1
PNG_COMPRESSION_STRATEGY = zlib.Z_RLE
_BAND_BYTES = 4 * 1024 * 1024

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_TYPES = {
    PixelFormat.Grayscale8: (8, 0, ">u1"),
    PixelFormat.Grayscale16: (16, 0, ">u2"),
    PixelFormat.SignedGrayscale16: (16, 0, ">i2"),
    PixelFormat.RGB24: (8, 2, ">u1"),
}


def _chunk(kind, data):
    return (struct.pack(">I", len(data)) + kind + data +
            struct.pack(">I", zlib.crc32(data, zlib.crc32(kind)) & 0xFFFFFFFF))


def png_rows_filtered(rows, previous_row):
    """PNG scanlines of ``rows`` (uint8, height x bytes) with the "Up"
    filter, given the last row of the band above (or None)."""
    height, width = rows.shape
    out = np.empty((height, width + 1), dtype="u1")
    out[:, 0] = 2
    out[0, 1:] = rows[0] if previous_row is None else rows[0] - previous_row
    if height > 1:
        np.subtract(rows[1:], rows[:-1], out=out[1:, 1:])
    return out


def encode_png(image, level=PNG_COMPRESSION_LEVEL, strategy=PNG_COMPRESSION_STRATEGY):
    try:
        depth, color, dtype = _PNG_TYPES[image.format]
    except KeyError:
        raise not_implemented_at("PngWriter.cpp:176")
    height, width = image.height, image.width
    header = struct.pack(">IIBBBBB", width, height, depth, color, 0, 0, 0)
    parts = [_PNG_SIGNATURE, _chunk(b"IHDR", header)]
    # Signed values are written as their 16-bit two's complement.
    data = np.ascontiguousarray(image.pixels.astype(dtype, copy=False)).view("u1")
    data = data.reshape(height, -1) if height else data.reshape(0, 0)
    compressor = zlib.compressobj(level, zlib.DEFLATED, 15, 8, strategy)
    compressed = []
    band = max(1, _BAND_BYTES // max(1, data.shape[1] if height else 1))
    previous = None
    for start in range(0, height, band):
        rows = data[start:start + band]
        compressed.append(compressor.compress(png_rows_filtered(rows, previous)))
        previous = rows[-1]
    compressed.append(compressor.flush())
    parts.append(_chunk(b"IDAT", b"".join(compressed)))
    parts.append(_chunk(b"IEND", b""))
    return b"".join(parts)


def encode_jpeg(image, quality):
    from PIL import Image as PilImage
    if image.format is PixelFormat.Grayscale8:
        picture = PilImage.fromarray(image.pixels, "L")
    elif image.format is PixelFormat.RGB24:
        picture = PilImage.fromarray(image.pixels, "RGB")
    else:
        raise internal_error_at("JpegWriter.cpp:85")
    output = io.BytesIO()
    picture.save(output, "JPEG", quality=quality)
    return output.getvalue()


_PAM_TYPES = {
    PixelFormat.Grayscale8: (255, 1, ">u1", "GRAYSCALE"),
    PixelFormat.Grayscale16: (65535, 1, ">u2", "GRAYSCALE"),
    PixelFormat.SignedGrayscale16: (65535, 1, ">i2", "GRAYSCALE"),
    PixelFormat.RGB24: (255, 3, ">u1", "RGB"),
    # (sic: Orthanc announces 255 for 16-bit colour)
    PixelFormat.RGB48: (255, 3, ">u2", "RGB"),
}


def encode_pam(image):
    try:
        maximum, depth, dtype, kind = _PAM_TYPES[image.format]
    except KeyError:
        raise not_implemented_at("PamWriter.cpp:76")
    header = ("P7\nWIDTH %d\nHEIGHT %d\nDEPTH %d\nMAXVAL %d\nTUPLTYPE %s\nENDHDR\n"
              % (image.width, image.height, depth, maximum, kind)).encode("ascii")
    return header + image.pixels.astype(dtype, copy=False).tobytes()


# -- numpy --

_NUMPY_TYPES = {
    PixelFormat.Grayscale8: ("<u1", 1),
    PixelFormat.Grayscale16: ("<u2", 1),
    PixelFormat.SignedGrayscale16: ("<i2", 1),
    PixelFormat.RGB24: ("<u1", 3),
    PixelFormat.Float32: ("<f4", 1),
}


def numpy_header(depth, width, height, pixel_format):
    """The .npy header Orthanc writes (format 1.0), ``depth`` 0 for a
    single frame (then the array has 3 dimensions)."""
    try:
        descr, channels = _NUMPY_TYPES[pixel_format]
    except KeyError:
        raise not_implemented_at("NumpyWriter.cpp:101")
    shape = "%s%d,%d,%d" % ("%d, " % depth if depth else "", height, width, channels)
    info = "{'descr': '%s', 'fortran_order': False, 'shape': (%s), }" % (descr, shape)
    minimum = 8 + 2 + len(info) + 1
    length = 64
    while length < minimum:
        length += 64
    padding = length - minimum
    header_length = len(info) + padding + 1
    return (b"\x93NUMPY\x01\x00" + struct.pack("<H", header_length) + info.encode("ascii") +
            b" " * padding + b"\n")


def numpy_dtype(pixel_format):
    return np.dtype(_NUMPY_TYPES[pixel_format][0])


def finalize_numpy(chunks, compress):
    """The .npy bytes, or a .npz holding them as "arr_0"."""
    data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
    if not compress:
        return bytes(data)
    output = io.BytesIO()
    with zipfile.ZipFile(output, "w", zipfile.ZIP_DEFLATED,
                         allowZip64=len(data) >= 1024 ** 3) as archive:
        archive.writestr("arr_0", data)
    return output.getvalue()


# -- Matlab / Octave --

def encode_matlab(image):
    if image.format is PixelFormat.RGB24:
        height, width = image.height, image.width
        rows = (" ".join(map(str, row.tolist())) + " " for row in image.pixels.reshape(height, -1))
        return ("double(permute(reshape([ " + "".join(rows) +
                "], [ 3 %d %d ]), [ 3 2 1 ]))" % (height, width)).encode("ascii")
    if image.format not in (PixelFormat.Grayscale8, PixelFormat.Grayscale16,
                            PixelFormat.Grayscale32, PixelFormat.SignedGrayscale16):
        raise not_implemented_at("ImageAccessor.cpp:320")
    rows = (" ".join(map(str, row.tolist())) + " " for row in image.pixels)
    return ("double([ " + "; ".join(rows) + "])").encode("ascii")
