"""Sending instances to an Orthanc peer: POST {Url}/instances, one file per
request, as Orthanc's OrthancPeerStore does, with the peer's credentials,
HTTP headers and timeout.  The file is read in the file pool; the request
runs on the reactor with treq.
"""
import base64

import treq
from twisted.internet import defer

from orthancd.errors import ErrorCode, OrthancError


def peer_headers(peer):
    headers = {"Content-Type": ["application/dicom"], "Expect": [""]}
    for name, value in peer.get("HttpHeaders", {}).items():
        headers[name] = [value]
    if peer.get("Username") is not None:
        token = base64.b64encode(("%s:%s" % (peer["Username"], peer["Password"] or ""))
                                 .encode("utf-8")).decode("ascii")
        headers["Authorization"] = ["Basic " + token]
    return headers


def instances_url(peer):
    return peer["Url"].rstrip("/") + "/instances"


async def store_instance(server, peer, instance_id, reactor=None):
    """Send one stored instance to ``peer`` (a parsed peer, see
    orthancd.config.parse_peer); fails with Orthanc's NetworkProtocol error."""
    # One instance at a time, read whole in the file pool (never on the reactor).
    body = await server.read_attachment(server.dicom_attachment(instance_id))
    kwargs = {"headers": peer_headers(peer), "data": body}
    if peer.get("Timeout"):
        kwargs["timeout"] = peer["Timeout"]
    if reactor is not None:
        kwargs["reactor"] = reactor
    try:
        response = await treq.post(instances_url(peer), **kwargs)
        answer = await treq.content(response)
    except defer.CancelledError:
        raise OrthancError(ErrorCode.NetworkProtocol,
                           "Timeout while sending to peer %s" % peer["Url"]) from None
    except Exception as e:
        raise OrthancError(ErrorCode.NetworkProtocol,
                           "Cannot send to peer %s: %s" % (peer["Url"], e)) from None
    if not 200 <= response.code < 300:
        raise OrthancError(ErrorCode.NetworkProtocol,
                           "HTTP status %d from peer %s" % (response.code, peer["Url"]))
    return answer
