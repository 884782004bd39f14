"""POST /tools/create-dicom as Orthanc 1.13.0 (OrthancRestAnonymizeModify's
CreateDicom, V2 with "Tags", V1 without): a new instance, or a series of
them when "Content" is a list, made from JSON tags, the modules of a
parent resource, and a data URI (an image, a PDF, an STL/OBJ/MTL model).

The request is read on the reactor thread in Orthanc's order (so that a
request with several mistakes gets Orthanc's error); the data sets are
built and written (images decoded, files serialized) in the pixels pool;
each file then goes through the ordinary ingest path.
"""
import datetime
import uuid

from pydicom.dataset import Dataset

from orthancd.creation.spool import PixelSpool
from orthancd.dicom import charsets
from orthancd.dicom.from_json import SPECIFIC_CHARACTER_SETS
from orthancd.dicom.json_tags import dataset_to_json
from orthancd.dicom.modules import MODULE_TAGS
from orthancd.dicom.uids import generate_uid
from orthancd.errors import ErrorCode, OrthancError
from orthancd.find.lookup import instances_in_creation_order
from orthancd.ids import ResourceLevel
from orthancd.index.base import UnknownResource
from orthancd.modification import embedding, values
from orthancd.modification.dataset import EditedFile
from orthancd.modification.paths import parse_tag
from orthancd.pixels.image import not_implemented_at
from orthancd.storage.streaming import ReceivedFile
from orthancd.uploads.spool import discard_payload

EXPLICIT_LITTLE = "1.2.840.10008.1.2.1"

SPECIFIC_CHARACTER_SET = 0x00080005
PATIENT_ID = 0x00100020
STUDY_INSTANCE_UID = 0x0020000D
SERIES_INSTANCE_UID = 0x0020000E
SOP_INSTANCE_UID = 0x00080018
PIXEL_DATA = 0x7FE00010
ACQUISITION_DATE, ACQUISITION_TIME = 0x00080022, 0x00080032
CONTENT_DATE, CONTENT_TIME = 0x00080023, 0x00080033
INSTANCE_CREATION_DATE, INSTANCE_CREATION_TIME = 0x00080012, 0x00080013
SERIES_DATE, SERIES_TIME = 0x00080021, 0x00080031
STUDY_DATE, STUDY_TIME = 0x00080020, 0x00080030
IMAGES_IN_ACQUISITION = 0x00201002
NUMBER_OF_TEMPORAL_POSITIONS = 0x00200105
INSTANCE_NUMBER = 0x00200013
IMAGE_INDEX = 0x00541330

# Tags the request may set although the new file has them already.
OVERRIDABLE = frozenset((PATIENT_ID, ACQUISITION_DATE, ACQUISITION_TIME, CONTENT_DATE,
                         CONTENT_TIME, INSTANCE_CREATION_DATE, INSTANCE_CREATION_TIME,
                         SERIES_DATE, SERIES_TIME, STUDY_DATE, STUDY_TIME))

# DicomTag::AddTagsForModule of 1.13.0, beyond what /module lists.
_MODULES = {
    ResourceLevel.PATIENT: MODULE_TAGS[ResourceLevel.PATIENT] | {
        0x00102201, 0x00102202, 0x00102292, 0x00102293, 0x00102294, 0x00102297,
        0x00102298, 0x00102299, 0x00100024},
    ResourceLevel.STUDY: MODULE_TAGS[ResourceLevel.STUDY] | {0x00080051, 0x00321034,
                                                             0x00401012},
    ResourceLevel.SERIES: MODULE_TAGS[ResourceLevel.SERIES] | {0x0008103F},
}


def _bad_request():
    return OrthancError(ErrorCode.BadRequest)


class NewFile:
    """One data set being created (ParsedDicomFile).  ``spool``: where a
    large image goes (orthancd.creation.spool), None to keep it in memory."""

    def __init__(self, encoding_name, with_identifiers=True, spool=None):
        self.spool = spool
        dataset = Dataset()
        dataset.set_original_encoding(True, True, None)
        self.encoding_name = encoding_name
        self.edited = EditedFile(dataset, encoding_name)
        if with_identifiers:
            self.put(PATIENT_ID, str(uuid.uuid4()))
            self.put(STUDY_INSTANCE_UID, generate_uid(ResourceLevel.STUDY))
            self.put(SERIES_INSTANCE_UID, generate_uid(ResourceLevel.SERIES))
            self.put(SOP_INSTANCE_UID, generate_uid(ResourceLevel.INSTANCE))

    @property
    def encoding(self):
        return values.Encoding(True, True, self.encoding_name)

    def set_encoding(self, name):
        """ParsedDicomFile::SetEncoding: the term written in (0008,0005)."""
        self.encoding_name = name
        self.edited.default_encoding = name
        term = SPECIFIC_CHARACTER_SETS.get(name)
        if term is not None:
            self.put(SPECIFIC_CHARACTER_SET, term)

    def put(self, tag, text):
        """ReplacePlainString."""
        self.edited.put(values.string_element(tag, text, self.encoding, "", False))

    def has(self, tag):
        return self.edited.has(tag)

    def replace_json(self, tag, value, decode_binary, private_creator):
        self.edited.put(values.json_element(tag, value, self.encoding, private_creator,
                                            decode_binary))

    def embed(self, uri):
        """ParsedDicomFile::EmbedContent."""
        if not embedding.embed(self.edited, uri, self.encoding, self.spool):
            raise OrthancError(ErrorCode.BadFileFormat)

    def encapsulate(self, uri):
        """ParsedDicomFile::EncapsulatePixelData; the syntax to write in."""
        return embedding.encapsulate_pixel_data(self.edited, uri, self.encoding)

    def clone(self):
        """Clone(false): the same tags, a new SOP Instance UID."""
        copy = NewFile(self.encoding_name, with_identifiers=False, spool=self.spool)
        copy.edited.dataset = Dataset(self.edited.dataset)
        copy.edited.dataset.set_original_encoding(True, True, None)
        copy.put(SOP_INSTANCE_UID, generate_uid(ResourceLevel.INSTANCE))
        return copy

    def serialize(self, transfer_syntax=EXPLICIT_LITTLE):
        """The file's bytes, or the ReceivedFile it was written to when its
        image is held in the spool."""
        if self.spool is not None and self.spool.holds(self.edited):
            return self.spool.write(self.edited, transfer_syntax)
        return self.edited.serialize(transfer_syntax)


def inject_tags(new_file, tags, decode_binary, private_creator, force):
    """InjectTags: user tags, refused when they would override what the
    file has already (unless Force), pixel data only through Content."""
    if not isinstance(tags, dict):
        raise OrthancError(ErrorCode.BadRequest, "Tags field is not an array")
    for name, value in tags.items():
        tag = parse_tag(name)
        if tag == SPECIFIC_CHARACTER_SET:
            continue
        if not force and tag not in OVERRIDABLE and new_file.has(tag):
            raise OrthancError(ErrorCode.CreateDicomOverrideTag, name)
        if tag == PIXEL_DATA:
            raise OrthancError(ErrorCode.CreateDicomUseContent)
        new_file.replace_json(tag, value, decode_binary, private_creator)


def _now():
    now = datetime.datetime.now(datetime.timezone.utc)
    return now.strftime("%Y%m%d"), now.strftime("%H%M%S") + ".000000"


class Creator:
    """The create-dicom operation of a server."""

    def __init__(self, server):
        self.server = server

    def _default_encoding(self):
        return self.server.default_encoding

    def _private_creator(self):
        return self.server.configuration.get("DefaultPrivateCreator", "") or ""

    async def create(self, body, origin):
        """The JSON answer of the request ``body`` (a dict)."""
        spool = PixelSpool(self.server.storage.temporary_directory())
        try:
            if "Tags" in body:
                return await self._create_v2(body, origin, spool)
            return await self._create_v1(body, origin, spool)
        finally:
            spool.discard()

    # -- V1: {"PatientName": "...", "PixelData": "data:..."} --

    async def _create_v1(self, body, origin, spool):
        for name, value in body.items():
            if not isinstance(value, str):
                raise OrthancError(ErrorCode.CreateDicomNotString)
        encoding = self._default_encoding()

        def build():
            new_file = NewFile(encoding, spool=spool)
            for name, value in body.items():
                tag = parse_tag(name)
                if tag == PIXEL_DATA:
                    new_file.embed(value)
                else:
                    new_file.put(tag, value)
            return new_file.serialize()
        data = await self.server.pixel_pool.run(build)
        return await self._store_answer(data, origin)

    # -- V2 --

    async def _create_v2(self, body, origin, spool):
        server = self.server
        tags = body["Tags"]
        if not isinstance(tags, dict):
            raise _bad_request()
        encoding = self._default_encoding()
        if "SpecificCharacterSet" in tags:
            term = tags["SpecificCharacterSet"]
            found = charsets.encoding_of_term(term) if isinstance(term, str) else None
            if found is None:
                raise OrthancError(ErrorCode.ParameterOutOfRange,
                                   "Unknown specific character set: %s" % term)
            encoding = found
        parent_level = ResourceLevel.INSTANCE
        parent_strings = []
        if "Parent" in body:
            parent = body["Parent"]
            parent_level = self._level_of(parent)
            if parent_level is None:
                raise OrthancError(ErrorCode.CreateDicomBadParent)
            if parent_level is ResourceLevel.INSTANCE:
                raise OrthancError(ErrorCode.CreateDicomParentIsInstance)
            encoding, parent_strings = await self._parent_tags(parent, parent_level, encoding)
        decode_binary = True
        if "InterpretBinaryTags" in body:
            if not isinstance(body["InterpretBinaryTags"], bool):
                raise _bad_request()
            decode_binary = body["InterpretBinaryTags"]
        if "PrivateCreator" in body:
            if not isinstance(body["PrivateCreator"], str):
                raise _bad_request()
            private_creator = body["PrivateCreator"]
        else:
            private_creator = self._private_creator()
        force = False
        if "Force" in body:
            if not isinstance(body["Force"], bool):
                raise _bad_request()
            force = body["Force"]
        content = body.get("Content")
        if "Content" in body and not isinstance(content, (str, list)):
            raise OrthancError(ErrorCode.CreateDicomUseDataUriScheme)
        encapsulated = bool(body.get("Encapsulate", False))
        if encapsulated and isinstance(content, list) and content:
            raise not_implemented_at("OrthancRestAnonymizeModify.cpp:1026")
        date, time = _now()

        def base():
            new_file = NewFile(encoding, spool=spool)
            new_file.set_encoding(encoding)
            for tag, text in parent_strings:
                new_file.put(tag, text)
            for tag, text in ((ACQUISITION_DATE, date), (ACQUISITION_TIME, time),
                              (CONTENT_DATE, date), (CONTENT_TIME, time),
                              (INSTANCE_CREATION_DATE, date), (INSTANCE_CREATION_TIME, time)):
                new_file.put(tag, text)
            if parent_level in (ResourceLevel.PATIENT, ResourceLevel.STUDY,
                                ResourceLevel.INSTANCE):
                new_file.put(SERIES_DATE, date)
                new_file.put(SERIES_TIME, time)
            if parent_level in (ResourceLevel.PATIENT, ResourceLevel.INSTANCE):
                new_file.put(STUDY_DATE, date)
                new_file.put(STUDY_TIME, time)
            inject_tags(new_file, tags, decode_binary, private_creator, force)
            return new_file

        if isinstance(content, list) and content:
            return await self._create_series(base, content, decode_binary, private_creator,
                                             force, origin)

        def build():
            new_file = base()
            if isinstance(content, str) and encapsulated:
                return new_file.serialize(new_file.encapsulate(content))
            if isinstance(content, str):
                new_file.embed(content)
            return new_file.serialize()
        data = await server.pixel_pool.run(build)
        return await self._store_answer(data, origin)

    def _level_of(self, public_id):
        if not isinstance(public_id, str):
            return None
        try:
            return self.server.index.get_resource(public_id).level
        except UnknownResource:
            return None

    async def _parent_tags(self, parent, level, encoding):
        """The encoding and the (tag, text) of the parent's modules, from
        one of its instances (null values become empty ones)."""
        index = self.server.index
        siblings = instances_in_creation_order(index, parent, level)
        if not siblings:
            raise OrthancError(ErrorCode.InternalError)
        default = self._default_encoding()
        full = await self.server.render_dataset(
            siblings[0], lambda ds: dataset_to_json(ds, "full", default), True)
        charset = full.get("0008,0005")
        if charset is not None:
            value = charset.get("Value")
            found = charsets.encoding_of_term(value) if isinstance(value, str) else None
            encoding = found or default
        module = set()
        for current in ResourceLevel:
            if current.value <= level.value:
                module |= _MODULES[current]
        strings = []
        for tag in sorted(module):
            entry = full.get("%04x,%04x" % (tag >> 16, tag & 0xFFFF))
            if entry is None:
                continue
            if entry.get("Type") == "Null":
                strings.append((tag, ""))
            elif entry.get("Type") == "String":
                strings.append((tag, entry.get("Value", "")))
        return encoding, strings

    async def _create_series(self, base, content, decode_binary, private_creator, force,
                             origin):
        """CreateSeries: one instance per item of Content; the series goes
        away again when one fails."""
        first = await self.server.pixel_pool.run(base)
        first.put(IMAGES_IN_ACQUISITION, str(len(content)))
        first.put(NUMBER_OF_TEMPORAL_POSITIONS, "1")
        stored = None
        try:
            for number, item in enumerate(content, 1):
                def build(item=item, number=number):
                    new_file = first.clone()
                    payload = item
                    if isinstance(item, dict):
                        if "Content" not in item:
                            raise OrthancError(ErrorCode.CreateDicomNoPayload)
                        payload = item["Content"]
                        if "Tags" in item:
                            inject_tags(new_file, item["Tags"], decode_binary, private_creator,
                                        force)
                    if not isinstance(payload, str):
                        raise OrthancError(ErrorCode.CreateDicomUseDataUriScheme)
                    new_file.embed(payload)
                    new_file.put(INSTANCE_NUMBER, str(number))
                    new_file.put(IMAGE_INDEX, str(number))
                    return new_file.serialize()
                data = await self.server.pixel_pool.run(build)
                outcome = await self._store(data, origin)
                stored = outcome.ids
        except OrthancError:
            if stored is None:
                # Orthanc looks up the parent of no instance at all.
                raise OrthancError(ErrorCode.UnknownResource)
            await self.server.delete_resource(stored[2], ResourceLevel.SERIES)
            raise
        series = stored[2]
        return {"ID": series, "Path": "/series/" + series, "Status": "Success"}

    async def _store(self, data, origin):
        """``data``: the file's bytes, or the spooled file (a ReceivedFile
        the storage area adopts, removed here if it does not)."""
        if isinstance(data, ReceivedFile):
            try:
                outcome = await self.server.ingest.store_file(data, origin)
            finally:
                if not data.moved:
                    await self.server.file_io.run(discard_payload, data)
        else:
            outcome = await self.server.ingest.store(data, origin)
        if outcome.status == "Failure":
            raise OrthancError(ErrorCode.CannotStoreInstance)
        return outcome

    async def _store_answer(self, data, origin):
        outcome = await self._store(data, origin)
        patient, study, series, instance = outcome.ids
        return {"ID": instance, "ParentPatient": patient, "ParentSeries": series,
                "ParentStudy": study, "Path": "/instances/" + instance,
                "Status": outcome.status}
