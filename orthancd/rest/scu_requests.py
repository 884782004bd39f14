"""What the SCU routes (/modalities, /queries, /peers) read from their
request bodies, with the errors Orthanc 1.13.0 gives for mistyped fields,
and how they submit their jobs (synchronous or not)."""
from orthancd.errors import ErrorCode, OrthancError
from orthancd.rest.http import render_json
from orthancd.serialization import read_field

def option(options, key, kind, default=None):
    """Orthanc's Toolbox::GetJson*Field: a typed option of a request body,
    BadParameterType (without details) when mistyped."""
    if key not in options:
        return default
    value = options[key]
    if kind is bool:
        ok = isinstance(value, bool)
    elif kind is int:  # unsigned
        ok = isinstance(value, int) and not isinstance(value, bool)
        if ok and value < 0:
            raise OrthancError(ErrorCode.ParameterOutOfRange)
    else:
        ok = isinstance(value, str)
    if not ok:
        raise OrthancError(ErrorCode.BadParameterType)
    return value


def read_unsigned(body, key, default=None):
    """Orthanc's SerializationToolbox::ReadUnsignedInteger."""
    value = read_field(body, key, int, default)
    if value is not None and value < 0:
        raise OrthancError(ErrorCode.BadParameterType, "Negative value found while expecting "
                           "an unsigned int in field '%s'" % key)
    return value


def is_synchronous(body, default=True):
    """Orthanc's IsSynchronousJobRequest: "Synchronous", else the opposite
    of "Asynchronous", else ``default``."""
    if not isinstance(body, dict):
        return default
    if "Synchronous" in body:
        return read_field(body, "Synchronous", bool)
    if "Asynchronous" in body:
        return not read_field(body, "Asynchronous", bool)
    return default


async def submit_commands_job(request, server, job, body):
    """Orthanc's SubmitCommandsJob: the job is described as "REST API",
    takes the body's Permissive and UserData, then runs synchronously (the
    answer is its content once it succeeded, or its error) unless the body
    asks otherwise (the answer names the job), at the body's Priority."""
    if not isinstance(body, dict):
        raise OrthancError(ErrorCode.BadFileFormat)
    job.description = "REST API"
    job.permissive = bool(read_field(body, "Permissive", bool, False))
    if "UserData" in body:
        job.user_data = body["UserData"]
    synchronous = is_synchronous(body)
    priority = read_field(body, "Priority", int, 0)
    if synchronous:
        return render_json(request, await server.jobs.submit_and_wait(job, priority))
    job_id = server.jobs.submit(job, priority)
    return render_json(request, {"ID": job_id, "Path": "/jobs/" + job_id})
