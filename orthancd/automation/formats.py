"""What Lua callbacks receive, shaped as Orthanc 1.13.0 gives it."""
from orthancd.index.base import MetadataType


def format_origin(origin):
    """Orthanc's DicomInstanceOrigin::Format of an ingest Origin dict."""
    request_origin = origin.get("Origin", "Unknown")
    out = {"RequestOrigin": request_origin}
    if request_origin == "DicomProtocol":
        out["RemoteIp"] = origin.get("RemoteIP", "")
        out["RemoteAet"] = origin.get("RemoteAET", "")
        out["CalledAet"] = origin.get("CalledAET", "")
    elif request_origin == "RestApi":
        out["RemoteIp"] = origin.get("RemoteIP", "")
        out["Username"] = origin.get("HttpUsername", "")
    return dict(sorted(out.items()))


def origin_from_metadata(metadata):
    """The Origin of a stored instance, from its metadata {MetadataType: value}."""
    keys = (("Origin", MetadataType.Origin), ("RemoteIP", MetadataType.RemoteIP),
            ("RemoteAET", MetadataType.RemoteAET), ("CalledAET", MetadataType.CalledAET),
            ("HttpUsername", MetadataType.HttpUsername))
    return {key: metadata[number] for key, number in keys if number in metadata}


def named_metadata(metadata, names):
    """{MetadataType: value} -> {name: value}, as Lua callbacks get it."""
    return {names.name(number): value for number, value in sorted(metadata.items())}


def simplified_tags(dataset, default_encoding):
    """The instance's tags as Orthanc simplifies them for Lua (main tags
    never cut for their length); the pixel data shows as null."""
    from orthancd.dicom import main_tags
    from orthancd.dicom.json_tags import dataset_to_json
    ignored = frozenset(tag for tags in main_tags.MAIN_DICOM_TAGS.values() for tag in tags)
    tags = dataset_to_json(dataset, "simplify", default_encoding, ignore_length=ignored)
    if getattr(dataset, "pixel_data_offset", None) is not None and "PixelData" not in tags:
        tags["PixelData"] = None
        tags = dict(sorted(tags.items()))
    return tags


def level_main_tags(server, level, public_id):
    """The main tags of a resource in Orthanc's "human" format (a study's
    without its patient's, no sequence)."""
    from orthancd.rest.resource_json import resource_to_json
    rendered = resource_to_json(server, level, public_id, "human",
                                content=frozenset(("MainDicomTags",)))
    # The sequences among the main tags are kept apart (MainDicomSequences
    # metadata): Orthanc leaves them out.
    return {name: value for name, value in rendered["MainDicomTags"].items()
            if not isinstance(value, list)}
