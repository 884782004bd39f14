"""Who may associate and which requests they may make (Orthanc's AE filter).

An unknown calling AET may connect only if at least one ``DicomAlwaysAllow*``
option is on, and then only use the services those options open; a calling
AET listed in ``DicomModalities`` may use whatever its ``Allow*`` flags allow.
"""

from dataclasses import dataclass

ECHO = "Echo"
STORE = "Store"
FIND = "Find"
FIND_WORKLIST = "FindWorklist"
GET = "Get"
MOVE = "Move"
# Storage commitment: the request (N-ACTION) and its report (N-EVENT-REPORT).
N_ACTION = "NAction"
N_EVENT_REPORT = "NEventReport"

REQUEST_TYPES = (ECHO, STORE, FIND, FIND_WORKLIST, GET, MOVE, N_ACTION, N_EVENT_REPORT)

# The modality option allowing each request type (all true by default);
# "AllowStorageCommitment", when present, sets the last two at once.
PERMISSION_OPTIONS = {kind: "Allow" + kind for kind in REQUEST_TYPES}
PERMISSION_OPTIONS[N_EVENT_REPORT] = "AllowEventReport"


@dataclass(frozen=True)
class RemoteModality:
    name: str
    aet: str
    host: str
    port: int
    allowed: frozenset = frozenset(REQUEST_TYPES)

    @classmethod
    def from_config(cls, name, value):
        if isinstance(value, (list, tuple)):
            if len(value) < 3:
                raise ValueError(f"modality {name!r} needs [AET, host, port]")
            return cls(name, str(value[0]), str(value[1]), int(value[2]))
        value = dict(value)
        if "AllowStorageCommitment" in value:
            value["AllowNAction"] = value["AllowEventReport"] = value["AllowStorageCommitment"]
        allowed = {kind for kind in REQUEST_TYPES
                   if value.get(PERMISSION_OPTIONS[kind], True)}
        return cls(name, str(value["AET"]), str(value.get("Host", "")),
                   int(value.get("Port", 104)), frozenset(allowed))


def parse_modalities(config_value):
    return [RemoteModality.from_config(name, value)
            for name, value in (config_value or {}).items()]


class AccessPolicy:
    """Answers the filter questions for one association's calling AET and IP."""

    def __init__(self, settings):
        self._settings = settings

    def _always_allowed(self, request_type):
        # No DicomAlwaysAllow* option opens storage commitment to unknown AETs.
        s = self._settings
        return {ECHO: s.always_allow_echo, STORE: s.always_allow_store,
                FIND: s.always_allow_find, FIND_WORKLIST: s.always_allow_find_worklist,
                GET: s.always_allow_get, MOVE: s.always_allow_move}.get(request_type, False)

    def _matching_modalities(self, remote_aet, remote_ip):
        matches = []
        for modality in parse_modalities(self._settings.modalities):
            if not self._settings.same_aet(modality.aet, remote_aet):
                continue
            if self._settings.check_modality_host and modality.host != remote_ip:
                continue
            matches.append(modality)
        return matches

    def is_allowed_connection(self, remote_aet, remote_ip):
        if any(self._always_allowed(kind) for kind in REQUEST_TYPES):
            return True
        return bool(self._matching_modalities(remote_aet, remote_ip))

    def is_allowed_request(self, remote_aet, remote_ip, request_type):
        if self._always_allowed(request_type):
            return True
        return any(request_type in modality.allowed
                   for modality in self._matching_modalities(remote_aet, remote_ip))
