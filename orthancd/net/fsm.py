"""The DICOM upper layer state machine (PS3.8 section 9.2) as plain data.

The protocol feeds events in and gets back the name of the action to run and
the state to enter; nothing here touches a transport or a clock, so every
transition can be checked in isolation.  Two actions choose their next state
at run time (AE-6: accept or reject, AR-8: release collision side); for those
the table gives a tuple and the action tells which one applies.
"""

# States, PS3.8 table 9-1.
STATES = {
    "Sta1": "Idle",
    "Sta2": "Transport connection open, awaiting A-ASSOCIATE-RQ",
    "Sta3": "Awaiting local A-ASSOCIATE response",
    "Sta4": "Awaiting transport connection opening to complete",
    "Sta5": "Awaiting A-ASSOCIATE-AC or A-ASSOCIATE-RJ",
    "Sta6": "Association established, ready for data transfer",
    "Sta7": "Awaiting A-RELEASE-RP",
    "Sta8": "Awaiting local A-RELEASE response",
    "Sta9": "Release collision requestor side, awaiting local A-RELEASE response",
    "Sta10": "Release collision acceptor side, awaiting A-RELEASE-RP",
    "Sta11": "Release collision requestor side, awaiting A-RELEASE-RP",
    "Sta12": "Release collision acceptor side, awaiting local A-RELEASE response",
    "Sta13": "Awaiting transport connection close",
}

# Events, PS3.8 table 9-2 (names kept short: they appear in logs and tests).
ASSOCIATE_REQUEST = "Evt1"          # local user asks for an association
TRANSPORT_CONNECTED = "Evt2"        # outgoing connection established
ASSOCIATE_AC_PDU = "Evt3"
ASSOCIATE_RJ_PDU = "Evt4"
TRANSPORT_INDICATION = "Evt5"       # incoming connection accepted
ASSOCIATE_RQ_PDU = "Evt6"
ASSOCIATE_ACCEPT = "Evt7"           # local user accepts
ASSOCIATE_REJECT = "Evt8"           # local user rejects
P_DATA_REQUEST = "Evt9"
P_DATA_PDU = "Evt10"
RELEASE_REQUEST = "Evt11"
RELEASE_RQ_PDU = "Evt12"
RELEASE_RP_PDU = "Evt13"
RELEASE_RESPONSE = "Evt14"
ABORT_REQUEST = "Evt15"
ABORT_PDU = "Evt16"
TRANSPORT_CLOSED = "Evt17"
ARTIM_EXPIRED = "Evt18"
INVALID_PDU = "Evt19"

# Next state of each action, PS3.8 tables 9-6 to 9-9.
ACTION_NEXT_STATE = {
    "AE-1": "Sta4", "AE-2": "Sta5", "AE-3": "Sta6", "AE-4": "Sta1",
    "AE-5": "Sta2", "AE-6": ("Sta3", "Sta13"), "AE-7": "Sta6", "AE-8": "Sta13",
    "DT-1": "Sta6", "DT-2": "Sta6",
    "AR-1": "Sta7", "AR-2": "Sta8", "AR-3": "Sta1", "AR-4": "Sta13",
    "AR-5": "Sta1", "AR-6": "Sta7", "AR-7": "Sta8", "AR-8": ("Sta9", "Sta10"),
    "AR-9": "Sta11", "AR-10": "Sta12",
    "AA-1": "Sta13", "AA-2": "Sta1", "AA-3": "Sta1", "AA-4": "Sta1",
    "AA-5": "Sta1", "AA-6": "Sta13", "AA-7": "Sta13", "AA-8": "Sta13",
}

_EVERY_ASSOCIATED_STATE = ("Sta3", "Sta5", "Sta6", "Sta7", "Sta8", "Sta9",
                           "Sta10", "Sta11", "Sta12")


def _build_table():
    table = {
        ("Evt1", "Sta1"): "AE-1",
        ("Evt2", "Sta4"): "AE-2",
        ("Evt3", "Sta5"): "AE-3",
        ("Evt4", "Sta5"): "AE-4",
        ("Evt5", "Sta1"): "AE-5",
        ("Evt6", "Sta2"): "AE-6",
        ("Evt7", "Sta3"): "AE-7",
        ("Evt8", "Sta3"): "AE-8",
        ("Evt9", "Sta6"): "DT-1",
        ("Evt9", "Sta8"): "AR-7",
        ("Evt10", "Sta6"): "DT-2",
        ("Evt10", "Sta7"): "AR-6",
        ("Evt11", "Sta6"): "AR-1",
        ("Evt12", "Sta6"): "AR-2",
        ("Evt12", "Sta7"): "AR-8",
        ("Evt13", "Sta7"): "AR-3",
        ("Evt13", "Sta10"): "AR-10",
        ("Evt13", "Sta11"): "AR-3",
        ("Evt14", "Sta8"): "AR-4",
        ("Evt14", "Sta9"): "AR-9",
        ("Evt14", "Sta12"): "AR-4",
        ("Evt15", "Sta4"): "AA-2",
        ("Evt16", "Sta2"): "AA-2",
        ("Evt16", "Sta13"): "AA-2",
        ("Evt17", "Sta2"): "AA-5",
        ("Evt17", "Sta13"): "AR-5",
        ("Evt18", "Sta2"): "AA-2",
        ("Evt18", "Sta13"): "AA-2",
        ("Evt19", "Sta13"): "AA-7",
        ("Evt6", "Sta13"): "AA-7",
    }
    # Any unexpected PDU during an association is a protocol error (AA-8);
    # in Sta2 (nothing negotiated yet) it is answered by AA-1; in Sta13 the
    # association is gone and PDUs are ignored (AA-6).
    for event in ("Evt3", "Evt4", "Evt6", "Evt10", "Evt12", "Evt13", "Evt19"):
        table.setdefault((event, "Sta2"), "AA-1")
        table.setdefault((event, "Sta13"), "AA-6")
        for state in _EVERY_ASSOCIATED_STATE:
            table.setdefault((event, state), "AA-8")
    for state in _EVERY_ASSOCIATED_STATE:
        table[("Evt15", state)] = "AA-1"
        table[("Evt16", state)] = "AA-3"
    for state in _EVERY_ASSOCIATED_STATE + ("Sta4",):
        table[("Evt17", state)] = "AA-4"
    return table


TRANSITIONS = _build_table()


class InvalidTransition(Exception):
    """The event cannot happen in that state (a local programming error)."""


def transition(state, event):
    """Return ``(action, next_state)`` for ``event`` happening in ``state``.

    ``next_state`` is a tuple for the two actions whose outcome decides it.
    """
    try:
        action = TRANSITIONS[(event, state)]
    except KeyError:
        raise InvalidTransition(f"event {event} is not valid in state {state}")
    return action, ACTION_NEXT_STATE[action]
