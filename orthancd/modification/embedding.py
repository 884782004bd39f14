"""A data URI given as the new PixelData or EncapsulatedDocument of a file
(ParsedDicomFile::EmbedContentInternal): raw bytes become the pixel data, a
PDF or a 3D model (OBJ, MTL, STL) becomes an encapsulated document.

Images (PNG, JPEG, PAM) are decoded into uncompressed pixel data
(orthancd.creation.images: Orthanc's readers, formats and limits).
"""
import numpy as np
from pydicom.dataelem import DataElement
from pydicom.encaps import encapsulate

from orthancd.errors import ErrorCode, OrthancError
from orthancd.modification import values
from orthancd.pixels.image import not_implemented_at

MIME_TYPE_OF_ENCAPSULATED_DOCUMENT = 0x00420012
CONVERSION_TYPE = 0x00080064
MODALITY = 0x00080060
SOP_CLASS_UID = 0x00080016
BITS_ALLOCATED = 0x00280100

# What Orthanc's LookupMimeType knows, as it names them back.
_KNOWN_MIMES = {
    "application/octet-stream": "application/octet-stream", "application/dicom": "application/dicom",
    "image/jpeg": "image/jpeg", "image/jpg": "image/jpeg", "image/jp2": "image/jp2",
    "application/json": "application/json", "application/json; charset=utf-8": "application/json",
    "application/pdf": "application/pdf", "image/png": "image/png",
    "application/xml": "application/xml", "text/xml": "application/xml",
    "text/plain": "text/plain", "image/x-portable-arbitrarymap": "image/x-portable-arbitrarymap",
    "text/html": "text/html", "application/gzip": "application/gzip",
    "application/javascript": "application/javascript", "text/css": "text/css",
    "application/wasm": "application/wasm", "image/gif": "image/gif",
    "application/zip": "application/zip", "application/x-nacl": "application/x-nacl",
    "application/x-pnacl": "application/x-pnacl", "image/svg+xml": "image/svg+xml",
    "application/x-font-woff": "application/x-font-woff", "font/woff2": "font/woff2",
    "application/dicom+json": "application/dicom+json",
    "application/dicom+xml": "application/dicom+xml", "image/x-icon": "image/x-icon",
    "model/obj": "model/obj", "model/mtl": "model/mtl", "model/stl": "model/stl",
}
_MODELS = {"model/mtl": "1.2.840.10008.5.1.4.1.1.104.5",
           "model/obj": "1.2.840.10008.5.1.4.1.1.104.4",
           "model/stl": "1.2.840.10008.5.1.4.1.1.104.3"}
_IMAGES = ("image/png", "image/jpeg", "image/x-portable-arbitrarymap")


def embed(edited, uri, encoding, spool=None):
    """Put the content of the data URI ``uri`` in ``edited``; False when
    ``uri`` is no data URI (it is then an ordinary value).  ``spool``: an
    orthancd.creation.spool.PixelSpool where a large image is decoded and
    held instead of in memory."""
    decoded = values.decode_data_uri(uri)
    if decoded is None:
        return False
    mime, content = decoded
    mime = _KNOWN_MIMES.get(mime.lower())
    if mime is None:
        raise OrthancError(ErrorCode.ParameterOutOfRange)
    if mime == "application/octet-stream":
        _raw_pixel_data(edited, content, encoding)
    elif mime == "application/pdf":
        if not content.startswith(b"%PDF-"):
            raise OrthancError(ErrorCode.BadFileFormat, "Not a PDF file")
        _encapsulate(edited, mime, content, encoding)
        _set_if_absent(edited, SOP_CLASS_UID, "1.2.840.10008.5.1.4.1.1.104.1", encoding)
        _set_if_absent(edited, MODALITY, "OT", encoding)
        _set_if_absent(edited, CONVERSION_TYPE, "WSD", encoding)
    elif mime in _MODELS:
        _encapsulate(edited, mime, content, encoding)
        _set_if_absent(edited, SOP_CLASS_UID, _MODELS[mime], encoding)
        _set_if_absent(edited, MODALITY, "M3D", encoding)
    elif mime in _IMAGES:
        from orthancd.creation.images import READERS
        allocate = spool.allocate if spool is not None else None
        _embed_image(edited, READERS[mime](content, allocate), encoding, spool)
    else:
        raise OrthancError(ErrorCode.NotImplemented,
                           "Unsupported MIME type for the content of a new DICOM file: " + mime)
    return True


def _raw_pixel_data(edited, content, encoding):
    if edited.has(values.PIXEL_DATA):
        raise OrthancError(ErrorCode.InternalError)
    if len(content) % 2:
        content += b"\0"
    # DCMTK's DcmPixelData is OW, whatever the bits allocated.
    edited.put(values.raw_element(values.PIXEL_DATA, "OW", content, encoding))


def _encapsulate(edited, mime, document, encoding):
    edited.put(values.string_element(MIME_TYPE_OF_ENCAPSULATED_DOCUMENT, mime, encoding, "",
                                     decode_data_uri_scheme=False))
    if len(document) % 2:
        document += b"\0"
    edited.put(values.raw_element(values.ENCAPSULATED_DOCUMENT, "OB", document, encoding))


def _set_if_absent(edited, tag, value, encoding):
    if not edited.has(tag):
        edited.put(values.string_element(tag, value, encoding, "", decode_data_uri_scheme=False))


ROWS, COLUMNS = 0x00280010, 0x00280011
SAMPLES_PER_PIXEL, PHOTOMETRIC_INTERPRETATION = 0x00280002, 0x00280004
PLANAR_CONFIGURATION, PIXEL_REPRESENTATION = 0x00280006, 0x00280103
BITS_STORED, HIGH_BIT = 0x00280101, 0x00280102


def _configure_image_tags(edited, image, encoding):
    """ParsedDicomFile::ConfigureTagsForUncompressedImage: the image module
    of the decoded image (its alpha dropped).  Returns the pixels to write."""
    if image.format not in ("Grayscale8", "Grayscale16", "RGB24", "RGBA32", "RGBA64"):
        raise not_implemented_at("ParsedDicomFile.cpp:1320")

    def put(tag, text):
        edited.put(values.string_element(tag, text, encoding, "", decode_data_uri_scheme=False))
    edited.remove(values.PIXEL_DATA)
    put(COLUMNS, str(image.width))
    put(ROWS, str(image.height))
    put(SAMPLES_PER_PIXEL, "1")
    put(PIXEL_REPRESENTATION, "0")
    pixels = image.pixels
    if image.format.startswith("Grayscale"):
        _set_if_absent(edited, PHOTOMETRIC_INTERPRETATION, "MONOCHROME2", encoding)
    else:
        put(PHOTOMETRIC_INTERPRETATION, "RGB")
        put(SAMPLES_PER_PIXEL, "3")
        pixels = pixels[:, :, :3]
    wide = pixels.dtype.itemsize == 2
    bits = "16" if wide else "8"
    put(BITS_ALLOCATED, bits)
    put(BITS_STORED, bits)
    put(HIGH_BIT, "15" if wide else "7")
    if not image.format.startswith("Grayscale"):
        put(PLANAR_CONFIGURATION, "0")
    return pixels


def _embed_image(edited, image, encoding, spool=None):
    """ParsedDicomFile::EmbedImage: uncompressed pixel data."""
    pixels = _configure_image_tags(edited, image, encoding)
    from orthancd.creation.images import SPOOL_THRESHOLD
    if spool is not None and pixels.size * pixels.dtype.itemsize > SPOOL_THRESHOLD:
        spool.hold(edited, pixels)
        return
    wide = pixels.dtype.itemsize == 2
    data = np.ascontiguousarray(pixels).astype("<u2" if wide else "u1", copy=False).tobytes()
    if len(data) % 2:
        data += b"\0"
    # DCMTK's DcmPixelData is OW, whatever the bits allocated.
    edited.put(values.raw_element(values.PIXEL_DATA, "OW", data, encoding))


JPEG_BASELINE = "1.2.840.10008.1.2.4.50"


def encapsulate_pixel_data(edited, uri, encoding):
    """ParsedDicomFile::EncapsulatePixelData (1.12.7's "Encapsulate"): a
    JPEG kept as it is, the one fragment of JPEG baseline pixel data.
    Returns the transfer syntax the file must be written in."""
    from orthancd.creation.images import read_jpeg
    decoded = values.decode_data_uri(uri)
    if decoded is None:
        raise OrthancError(ErrorCode.BadFileFormat)
    mime, content = decoded
    edited.remove(values.PIXEL_DATA)
    if mime != "image/jpeg":
        raise OrthancError(ErrorCode.NotImplemented,
                           "Cannot encapsulate pixel data from MIME type: " + mime)
    image = read_jpeg(content)
    _configure_image_tags(edited, image, encoding)
    if image.format == "RGB24":
        edited.put(values.string_element(PHOTOMETRIC_INTERPRETATION, "YBR_FULL_422", encoding,
                                         "", decode_data_uri_scheme=False))
    element = DataElement(values.PIXEL_DATA, "OB", encapsulate([content], has_bot=True))
    element.is_undefined_length = True
    edited.put(element)
    return JPEG_BASELINE
