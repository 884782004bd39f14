"""Changing the transfer syntax of DICOM files, as Orthanc 1.13.0's
built-in (DCMTK) transcoder does: the same targets, the same order of
preference, the same refusals, the same attributes written; and beyond it,
RLE and JPEG 2000 lossless targets and JPEG 2000 sources.

Knows nothing of HTTP nor of jobs.  Layout:

  syntaxes.py    the transfer syntaxes Orthanc knows, decodes and writes
  native.py      the stored pixel values of every frame, as DCMTK
                 decompresses them (JPEG colours converted to RGB, ...),
                 decoded by orthancd.pixels' codecs
  encoders.py    one frame -> one codestream (JPEG, JPEG-LS: imagecodecs;
                 RLE, JPEG 2000: pydicom's encoders)
  attributes.py  what DCMTK writes in the data set when compressing
  transcoder.py  transcode(file bytes, allowed syntaxes) -> Transcoded or None
  service.py     the transcoder of a server: its lossy quality, run in the
                 pixels pool
  ingest.py      IngestTranscoding
"""
