"""orthancd: an Orthanc-compatible DICOM server on Twisted."""
__version__ = "0.1.0"
ORTHANC_API_VERSION = "1.13.0"

# Before any orthancd module imports pydicom (see the module's docstring).
from orthancd import pydicom_import  # noqa: E402,F401
