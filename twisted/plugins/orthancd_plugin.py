from twisted.application.service import ServiceMaker

orthancd = ServiceMaker(
    "orthancd",
    "orthancd.tap",
    "An Orthanc-compatible DICOM server (REST API and DICOM network service)",
    "orthancd",
)
