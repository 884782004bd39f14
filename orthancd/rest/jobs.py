"""/jobs: Orthanc's job list, each job, its actions and its outputs."""
from orthancd.errors import ErrorCode, OrthancError
from orthancd.rest.http import (bool_argument, content_disposition, no_answer, render_bytes,
                                render_json, render_text)
from orthancd.rest.streaming import stream_file


def install(app, server):
    engine = server.jobs

    @app.route("/jobs", methods=["GET"])
    def list_jobs(request):
        expand = bool_argument(request, "expand")
        registry = engine.registry
        if not expand:
            return render_json(request, registry.ids())
        return render_json(request, [registry.info(i) for i in registry.ids()])

    @app.route("/jobs/<job_id>", methods=["GET"])
    def get_job(request, job_id):
        info = engine.registry.info(job_id)
        if info is None:
            raise no_answer(request)
        return render_json(request, info)

    @app.route("/jobs/<job_id>", methods=["DELETE"])
    def delete_job(request, job_id):
        if not engine.delete_info(job_id):
            raise OrthancError(ErrorCode.InexistentItem, "No job found with this id: " + job_id)
        return render_text(request, "")

    def make_action(name, action):
        @app.route("/jobs/<job_id>/%s" % name, methods=["POST"], endpoint="job_" + name)
        def apply(request, job_id):
            if not action(job_id):
                raise no_answer(request)
            return render_bytes(request, b"{}", b"application/json")

    for name, action in (("cancel", engine.cancel), ("pause", engine.pause),
                         ("resubmit", engine.resubmit), ("resume", engine.resume)):
        make_action(name, action)

    @app.route("/jobs/<job_id>/<key>", methods=["GET"])
    async def get_output(request, job_id, key):
        output = engine.registry.output(job_id, key)
        if output is None:
            raise OrthancError(ErrorCode.InexistentItem, "Job has no such output: " + key)
        # Outputs may be gigabytes (archives): sent as the client reads.
        if output.filename:
            request.setHeader(b"Content-Disposition", content_disposition(output.filename))
        request.setHeader(b"Content-Type", output.mime_type.encode())
        try:
            return await stream_file(request, output.open, output.size, server.file_io)
        except FileNotFoundError:
            # Deleted between the lookup and the opening.
            request.responseHeaders.removeHeader(b"Content-Disposition")
            raise OrthancError(ErrorCode.InexistentItem, "Job has no such output: " + key)

    @app.route("/jobs/<job_id>/<key>", methods=["DELETE"])
    def delete_output(request, job_id, key):
        if not engine.registry.delete_output(job_id, key):
            raise OrthancError(ErrorCode.InexistentItem, "Job has no such output: " + key)
        return render_text(request, "")

