"""The acceptor role's protocol: one incoming association.

``DicomServerProtocol`` negotiates like Orthanc, dispatches DIMSE requests
to the service modules one at a time, and applies the ``DicomScpTimeout``
idle timeout.  Its factory, ``orthancd.net.server.DicomServerFactory``,
imports this module at the first connection: with it come pydicom and
pynetdicom, which an idle daemon does without (orthancd.pydicom_import).
"""

import logging
import socket

from orthancd.net import access, fsm, pdu
from orthancd.net.negotiation import (
    ACCEPTANCE,
    peer_implementation_class_uid,
    peer_maximum_pdu_length,
)
from orthancd.net.reassembly import ProtocolViolation
from orthancd.net.upper_layer import UpperLayerProtocol

log = logging.getLogger("orthancd.net.server")

# Data sets are hundreds of kB: read them in large gulps (Twisted's default
# is 64 kB per read, each one a turn of the reactor).
RECEIVE_SIZE = 1 << 20


class DicomServerProtocol(UpperLayerProtocol):
    """One incoming association."""

    def __init__(self, factory):
        settings = factory.settings
        super().__init__(factory.clock, settings.artim_timeout, settings.maximum_pdu_length)
        self.factory = factory
        self.settings = settings
        self.remote_aet = None
        self.called_aet = None
        self.remote_ip = None
        self.peer_implementation_class_uid = None
        self._policy = access.AccessPolicy(settings)
        self._requests = []
        self._idle_timer = None
        self._idle_since = 0.0
        self._release_pending = False

    def connectionMade(self):
        peer = self.transport.getPeer()
        self.remote_ip = getattr(peer, "host", None)
        # One PDU per write and a reply the peer waits for: Nagle would only
        # add latency to every C-STORE-RSP.
        set_no_delay = getattr(self.transport, "setTcpNoDelay", None)
        if set_no_delay is not None:
            try:
                set_no_delay(True)
            except (OSError, socket.error):
                pass
        if hasattr(self.transport, "bufferSize"):
            self.transport.bufferSize = RECEIVE_SIZE
        self.factory.associations.add(self)
        self.event(fsm.TRANSPORT_INDICATION)

    # -- Negotiation -------------------------------------------------------------

    def on_associate_request(self, request):
        self.remote_aet = request.calling_ae_title.strip()
        self.called_aet = request.called_ae_title.strip()
        self.peer_implementation_class_uid = peer_implementation_class_uid(request)
        response, accepted = self.factory.negotiation.negotiate(request, self.remote_ip)
        if response.result == ACCEPTANCE:
            self.contexts = accepted
            self.peer_maximum_pdu_length = peer_maximum_pdu_length(request)
            log.debug("association from %s (%s) to %s: %d of %d contexts accepted",
                      self.remote_aet, self.remote_ip, self.called_aet, len(accepted),
                      len(request.presentation_context_definition_list))
            self.event(fsm.ASSOCIATE_ACCEPT, response)
        else:
            log.warning("association from %s (%s) to %s rejected (reason %d)",
                        self.remote_aet, self.remote_ip, self.called_aet, response.diagnostic)
            self.event(fsm.ASSOCIATE_REJECT, response)

    def on_associated(self):
        self._arm_idle_timer()

    # -- DIMSE -------------------------------------------------------------------

    def _DT_2(self, body):
        super()._DT_2(body)
        self._update_idle_timer()

    def _update_idle_timer(self):
        """The peer is idle when nothing of ours is running: between requests,
        or in the middle of a data set (a stalled upload must time out too,
        each PDU restarting the count).  It is not idle while we work."""
        working = self._requests and not self._assembler.receiving_dataset
        if self._ended or self.state != "Sta6" or working:
            self._disarm_idle_timer()
        else:
            self._arm_idle_timer()

    def on_command(self, context, command):
        if self._requests and command.CommandField != 0x0FFF:
            # Asynchronous operations were not negotiated.
            raise ProtocolViolation("new request before the previous one was answered")
        return self.factory.dispatcher.dispatch(
            self, context, command,
            lambda kind: self._policy.is_allowed_request(self.remote_aet, self.remote_ip, kind))

    def request_started(self, request):
        self._requests.append(request)

    def request_finished(self, request):
        if request in self._requests:
            self._requests.remove(request)
        if not self._requests and not self._ended:
            if self._release_pending:
                self._release_pending = False
                self.event(fsm.RELEASE_RESPONSE)
            else:
                self._update_idle_timer()

    def cancel_requests(self, message_id):
        for request in self._requests:
            if request.command.get("MessageID") == message_id:
                request.cancel()

    # -- Release, abort, timeout ------------------------------------------------

    def on_release_requested(self):
        self._disarm_idle_timer()
        if self._requests:
            # Answer the release once the running request is answered.
            self._release_pending = True
        else:
            self.event(fsm.RELEASE_RESPONSE)

    def _arm_idle_timer(self):
        """(Re)start the idle count.  Each PDU of a data set does: the timer
        is not moved (a cancel and a new call, 34 times per CT image), the
        time is noted and the timer, when it fires early, waits the rest."""
        timeout = self.settings.scp_timeout
        if timeout <= 0:
            self._disarm_idle_timer()
            return
        self._idle_since = self.clock.seconds()
        if self._idle_timer is None or not self._idle_timer.active():
            self._idle_timer = self.clock.callLater(timeout, self._idle_timeout)

    def _disarm_idle_timer(self):
        if self._idle_timer is not None and self._idle_timer.active():
            self._idle_timer.cancel()
        self._idle_timer = None

    def _idle_timeout(self):
        self._idle_timer = None
        remaining = self._idle_since + self.settings.scp_timeout - self.clock.seconds()
        if remaining > 0:
            self._idle_timer = self.clock.callLater(remaining, self._idle_timeout)
            return
        if self.state == "Sta6" and not self._ended:
            log.info("association from %s idle for %s s, aborting",
                     self.remote_aet, self.settings.scp_timeout)
            self.abort()

    def abort(self):
        """A-ABORT the association (a service that cannot answer at all)."""
        if not self._ended:
            self.event(fsm.ABORT_REQUEST, pdu.ABORT_REASON_NOT_SPECIFIED)

    def on_ended(self, reason):
        self._disarm_idle_timer()
        self._requests = []

    def connectionLost(self, reason=None):
        super().connectionLost(reason)
        self._disarm_idle_timer()
        self.factory.associations.discard(self)
