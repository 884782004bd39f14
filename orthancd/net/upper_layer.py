"""The DICOM upper layer protocol shared by the acceptor and requestor roles.

One ``UpperLayerProtocol`` per TCP connection: it frames PDUs, drives the
PS3.8 state machine (``fsm``), runs the ARTIM timer on the reactor clock and
reassembles DIMSE messages.  Role subclasses (``server.DicomServerProtocol``,
``client.RequestorProtocol``) fill in the ``on_*`` hooks.

Local events raised while an action runs (e.g. the user's accept decision
taken inside the A-ASSOCIATE indication) are queued and processed after the
state change, so the machine always sees events in a valid order.
"""

import logging
from collections import deque

from twisted.internet import defer
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IPushProducer
from twisted.internet.protocol import Protocol
from zope.interface import implementer

from orthancd.net import dimse, fsm, pdu
from orthancd.net.reassembly import MessageAssembler, ProtocolViolation
from orthancd.send_now import send_now

log = logging.getLogger(__name__)

_PDU_EVENTS = {
    pdu.ASSOCIATE_RQ: fsm.ASSOCIATE_RQ_PDU,
    pdu.ASSOCIATE_AC: fsm.ASSOCIATE_AC_PDU,
    pdu.ASSOCIATE_RJ: fsm.ASSOCIATE_RJ_PDU,
    pdu.P_DATA_TF: fsm.P_DATA_PDU,
    pdu.RELEASE_RQ: fsm.RELEASE_RQ_PDU,
    pdu.RELEASE_RP: fsm.RELEASE_RP_PDU,
    pdu.ABORT: fsm.ABORT_PDU,
}

# When the peer sets no limit we still cut outgoing data sets in pieces this
# big, to keep memory bounded and interleave with the transport's buffer.
DEFAULT_SEND_FRAGMENT = 65536

_DATA_TRANSFER_STATES = ("Sta6", "Sta7", "Sta8")


class AssociationAborted(Exception):
    """The association ended by an A-ABORT or a lost connection."""

    def __init__(self, reason="aborted"):
        super().__init__(reason)
        self.reason = reason


class UpperLayerProtocol(Protocol):
    """PDU framing + state machine + message reassembly; roles add the rest."""

    is_requestor = False

    def __init__(self, clock, artim_timeout=30.0, maximum_pdu_length=16384):
        self.clock = clock
        self.state = "Sta1"
        self.artim_timeout = artim_timeout
        self.maximum_pdu_length = maximum_pdu_length
        self.peer_maximum_pdu_length = 0
        self.contexts = {}
        self._framer = pdu.PduFramer()
        self._artim = None
        self._local_events = deque()
        self._in_event = False
        self._assembler = MessageAssembler(self._command_received)
        self._ended = False
        self._after_transition = []
        # Requests we send as the acceptor (C-STORE sub-operations of a
        # C-GET): message ID -> Deferred firing with the response command.
        self._sub_requests = {}
        self._next_sub_message_id = 1
        # (state, event, action, next state), for tests and logs: the latest
        # ones only, a long association would otherwise grow it without end.
        self.transitions = deque(maxlen=256)

    # -- Twisted entry points -------------------------------------------------

    def dataReceived(self, data):
        try:
            pdus = self._framer.feed(data)
        except pdu.PduError as exc:
            log.warning("invalid PDU stream: %s", exc)
            self.event(fsm.INVALID_PDU, pdu.ABORT_REASON_UNRECOGNIZED_PDU)
            return
        for pdu_type, body in pdus:
            if self.state in ("Sta1", "Sta4"):
                return
            self.event(_PDU_EVENTS[pdu_type], body)

    def connectionLost(self, reason=None):
        self._stop_artim()
        if self.state != "Sta1":
            self.event(fsm.TRANSPORT_CLOSED)
        self._end(AssociationAborted("connection lost"))

    # -- The state machine ----------------------------------------------------

    def event(self, event, payload=None):
        """Process ``event``; events raised meanwhile are processed after it."""
        self._local_events.append((event, payload))
        if self._in_event:
            return
        self._in_event = True
        try:
            while self._local_events:
                event, payload = self._local_events.popleft()
                self._run(event, payload)
        finally:
            self._in_event = False

    def _run(self, event, payload):
        state = self.state
        action, next_state = fsm.transition(state, event)
        chosen = getattr(self, "_" + action.replace("-", "_"))(payload)
        if isinstance(next_state, tuple):
            next_state = chosen
        self.state = next_state
        self.transitions.append((state, event, action, next_state))
        while self._after_transition:
            callback, args = self._after_transition.pop(0)
            callback(*args)

    def call_after_transition(self, callback, *args):
        """Run ``callback`` once the current action's state change is done
        (user code woken by an action must see the new state)."""
        self._after_transition.append((callback, args))

    def _write(self, data):
        if self.transport is not None:
            # A PDU is written whole: sent at once when the socket takes it.
            send_now(self.transport, data)

    def _close(self):
        if self.transport is not None:
            self.transport.loseConnection()

    # -- ARTIM ---------------------------------------------------------------

    def _start_artim(self):
        self._stop_artim()
        self._artim = self.clock.callLater(self.artim_timeout, self._artim_expired)

    def _stop_artim(self):
        if self._artim is not None and self._artim.active():
            self._artim.cancel()
        self._artim = None

    def _artim_expired(self):
        self._artim = None
        if self.state in ("Sta2", "Sta13"):
            self.event(fsm.ARTIM_EXPIRED)

    # -- Actions (PS3.8 tables 9-6 to 9-9) -------------------------------------

    def _AE_1(self, request):
        self._pending_request = request

    def _AE_2(self, _):
        self._write(pdu.encode_associate(self._pending_request))

    def _AE_3(self, body):
        self._stop_artim()
        self.on_associate_accepted(pdu.decode_associate(pdu.ASSOCIATE_AC, body))

    def _AE_4(self, body):
        self._close()
        self.on_associate_rejected(pdu.decode_associate(pdu.ASSOCIATE_RJ, body))

    def _AE_5(self, _):
        self._start_artim()

    def _AE_6(self, body):
        self._stop_artim()
        try:
            request = pdu.decode_associate(pdu.ASSOCIATE_RQ, body)
        except pdu.PduError as exc:
            log.warning("%s", exc)
            self._write(pdu.abort(pdu.ABORT_SOURCE_SERVICE_PROVIDER,
                                  pdu.ABORT_REASON_INVALID_PDU_PARAMETER))
            self._start_artim()
            return "Sta13"
        self.on_associate_request(request)
        return "Sta3"

    def _AE_7(self, response):
        self._write(pdu.encode_associate(response))
        self.on_associated()

    def _AE_8(self, response):
        self._write(pdu.encode_associate(response))
        self._start_artim()

    def _DT_1(self, data):
        self._write(data)

    def _DT_2(self, body):
        self.on_p_data_received()
        try:
            for context_id, control, fragment in pdu.iter_pdvs(body):
                if self.state not in _DATA_TRANSFER_STATES or self._ended:
                    return
                if context_id not in self.contexts:
                    raise ProtocolViolation(f"PDV on unaccepted context {context_id}")
                self._assembler.pdv(context_id, control, fragment)
        except (ProtocolViolation, pdu.PduError) as exc:
            log.warning("aborting association: %s", exc)
            self.event(fsm.INVALID_PDU, pdu.ABORT_REASON_UNEXPECTED_PDU_PARAMETER)

    def _AR_1(self, _):
        self._write(pdu.release_rq())

    def _AR_2(self, _):
        self.on_release_requested()

    def _AR_3(self, _):
        self._close()
        self.on_released()

    def _AR_4(self, _):
        self._write(pdu.release_rp())
        self._start_artim()
        self.on_released()

    def _AR_5(self, _):
        self._stop_artim()

    def _AR_6(self, body):
        self._DT_2(body)

    def _AR_7(self, data):
        self._write(data)

    def _AR_8(self, _):
        # Release collision: both sides sent A-RELEASE-RQ.  The requestor
        # answers first (PS3.8 9.2.3, table 9-10 AR-8).
        if self.is_requestor:
            self.event(fsm.RELEASE_RESPONSE)
            return "Sta9"
        return "Sta10"

    def _AR_9(self, _):
        self._write(pdu.release_rp())

    def _AR_10(self, _):
        self.event(fsm.RELEASE_RESPONSE)

    def _AA_1(self, reason):
        # Send A-ABORT and drop the connection at once, as DCMTK's
        # ASC_abortAssociation does: waiting for the peer to close would
        # only keep a dead association around.
        source = pdu.ABORT_SOURCE_SERVICE_USER
        if self.state == "Sta2":
            source = pdu.ABORT_SOURCE_SERVICE_PROVIDER
        self._write(pdu.abort(source, reason or pdu.ABORT_REASON_NOT_SPECIFIED))
        self._start_artim()
        self._close()
        self._end(AssociationAborted("aborted locally"))

    def _AA_2(self, _):
        self._stop_artim()
        self._close()
        self._end(AssociationAborted("connection closed"))

    def _AA_3(self, body):
        try:
            source, reason = pdu.parse_abort(body)
        except pdu.PduError:
            source, reason = None, None
        self._close()
        self._end(AssociationAborted(f"A-ABORT from peer (source {source}, reason {reason})"))

    def _AA_4(self, _):
        self._end(AssociationAborted("connection lost"))

    def _AA_5(self, _):
        self._stop_artim()

    def _AA_6(self, _):
        pass

    def _AA_7(self, _):
        self._write(pdu.abort(pdu.ABORT_SOURCE_SERVICE_PROVIDER,
                              pdu.ABORT_REASON_UNEXPECTED_PDU))

    def _AA_8(self, reason):
        self._write(pdu.abort(pdu.ABORT_SOURCE_SERVICE_PROVIDER,
                              reason if isinstance(reason, int) else pdu.ABORT_REASON_UNEXPECTED_PDU))
        self._start_artim()
        self._end(AssociationAborted("protocol error"))

    # -- Ending ---------------------------------------------------------------

    def _end(self, failure_reason):
        """Called once when the association is over for whatever reason."""
        if self._ended:
            return
        self._ended = True
        self._assembler.discard()
        self._fail_sub_requests(failure_reason)
        self.on_ended(failure_reason)

    # -- Sending DIMSE messages --------------------------------------------------

    @property
    def can_send(self):
        return self.state in ("Sta6", "Sta8") and not self._ended

    def _fragment_size(self):
        peer = self.peer_maximum_pdu_length
        return (peer - 6) if peer else DEFAULT_SEND_FRAGMENT

    def send_command(self, context_id, fields, dataset=None):
        """Send a command set and, if given, an in-memory encoded data set."""
        if not self.can_send:
            return False
        if dataset is not None:
            fields = dict(fields, CommandDataSetType=dimse.HAS_DATASET)
        encoded = dimse.encode_command(fields)
        self._send_fragments(context_id, encoded, is_command=True)
        if dataset is not None:
            self._send_fragments(context_id, dataset, is_command=False)
        return True

    def _send_fragments(self, context_id, data, is_command):
        # All the PDUs of the message in one write: one state machine event
        # and one transport write instead of one per PDU.
        self.event(fsm.P_DATA_REQUEST, pdu.p_data_tf_series(
            context_id, 0x01 if is_command else 0x00, data, self._fragment_size()))

    def send_dataset_from_file(self, context_id, fileobj, length):
        """Stream ``length`` bytes of ``fileobj`` as a data set; returns the
        producer whose ``done`` Deferred fires when everything is written."""
        producer = DatasetFileProducer(self, context_id, fileobj, length)
        producer.start()
        return producer

    # -- Hooks for roles --------------------------------------------------------

    def _command_received(self, context_id, command):
        field = command.CommandField
        if field & 0x8000 and self._sub_requests:
            waiting = self._sub_requests.pop(command.get("MessageIDBeingRespondedTo"), None)
            if waiting is not None:
                waiting.callback(command)
                # A response data set (none for C-STORE-RSP) is not needed.
                return None
        return self.on_command(self.contexts[context_id], command)

    def send_sub_request(self, context_id, fields, dataset_file=None):
        """Send a request on this association whatever our role (the
        acceptor sends C-STORE-RQ for C-GET).  ``dataset_file`` is
        ``(fileobj, length)`` streamed from disk, or encoded bytes.
        Returns a Deferred firing with the response command set."""
        if not self.can_send:
            return defer.fail(AssociationAborted("association is not established"))
        message_id = self._next_sub_message_id
        self._next_sub_message_id = (message_id % 0xFFFF) + 1
        answered = Deferred()
        self._sub_requests[message_id] = answered
        fields = dict(fields, MessageID=message_id)
        if isinstance(dataset_file, (bytes, bytearray, memoryview)):
            self.send_command(context_id, fields, dataset_file)
        elif dataset_file is not None:
            fields["CommandDataSetType"] = dimse.HAS_DATASET
            self.send_command(context_id, fields)
            fileobj, length = dataset_file
            producer = self.send_dataset_from_file(context_id, fileobj, length)
            producer.done.addBoth(lambda result: (fileobj.close(), result)[1])
            producer.done.addErrback(lambda failure: None)
        else:
            self.send_command(context_id, dict(fields, CommandDataSetType=dimse.NO_DATASET))
        return answered

    def _fail_sub_requests(self, reason):
        waiting, self._sub_requests = self._sub_requests, {}
        for answered in waiting.values():
            answered.errback(reason)

    def on_associate_request(self, request):
        raise ProtocolViolation("this role does not accept associations")

    def on_associate_accepted(self, response):
        pass

    def on_associate_rejected(self, response):
        pass

    def on_associated(self):
        pass

    def on_p_data_received(self):
        pass

    def on_command(self, context, command):
        return None

    def on_release_requested(self):
        self.event(fsm.RELEASE_RESPONSE)

    def on_released(self):
        pass

    def on_ended(self, reason):
        pass


@implementer(IPushProducer)
class DatasetFileProducer:
    """Writes a data set read from a file as P-DATA PDUs, pausing when the
    transport's buffer is full so big files never sit in memory."""

    def __init__(self, protocol, context_id, fileobj, length):
        self._protocol = protocol
        self._context_id = context_id
        self._file = fileobj
        self._remaining = length
        self._paused = False
        self._finished = False
        self.done = Deferred()

    def start(self):
        transport = self._protocol.transport
        transport.registerProducer(self, True)
        self._pump()

    def _pump(self):
        size = self._protocol._fragment_size()
        while not self._paused and not self._finished:
            if not self._protocol.can_send:
                self._finish(AssociationAborted("association ended while sending"))
                return
            piece = self._file.read(min(size, self._remaining)) if self._remaining else b""
            if len(piece) != min(size, self._remaining):
                self._finish(IOError("data set file shorter than expected"))
                return
            self._remaining -= len(piece)
            last = self._remaining == 0
            self._protocol.event(fsm.P_DATA_REQUEST,
                                 pdu.p_data_tf(self._context_id, 0x02 if last else 0x00, piece))
            if last:
                self._finish(None)

    def _finish(self, error):
        if self._finished:
            return
        self._finished = True
        transport = self._protocol.transport
        if transport is not None:
            transport.unregisterProducer()
        if error is None:
            self.done.callback(None)
        else:
            self.done.errback(error)

    def pauseProducing(self):
        self._paused = True

    def resumeProducing(self):
        if self._paused:
            self._paused = False
            self._pump()

    def stopProducing(self):
        self._finish(AssociationAborted("transport closed while sending"))
