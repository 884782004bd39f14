"""A storage area that reports its use to the metrics, as Orthanc 1.13.0's
StorageAccessor does: bytes written and read (orthanc_storage_written_bytes,
orthanc_storage_read_bytes, counted as stored, i.e. compressed when the
file is) and the longest create, read and remove over the last ten seconds
(orthanc_storage_*_duration_ms).  Streams (``open``) are not counted: their
bytes are read by whoever streams them.

Every method runs in a worker thread, as the area's own; the rest of the
area's interface is the wrapped area's.
"""
import time

from orthancd.metrics import MAX_OVER_10_SECONDS

WRITTEN_BYTES = "orthanc_storage_written_bytes"
READ_BYTES = "orthanc_storage_read_bytes"
CREATE_DURATION = "orthanc_storage_create_duration_ms"
READ_DURATION = "orthanc_storage_read_duration_ms"
REMOVE_DURATION = "orthanc_storage_remove_duration_ms"


class MeteredStorageArea:

    def __init__(self, area, registry):
        self._area = area
        self._registry = registry
        # Orthanc publishes these from the start.
        registry.increment(WRITTEN_BYTES, 0)
        registry.increment(READ_BYTES, 0)
        registry.set_integer(READ_DURATION, 0, MAX_OVER_10_SECONDS)

    def __getattr__(self, name):
        return getattr(self._area, name)

    def _timed(self, metric, function, *args, **kwargs):
        started = time.perf_counter()
        try:
            return function(*args, **kwargs)
        finally:
            self._registry.set_integer(metric, (time.perf_counter() - started) * 1000,
                                       MAX_OVER_10_SECONDS)

    def _written(self, stored):
        self._registry.increment(WRITTEN_BYTES, stored.size)  # the bytes on disk
        return stored

    def store(self, data, *args, **kwargs):
        return self._written(self._timed(CREATE_DURATION, self._area.store, data,
                                         *args, **kwargs))

    def adopt(self, path, *args, **kwargs):
        return self._written(self._timed(CREATE_DURATION, self._area.adopt, path,
                                         *args, **kwargs))

    def read(self, uuid):
        data = self._timed(READ_DURATION, self._area.read, uuid)
        self._registry.increment(READ_BYTES, len(data))
        return data

    def read_stored(self, uuid):
        data = self._timed(READ_DURATION, self._area.read_stored, uuid)
        self._registry.increment(READ_BYTES, len(data))
        return data

    def remove(self, uuid):
        return self._timed(REMOVE_DURATION, self._area.remove, uuid)
