"""A DICOM data set from Orthanc's JSON form (ParsedDicomFile::CreateFromJson):
``{"PatientName": "X", "0010,0020": "Y", "SomeSequence": [{...}]}``.

The character set is the one SpecificCharacterSet names in the JSON, else
the DefaultEncoding; it is written into the data set, as Orthanc's
SetEncoding does.  Values become elements as modifications build them
(orthancd.modification.values)."""
import json

from pydicom.dataset import Dataset

from orthancd.dicom import charsets
from orthancd.errors import ErrorCode, OrthancError
from orthancd.modification.dataset import EditedFile
from orthancd.modification.embedding import embed
from orthancd.modification.paths import parse_tag
from orthancd.modification.values import Encoding, json_element

SPECIFIC_CHARACTER_SET = 0x00080005
PIXEL_DATA = 0x7FE00010
ENCAPSULATED_DOCUMENT = 0x00420011

# Orthanc's GetDicomSpecificCharacterSet: the term written for an encoding.
SPECIFIC_CHARACTER_SETS = {
    "Ascii": "ISO_IR 6", "Utf8": "ISO_IR 192", "Latin1": "ISO_IR 100", "Latin2": "ISO_IR 101",
    "Latin3": "ISO_IR 109", "Latin4": "ISO_IR 110", "Latin5": "ISO_IR 148",
    "Cyrillic": "ISO_IR 144", "Arabic": "ISO_IR 127", "Greek": "ISO_IR 126",
    "Hebrew": "ISO_IR 138", "Japanese": "ISO_IR 13", "Chinese": "GB18030",
    "Thai": "ISO_IR 166", "Korean": "ISO 2022 IR 149", "JapaneseKanji": "ISO 2022 IR 87",
    "SimplifiedChinese": "ISO 2022 IR 58",
}


def encoding_of_json(body, default_encoding):
    """FromDcmtkBridge::ExtractEncoding."""
    for name, value in body.items():
        if parse_tag(name) != SPECIFIC_CHARACTER_SET:
            continue
        if not isinstance(value, str) or (value and charsets.encoding_of_term(value) is None):
            raise OrthancError(ErrorCode.BadRequest,
                               "Unknown encoding while creating DICOM from JSON: "
                               + json.dumps(value))
        if value:
            return charsets.encoding_of_term(value)
    return default_encoding


def dataset_from_json(body, default_encoding="Latin1", private_creator="",
                      decode_data_uri_scheme=False):
    """A Dataset (implicit VR little endian elements, as Orthanc's in-memory
    files) from a JSON object of tags."""
    if not isinstance(body, dict):
        raise OrthancError(ErrorCode.BadParameterType)
    encoding_name = encoding_of_json(body, default_encoding)
    encoding = Encoding(True, True, encoding_name)
    dataset = Dataset()
    dataset.set_original_encoding(True, True, None)
    term = SPECIFIC_CHARACTER_SETS.get(encoding_name)
    if term is not None:
        dataset[SPECIFIC_CHARACTER_SET] = json_element(SPECIFIC_CHARACTER_SET, term, encoding,
                                                       private_creator)
    for name, value in body.items():
        tag = parse_tag(name)
        if tag in (PIXEL_DATA, ENCAPSULATED_DOCUMENT):
            # A data URI: raw pixels, a PDF or a 3D model.
            if not isinstance(value, str) or not embed(EditedFile(dataset, default_encoding),
                                                      value, encoding):
                raise OrthancError(ErrorCode.BadRequest if not isinstance(value, str)
                                   else ErrorCode.BadFileFormat)
            continue
        if tag == SPECIFIC_CHARACTER_SET or tag in dataset:
            continue  # Orthanc inserts each tag only if absent
        dataset[tag] = json_element(tag, value, encoding, private_creator,
                                    decode_data_uri_scheme)
    return dataset
