"""Storage commitment SCU in the REST API: ask a modality, read its report.

    POST /modalities/{id}/storage-commitment   send the request, answer its ID
    GET  /storage-commitment/{id}              the report (Pending until it comes)
    POST /storage-commitment/{id}/remove       delete what a successful report commits

Bodies are checked in Orthanc's order, with its messages.
"""
import json

from orthancd import storage_commitment
from orthancd.errors import ErrorCode, OrthancError
from orthancd.lazy_modules import LazyModule
from orthancd.modalities import modality_registry
from orthancd.rest import jsonfmt
from orthancd.rest.http import read_body, render_bytes, render_json

# DICOM networking (pynetdicom, pydicom): imported by the first use
# (orthancd.lazy_modules).
scu = LazyModule("orthancd.net.scu")
commitment = LazyModule("orthancd.net.storage_commitment")

RESOURCES = "Resources"
DICOM_INSTANCES = "DicomInstances"


def _styled(value):
    """JsonCpp's toStyledString, which Orthanc quotes in its messages."""
    if isinstance(value, str):
        return json.dumps(value) + "\n"
    return jsonfmt.dumps(value, indent="\t") + "\n"


def _bad(details):
    return OrthancError(ErrorCode.BadFileFormat, details)


def parse_body(raw):
    """The JSON object of a storage commitment request."""
    try:
        body = json.loads(raw)
    except ValueError:
        body = None
    if not isinstance(body, dict):
        raise _bad("Must provide a JSON object with a list of resources")
    if RESOURCES not in body and DICOM_INSTANCES not in body:
        raise _bad('Empty storage commitment request, one of these fields is mandatory: '
                   '"%s" or "%s"' % (RESOURCES, DICOM_INSTANCES))
    return body


def resource_ids(body):
    resources = body.get(RESOURCES, [])
    if not isinstance(resources, list):
        raise _bad('The "%s" field must provide an array of Orthanc resources' % RESOURCES)
    for resource in resources:
        if not isinstance(resource, str):
            raise _bad('The "%s" field must provide an array of strings, found: %s'
                       % (RESOURCES, _styled(resource)))
    return resources


def dicom_instances(body):
    """The ``DicomInstances`` entries: [class, instance] or {"SOPClassUID",
    "SOPInstanceUID"}."""
    entries = body.get(DICOM_INSTANCES, [])
    if not isinstance(entries, list):
        raise _bad('The "%s" field must provide an array of DICOM instances' % DICOM_INSTANCES)
    references = []
    for entry in entries:
        if isinstance(entry, list):
            if len(entry) != 2 or not all(isinstance(uid, str) for uid in entry):
                raise _bad("An instance entry must provide an array with 2 strings: "
                           "SOP Class UID and SOP Instance UID")
            references.append(commitment.Reference(entry[0], entry[1]))
        elif isinstance(entry, dict):
            sop_class, sop_instance = entry.get("SOPClassUID"), entry.get("SOPInstanceUID")
            if not isinstance(sop_class, str) or not isinstance(sop_instance, str):
                # (sic) Orthanc's message.
                raise _bad('An instance entry must provide an object with 2 string fiels: '
                           '"SOPClassUID" and "SOPInstanceUID')
            references.append(commitment.Reference(sop_class, sop_instance))
        else:
            raise _bad("JSON array or object is expected to specify one instance to be "
                       "queried, found: %s" % _styled(entry))
    return references


def timeout_option(body):
    """The request's ``Timeout`` (an unsigned integer), or None."""
    if "Timeout" not in body:
        return None
    value = body["Timeout"]
    if not isinstance(value, int) or isinstance(value, bool):
        raise _bad("Integer value expected in field: Timeout")
    if value < 0:
        raise OrthancError(ErrorCode.BadParameterType,
                           "Negative value found while expecting an unsigned int in field "
                           "'Timeout'")
    return value


def install(app, server):
    registry = modality_registry(server)
    configuration = server.configuration

    @app.route("/modalities/<name>/storage-commitment", methods=["POST"])
    async def request_commitment(request, name):
        body = parse_body(read_body(request))
        references = []
        for public_id in resource_ids(body):
            instances = storage_commitment.resource_instances(server.index, public_id)
            references.extend(await storage_commitment.instance_references(server, instances))
        references.extend(dicom_instances(body))
        modality = registry.get_modality(name)
        timeout = timeout_option(body)
        settings = scu.ScuSettings.for_modality(
            configuration, modality, {} if timeout is None else {"Timeout": timeout})
        # Orthanc calls as DicomAet here, whatever the modality's LocalAet.
        settings.local_aet = str(configuration.get("DicomAet", "ORTHANC"))
        transaction_uid = await storage_commitment.request(server, settings, modality,
                                                           references)
        return render_json(request, {"ID": transaction_uid,
                                     "Path": "/storage-commitment/%s" % transaction_uid})

    @app.route("/storage-commitment/<transaction_uid>", methods=["GET"])
    def get_report(request, transaction_uid):
        report = storage_commitment.reports(server).get(transaction_uid)
        return render_json(request, report.to_json())

    @app.route("/storage-commitment/<transaction_uid>/remove", methods=["POST"])
    async def remove(request, transaction_uid):
        await storage_commitment.remove_committed(server, transaction_uid)
        # Orthanc sends these bytes as they are, without a charset.
        return render_bytes(request, b"{}", b"application/json")
