"""Submitting a job from a REST request, as Orthanc 1.13.0's
SubmitCommandsJob / SubmitGenericJob do: "Permissive", "UserData",
"Synchronous" / "Asynchronous" and "Priority" read from the body; a
synchronous job answers its content once it succeeds (or its error), an
asynchronous one {"ID", "Path"} at once.
"""
import json

from orthancd.errors import ErrorCode, OrthancError
from orthancd.rest import fields
from orthancd.rest.http import read_body, render_json

# What Orthanc answers for a JSON value its handler cannot look into (a
# JsonCpp LogicError caught by its HTTP server).
UNHANDLED_EXCEPTION = "An unhandled exception was generated inside the HTTP server"


def parse_json_body(request):
    """RestApiPostCall::ParseJsonRequest: any JSON value, or Orthanc's
    "Bad file format" (no details)."""
    try:
        return json.loads(read_body(request))
    except ValueError:
        raise OrthancError(ErrorCode.BadFileFormat)


def is_synchronous(body, default=True):
    if not isinstance(body, dict):
        return default
    if "Synchronous" in body:
        return fields.read_boolean(body, "Synchronous")
    if "Asynchronous" in body:
        return not fields.read_boolean(body, "Asynchronous")
    return default


async def submit_job(request, engine, job, body, default_synchronous=True):
    """Submit ``job`` with the options of ``body``; render the answer."""
    if not isinstance(body, dict):
        raise OrthancError(ErrorCode.BadFileFormat)
    job.description = "REST API"
    job.permissive = fields.read_boolean(body, "Permissive", False)
    if "UserData" in body:
        job.user_data = body["UserData"]
    synchronous = is_synchronous(body, default_synchronous)
    priority = fields.read_integer(body, "Priority", 0)
    if synchronous:
        content = await engine.submit_and_wait(job, priority)
        return render_json(request, content)
    job_id = engine.submit(job, priority)
    return render_json(request, {"ID": job_id, "Path": "/jobs/" + job_id})
