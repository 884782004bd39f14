"""/plugins: what Orthanc reports of its plugins.

orthancd loads no plugin.  It lists, in their place, the built-in parts of
orthancd that stand where an Orthanc deployment would put a plugin (the index
back-end and the storage area), described as Orthanc describes a plugin.
Clients that look for a plugin by its ID ("dicom-web", ...) find none of
Orthanc's, which is the truth.
"""
from orthancd import __version__
from orthancd.rest.http import no_answer, render_json, render_text

BUILTINS = {
    "lmdb-index": "Built into orthancd: the index of the patients, studies, series and "
                  "instances, with their metadata, attachments, changes and exports, in an "
                  "LMDB environment (where Orthanc uses SQLite or a database plugin).",
    "content-addressed-storage": "Built into orthancd: the storage area, one file per "
                                 "attachment named after the SHA-256 of its content, flushed to "
                                 "disk before the upload is acknowledged.",
}

# Orthanc always lists the script that plugins use to extend Orthanc Explorer.
EXPLORER_SCRIPT = "explorer.js"


def install(app, server):

    @app.route("/plugins", methods=["GET"])
    def list_plugins(request):
        return render_json(request, [EXPLORER_SCRIPT] + sorted(BUILTINS))

    @app.route("/plugins/explorer.js", methods=["GET"])
    def explorer_extensions(request):
        return render_text(request, "// No plugin of orthancd extends Orthanc Explorer\n",
                           b"application/javascript")

    @app.route("/plugins/<plugin_id>", methods=["GET"])
    def get_plugin(request, plugin_id):
        if plugin_id not in BUILTINS:
            raise no_answer(request)
        return render_json(request, {
            "Description": BUILTINS[plugin_id],
            "ExtendsOrthancExplorer": False,
            "ID": plugin_id,
            "Version": __version__,
        })
