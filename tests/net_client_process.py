"""Drive orthancd.net.client from a child process (own reactor) for the tests.

    python tests/net_client_process.py echo_and_store HOST PORT CALLED [FILES...]

Prints one JSON line with the outcome.
"""

import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import pydicom  # noqa: E402
from twisted.internet import defer, task  # noqa: E402

from orthancd.net.client import AssociationRejected, associate  # noqa: E402


async def echo_and_store(reactor, host, port, called, *files):
    contexts = ["1.2.840.10008.1.1"]
    for path in files:
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        contexts.append((str(ds.SOPClassUID), [str(ds.file_meta.TransferSyntaxUID)]))
    try:
        assoc = await associate(reactor, host, int(port), "ORTHANCD", called, contexts, timeout=10)
    except AssociationRejected as exc:
        return {"rejected": [exc.result, exc.source, exc.reason]}
    out = {"echo": await assoc.echo(), "store": 0}
    for path in files:
        status = await assoc.store(path)
        out["store"] = out["store"] or status
    await assoc.release()
    return out


def main(reactor, name, *args):
    async def run():
        result = await {"echo_and_store": echo_and_store}[name](reactor, *args)
        print(json.dumps(result), flush=True)
    return defer.ensureDeferred(run())


if __name__ == "__main__":
    task.react(main, sys.argv[1:])
