"""Creating DICOM instances from JSON and data URIs (POST /tools/create-dicom):

  images.py        PNG / JPEG / PAM -> pixels, with Orthanc's readers' limits
  create_dicom.py  the request -> data sets -> stored instances
"""
