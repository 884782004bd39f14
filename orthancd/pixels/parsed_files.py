"""A bounded cache of parsed DICOM files for the pixel routes.

Orthanc 1.13.0 keeps one too (its "DicomParserCacheSize" option, 256 MB by
default, which its image routes read through): a viewer asking for the
previews or frames of the same instances again, or for each frame of a
multi-frame instance, has the file read and parsed once, not once per
request.  Entries are keyed by the attachment's uuid, a content address
(orthancd.storage.digests): an entry can never be stale, and the entry of
a deleted file is merely never asked for again.

The values are shared between threads: nothing downstream writes into a
parsed file or into a decoded image (native frames are read-only views on
the cached pixel data).
"""
import collections
import threading

DEFAULT_CAPACITY_MB = 256
PIXEL_DATA = 0x7FE00010
EXPLICIT_BIG_ENDIAN = "1.2.840.10008.1.2.2"

# A parsed header holds Python objects for what the file holds in a few
# bytes: its elements are counted this many times their size in the file.
HEADER_WEIGHT = 16


def parse(data):
    # pydicom and numpy: imported by the first image asked for
    # (orthancd.lazy_modules).
    from orthancd.dicom.reading import read_dataset
    from orthancd.pixels.decoding import DicomPixels
    dataset = read_dataset(data)
    # Everything was read: pydicom's reference to the stream would keep the
    # file's bytes alive beside the parsed elements.
    dataset.buffer = None
    return DicomPixels(dataset)


def estimated_size(pixels, file_size):
    """Roughly the memory a parsed file holds: its pixel data as stored
    (twice for big endian files, whose frames are read from a swapped
    copy), and its other elements as Python objects."""
    element = pixels.dataset.get(PIXEL_DATA)
    value = getattr(element, "value", None)
    pixel_bytes = len(value) if isinstance(value, (bytes, bytearray)) else 0
    copies = 2 if pixels.syntax == EXPLICIT_BIG_ENDIAN else 1
    return copies * pixel_bytes + HEADER_WEIGHT * max(0, file_size - pixel_bytes)


class ParsedFiles:
    """uuid -> DicomPixels, the least recently used dropped beyond
    ``capacity`` bytes (estimated); a capacity of 0 caches nothing."""

    def __init__(self, capacity):
        self.capacity = capacity
        self._entries = collections.OrderedDict()   # uuid -> (DicomPixels, size)
        self._size = 0
        self._lock = threading.Lock()

    def get(self, uuid, read):
        """The parsed file ``uuid``, whose bytes ``read()`` gives (called,
        and the bytes parsed, only when the file is not in the cache).
        Runs in a worker thread; parsing errors propagate, nothing is kept."""
        with self._lock:
            entry = self._entries.get(uuid)
            if entry is not None:
                self._entries.move_to_end(uuid)
                return entry[0]
        data = read()
        pixels = parse(data)
        size = estimated_size(pixels, len(data))
        del data
        if size <= self.capacity:
            with self._lock:
                if uuid not in self._entries:
                    self._entries[uuid] = (pixels, size)
                    self._size += size
                    while self._size > self.capacity:
                        _, (_, dropped) = self._entries.popitem(last=False)
                        self._size -= dropped
        return pixels

    def __contains__(self, uuid):
        with self._lock:
            return uuid in self._entries

    def __len__(self):
        return len(self._entries)

    @property
    def size(self):
        return self._size
