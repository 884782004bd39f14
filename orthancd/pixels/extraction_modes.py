"""Orthanc's extraction modes of a frame, one image route each
(/instances/{id}/preview, image-uint8, image-uint16, image-int16).

Apart from orthancd.pixels.processing, which applies them with numpy, so
that the routes can be made without numpy (orthancd.lazy_modules).
"""
import enum


class ExtractionMode(enum.Enum):
    Preview = "preview"
    UInt8 = "image-uint8"
    UInt16 = "image-uint16"
    Int16 = "image-int16"
