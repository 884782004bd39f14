"""Pixel data: decoding DICOM frames as Orthanc 1.13.0 decodes them, and
turning them into what its REST API answers (previews, rendered frames,
PNG/PAM/JPEG, numpy arrays, Matlab text).

Knows nothing of HTTP.  Layout:

  image.py        pixel formats and the decoded image (a numpy array)
  information.py  the image module of a dataset, read with Orthanc's rules
  frames.py       frame count, raw frames (fragments), PDF, PMSCT_RLE1
  codecs.py       the compressed transfer syntaxes, through the field's decoders
  decoding.py     one frame of a dataset -> Image, with Orthanc's errors
  processing.py   Orthanc's extraction modes, stretching, windowing, resizing
  encoders.py     PNG, JPEG, PAM, numpy/npz, Matlab
  parsed_files.py a bounded cache of parsed files (Orthanc's DicomParserCacheSize)
  extraction.py   the operations the REST API calls, from parsed file to answer
"""
