"""The refusal of a file that is not DICOM as Orthanc reads it.

Apart from orthancd.dicom.reading, which raises it, so that the modules
that catch it need not import pydicom (orthancd.lazy_modules).
"""


class DicomFormatError(Exception):
    """The payload is not a DICOM file Orthanc would store ('Bad file format')."""

    def __init__(self, details):
        super().__init__(details)
        self.details = details


def invalid_file_details(size):
    return "Cannot parse an invalid DICOM file (size: %d bytes)" % size
