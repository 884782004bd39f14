"""/jobs: Orthanc's job list.

orthancd runs every operation synchronously for now, so there never is a
job to list or to look at.
"""
from orthancd.rest.http import bool_argument, no_answer, render_json


def install(app, server):

    @app.route("/jobs", methods=["GET"])
    def list_jobs(request):
        bool_argument(request, "expand")  # checked as Orthanc does, for its errors
        return render_json(request, [])

    @app.route("/jobs/<job_id>", methods=["GET"])
    def get_job(request, job_id):
        raise no_answer(request)
