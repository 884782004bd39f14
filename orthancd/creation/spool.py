"""Large images of create-dicom kept out of the daemon's memory.

1.13.0 accepts images up to 4 GB decoded; it holds them in memory several
times over (the decoded image, DCMTK's element, the serialized file: about
4 GB of RSS for a 1 GB image, measured).  orthancd does not: an image
above images.SPOOL_THRESHOLD is decoded into a file-backed memory map in
the storage area's temporary folder (page cache the kernel can write back
and reclaim, not the daemon's own memory), and the new DICOM file is
written straight to another temporary file, the pixels copied a few rows
at a time, hashed on the way; the ingest path then adopts that file as it
adopts a spooled upload.  Blocking: runs in the pixels pool.
"""
import mmap
import os
import struct
import tempfile

import numpy as np
from pydicom.dataset import Dataset

from orthancd.dicom.reading import dataset_offset
from orthancd.modification import values
from orthancd.modification.dataset import EditedFile
from orthancd.storage.digests import ContentHasher
from orthancd.storage.streaming import ReceivedFile

PIXEL_DATA = 0x7FE00010
# An empty Pixel Data element as EditedFile writes it (explicit VR little
# endian, OW, length 0): the placeholder the pixels replace.
_EMPTY_PIXEL_DATA = struct.pack("<HH", 0x7FE0, 0x0010) + b"OW\0\0" + struct.pack("<I", 0)
CHUNK_SIZE = 16 * 1024 * 1024
_PAGE = mmap.PAGESIZE


class PixelSpool:
    """The temporary files of one create-dicom request, and the images its
    new data sets hold there rather than in memory."""

    def __init__(self, directory):
        self.directory = directory
        self._maps = []
        self._held = {}      # id(EditedFile) -> the pixels to write as Pixel Data

    def allocate(self, shape, dtype):
        """A zeroed array backed by a temporary file (a decoder's ``out``)."""
        fd, path = tempfile.mkstemp(dir=self.directory, suffix=".pixels")
        os.close(fd)
        try:
            array = np.memmap(path, dtype=dtype, mode="w+", shape=shape)
        finally:
            # Unlinked at once: the mapping keeps the space until it goes.
            os.unlink(path)
        self._maps.append(array)
        return array

    def hold(self, edited, pixels):
        """``pixels`` (rows first, native or byte-swapped values, alpha
        already dropped) are ``edited``'s Pixel Data, written by ``write``."""
        self._held[id(edited)] = pixels
        edited.put(values.raw_element(PIXEL_DATA, "OW", b"", edited.encoding))

    def holds(self, edited):
        return id(edited) in self._held

    def write(self, edited, transfer_syntax):
        """The Part-10 file of ``edited`` (uncompressed ``transfer_syntax``,
        explicit little endian for new files) as a ReceivedFile in the
        temporary folder, its pixels copied from where they are held."""
        pixels = self._held.pop(id(edited))
        dataset = edited.dataset
        # Elements after the Pixel Data (a private group 7FE1 for instance)
        # are written after it.
        after = {tag: dataset.get_item(tag, keep_deferred=True)
                 for tag in list(dataset.keys()) if tag > PIXEL_DATA}
        for tag in after:
            del dataset[tag]
        head = edited.serialize(transfer_syntax)
        if not head.endswith(_EMPTY_PIXEL_DATA):
            raise ValueError("the Pixel Data element is not where it was expected")
        tail = b""
        if after:
            rest = Dataset()
            for tag, element in after.items():
                rest[tag] = element
            written = EditedFile(rest, edited.default_encoding).serialize(transfer_syntax)
            tail = written[dataset_offset(written):]
        wide = pixels.dtype.itemsize == 2
        length = pixels.size * (2 if wide else 1)
        padding = length % 2
        fd, path = tempfile.mkstemp(dir=self.directory, suffix=".dcm")
        hasher = ContentHasher()
        try:
            with os.fdopen(fd, "wb") as out:
                def write(data):
                    out.write(data)
                    hasher.update(data)
                # Below 4 GB (Orthanc's limit, and Rows and Columns are US):
                # the length always fits the 32-bit field.
                write(head[:-4] + struct.pack("<I", length + padding))
                _copy_rows(pixels, "<u2" if wide else "u1", write)
                if padding:
                    write(b"\0")
                write(tail)
        except BaseException:
            os.unlink(path)
            raise
        return ReceivedFile(path, hasher.digests())

    def discard(self):
        """Let the decoded images go (their files are unlinked already: the
        space returns when the last view of a mapping does)."""
        self._held.clear()
        self._maps = []


def _copy_rows(pixels, dtype, write):
    """Write ``pixels`` as contiguous ``dtype`` values, a few rows at a
    time; the pages of a memory-mapped source are let go once copied."""
    rows = max(1, CHUNK_SIZE // max(1, pixels[0].nbytes if len(pixels) else 1))
    source = _mapping_of(pixels)
    stride = pixels.strides[0]
    for start in range(0, pixels.shape[0], rows):
        chunk = pixels[start:start + rows]
        write(memoryview(np.ascontiguousarray(chunk, dtype=dtype)).cast("B"))
        if source is not None:
            mapping, base = source
            _let_go(mapping, base + start * stride, base + (start + len(chunk)) * stride)


def _mapping_of(pixels):
    """(mmap, offset of ``pixels[0]`` in it) when ``pixels`` is a view of
    a memory map made by PixelSpool.allocate (offset 0), else None."""
    owner = pixels
    while not isinstance(owner, np.memmap) and isinstance(getattr(owner, "base", None),
                                                          np.ndarray):
        owner = owner.base
    mapping = getattr(owner, "_mmap", None) if isinstance(owner, np.memmap) else None
    if mapping is None or owner.offset != 0 or pixels.strides[0] <= 0:
        return None
    start = pixels.__array_interface__["data"][0] - owner.__array_interface__["data"][0]
    return mapping, start


def _let_go(mapping, start, end):
    """Drop the whole pages of [start, end) from the process (a shared
    file mapping: the data stays in the file and the page cache)."""
    first = start - start % _PAGE
    length = end - first
    length -= length % _PAGE
    if length > 0:
        mapping.madvise(mmap.MADV_DONTNEED, first, length)
