"""orthancd's DICOM conformance statement (/tools/dicom-conformance).

Laid out like Orthanc's (one section per service and role, "Name | UID"
tables), but written from what orthancd's own services negotiate, so that
it stays true as they change.
"""
from pydicom.uid import UID

from orthancd.net import access, scu
from orthancd.net.scp_echo import VERIFICATION_SOP_CLASS
from orthancd.net.scp_services import scp_services
from orthancd.net.scp_store import accepted_sop_classes as store_sop_classes
from orthancd.net.settings import ServerSettings


def accepted_sop_classes(server):
    """The storage SOP classes the C-STORE SCP accepts (AcceptedSopClasses
    less RejectedSopClasses), sorted as Orthanc lists them
    (/tools/accepted-sop-classes)."""
    settings = ServerSettings.from_config(server.configuration)
    return sorted(store_sop_classes(settings.accepted_sop_classes,
                                    settings.rejected_sop_classes))


def _name(uid):
    uid = UID(uid)
    return uid.keyword or uid.name or str(uid)


def _table(uids):
    names = [(_name(uid), uid) for uid in uids]
    width = max(len(name) for name, _ in names)
    return ["  %s | %s" % (name.ljust(width), uid) for name, uid in sorted(names)]


def _section(title, lines):
    rule = "-" * len(title)
    return ["", "", rule, title, rule, ""] + lines


def _abstract_syntaxes(services, request_type, settings):
    return [uid for service in services if service.request_type == request_type
            for uid in service.abstract_syntaxes(settings)]


def conformance_statement(server):
    """The statement as text; ``server`` gives the current transfer syntaxes."""
    services = scp_services(server)
    settings = ServerSettings.from_config(server.configuration)
    title = "DICOM Conformance Statement of orthancd"
    lines = ["=" * len(title), title, "=" * len(title)]
    for request_type in (access.ECHO, access.STORE, access.FIND, access.MOVE, access.GET):
        lines += _section("%s SCP Conformance" % request_type, [
            "orthancd supports the following SOP Classes as an SCP for C-%s:" % request_type,
            ""] + _table(_abstract_syntaxes(services, request_type, settings)))
    lines += _section("Echo SCU Conformance", [
        "orthancd supports the following SOP Classes as an SCU for C-Echo:", ""]
        + _table([VERIFICATION_SOP_CLASS]))
    lines += _section("Store SCU Conformance", [
        'All the SOP Classes listed in the "Store SCP Conformance" section',
        "are available to orthancd as an SCU for C-Store."])
    for request_type, models in ((access.FIND, (scu.PATIENT_ROOT_FIND, scu.STUDY_ROOT_FIND)),
                                 (access.MOVE, (scu.PATIENT_ROOT_MOVE, scu.STUDY_ROOT_MOVE)),
                                 (access.GET, (scu.PATIENT_ROOT_GET, scu.STUDY_ROOT_GET))):
        lines += _section("%s SCU Conformance" % request_type, [
            "orthancd supports the following SOP Classes as an SCU for C-%s:" % request_type,
            ""] + _table(models))
    lines += _section("Transfer Syntaxes", [
        "orthancd accepts the storage SOP Classes above with the following",
        "transfer syntaxes (the \"AcceptedTransferSyntaxes\" option and",
        "/tools/accepted-transfer-syntaxes choose them):", ""]
        + _table(server.accepted_transfer_syntaxes) + [
        "",
        "The verification and query/retrieve SOP Classes are accepted with",
        "the uncompressed transfer syntaxes.",
        "",
        "orthancd does not support extended negotiation."])
    return "\n".join(lines) + "\n"
