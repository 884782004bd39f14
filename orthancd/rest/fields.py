"""Reading the fields of a JSON request body with Orthanc's own errors
(its SerializationToolbox): a wrong or missing field is a "Bad file
format" naming the field."""
from orthancd.errors import ErrorCode, OrthancError

_MISSING = object()


def _error(message, field):
    return OrthancError(ErrorCode.BadFileFormat, message + field)


def read_string(body, field, default=_MISSING):
    if field not in body and default is not _MISSING:
        return default
    value = body.get(field)
    if not isinstance(value, str):
        raise _error("String value expected in field: ", field)
    return value


def read_boolean(body, field, default=_MISSING):
    if field not in body and default is not _MISSING:
        return default
    value = body.get(field)
    if not isinstance(value, bool):
        raise _error("Boolean value expected in field: ", field)
    return value


def read_list_of_strings(body, field, default=_MISSING):
    if field not in body and default is not _MISSING:
        return default
    value = body.get(field)
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise _error("List of strings expected in field: ", field)
    return list(value)


def read_integer(body, field, default=_MISSING):
    """SerializationToolbox::ReadInteger: a JSON integer (not a float, not
    a Boolean) that fits in a C int."""
    if field not in body and default is not _MISSING:
        return default
    value = body.get(field)
    if not isinstance(value, int) or isinstance(value, bool):
        raise _error("Integer value expected in field: ", field)
    if value > 2 ** 31 - 1:
        raise OrthancError(ErrorCode.BadParameterType,
                           "Value too large to fit in an integer in field '%s'" % field)
    return value
