"""/jobs: Orthanc's job list, each job, its actions and its outputs."""
from orthancd.errors import ErrorCode, OrthancError
from orthancd.rest.http import bool_argument, no_answer, render_bytes, render_json, render_text


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
        data = await server.file_io.run(_read_all, output)
        return render_bytes(request, data, output.mime_type.encode(), output.filename)

    @app.route("/jobs/<job_id>/<key>", methods=["DELETE"])
    def delete_output(request, job_id, key):
        if not engine.registry.delete_output(job_id, key):
            raise OrthancError(ErrorCode.InexistentItem, "Job has no such output: " + key)
        return render_text(request, "")


def _read_all(output):
    with output.open() as stream:
        return stream.read()
