"""Decoding what clients upload to POST /instances, as Orthanc 1.13.0 does.

An upload is a DICOM file, a zip archive of them, a gzip-compressed DICOM
file, or an HTML form (multipart/form-data) whose parts are each one of
those.  These modules turn such bodies into the DICOM payloads the ingest
path stores, with bounded memory: whatever is inflated goes to a spool file
once it outgrows a few megabytes, and Orthanc's size limits are enforced
while inflating, not after.  Nothing here knows HTTP.
"""
