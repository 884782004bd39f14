"""Run a DicomServerFactory in its own process for the real-peer tests.

    python tests/net_server_process.py --storage DIR [--port 0] [--config JSON]

The fake ``services`` moves each received file to DIR/<SOPInstanceUID>.dcm
and fsyncs it (from a thread, like the real storage would), answering
"AlreadyStored" for a known instance.  It prints ``LISTENING <port>`` once
the socket is open.
"""

import argparse
import json
import os
import sys
import threading

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import pydicom  # noqa: E402
from twisted.internet import endpoints, reactor, threads  # noqa: E402

from orthancd.net.server import DicomServerFactory  # noqa: E402


class DicomFormatError(Exception):
    """Stands in for orthancd.dicom.reading.DicomFormatError."""


class StoreResult:
    def __init__(self, status):
        self.status = status


class FolderServices:
    def __init__(self, storage, temporary_directory):
        self.storage = storage
        self.temporary_directory = temporary_directory
        self._lock = threading.Lock()
        self.origins = []

    def _store(self, path, origin):
        try:
            ds = pydicom.dcmread(path, stop_before_pixels=True,
                                 specific_tags=["SOPInstanceUID"])
            uid = str(ds.SOPInstanceUID)
        except Exception as exc:
            raise DicomFormatError(str(exc))
        target = os.path.join(self.storage, uid + ".dcm")
        with self._lock:
            if os.path.exists(target):
                return StoreResult("AlreadyStored")
            with open(path, "rb+") as f:
                os.fsync(f.fileno())
            os.replace(path, target)
            dir_fd = os.open(self.storage, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
            with open(target + ".origin.json", "w") as f:
                json.dump(origin, f)
        return StoreResult("Success")

    def store_file(self, path, origin):
        return threads.deferToThread(self._store, path, origin)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--storage", required=True)
    parser.add_argument("--tmp")
    parser.add_argument("--config", default="{}")
    args = parser.parse_args()
    tmp = args.tmp or os.path.join(args.storage, ".tmp")
    os.makedirs(tmp, exist_ok=True)
    services = FolderServices(args.storage, tmp)
    factory = DicomServerFactory(json.loads(args.config), services, reactor)
    endpoint = endpoints.TCP4ServerEndpoint(reactor, args.port, interface="127.0.0.1")

    def listening(port):
        print("LISTENING", port.getHost().port, flush=True)

    endpoint.listen(factory).addCallbacks(listening, lambda f: (print(f), reactor.stop()))
    reactor.run()


if __name__ == "__main__":
    main()
