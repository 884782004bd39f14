"""Acceptor-side association negotiation, following Orthanc 1.13.0's rules.

Orthanc (through DCMTK) accepts presentation contexts in successive passes:
the query/verification services with the three uncompressed syntaxes (its
own preference: explicit little, explicit big, implicit), then every
storage SOP class with the configured storage syntaxes (the requestor's
preference: the first proposed syntax that is accepted), then (if
``UnknownSopClassAccepted``) any SOP class it has never heard of.  A context
keeps the first acceptance; otherwise it is refused as "transfer syntaxes
not supported" when the abstract syntax was known to some pass, or
"abstract syntax not supported".  Only then are the application context and
the AE titles checked.  Which requests a calling AET may make is not part
of the negotiation: a refused request aborts the association later on.
"""

from dataclasses import dataclass

from pydicom._uid_dict import UID_dictionary
from pynetdicom.pdu_primitives import (
    A_ASSOCIATE,
    ImplementationClassUIDNotification,
    ImplementationVersionNameNotification,
    MaximumLengthNotification,
    SCP_SCU_RoleSelectionNegotiation,
)
from pynetdicom.presentation import PresentationContext

from orthancd.net import access, identity
from orthancd.net.transfer_syntaxes import EXPLICIT_LITTLE

ACCEPTANCE = 0x00
USER_REJECTION = 0x01
ABSTRACT_SYNTAX_NOT_SUPPORTED = 0x03
TRANSFER_SYNTAXES_NOT_SUPPORTED = 0x04

# A-ASSOCIATE-RJ fields (PS3.8 9.3.4).
REJECTED_PERMANENT = 0x01
SOURCE_SERVICE_USER = 0x01
REASON_NO_REASON = 0x01
REASON_APPLICATION_CONTEXT_NOT_SUPPORTED = 0x02
REASON_CALLING_AET_NOT_RECOGNIZED = 0x03
REASON_CALLED_AET_NOT_RECOGNIZED = 0x07


@dataclass(frozen=True)
class AcceptedContext:
    context_id: int
    abstract_syntax: str
    transfer_syntax: str


@dataclass(frozen=True)
class Rejection:
    result: int
    source: int
    reason: int


def is_unknown_sop_class(uid):
    """True when DICOM's UID registry (DCMTK's dictionary, pydicom's here)
    does not name ``uid``."""
    return str(uid) not in UID_dictionary


def _user_information(max_pdu_length):
    max_length = MaximumLengthNotification()
    max_length.maximum_length_received = max_pdu_length
    class_uid = ImplementationClassUIDNotification()
    class_uid.implementation_class_uid = identity.IMPLEMENTATION_CLASS_UID
    version = ImplementationVersionNameNotification()
    version.implementation_version_name = identity.IMPLEMENTATION_VERSION_NAME
    return [max_length, class_uid, version]


def negotiate_contexts(requested, passes, accept_unknown_syntaxes=None):
    """Decide each requested context.

    ``requested`` is a list of pynetdicom PresentationContext; ``passes`` a
    list of ``(abstract_syntaxes, transfer_syntaxes, requestor_preference)``
    tried in order (with ``requestor_preference`` the first proposed syntax
    among ``transfer_syntaxes`` wins, else the first of ``transfer_syntaxes``
    that was proposed); ``accept_unknown_syntaxes`` the syntaxes for unknown
    SOP classes, or None.
    Returns a list of ``(context_id, abstract_syntax, result, transfer_syntax)``.
    """
    outcome = {}
    for context in requested:
        cid = context.context_id
        proposed = [str(ts) for ts in context.transfer_syntax]
        abstract = str(context.abstract_syntax)
        result, chosen = ABSTRACT_SYNTAX_NOT_SUPPORTED, None
        candidate_passes = list(passes)
        if accept_unknown_syntaxes is not None and is_unknown_sop_class(abstract):
            # Unknown SOP classes get Orthanc's own order of preference, even
            # when AcceptedSopClasses names them.
            candidate_passes.insert(0, ((abstract,), accept_unknown_syntaxes, False))
        for abstract_syntaxes, transfer_syntaxes, requestor_preference in candidate_passes:
            if abstract not in abstract_syntaxes:
                continue
            if requestor_preference:
                chosen = next((ts for ts in proposed if ts in transfer_syntaxes), None)
            else:
                chosen = next((ts for ts in transfer_syntaxes if ts in proposed), None)
            if chosen is not None:
                result = ACCEPTANCE
                break
            result = TRANSFER_SYNTAXES_NOT_SUPPORTED
        outcome[cid] = (cid, abstract, result, chosen or (proposed[0] if proposed else ""))
    return [outcome[cid] for cid in sorted(outcome)]


class AcceptorNegotiation:
    """Turn an A-ASSOCIATE request into the acceptance or rejection Orthanc gives."""

    def __init__(self, settings, services):
        self._settings = settings
        self._services = services

    def _passes(self):
        # Storage last, as in Orthanc: a SOP class offered by two services is
        # decided by the first one.
        services = sorted(self._services,
                          key=lambda service: service.request_type == access.STORE)
        passes = [(frozenset(service.abstract_syntaxes(self._settings)),
                   tuple(service.transfer_syntaxes(self._settings)),
                   service.request_type == access.STORE)
                  for service in services]
        unknown = None
        if self._settings.unknown_sop_class_accepted:
            store = [s for s in services if s.request_type == access.STORE]
            if store:
                # Explicit Little Endian first (it keeps the VRs of what we
                # cannot interpret), then the usual order.
                syntaxes = list(store[0].transfer_syntaxes(self._settings))
                unknown = tuple(sorted(syntaxes, key=lambda ts: ts != EXPLICIT_LITTLE))
        return passes, unknown

    def negotiate(self, request, remote_ip):
        """Return ``(response_primitive, accepted_contexts_by_id)``.

        The response is an A_ASSOCIATE primitive with ``result`` 0 for an
        acceptance, or carrying the rejection fields.
        """
        settings = self._settings
        remote_aet = request.calling_ae_title.strip()
        called_aet = request.called_ae_title.strip()
        policy = access.AccessPolicy(settings)

        rejection = None
        if str(request.application_context_name) != identity.APPLICATION_CONTEXT_NAME:
            rejection = REASON_APPLICATION_CONTEXT_NOT_SUPPORTED
        elif settings.check_called_aet and not settings.same_aet(called_aet, settings.aet):
            rejection = REASON_CALLED_AET_NOT_RECOGNIZED
        elif not policy.is_allowed_connection(remote_aet, remote_ip):
            rejection = REASON_CALLING_AET_NOT_RECOGNIZED

        response = A_ASSOCIATE()
        response.application_context_name = identity.APPLICATION_CONTEXT_NAME
        response.calling_ae_title = request.calling_ae_title
        response.called_ae_title = request.called_ae_title
        if rejection is not None:
            response.result = REJECTED_PERMANENT
            response.result_source = SOURCE_SERVICE_USER
            response.diagnostic = rejection
            return response, {}

        passes, unknown = self._passes()
        results = negotiate_contexts(request.presentation_context_definition_list,
                                     passes, unknown)
        accepted = {}
        result_list = []
        for cid, abstract, result, transfer_syntax in results:
            context = PresentationContext()
            context.context_id = cid
            context.abstract_syntax = abstract
            context.transfer_syntax = [transfer_syntax]
            context.result = result
            result_list.append(context)
            if result == ACCEPTANCE:
                accepted[cid] = AcceptedContext(cid, abstract, transfer_syntax)
        response.result = ACCEPTANCE
        response.presentation_context_definition_results_list = result_list
        response.user_information = (_user_information(settings.maximum_pdu_length)
                                     + role_selection_replies(request, accepted))
        return response, accepted


def role_selection_replies(request, accepted):
    """Accept the SCU/SCP roles the peer proposes for the SOP classes we
    accepted: a C-GET SCU asks to be the storage SCP, so that we can send it
    C-STORE sub-operations on the same association."""
    abstract_syntaxes = {context.abstract_syntax for context in accepted.values()}
    replies = []
    for item in request.user_information or []:
        if (isinstance(item, SCP_SCU_RoleSelectionNegotiation)
                and str(item.sop_class_uid) in abstract_syntaxes):
            reply = SCP_SCU_RoleSelectionNegotiation()
            reply.sop_class_uid = item.sop_class_uid
            reply.scu_role = bool(item.scu_role)
            reply.scp_role = bool(item.scp_role)
            replies.append(reply)
    return replies


def peer_maximum_pdu_length(primitive):
    """The largest P-DATA the peer accepts (0 means no limit)."""
    for item in primitive.user_information or []:
        if isinstance(item, MaximumLengthNotification):
            return item.maximum_length_received or 0
    return 0


def peer_implementation_class_uid(primitive):
    for item in primitive.user_information or []:
        if isinstance(item, ImplementationClassUIDNotification):
            return str(item.implementation_class_uid)
    return None


def requestor_primitive(calling_aet, called_aet, contexts, max_pdu_length, scp_roles=()):
    """Build the A-ASSOCIATE request primitive for the requestor role.

    ``contexts`` is a list of ``(abstract_syntax, [transfer_syntaxes])``;
    context IDs are assigned 1, 3, 5...
    """
    if not contexts:
        raise ValueError("at least one presentation context is required")
    if len(contexts) > 128:
        raise ValueError("at most 128 presentation contexts can be proposed")
    primitive = A_ASSOCIATE()
    primitive.application_context_name = identity.APPLICATION_CONTEXT_NAME
    primitive.calling_ae_title = calling_aet
    primitive.called_ae_title = called_aet
    definition = []
    for index, (abstract, transfer_syntaxes) in enumerate(contexts):
        context = PresentationContext()
        context.context_id = 2 * index + 1
        context.abstract_syntax = abstract
        context.transfer_syntax = list(transfer_syntaxes)
        definition.append(context)
    primitive.presentation_context_definition_list = definition
    primitive.user_information = _user_information(max_pdu_length)
    # SOP classes for which we ask to act as SCP (storage classes of a C-GET).
    for uid in dict.fromkeys(scp_roles):
        role = SCP_SCU_RoleSelectionNegotiation()
        role.sop_class_uid = uid
        role.scu_role = False
        role.scp_role = True
        primitive.user_information.append(role)
    return primitive
