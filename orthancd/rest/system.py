"""/system and /statistics."""
from orthancd import ORTHANC_API_VERSION
from orthancd.dicom.summary import MAIN_DICOM_TAGS
from orthancd.rest.http import render_json
from orthancd.rest.resources import size_mb

# The REST API level of Orthanc 1.12.6, which orthancd implements.
API_VERSION = 27
DATABASE_VERSION = 6


def _main_dicom_tags_signature():
    from pydicom.datadict import tag_for_keyword
    out = {}
    for level, tags in MAIN_DICOM_TAGS.items():
        names = []
        for tag in tags:
            number = tag_for_keyword(tag) if isinstance(tag, str) else int(tag)
            names.append("%04x,%04x" % (number >> 16, number & 0xFFFF))
        out[level.title] = ";".join(names)
    return out


def install(app, server):
    config = server.configuration
    main_tags = _main_dicom_tags_signature()

    @app.route("/system", methods=["GET"])
    def system(request):
        return render_json(request, {
            "ApiVersion": API_VERSION,
            "Capabilities": {
                "HasExtendedChanges": False,
                "HasExtendedFind": False,
                "HasLabels": False,
            },
            "CheckRevisions": bool(config.get("CheckRevisions", False)),
            "DatabaseBackendPlugin": None,
            "DatabaseServerIdentifier": config.get("DatabaseServerIdentifier", "Orthanc"),
            "DatabaseVersion": DATABASE_VERSION,
            "DicomAet": config.get("DicomAet", "ORTHANC"),
            "DicomPort": config.get("DicomPort", 4242),
            "HttpPort": config.get("HttpPort", 8042),
            "IngestTranscoding": config.get("IngestTranscoding", ""),
            "IsHttpServerSecure": bool(config.get("SslEnabled", False)),
            "MainDicomTags": main_tags,
            "MaximumPatientCount": config.get("MaximumPatientCount", 0),
            "MaximumStorageMode": config.get("MaximumStorageMode", "Recycle"),
            "MaximumStorageSize": config.get("MaximumStorageSize", 0),
            "Name": config.get("Name", "MyOrthanc"),
            "OverwriteInstances": bool(config.get("OverwriteInstances", False)),
            "PluginsEnabled": False,
            "ReadOnly": bool(config.get("ReadOnly", False)),
            "StorageAreaPlugin": None,
            "StorageCompression": bool(config.get("StorageCompression", False)),
            "UserMetadata": dict(config.get("UserMetadata") or {}),
            "Version": ORTHANC_API_VERSION,
        })

    @app.route("/statistics", methods=["GET"])
    def statistics(request):
        stats = server.index.get_statistics()
        return render_json(request, {
            "CountInstances": stats["instances"],
            "CountPatients": stats["patients"],
            "CountSeries": stats["series"],
            "CountStudies": stats["studies"],
            "TotalDiskSize": str(stats["disk"]),
            "TotalDiskSizeMB": size_mb(stats["disk"]),
            "TotalUncompressedSize": str(stats["uncompressed"]),
            "TotalUncompressedSizeMB": size_mb(stats["uncompressed"]),
        })
