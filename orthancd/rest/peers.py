"""/peers: the Orthanc peers of the configuration ("OrthancPeers").

Listing and describing them; sending to them comes with the peer client.
"""
from orthancd.config import peer_public_view
from orthancd.errors import ErrorCode, OrthancError
from orthancd.rest.http import bool_argument, no_answer, render_json

# What Orthanc lists under /peers/{id}.
PEER_OPERATIONS = ["configuration", "store", "store-straight", "system"]


def install(app, server):
    peers = server.configuration.orthanc_peers()

    @app.route("/peers", methods=["GET"])
    def list_peers(request):
        if bool_argument(request, "expand"):
            return render_json(request, {name: peer_public_view(peers[name])
                                         for name in sorted(peers)})
        return render_json(request, sorted(peers))

    @app.route("/peers/<name>", methods=["GET"])
    def peer_operations(request, name):
        if name not in peers:
            raise no_answer(request)
        return render_json(request, PEER_OPERATIONS)

    @app.route("/peers/<name>/configuration", methods=["GET"])
    def peer_configuration(request, name):
        if name not in peers:
            raise OrthancError(ErrorCode.UnknownResource, "No peer with symbolic name: " + name)
        return render_json(request, peer_public_view(peers[name]))
