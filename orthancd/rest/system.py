"""/system and /statistics."""
import hashlib
import importlib.metadata
import os
import sys

from orthancd import ORTHANC_API_VERSION
from orthancd.dicom import main_tags
from orthancd.ids import ResourceLevel
from orthancd.rest.http import render_json
from orthancd.rest.resources import size_mb

# The REST API level of Orthanc 1.13.0, which orthancd implements.
API_VERSION = 31
DATABASE_VERSION = 6

# Orthanc's well-known default users: a server that accepts them is not secure.
_INSECURE_USERS = (("orthanc", "orthanc"), ("alice", "orthanctest"))


def _mac_addresses():
    out = set()
    try:
        interfaces = os.listdir("/sys/class/net")
    except OSError:
        return out
    for name in interfaces:
        try:
            with open(os.path.join("/sys/class/net", name, "address")) as f:
                address = f.read().strip()
        except OSError:
            continue
        if address and address != "00:00:00:00:00:00":
            out.add(address)
    return out


def database_server_identifier(config):
    """DatabaseServerIdentifier, or Orthanc's default: the SHA-1 of the
    machine's MAC addresses, the AET and the ports."""
    configured = config.get("DatabaseServerIdentifier")
    if configured:
        return configured
    items = {"mac=" + mac for mac in _mac_addresses()}
    items.add("aet=" + config.get("DicomAet", "ORTHANC"))
    items.add("dicom-port=%d" % config.get("DicomPort", 4242))
    items.add("http-port=%d" % config.get("HttpPort", 8042))
    return hashlib.sha1("|".join(sorted(items)).encode("utf-8")).digest().hex("-", 4)


def is_http_server_secure(config):
    """Orthanc's IsHttpServerSecure: not when remote access is open with
    authentication switched off, nor when a well-known password is in use."""
    if config.get("RemoteAccessAllowed", False) and config.get("AuthenticationEnabled") is False:
        return False
    users = config.get("RegisteredUsers") or {}
    return not any(users.get(user) == password for user, password in _INSECURE_USERS)


def main_dicom_tags_signatures():
    return {level.title: main_tags.signature(level) for level in ResourceLevel}


def _third_party_versions():
    """The libraries orthancd is built on (Orthanc lists its own).  Those
    an idle daemon has not imported (pydicom, pynetdicom, lupa: see
    orthancd.lazy_modules) are read from their installed metadata."""
    import lmdb
    import twisted
    versions = {
        "lmdb": ".".join(str(v) for v in lmdb.version()),
        "py-lmdb": lmdb.__version__,
        "pydicom": importlib.metadata.version("pydicom"),
        "pynetdicom": importlib.metadata.version("pynetdicom"),
        "python": "%d.%d.%d" % sys.version_info[:3],
        "twisted": twisted.__version__,
    }
    try:
        versions["lupa"] = importlib.metadata.version("lupa")
    except importlib.metadata.PackageNotFoundError:
        pass
    return versions


def install(app, server):
    config = server.configuration
    identifier = database_server_identifier(config)
    secure = is_http_server_secure(config)
    third_party = _third_party_versions()

    @app.route("/system", methods=["GET"])
    def system(request):
        overwrite_mode = config.overwrite_instances_mode
        return render_json(request, {
            "ApiVersion": API_VERSION,
            "Capabilities": {
                "HasExtendedChanges": True,
                "HasExtendedFind": True,
                # Key-value stores are in the index (the Lua functions use
                # them); the queues of 1.13.0's plugin SDK are not: orthancd
                # has no plugins.
                "HasKeyValueStores": True,
                "HasQueues": False,
                "HasReserveQueueValue": False,
            },
            "CheckRevisions": bool(config.get("CheckRevisions", False)),
            "DatabaseBackendPlugin": None,
            "DatabaseServerIdentifier": identifier,
            "DatabaseVersion": DATABASE_VERSION,
            "DicomAet": config.get("DicomAet", "ORTHANC"),
            "DicomDefaultRetrieveMethod": config.get("DicomDefaultRetrieveMethod", "C-MOVE"),
            "DicomPort": config.get("DicomPort", 4242),
            "HasLabels": True,
            "HttpPort": config.get("HttpPort", 8042),
            "IngestTranscoding": config.get("IngestTranscoding", ""),
            "IsHttpServerSecure": secure,
            "MainDicomTags": main_dicom_tags_signatures(),
            "MaximumPatientCount": config.get("MaximumPatientCount", 0),
            "MaximumStorageMode": config.get("MaximumStorageMode", "Recycle"),
            "MaximumStorageSize": config.get("MaximumStorageSize", 0),
            "Name": config.get("Name", "MyOrthanc"),
            "OverwriteInstances": overwrite_mode != "Never",
            "OverwriteInstancesMode": overwrite_mode,
            "PatientLevelEnabled": bool(config.get("PatientLevelEnabled", True)),
            "Performance": {
                "ConcurrentJobs": config.get("ConcurrentJobs", 2),
                "DicomParserCacheSize": config.get("DicomParserCacheSize", 256),
                "DicomParserMemoryCapacity": config.get("DicomParserMemoryCapacity", 256),
                "DicomParserThreadsCount": config.get("DicomParserThreadsCount", 2),
                "DicomThreadsCount": config.get("DicomThreadsCount", 4),
                "HttpThreadsCount": config.get("HttpThreadsCount", 50),
                "MaximumStorageCacheSize": config.get("MaximumStorageCacheSize", 128),
                "SequentialDicomReaderThreadsCount":
                    config.get("SequentialDicomReaderThreadsCount", 4),
                "StorageLoaderThreadsCount": config.get("StorageLoaderThreadsCount", 4),
                "StorageMemoryCapacity": config.get("StorageMemoryCapacity", 512),
                "TranscoderCacheSize": config.get("TranscoderCacheSize", 256),
                "TranscoderMemoryCapacity": config.get("TranscoderMemoryCapacity", 256),
                "TranscoderThreadsCount": config.get("TranscoderThreadsCount", 4),
            },
            # /plugins answers (orthancd's built-in features, listed as plugins).
            "PluginsEnabled": True,
            "ReadOnly": bool(config.get("ReadOnly", False)),
            "StorageAreaPlugin": None,
            "StorageCompression": bool(config.get("StorageCompression", False)),
            "StoreMD5ForAttachments": bool(config.get("StoreMD5ForAttachments", True)),
            "ThirdPartyPatches": [],
            "ThirdPartyVersions": third_party,
            "UserMetadata": {name: int(number) for name, number in
                             (config.get("UserMetadata") or {}).items()},
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
