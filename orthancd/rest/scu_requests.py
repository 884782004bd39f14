"""What the SCU routes (/modalities, /queries) read from their request
bodies, with the errors Orthanc 1.13.0 gives for mistyped fields."""
from orthancd.errors import ErrorCode, OrthancError

def read_field(body, key, kind, default=None):
    """Orthanc's SerializationToolbox::Read*: a typed field of a JSON object."""
    if not isinstance(body, dict) or key not in body:
        return default
    value = body[key]
    if kind is bool:
        ok, word = isinstance(value, bool), "Boolean"
    elif kind is int:
        ok, word = isinstance(value, int) and not isinstance(value, bool), "Integer"
    else:
        ok, word = isinstance(value, str), "String"
    if not ok:
        raise OrthancError(ErrorCode.BadFileFormat, "%s value expected in field: %s" % (word, key))
    return value


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


def require_synchronous(body):
    if isinstance(body, dict) and (read_field(body, "Synchronous", bool) is False
                                   or read_field(body, "Asynchronous", bool) is True):
        raise OrthancError(ErrorCode.BadRequest,
                           "Asynchronous jobs are not supported yet by orthancd: "
                           "use \"Synchronous\": true")
