"""The folders of the REST API that list their children on GET.

Orthanc 1.13.0 lists two of its URI nodes automatically: /tools and
/instances/{id}/frames/{frame} (whatever the instance).  The children are
those of Orthanc's API, which clients read to discover it; not all of them
are served by orthancd yet.  (Other nodes answer their own list of
operations: /instances/{id}/attachments/{name}, /modalities/{id}...)
"""
from orthancd.rest.http import render_json

TOOLS = (
    "accepted-sop-classes", "accepted-transfer-syntaxes", "bulk-anonymize", "bulk-content",
    "bulk-delete", "bulk-modify", "count-resources", "create-archive", "create-dicom",
    "create-media", "create-media-extended", "default-encoding", "dicom-conformance",
    "dicom-echo", "execute-script", "find", "generate-uid", "invalidate-tags", "labels",
    "log-level", "log-level-dicom", "log-level-generic", "log-level-http", "log-level-jobs",
    "log-level-lua", "log-level-plugins", "log-level-sqlite", "lookup", "metrics",
    "metrics-prometheus", "now", "now-local", "reconstruct", "reset", "shutdown",
    "unknown-sop-class-accepted",
)

FRAME = ("image-int16", "image-uint16", "image-uint8", "matlab", "numpy", "preview", "raw",
         "raw.gz", "rendered")


def install(app, server):

    def folder(path, children, endpoint):
        @app.route(path, methods=["GET"], endpoint=endpoint)
        def list_children(request, **_components):
            return render_json(request, list(children))

    folder("/tools", TOOLS, "folder_tools")
    folder("/instances/<public_id>/frames/<frame>", FRAME, "folder_frame")
