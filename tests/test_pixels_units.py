"""Unit tests of orthancd/pixels' building blocks (the parity with Orthanc
1.13.0 is in test_pixels_parity.py)."""
import io

import numpy as np
import pytest
from PIL import Image as PilImage
from pydicom.dataset import Dataset, FileMetaDataset

from orthancd.errors import ErrorCode, OrthancError
from orthancd.pixels import encoders, processing
from orthancd.pixels.decoding import DicomPixels
from orthancd.pixels.frames import decode_psmct_rle1
from orthancd.pixels.image import Image, PixelFormat
from orthancd.rest.pixels import negotiate


@pytest.mark.parametrize("pixel_format,dtype,shape", [
    (PixelFormat.Grayscale8, "u1", (5, 7)), (PixelFormat.Grayscale16, "<u2", (5, 7)),
    (PixelFormat.SignedGrayscale16, "<i2", (5, 7)), (PixelFormat.RGB24, "u1", (5, 7, 3))])
def test_png_round_trip(pixel_format, dtype, shape):
    pixels = np.random.default_rng(0).integers(np.iinfo(dtype).min, np.iinfo(dtype).max,
                                              shape).astype(dtype)
    decoded = np.array(PilImage.open(io.BytesIO(encoders.encode_png(Image(pixel_format, pixels)))))
    assert (decoded.astype(np.int64) & 0xFFFF == pixels.astype(np.int64) & 0xFFFF).all()


def test_numpy_header_is_read_by_numpy():
    values = np.arange(2 * 3 * 4, dtype="<f4").reshape(2, 3, 4, 1)
    data = encoders.numpy_header(2, 4, 3, PixelFormat.Float32) + values.tobytes()
    assert len(encoders.numpy_header(2, 4, 3, PixelFormat.Float32)) % 64 == 0
    assert (np.load(io.BytesIO(data)) == values).all()
    archive = np.load(io.BytesIO(encoders.finalize_numpy([data], True)))
    assert (archive["arr_0"] == values).all()


def test_rounding_half_away_from_zero():
    assert processing.iround(np.array([0.5, 1.5, 2.49, -0.5, -1.5], dtype=np.float32)).tolist() \
        == [1, 2, 2, -1, -2]


def test_preview_stretch_uses_the_full_range():
    image = Image(PixelFormat.SignedGrayscale16, np.array([[-1000, 0], [500, 3000]], "<i2"))
    preview = processing.apply_extraction_mode(image, processing.ExtractionMode.Preview, False)
    assert preview.pixels.min() == 0 and preview.pixels.max() == 255
    flat = Image(PixelFormat.Grayscale16, np.full((2, 2), 7, "<u2"))
    assert processing.apply_extraction_mode(
        flat, processing.ExtractionMode.Preview, True).pixels.tolist() == [[255, 255], [255, 255]]


def test_luminance_uses_orthancs_octal_constant():
    rgb = Image(PixelFormat.RGB24, np.array([[[0, 0, 255]]], "u1"))
    assert processing.convert(rgb, PixelFormat.Grayscale8).pixels.tolist() == [[255 * 466 // 10000]]


def _palette_dataset(indexes, size):
    ds = Dataset()
    ds.Rows, ds.Columns, ds.SamplesPerPixel = 1, len(indexes), 1
    ds.BitsAllocated = ds.BitsStored = 8
    ds.HighBit, ds.PixelRepresentation = 7, 0
    ds.PhotometricInterpretation = "PALETTE COLOR"
    for color in ("Red", "Green", "Blue"):
        setattr(ds, color + "PaletteColorLookupTableDescriptor", [size, 0, 16])
        setattr(ds, color + "PaletteColorLookupTableData",
                np.arange(size, dtype="<u2").tobytes())
    ds.PixelData = bytes(indexes)
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.1"
    return ds


def test_palette_indexes_are_checked():
    assert DicomPixels(_palette_dataset([0, 1, 2, 3], 4)).decode(0).pixels.shape == (1, 4, 3)
    with pytest.raises(OrthancError) as error:
        DicomPixels(_palette_dataset([0, 1, 2, 9], 4)).decode(0)
    assert (error.value.code, error.value.details) == (ErrorCode.BadFileFormat,
                                                       "Pixel value exceeds palette")


def test_pmsct_rle1():
    ds = Dataset()
    # 0x10, then 0xa5-escaped run of three 0x01 deltas, then an absolute 0x5a value.
    ds.add_new(0x07A11011, "CS", "PMSCT_RLE1")
    ds.add_new(0x07A1100A, "OB", bytes([0x10, 0xA5, 0x02, 0x01, 0x5A, 0x34, 0x12]))
    values = np.frombuffer(decode_psmct_rle1(ds), "<u2").tolist()
    assert values == [0x10, 0x11, 0x12, 0x13, 0x1234]


@pytest.mark.parametrize("accept,kind", [
    (None, "png"), ("*/*", "png"), ("image/*", "png"), ("image/jpeg", "jpeg"),
    ("text/html", None), ("image/jpeg;q=0.5, image/png;q=0.9", "png"),
    ("image/*, image/x-portable-arbitrarymap", "pam")])
def test_negotiation(accept, kind):
    assert negotiate(accept) == kind
