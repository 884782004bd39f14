"""orthancd: an Orthanc-compatible DICOM server on Twisted."""
__version__ = "0.1.0"
ORTHANC_API_VERSION = "1.13.0"
