"""The requestor role: associate with a remote DICOM node and send requests.

    assoc = await associate(reactor, "127.0.0.1", 104, "ORTHANC", "PACS",
                            [(CT_IMAGE_STORAGE, [EXPLICIT_LITTLE])], timeout=10)
    status = await assoc.store("/path/file.dcm")
    await assoc.release()

Every request goes through ``Association.send_request``, which returns a
Deferred firing with the final response (pending responses go to an optional
callback); C-FIND/C-MOVE/C-GET SCU build on it.
"""

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import pydicom
from pydicom.errors import InvalidDicomError
from pynetdicom.dsutils import split_dataset
from twisted.internet import defer, endpoints

from orthancd.net import dimse, fsm
from orthancd.net.negotiation import (
    ACCEPTANCE,
    AcceptedContext,
    peer_maximum_pdu_length,
    requestor_primitive,
)
from orthancd.net.reassembly import ProtocolViolation
from orthancd.net.scp_echo import VERIFICATION_SOP_CLASS
from orthancd.net.transfer_syntaxes import EXPLICIT_LITTLE, IMPLICIT_LITTLE, UNCOMPRESSED, encode_in
from orthancd.net.upper_layer import AssociationAborted, UpperLayerProtocol

log = logging.getLogger(__name__)

DEFAULT_TRANSFER_SYNTAXES = (EXPLICIT_LITTLE, IMPLICIT_LITTLE)


class AssociationRejected(Exception):
    def __init__(self, result, source, reason):
        super().__init__(f"association rejected (result {result}, source {source}, "
                         f"reason {reason})")
        self.result, self.source, self.reason = result, source, reason


class NoPresentationContext(Exception):
    """No accepted context can carry this request."""


class DimseTimeout(Exception):
    """The peer did not answer in time; the association was aborted."""


@dataclass
class Response:
    """The final answer to a request: its command set and data set bytes."""
    command: object
    dataset: bytes = None

    @property
    def status(self):
        return self.command.Status


class _BytesSink:
    def __init__(self):
        self.parts = []

    def write(self, fragment):
        self.parts.append(bytes(fragment))

    def finish(self):
        pass

    def discard(self):
        self.parts = []

    def value(self):
        return b"".join(self.parts)


class _PendingRequest:
    def __init__(self, message_id, on_pending):
        self.message_id = message_id
        self.on_pending = on_pending
        self.deferred = defer.Deferred()
        self.sink = None
        self.command = None


def normalize_contexts(contexts):
    normalized = []
    for context in contexts:
        if isinstance(context, str):
            normalized.append((context, DEFAULT_TRANSFER_SYNTAXES))
        elif hasattr(context, "abstract_syntax"):  # pynetdicom PresentationContext
            normalized.append((str(context.abstract_syntax),
                               [str(ts) for ts in context.transfer_syntax]))
        else:
            abstract, syntaxes = context
            if isinstance(syntaxes, str):
                syntaxes = [syntaxes]
            normalized.append((str(abstract), [str(ts) for ts in syntaxes]))
    return normalized


class RequestorProtocol(UpperLayerProtocol):
    is_requestor = True

    def __init__(self, clock, request, timeout, maximum_pdu_length, store_handler=None,
                 scp_roles=()):
        super().__init__(clock, artim_timeout=timeout, maximum_pdu_length=maximum_pdu_length)
        self.timeout = timeout
        self.scp_roles = tuple(scp_roles)
        # Serves C-STORE-RQ sent by the peer on this association (C-GET):
        # ``store_handler(protocol, context, command)`` returns the data set
        # sink and answers with ``protocol.send_command``.
        self.store_handler = store_handler
        self.request = request
        self.associated = defer.Deferred()
        self.released = defer.Deferred()
        # Fires (never fails) once the association is over, however it ends.
        self.ended = defer.Deferred()
        self.association = None
        self._pending = {}
        self._timer = None
        self._release_requested = False
        self.event(fsm.ASSOCIATE_REQUEST, request)

    def connectionMade(self):
        set_no_delay = getattr(self.transport, "setTcpNoDelay", None)
        if set_no_delay is not None:
            set_no_delay(True)
        self._arm_timer()
        self.event(fsm.TRANSPORT_CONNECTED)

    # -- timers ----------------------------------------------------------------

    def _arm_timer(self):
        self._disarm_timer()
        if self.timeout:
            self._timer = self.clock.callLater(self.timeout, self._timed_out)

    def _disarm_timer(self):
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None

    def _timed_out(self):
        self._timer = None
        log.warning("no answer from %s within %s s, aborting",
                    self.request.called_ae_title, self.timeout)
        self._fail_all(DimseTimeout(f"no answer within {self.timeout} s"))
        if self.state in ("Sta5", "Sta6", "Sta7"):
            self.event(fsm.ABORT_REQUEST)
        else:
            self._close()

    def _update_timer(self):
        # Something is awaited from the peer: an AC, a response or a release.
        if self.state == "Sta5" or self._pending or self.state == "Sta7":
            self._arm_timer()
        else:
            self._disarm_timer()

    # -- association ---------------------------------------------------------

    def on_associate_accepted(self, response):
        proposed = {cx.context_id: cx for cx in self.request.presentation_context_definition_list}
        contexts = {}
        for result in response.presentation_context_definition_results_list:
            if result.result == ACCEPTANCE and result.context_id in proposed:
                contexts[result.context_id] = AcceptedContext(
                    result.context_id, str(proposed[result.context_id].abstract_syntax),
                    str(result.transfer_syntax[0]))
        self.contexts = contexts
        self.peer_maximum_pdu_length = peer_maximum_pdu_length(response)
        self.association = Association(self, response)
        self._update_timer()
        self.call_after_transition(self.associated.callback, self.association)

    def on_associate_rejected(self, response):
        self._disarm_timer()
        self.call_after_transition(self.associated.errback, AssociationRejected(
            response.result, response.result_source, response.diagnostic))

    def on_released(self):
        self._disarm_timer()
        if not self.released.called:
            self.call_after_transition(self.released.callback, None)

    def on_ended(self, reason):
        self._disarm_timer()
        self._fail_all(reason)
        if not self.ended.called:
            self.ended.callback(reason)

    def _fail_all(self, error):
        pending, self._pending = self._pending, {}
        for request in pending.values():
            request.deferred.errback(error)
        if not self.associated.called:
            self.associated.errback(error)
        if self._release_requested and not self.released.called:
            self.released.errback(error)

    # -- requests ------------------------------------------------------------

    def start_request(self, message_id, on_pending):
        request = _PendingRequest(message_id, on_pending)
        self._pending[message_id] = request
        self._arm_timer()
        return request

    def on_command(self, context, command):
        if command.CommandField == dimse.C_STORE_RQ and self.store_handler is not None:
            self._arm_timer()
            return self.store_handler(self, context, command)
        message_id = command.get("MessageIDBeingRespondedTo")
        request = self._pending.get(message_id)
        if request is None:
            raise ProtocolViolation(f"response to unknown message {message_id}")
        self._arm_timer()
        request.command = command
        request.context = context
        if dimse.has_dataset(command):
            request.sink = _BytesSink()
            request.sink.finish = lambda: self._response_complete(request)
            return request.sink
        self._response_complete(request)
        return None

    def _response_complete(self, request):
        command = request.command
        dataset = request.sink.value() if request.sink is not None else None
        request.sink = None
        status = command.get("Status", dimse.SUCCESS)
        if status in (dimse.PENDING, 0xFF01) and request.on_pending is not None:
            request.on_pending(Response(command, dataset))
            return
        if status in (dimse.PENDING, 0xFF01):
            return
        del self._pending[request.message_id]
        self._update_timer()
        request.deferred.callback(Response(command, dataset))

    def release(self):
        if self.state != "Sta6":
            return defer.fail(AssociationAborted(f"cannot release in state {self.state}"))
        self._release_requested = True
        self.event(fsm.RELEASE_REQUEST)
        self._arm_timer()
        return self.released

    def abort(self):
        if self.state not in ("Sta1", "Sta13"):
            self.event(fsm.ABORT_REQUEST)


class Association:
    """An established association, seen from the requestor."""

    def __init__(self, protocol, response):
        self._protocol = protocol
        self._next_message_id = 1
        self.remote_aet = str(protocol.request.called_ae_title).strip()
        self.peer_maximum_pdu_length = peer_maximum_pdu_length(response)
        request = protocol.request
        # What was proposed, to tell whether a later operation can reuse it.
        self.proposed_contexts = frozenset(
            (str(cx.abstract_syntax), tuple(str(ts) for ts in cx.transfer_syntax))
            for cx in request.presentation_context_definition_list)
        self.scp_roles = frozenset(protocol.scp_roles)

    @property
    def ended(self):
        """A Deferred firing once the association is over (released,
        aborted or dropped)."""
        return self._protocol.ended

    @property
    def timeout(self):
        return self._protocol.timeout

    @timeout.setter
    def timeout(self, seconds):
        """How long to wait for each answer (a reused association takes
        the timeout of the operation at hand)."""
        self._protocol.timeout = seconds

    @property
    def store_handler(self):
        return self._protocol.store_handler

    @store_handler.setter
    def store_handler(self, handler):
        """Who serves the peer's C-STORE-RQ (C-GET sub-operations)."""
        self._protocol.store_handler = handler

    @property
    def accepted_contexts(self):
        return list(self._protocol.contexts.values())

    @property
    def is_established(self):
        return self._protocol.state == "Sta6" and not self._protocol._ended

    def find_context(self, abstract_syntax, transfer_syntax=None):
        for context in self.accepted_contexts:
            if context.abstract_syntax == abstract_syntax and (
                    transfer_syntax is None or context.transfer_syntax == transfer_syntax):
                return context
        return None

    @property
    def next_message_id(self):
        """The MessageID the next request will carry."""
        return self._next_message_id

    def _message_id(self):
        message_id = self._next_message_id
        self._next_message_id = (message_id % 0xFFFF) + 1
        return message_id

    def send_request(self, context, fields, dataset=None, dataset_file=None,
                     on_pending=None):
        """Send a request; the Deferred fires with the final ``Response``.

        ``dataset`` is encoded bytes; ``dataset_file`` a ``(fileobj, length)``
        streamed from disk.  ``fields`` must not contain MessageID.
        """
        protocol = self._protocol
        if not self.is_established:
            return defer.fail(AssociationAborted("association is not established"))
        message_id = self._message_id()
        fields = dict(fields, MessageID=message_id)
        request = protocol.start_request(message_id, on_pending)
        if dataset_file is not None:
            fields["CommandDataSetType"] = dimse.HAS_DATASET
            protocol.send_command(context.context_id, fields)
            fileobj, length = dataset_file
            producer = protocol.send_dataset_from_file(context.context_id, fileobj, length)
            producer.done.addBoth(lambda result: (fileobj.close(), result)[1])
            producer.done.addErrback(lambda failure: None)
        else:
            if dataset is None:
                fields.setdefault("CommandDataSetType", dimse.NO_DATASET)
            protocol.send_command(context.context_id, fields, dataset)
        return request.deferred

    def echo(self):
        """C-ECHO; fires with the status."""
        context = self.find_context(VERIFICATION_SOP_CLASS)
        if context is None:
            return defer.fail(NoPresentationContext("Verification was not accepted"))
        d = self.send_request(context, {
            "AffectedSOPClassUID": VERIFICATION_SOP_CLASS,
            "CommandField": dimse.C_ECHO_RQ,
        })
        return d.addCallback(lambda response: response.status)

    def store(self, path_or_dataset, priority=0, move_originator=None):
        """C-STORE a file (sent as is) or a pydicom Dataset; fires with the status."""
        try:
            if isinstance(path_or_dataset, (str, os.PathLike)):
                context, sop_class, sop_instance, payload = self._prepare_file(path_or_dataset)
            else:
                context, sop_class, sop_instance, payload = self._prepare_dataset(path_or_dataset)
        except Exception:
            return defer.fail()
        fields = {
            "AffectedSOPClassUID": sop_class,
            "CommandField": dimse.C_STORE_RQ,
            "Priority": priority,
            "AffectedSOPInstanceUID": sop_instance,
        }
        if move_originator is not None:
            fields["MoveOriginatorApplicationEntityTitle"] = move_originator[0]
            fields["MoveOriginatorMessageID"] = move_originator[1]
        if isinstance(payload, tuple):
            d = self.send_request(context, fields, dataset_file=payload)
        else:
            d = self.send_request(context, fields, dataset=payload)
        return d.addCallback(lambda response: response.status)

    def _prepare_file(self, path):
        try:
            meta, offset = split_dataset(Path(path))
        except InvalidDicomError:
            # A bare data set without Part-10 header: decode and re-encode.
            return self._prepare_dataset(pydicom.dcmread(path, force=True))
        transfer_syntax = str(meta.get("TransferSyntaxUID", IMPLICIT_LITTLE))
        header = pydicom.dcmread(path, stop_before_pixels=True,
                                 specific_tags=["SOPClassUID", "SOPInstanceUID"])
        sop_class = str(header.get("SOPClassUID", meta.get("MediaStorageSOPClassUID", "")))
        sop_instance = str(header.get("SOPInstanceUID",
                                      meta.get("MediaStorageSOPInstanceUID", "")))
        context = self.find_context(sop_class, transfer_syntax)
        if context is not None:
            fileobj = open(path, "rb")
            length = os.fstat(fileobj.fileno()).st_size - offset
            fileobj.seek(offset)
            return context, sop_class, sop_instance, (fileobj, length)
        # Uncompressed data can be re-encoded for another uncompressed context.
        return self._prepare_dataset(pydicom.dcmread(path))

    def _prepare_dataset(self, dataset):
        sop_class = str(dataset.SOPClassUID)
        sop_instance = str(dataset.SOPInstanceUID)
        meta = getattr(dataset, "file_meta", None)
        original = str(meta.TransferSyntaxUID) if meta is not None and "TransferSyntaxUID" in meta else None
        if original is not None and original not in UNCOMPRESSED:
            context = self.find_context(sop_class, original)
            if context is None:
                raise NoPresentationContext(
                    f"no accepted context for {sop_class} in {original}")
            payload = encode_in(dataset, original)
            return context, sop_class, sop_instance, payload
        candidates = [c for c in self.accepted_contexts
                      if c.abstract_syntax == sop_class and c.transfer_syntax in UNCOMPRESSED]
        if not candidates:
            raise NoPresentationContext(f"no accepted uncompressed context for {sop_class}")
        candidates.sort(key=lambda c: c.transfer_syntax != original)
        context = candidates[0]
        payload = encode_in(dataset, context.transfer_syntax)
        if payload is None:
            raise ValueError("the data set cannot be encoded")
        return context, sop_class, sop_instance, payload

    def release(self):
        return self._protocol.release()

    def abort(self):
        self._protocol.abort()


def associate(reactor, host, port, calling_aet, called_aet, contexts, timeout=10,
              maximum_pdu_length=16384, scp_roles=(), store_handler=None):
    """Open an association; fires with an ``Association`` or fails with
    ``AssociationRejected``, ``DimseTimeout``, ``AssociationAborted`` or a
    connection error.  ``scp_roles``: SOP classes for which we propose the
    SCP role, with ``store_handler`` serving the C-STORE-RQ that follow
    (see ``RequestorProtocol``)."""
    request = requestor_primitive(calling_aet, called_aet, normalize_contexts(contexts),
                                  maximum_pdu_length, scp_roles)
    protocol = RequestorProtocol(reactor, request, timeout, maximum_pdu_length, store_handler,
                                 scp_roles)
    endpoint = endpoints.TCP4ClientEndpoint(reactor, host, port, timeout=timeout or 30)
    connecting = endpoints.connectProtocol(endpoint, protocol)

    def connection_failed(failure):
        if not protocol.associated.called:
            protocol.associated.errback(failure)

    connecting.addErrback(connection_failed)
    return protocol.associated


__all__ = ["associate", "Association", "AssociationRejected", "AssociationAborted",
           "DimseTimeout", "NoPresentationContext", "Response"]
