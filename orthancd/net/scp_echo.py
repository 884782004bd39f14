"""C-ECHO SCP: the verification service."""

from orthancd.net import access, dimse
from orthancd.net.transfer_syntaxes import EXPLICIT_BIG, EXPLICIT_LITTLE, IMPLICIT_LITTLE

VERIFICATION_SOP_CLASS = "1.2.840.10008.1.1"

# What Orthanc offers to its non-storage contexts.
QUERY_TRANSFER_SYNTAXES = (EXPLICIT_LITTLE, EXPLICIT_BIG, IMPLICIT_LITTLE)


class EchoService:
    request_type = access.ECHO
    command_fields = (dimse.C_ECHO_RQ,)

    def abstract_syntaxes(self, settings):
        return (VERIFICATION_SOP_CLASS,)

    def transfer_syntaxes(self, settings):
        return QUERY_TRANSFER_SYNTAXES

    def start(self, request):
        request.respond(dimse.SUCCESS)
        return None
