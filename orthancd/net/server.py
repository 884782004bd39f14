"""The acceptor role: orthancd's DICOM server.

``DicomServerFactory(config, services)`` is an ordinary Twisted ServerFactory;
listen on it with any stream endpoint.  Each connection gets a
``DicomServerProtocol`` (orthancd.net.acceptor) that negotiates like
Orthanc, dispatches DIMSE requests to the service modules one at a time,
and applies the ``DicomScpTimeout`` idle timeout.

The factory reads and checks its settings at once, so that a wrong
configuration stops the start.  What serves associations (the protocol,
the services, the negotiation, and with them pydicom and pynetdicom) is
imported and built at the first connection: an idle daemon does without
(orthancd.pydicom_import).
"""

import dataclasses

from twisted.internet.protocol import ServerFactory

from orthancd.net.settings import ServerSettings


class DicomServerFactory(ServerFactory):
    """Accepts DICOM associations for orthancd.

    ``config``: Orthanc configuration mapping (DicomAet, DicomCheckCalledAet,
    MaximumPduLength, DicomScpTimeout, UnknownSopClassAccepted, the transfer
    syntax flags, DicomAlwaysAllow*, DicomModalities...).
    ``services``: provides ``temporary_directory`` and ``store_file(path,
    origin) -> Deferred``.
    ``scp_services``: the DIMSE service objects, or a callable giving them
    at the first connection; defaults to echo + store.
    """

    # The protocol class; None: orthancd.net.acceptor's, imported when the
    # first association comes.
    protocol = None

    def __init__(self, config, services, reactor=None, scp_services=None, modalities=None):
        if reactor is None:
            from twisted.internet import reactor
        self.clock = reactor
        self.settings = ServerSettings.from_config(config)
        if modalities is not None:
            # A live mapping (orthancd.modalities.ModalityRegistry): the AE
            # filter then sees modalities added with PUT /modalities/{id}.
            self.settings = dataclasses.replace(self.settings, modalities=modalities)
        self.services = services
        self._scp_services = scp_services
        self._dispatcher = None
        self._negotiation = None
        self.associations = set()

    @property
    def dispatcher(self):
        if self._dispatcher is None:
            from orthancd.net.dispatcher import Dispatcher
            services = self._scp_services
            if services is None:
                from orthancd.net.scp_echo import EchoService
                from orthancd.net.scp_store import StoreService
                services = [EchoService(), StoreService(self.services)]
            elif callable(services):
                services = services()
            self._dispatcher = Dispatcher(services)
        return self._dispatcher

    @property
    def negotiation(self):
        """How associations are negotiated under the current settings."""
        if self._negotiation is None:
            from orthancd.net.negotiation import AcceptorNegotiation
            self._negotiation = AcceptorNegotiation(self.settings, self.dispatcher.services)
        return self._negotiation

    def apply_runtime_settings(self, storage_transfer_syntaxes, unknown_sop_class_accepted):
        """/tools/accepted-transfer-syntaxes and /tools/unknown-sop-class-accepted
        changed: associations negotiated from now on follow the new values."""
        self.settings = dataclasses.replace(
            self.settings, storage_transfer_syntaxes=tuple(storage_transfer_syntaxes),
            unknown_sop_class_accepted=bool(unknown_sop_class_accepted))
        self._negotiation = None

    def buildProtocol(self, addr):
        protocol_class = self.protocol
        if protocol_class is None:
            from orthancd.net.acceptor import DicomServerProtocol as protocol_class
        return protocol_class(self)
