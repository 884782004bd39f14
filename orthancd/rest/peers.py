"""/peers: the Orthanc peers (orthancd.peer_registry), changing them, and
sending to them (orthancd.peers, orthancd.jobs.peer_store)."""
import json

from orthancd.errors import ErrorCode, OrthancError
from orthancd.jobs.peer_store import OrthancPeerStoreJob, check_transcode_target
from orthancd.peer_registry import check_client_certificate, peer_registry, public_view
from orthancd.rest.http import (
    EmptyAnswer, bool_argument, no_answer, read_body, render_bytes, render_json)
from orthancd.rest.modalities import (
    instances_to_export, parse_store_body, render_empty, store_request)
from orthancd.rest.scu_requests import submit_commands_job
from orthancd.serialization import read_field

# What Orthanc lists under /peers/{id}.
PEER_OPERATIONS = ["configuration", "store", "store-straight", "system"]
# The error statuses a REST handler may answer bare (Orthanc's RestApiOutput).
BARE_ERROR_STATUSES = (400, 403, 415, 500)


def install(app, server):
    peers = peer_registry(server)
    peer_of = peers.get_peer

    @app.route("/peers", methods=["GET"])
    def list_peers(request):
        if bool_argument(request, "expand"):
            return render_json(request, {name: public_view(peers[name])
                                         for name in peers.names()})
        return render_json(request, peers.names())

    @app.route("/peers/<name>", methods=["GET"])
    def peer_operations(request, name):
        if name not in peers:
            raise no_answer(request)
        return render_json(request, PEER_OPERATIONS)

    @app.route("/peers/<name>", methods=["PUT"])
    async def put_peer(request, name):
        try:
            description = json.loads(read_body(request))
        except ValueError:
            raise no_answer(request) from None  # Orthanc answers nothing then
        await peers.put(name, description,
                        lambda peer: server.file_io.run(check_client_certificate, peer))
        return render_empty(request)

    @app.route("/peers/<name>", methods=["DELETE"])
    async def delete_peer(request, name):
        await peers.delete(name)
        return render_empty(request)

    @app.route("/peers/<name>/configuration", methods=["GET"])
    def peer_configuration(request, name):
        return render_json(request, public_view(peer_of(name)))

    @app.route("/peers/<name>/store", methods=["POST"])
    async def peer_store(request, name):
        resources, options = store_request(parse_store_body(request))
        instances, parents = await instances_to_export(server, resources, name)
        transcode = read_field(options, "Transcode", str)
        if transcode is not None:
            check_transcode_target(transcode)
        compress = read_field(options, "Compress", bool, False)
        job = OrthancPeerStoreJob(server, peer_of(name), transcode, compress,
                                  instances=instances, parent_resources=parents)
        return await submit_commands_job(request, server, job, options)

    @app.route("/peers/<name>/system", methods=["GET"])
    async def peer_system(request, name):
        from orthancd import peers as peer_client  # treq: at first use
        client = await peer_client.open_peer_client(server, peer_of(name))
        try:
            answer = await client.request("GET", "system")
        finally:
            client.close()
        if not answer.ok:
            if answer.status not in BARE_ERROR_STATUSES:
                raise OrthancError(ErrorCode.BadHttpStatusInRest)
            raise EmptyAnswer(answer.status)
        return render_bytes(request, answer.body, b"application/json")

    @app.route("/peers/<name>/store-straight", methods=["POST"])
    async def peer_store_straight(request, name):
        from orthancd import peers as peer_client  # treq: at first use
        client = await peer_client.open_peer_client(server, peer_of(name))
        try:
            answer = await client.post_instance(read_body(request))
        finally:
            client.close()
        try:
            body = json.loads(answer.body) if answer.ok else None
        except ValueError:
            body = None
        if body is None:
            raise OrthancError(ErrorCode.NetworkProtocol,
                               "Cannot send DICOM to remote peer: " + name)
        return render_json(request, body)
