"""Route incoming DIMSE requests to the SCP service modules.

A service module provides an object with:
  - ``request_type``: one of ``access.REQUEST_TYPES`` (for Orthanc's filter),
  - ``command_fields``: the request CommandField values it handles,
  - ``abstract_syntaxes(settings)`` / ``transfer_syntaxes(settings)``: what
    it lets the negotiation accept,
  - ``start(request)``: begin handling a ``DimseRequest``; returns the sink
    for the data set when the command announces one (else None).  The
    service answers through ``request.respond`` (any number of pending
    answers, then one final one).
C-FIND, C-MOVE and C-GET plug in the same way.
"""

import logging

from orthancd.net import dimse
from orthancd.net.reassembly import DiscardingSink, ProtocolViolation

log = logging.getLogger(__name__)


class DimseRequest:
    """One request being served on an association."""

    def __init__(self, association, context, command):
        self.association = association
        self.context = context
        self.command = command
        self.finished = False
        self.cancelled = False

    @property
    def command_field(self):
        return self.command.CommandField

    @property
    def has_dataset(self):
        return dimse.has_dataset(self.command)

    def respond(self, status, dataset=None, final=True, **fields):
        """Send a response (pending ones with ``final=False``).  Returns False
        when the association is gone and nothing could be sent."""
        if self.finished:
            raise RuntimeError("final response already sent")
        sent = self.association.send_command(
            self.context.context_id,
            dimse.response_fields(self.command, status, **fields),
            dataset)
        if final:
            self.finished = True
            self.association.request_finished(self)
        return sent

    def cancel(self):
        """A C-CANCEL-RQ arrived for this request; services poll ``cancelled``."""
        self.cancelled = True


class Dispatcher:
    def __init__(self, services):
        self.services = list(services)
        self._by_field = {}
        for service in self.services:
            for field in service.command_fields:
                self._by_field[field] = service

    def service_for(self, command_field):
        return self._by_field.get(command_field)

    def dispatch(self, association, context, command, is_allowed):
        """Start serving ``command``; returns the data set sink, if any.

        ``is_allowed(request_type)`` is the AE filter.  Raises
        ProtocolViolation when the association must be aborted.
        """
        field = command.CommandField
        if field == dimse.C_CANCEL_RQ:
            association.cancel_requests(command.get("MessageIDBeingRespondedTo"))
            return None
        if field not in dimse.RESPONSE_OF:
            raise ProtocolViolation(f"unexpected DIMSE command 0x{field:04x}")
        request = DimseRequest(association, context, command)
        service = self.service_for(field)
        if service is None:
            log.warning("unsupported DIMSE command 0x%04x from %s", field,
                        association.remote_aet)
            association.request_started(request)
            request.respond(dimse.UNRECOGNIZED_OPERATION)
            return DiscardingSink() if request.has_dataset else None
        if not is_allowed(service.request_type):
            # Orthanc aborts the association on a request its filter refuses.
            raise ProtocolViolation(f"{service.request_type} request not allowed "
                                    f"from {association.remote_aet}")
        association.request_started(request)
        return service.start(request)
