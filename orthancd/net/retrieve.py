"""Retrieving from a modality: C-MOVE (to a target AET) or C-GET one query,
with Orthanc 1.13.0's errors; the retrieve jobs (orthancd.jobs.dicom_retrieve)
run one per step.
"""
import copy

from orthancd.dicom.json_tags import dataset_to_json
from orthancd.errors import ErrorCode, OrthancError
from orthancd.find import tags as find_tags
from orthancd.ids import ResourceLevel
from orthancd.net import dimse, scu

# The UIDs a C-MOVE/C-GET identifier carries at each level (as Orthanc sends).
RETRIEVE_KEYS = {
    ResourceLevel.PATIENT: ("PatientID",),
    ResourceLevel.STUDY: ("StudyInstanceUID",),
    ResourceLevel.SERIES: ("StudyInstanceUID", "SeriesInstanceUID"),
    ResourceLevel.INSTANCE: ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID"),
}


def missing_key(level, method, query):
    """The UID a C-MOVE identifier lacks at ``level`` (Orthanc refuses to
    send it), or None."""
    for keyword in RETRIEVE_KEYS[level] if method == "C-MOVE" else ():
        if keyword not in query:
            return keyword
    return None


async def retrieve_one(server, settings, modality, level, method, target, query, counts):
    """C-MOVE (to ``target``) or C-GET one query (a Dataset, of which the
    UIDs of ``level`` go on the wire); ``counts`` (RetrieveCounts) follows
    the pending responses and collects the instances received.  Raises
    Orthanc's errors: the DIMSE status of a failure goes in their payload."""
    keyword = missing_key(level, method, query)
    if keyword is not None:
        raise OrthancError(ErrorCode.BadRequest, "Missing tag %s"
                           % find_tags.format_tag(find_tags.parse_tag(keyword)))
    uids = {k: str(query.get(k)) for k in RETRIEVE_KEYS[level] if k in query}
    identifier = scu.identifier_dataset(level, uids)
    if method == "C-GET":
        await scu.get(server, settings, modality, level, identifier, check=False, counts=counts)
    else:
        await scu.move(server.reactor, settings, modality, level, identifier, target,
                       check=False, counts=counts)
    if counts.status not in (dimse.SUCCESS, 0xB000):
        raise retrieve_failed(method, modality, counts.status)


def query_json(server, query, mode):
    """A query as a retrieve job shows it: Orthanc keeps each as a DICOM
    file, whose meta header repeats its SOP class and instance UIDs."""
    query = scu.with_media_storage_uids(copy.deepcopy(query))
    return dataset_to_json(query, mode, server.default_encoding)


def retrieve_failed(method, modality, status):
    reason = " (unable to process - resource not found ?)" \
        if method == "C-MOVE" and status == 0xC000 else ""
    return OrthancError(ErrorCode.NetworkProtocol,
                        '%s SCU to AET "%s" has failed with DIMSE status 0x%04X%s'
                        % (method, modality["AET"], status, reason),
                        payload={"Content": {"DimseErrorStatus": status}, "Type": "Dimse"})
