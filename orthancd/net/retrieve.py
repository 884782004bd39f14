"""Retrieving from a modality: C-MOVE (to a target AET) or C-GET each of
a list of queries, and the report Orthanc 1.13.0 gives of such a retrieve
job (its "Details" per query, its error payload when one fails).

A domain operation, callable from the REST routes now and from the job
engine later.
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


async def run_retrieve(server, settings, modality, level, method, target, queries, mode,
                       description):
    """C-MOVE (to ``target``) or C-GET each query (a Dataset, of which the
    UIDs of ``level`` go on the wire); Orthanc's retrieve job report (the
    queries shown in ``mode``), or its error at the first failed one."""
    shown, details = [], []
    for query in queries:
        query = scu.with_media_storage_uids(copy.deepcopy(query))
        shown.append(dataset_to_json(query, mode, server.default_encoding))
        for keyword in RETRIEVE_KEYS[level] if method == "C-MOVE" else ():
            if keyword not in query:
                details.append({"DimseErrorStatus": 0,
                                "Query": dataset_to_json(query, "short", server.default_encoding),
                                "ReceivedInstancesIds": []})
                raise OrthancError(ErrorCode.BadRequest, "Missing tag %s"
                                   % find_tags.format_tag(find_tags.parse_tag(keyword)),
                                   payload={"Content": details, "Type": "RetrieveJob"})
        uids = {k: str(query.get(k)) for k in RETRIEVE_KEYS[level] if k in query}
        identifier = scu.identifier_dataset(level, uids)
        if method == "C-GET":
            counts = await scu.get(server, settings, modality, level, identifier, check=False)
        else:
            counts = await scu.move(server.reactor, settings, modality, level, identifier,
                                    target, check=False)
        details.append({"DimseErrorStatus": counts.status,
                        "Query": dataset_to_json(query, "short", server.default_encoding),
                        "ReceivedInstancesIds": list(counts.received)})
        if counts.status not in (dimse.SUCCESS, 0xB000):
            raise retrieve_failed(method, modality, counts.status, details)
    report = {"Description": description, "Details": details, "LocalAet": settings.local_aet,
              "Query": shown, "RemoteAet": modality["AET"]}
    if method == "C-MOVE":
        report["TargetAet"] = target
    return report


def retrieve_failed(method, modality, status, details):
    reason = " (unable to process - resource not found ?)" \
        if method == "C-MOVE" and status == 0xC000 else ""
    return OrthancError(ErrorCode.NetworkProtocol,
                        '%s SCU to AET "%s" has failed with DIMSE status 0x%04X%s'
                        % (method, modality["AET"], status, reason),
                        payload={"Content": details, "Type": "RetrieveJob"})
