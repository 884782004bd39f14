"""What the pixel routes do for speed must not change their answers: the
PNG encoder's settings, the cache of parsed files, the streamed numpy
volume (figures: bench/pixels_bench.py; parity with Orthanc 1.13.0:
test_pixels_parity.py, whose daemon runs with the cache)."""
import io

import imagecodecs
import numpy as np
import pytest
from PIL import Image as PilImage
from pydicom import DataElement
from pydicom.filewriter import dcmwrite

from orthancd.errors import ErrorCode, OrthancError
from orthancd.pixels import encoders, parsed_files
from orthancd.pixels.extraction import NumpyVolume
from orthancd.pixels.image import Image, PixelFormat
from orthancd.pixels.parsed_files import ParsedFiles
from tests.support.daemon import Daemon, read_sample

CT = ("Knix", "Loc", "IM-0001-0001.dcm")


# -- PNG --

@pytest.mark.parametrize("pixel_format,dtype,shape", [
    (PixelFormat.Grayscale8, "u1", (1500, 3000)),            # several deflated bands
    (PixelFormat.Grayscale16, "<u2", (700, 1600)),
    (PixelFormat.RGB24, "u1", (900, 1700, 3)),
    (PixelFormat.Grayscale8, "u1", (1, 1))])
def test_png_is_read_back_by_libpng_and_pillow(pixel_format, dtype, shape):
    rng = np.random.default_rng(0)
    # Runs (a background) and noise, as in medical images.
    pixels = rng.integers(0, np.iinfo(dtype).max, shape).astype(dtype)
    pixels[: shape[0] // 3] = 0
    png = encoders.encode_png(Image(pixel_format, pixels))
    assert (imagecodecs.png_decode(png) == pixels).all()
    assert (np.array(PilImage.open(io.BytesIO(png))) == pixels).all()


def test_png_of_a_ct_preview_stays_small():
    """The run-length strategy compresses as well as libpng's default."""
    from orthancd.pixels.processing import ExtractionMode, apply_extraction_mode
    image = apply_extraction_mode(parsed_files.parse(read_sample(*CT)).decode(0),
                                  ExtractionMode.Preview, False)
    ours = encoders.encode_png(image)
    libpng = imagecodecs.png_encode(image.pixels)
    assert len(ours) < 1.1 * len(libpng)


# -- the cache of parsed files --

def test_parsed_files_are_kept_within_the_capacity():
    data = read_sample(*CT)
    size = parsed_files.estimated_size(parsed_files.parse(data), len(data))
    cache = ParsedFiles(2 * size)
    reads = []

    def reader(key):
        return lambda: reads.append(key) or data
    first = cache.get("a", reader("a"))
    assert cache.get("a", reader("a")) is first and reads == ["a"]
    cache.get("b", reader("b"))
    cache.get("a", reader("a"))          # "a" is now the most recently used
    cache.get("c", reader("c"))          # so "b" goes
    assert len(cache) == 2 and cache.size <= 2 * size
    cache.get("a", reader("a"))
    cache.get("b", reader("b"))
    assert reads == ["a", "b", "c", "b"]


def test_nothing_is_cached_without_capacity_nor_on_errors():
    data = read_sample(*CT)
    cache = ParsedFiles(0)
    assert cache.get("a", lambda: data) is not cache.get("a", lambda: data)
    assert len(cache) == 0
    cache = ParsedFiles(1 << 30)
    for _ in range(2):
        with pytest.raises(Exception):
            cache.get("bad", lambda: b"not a DICOM file at all")
    assert len(cache) == 0


# -- the streamed numpy volume --

class _Frames:
    """Stands for DicomPixels: decoded frames and a dataset to rescale with."""

    def __init__(self, images, slope="2", intercept="-1024"):
        from pydicom.dataset import Dataset
        self.images = images
        self.dataset = Dataset()
        self.dataset.RescaleSlope, self.dataset.RescaleIntercept = slope, intercept

    def decode(self, frame):
        return self.images[frame]


def _volume_bytes(volume):
    return b"".join(volume.chunks())


def test_numpy_volume_answers_the_array_orthanc_computes():
    rng = np.random.default_rng(2)
    frames = [rng.integers(-2000, 3000, (3, 4)).astype("<i2") for _ in range(3)]
    source = _Frames([Image(PixelFormat.SignedGrayscale16, f) for f in frames])
    expected = np.stack(frames).astype("f4") * np.float32(2) + np.float32(-1024)
    # Frames kept as decoded, converted at once, or both.
    for keeps in ((True, True, True), (False, False, False), (True, False, True)):
        volume = NumpyVolume(3, True)
        volume.write(source, 0, None, keeps[0])
        volume.write(source, 2, 2, keeps[2])     # any order, at its index
        volume.write(source, 1, 1, keeps[1])
        data = _volume_bytes(volume)
        assert len(data) == volume.size
        assert (np.load(io.BytesIO(data)) == expected[..., None]).all()
        raw = NumpyVolume(3, False)
        for n in range(3):
            raw.write(source, n, n, keeps[n])
        assert (np.load(io.BytesIO(_volume_bytes(raw))) == np.stack(frames)[..., None]).all()


def test_numpy_volume_refuses_before_any_byte():
    small = Image(PixelFormat.Grayscale8, np.zeros((2, 2), "u1"))
    large = Image(PixelFormat.Grayscale8, np.zeros((2, 3), "u1"))
    volume = NumpyVolume(2, True)
    volume.write(_Frames([small]), 0)
    with pytest.raises(OrthancError) as e:
        volume.write(_Frames([large]), 0)
    assert e.value.code is ErrorCode.IncompatibleImageSize
    with pytest.raises(OrthancError) as e:
        volume.chunk(0)
    assert e.value.code is ErrorCode.BadSequenceOfCalls


# -- the daemon, with and without the cache: the same answers --

ROUTES = ("/preview", "/frames/0/preview", "/image-int16", "/rendered?window-width=100",
          "/frames/0/raw", "/numpy", "/numpy?rescale=0", "/frames", "/matlab")
SAMPLES = [CT, ("TransferSyntaxes", "1.2.840.10008.1.2.4.50.dcm"),
           ("TransferSyntaxes", "1.2.840.10008.1.2.2.dcm"), ("Issue19.dcm",),
           ("MultiframeWindowing.dcm",), ("Issue22-NoPixelData.dcm",)]


@pytest.fixture(scope="module")
def daemons(tmp_path_factory):
    started = []
    try:
        for name, options in (("cached", {}), ("uncached", {"DicomParserCacheSize": 0})):
            started.append(Daemon(tmp_path_factory.mktemp(name), **options).start())
        yield [d.client() for d in started]
    finally:
        for daemon in started:
            daemon.stop()


def test_cached_files_answer_as_freshly_parsed_ones(daemons):
    cached, uncached = daemons
    for sample in SAMPLES:
        data = read_sample(*sample)
        ids = {client.post("/instances", data).json()["ID"] for client in daemons}
        assert len(ids) == 1
        instance = ids.pop()
        for route in ROUTES:
            path = "/instances/%s%s" % (instance, route)
            reference = uncached.get(path)
            for _ in range(2):   # parsed, then from the cache
                answer = cached.get(path)
                assert (answer.status, answer.body) == (reference.status, reference.body), path
    series = cached.get("/instances/%s/series" % cached.get("/instances").json()[0]).json()["ID"]
    path = "/series/%s/numpy" % series
    assert cached.get(path).body == uncached.get(path).body


def _multiframe_file(little_endian):
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, generate_uid
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian if little_endian else ExplicitVRBigEndian
    ds = FileDataset(None, {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.Rows, ds.Columns, ds.NumberOfFrames = 3, 4, 5
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    ds.RescaleSlope, ds.RescaleIntercept = 3, 7
    values = np.arange(5 * 3 * 4, dtype="u2") * 1000
    ds["PixelData"] = DataElement(0x7FE00010, "OW", values.astype("<u2" if little_endian else ">u2").tobytes())
    output = io.BytesIO()
    dcmwrite(output, ds, implicit_vr=False, little_endian=little_endian, force_encoding=True)
    return output.getvalue(), values.reshape(5, 3, 4)


@pytest.mark.parametrize("little_endian", [True, False])
def test_multiframe_volume_shares_the_pixel_data(little_endian):
    data, values = _multiframe_file(little_endian)
    pixels = parsed_files.parse(data)
    volume = NumpyVolume(5, True)
    for frame in range(5):
        volume.write(pixels, frame)
    # The frames are views on one host-order copy of the pixel data, made once.
    assert pixels._native_bytes() is pixels._native_bytes()
    expected = values.astype("f4") * np.float32(3) + np.float32(7)
    assert (np.load(io.BytesIO(_volume_bytes(volume))) == expected[..., None]).all()
