"""The Lua filters of C-FIND queries (Orthanc 1.13.0):

* IncomingFindRequestFilter(query, origin), for the queries the C-FIND SCP
  receives (OrthancFindRequestHandler), before their level is read;
* OutgoingFindRequestFilter(query, aet), for the queries the REST API sends
  (/modalities/{id}/query and the child queries of /queries/{id}), before
  they are normalized.

Both get the query as Orthanc's PushDicom gives a DicomMap ({"gggg,eeee":
text}, binary and empty values as "") and what the function returns
replaces the whole query: a table mapping tags (numbers or names) to
strings (ExecuteToDicom), an empty table emptying it.
"""
from orthancd.errors import ErrorCode, OrthancError
from orthancd.find.tags import format_tag, parse_tag

INCOMING = "IncomingFindRequestFilter"
OUTGOING = "OutgoingFindRequestFilter"


def lua_query(elements):
    """(tag, value) pairs -> what the filter gets."""
    return {format_tag(tag): _text(value) for tag, value in elements}


def _text(value):
    if value is None or isinstance(value, (bytes, bytearray)):
        return ""
    if isinstance(value, (list, tuple)):
        return "\\".join(_text(item) for item in value)
    return str(value)


def elements_from_lua(result):
    """What the filter returned -> (tag, text) pairs, in tag order; Orthanc's
    errors for anything but a table of strings."""
    if result == []:
        return []  # an empty table
    if not isinstance(result, dict):
        raise OrthancError(ErrorCode.LuaBadOutput, "Lua: The script must return a table")
    pairs = {}
    # In the order of jsoncpp's members (sorted): when a name and a number
    # give the same tag, the later one wins, as in Orthanc.
    for key, value in sorted(result.items()):
        if not isinstance(value, str):
            raise OrthancError(ErrorCode.LuaBadOutput,
                               "Lua: The script must return a table mapping names of DICOM "
                               "tags to strings")
        pairs[parse_tag(key)] = value
    return sorted(pairs.items())


def origin_of(association):
    """FormatOrigin of the association a C-FIND came on.  Orthanc 1.13.0's
    FindScp never looks the calling modality up: its manufacturer is always
    "Generic"."""
    return {"RemoteIp": association.remote_ip or "", "RemoteAet": association.remote_aet or "",
            "CalledAet": association.called_aet or "", "Manufacturer": "Generic"}


async def filter_incoming(server, elements, association):
    """The (tag, value) pairs of a received C-FIND query once the Lua filter
    rewrote them, or None when no script defines it."""
    lua = server.lua
    if lua is None:
        return None
    filtered = lua.filter_find_query(INCOMING, lua_query(elements),
                                     origin_of(association))
    if filtered is None:
        return None
    return elements_from_lua(await filtered)


async def filter_outgoing(server, fields, aet):
    """The fields ({tag name or "gggg,eeee": text}) of a query to send to
    the modality whose AET is ``aet``, once the Lua filter rewrote them
    ({"gggg,eeee": text}); ``fields`` themselves without a filter."""
    lua = server.lua
    if lua is None:
        return fields
    query = lua_query((parse_tag(key), value) for key, value in fields.items())
    filtered = lua.filter_find_query(OUTGOING, query, aet)
    if filtered is None:
        return fields
    return {format_tag(tag): value for tag, value in elements_from_lua(await filtered)}
