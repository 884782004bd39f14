"""C-FIND SCP for the Patient Root and Study Root Query/Retrieve models,
answering like Orthanc 1.13.0's OrthancFindRequestHandler.

Matching goes through orthancd.find, the same lookup as POST /tools/find,
with DICOM's case rules (case-sensitive except PN, which follows
CaseSensitivePN).  Each answer carries RetrieveAETitle, the echoed
QueryRetrieveLevel and every requested attribute: taken from the main DICOM
tags of the level and above, or from one instance's file when the query
names a tag that is not a main tag or asks for a sequence; computed
attributes (NumberOfStudyRelatedSeries, ModalitiesInStudy...) come from the
index.  A requested sequence is copied from the file, or answered empty.
Group lengths and file meta elements of the identifier are ignored.
Answers go out as pending responses as they are found; a C-CANCEL stops
them.  LimitFindResults / LimitFindInstances cut the answers short, which
Orthanc 1.13.0 reports as a success all the same.

Answer values are written as Orthanc's DCMTK does (``putString``): the
text as is, in the answer's character set, padded to an even length; only
numbers in binary VRs are converted.
"""
import logging
import struct

from pydicom.charset import convert_encodings
from pydicom.datadict import dictionary_VR
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.tag import Tag
from pynetdicom.dsutils import encode

from orthancd.automation import find_filters
from orthancd.dicom.charsets import _TERMS, ENCODING_CODECS
from orthancd.dicom.elements import dataset_encoding, iter_elements
from orthancd.errors import OrthancError
from orthancd.find import computed, parse_dicom_query
from orthancd.find import tags as T
from orthancd.find.lookup import database_limit, find_resources, read_instance_tags, representative_instance
from orthancd.ids import ResourceLevel
from orthancd.net import access, dimse
from orthancd.net.scp_query_retrieve import UNABLE_TO_PROCESS, IdentifierService
from orthancd.net.transfer_syntaxes import decode_in, is_implicit_vr, is_little_endian

log = logging.getLogger(__name__)

PATIENT_ROOT_FIND = "1.2.840.10008.5.1.4.1.2.1.1"
STUDY_ROOT_FIND = "1.2.840.10008.5.1.4.1.2.2.1"

_LEVELS = {"PATIENT": ResourceLevel.PATIENT, "STUDY": ResourceLevel.STUDY,
           "SERIES": ResourceLevel.SERIES, "IMAGE": ResourceLevel.INSTANCE,
           "INSTANCE": ResourceLevel.INSTANCE}
# Tags that never force reading a file (see LookupVisitor::IsDicomAsJsonNeeded).
_SPECIAL = T.COMPUTED_TAGS | {T.SPECIFIC_CHARACTER_SET, T.QUERY_RETRIEVE_LEVEL}
# Binary number VRs: struct format of one value.
_NUMBER_FORMATS = {"US": "H", "SS": "h", "UL": "I", "SL": "i", "FL": "f", "FD": "d",
                   "UV": "Q", "SV": "q"}
_BINARY_VRS = frozenset(("UN", "OB", "OW", "OF", "OD", "OL", "OV"))
PIXEL_DATA = 0x7FE00010


class AbortAssociation(Exception):
    """Orthanc gives no answer to this request and the association ends."""


class UnanswerableTag(Exception):
    """Orthanc fails the whole request (a private sequence asked for)."""


def _is_private_data(tag):
    return (tag >> 16) % 2 == 1 and (tag & 0xFFFF) >= 0x1000


def _is_private_creator(tag):
    return (tag >> 16) % 2 == 1 and 0x0010 <= (tag & 0xFFFF) <= 0x00FF


def _term_of(encoding):
    for term, name in _TERMS.items():
        if name == encoding and "2022" not in term:
            return term
    return "ISO_IR 100"


class FindQuery:
    """A decoded C-FIND identifier: (tag, value) pairs, sequences to return."""

    def __init__(self, dataset, default_encoding):
        encoding = dataset_encoding(dataset, default_encoding)
        self.elements = []
        self.sequences = []
        for element in iter_elements(dataset, encoding):
            group, number = element.tag >> 16, element.tag & 0xFFFF
            if number == 0 or group == 0x0002:
                continue  # group lengths and file meta: not part of a query
            if element.tag == PIXEL_DATA:
                # Orthanc 1.13.0 fails to send the answers of such a query
                # and the association ends.
                raise AbortAssociation("C-FIND identifier with PixelData")
            if element.is_sequence:
                self.sequences.append(element.tag)
            else:
                # Trailing padding is already gone; leading spaces count.
                self.elements.append((element.tag, element.value))

    def read_level(self):
        """Read the query level (once the Lua filter had its say on the
        elements); ValueError with Orthanc's reason when it is wrong."""
        values = dict(self.elements)
        level = (values.get(T.QUERY_RETRIEVE_LEVEL) or "").strip().upper()
        if not level:
            raise ValueError("C-FIND request without the tag 0008,0052 (QueryRetrieveLevel)")
        if level not in _LEVELS:
            raise ValueError("Unknown QueryRetrieveLevel %r" % level)
        self.level_text = values[T.QUERY_RETRIEVE_LEVEL]
        self.level = _LEVELS[level]
        self.tags = [tag for tag, _ in self.elements]
        if self.level is ResourceLevel.INSTANCE and T.SOP_CLASSES_IN_STUDY in self.tags:
            # Orthanc 1.13.0: "Parameter out of range" at the instance level.
            raise ValueError("SOPClassesInStudy cannot be asked at the instance level")

    def needs_file(self):
        return bool(self.sequences) or any(
            not T.is_main_tag(tag) for tag in self.tags if tag not in _SPECIAL)


def _vr_of(tag):
    """The VR Orthanc gives an answer element: DCMTK's dictionary one, UN
    for private tags (private creators included)."""
    if (tag >> 16) % 2 == 1:
        return "UN"
    try:
        vr = dictionary_VR(tag)
    except KeyError:
        return "UN"
    return vr.split(" or ")[0] if " or " in vr else vr


def _representable(value, encoding):
    """Orthanc drops the characters the answer's character set cannot hold."""
    codec = ENCODING_CODECS.get(encoding) or "ascii"
    return value.encode(codec, "ignore")


def _number_bytes(value, vr, little):
    """DCMTK's putString on a binary number VR: each value parsed, or
    nothing at all when one of them is not a number."""
    if not value:
        return b""
    kind = _NUMBER_FORMATS[vr]
    try:
        numbers = [float(v) if kind in "fd" else int(v) for v in value.split("\\")]
        return struct.pack(("<" if little else ">") + kind * len(numbers), *numbers)
    except (ValueError, struct.error):
        return b""


def _element(tag, value, encoding, little):
    """The answer element for ``tag`` holding the string ``value``."""
    vr = _vr_of(tag)
    if vr == "SQ":
        vr = "UN"
    if vr in _NUMBER_FORMATS:
        data = _number_bytes(value, vr, little)
    elif vr == "UN":
        # Orthanc puts the text of unknown (private) tags as is.
        data = _representable(value or "", encoding)
        if len(data) % 2:
            data += b"\0"
    elif vr in _BINARY_VRS or vr == "AT":
        data = b""
    else:
        data = _representable(value or "", encoding)
        if len(data) % 2:
            data += b"\0" if vr == "UI" else b" "
    return RawDataElement(Tag(tag), vr, len(data), data, 0, False, little)


class FindService(IdentifierService):
    request_type = access.FIND
    command_fields = (dimse.C_FIND_RQ,)
    name = "C-FIND"

    def __init__(self, server):
        self.server = server

    def abstract_syntaxes(self, settings):
        return (PATIENT_ROOT_FIND, STUDY_ROOT_FIND)

    # -- answering ---------------------------------------------------------

    def _configuration(self, name, default):
        return self.server.configuration.get(name, default)

    async def serve(self, request, raw):
        done = self.server.metrics.timed("orthanc_find_scp_duration_ms")
        try:
            await self._serve(request, raw)
        finally:
            done()

    async def _serve(self, request, raw):
        syntax = request.context.transfer_syntax
        try:
            dataset = decode_in(raw, syntax)
            query = FindQuery(dataset, self.server.default_encoding)
            filtered = await find_filters.filter_incoming(
                self.server, query.elements, request.association)
            if filtered is not None:
                query.elements = filtered
            query.read_level()
            constraints = parse_dicom_query(
                self._matched_elements(query),
                bool(self._configuration("CaseSensitivePN", False)))
        except AbortAssociation as exc:
            log.warning("C-FIND from %s: %s", request.association.remote_aet, exc)
            request.association.abort()
            return
        except (ValueError, OrthancError, Exception) as exc:
            log.warning("C-FIND from %s refused: %s", request.association.remote_aet, exc)
            request.respond(UNABLE_TO_PROCESS)
            return
        limit = database_limit(self.server.configuration, query.level)
        try:
            outcome = await find_resources(self.server, query.level, constraints,
                                           limit=limit, db_limit=limit)
        except Exception as exc:
            log.warning("C-FIND failed: %s", exc)
            request.respond(UNABLE_TO_PROCESS)
            return
        encoding = self.server.default_encoding
        implicit, little = is_implicit_vr(syntax), is_little_endian(syntax)
        # All answers are built before the first is sent, as Orthanc does:
        # a failure on any of them fails the whole request.
        answers = []
        for match in outcome.matches:
            if request.cancelled:
                request.respond(dimse.CANCEL)
                return
            try:
                answer = await self._answer_dataset(query, match, encoding, implicit, little)
            except UnanswerableTag as exc:
                log.warning("C-FIND from %s: %s", request.association.remote_aet, exc)
                request.respond(UNABLE_TO_PROCESS)
                return
            except Exception as exc:  # deleted meanwhile, unreadable file...
                log.warning("C-FIND: skipping %s: %s", match.public_id, exc)
                continue
            answers.append(encode(answer, implicit, little))
        for answer in answers:
            if request.cancelled:
                request.respond(dimse.CANCEL)
                return
            if not request.respond(dimse.PENDING, answer, final=False):
                return  # the association is gone
        if request.cancelled:
            request.respond(dimse.CANCEL)
            return
        if not outcome.complete:
            log.info("C-FIND: answers cut at the configured limit")
        request.respond(dimse.SUCCESS)

    @staticmethod
    def _matched_elements(query):
        """The elements that constrain the answers: private creators never
        do in Orthanc 1.13.0 (the one Vitrea modalities send, for one)."""
        return [(tag, value) for tag, value in query.elements if not _is_private_creator(tag)]

    async def _answer_dataset(self, query, match, encoding, implicit=False, little=True):
        source = match.main_tags
        file_dataset = None
        if query.needs_file():
            instance_id = representative_instance(self.server.index, match.public_id, query.level)
            if instance_id is not None:
                source, file_dataset = await read_instance_tags(self.server, instance_id)
        values = {T.RETRIEVE_AE_TITLE: self._configuration("DicomAet", "ORTHANC")}
        for tag, value in query.elements:
            if tag == T.QUERY_RETRIEVE_LEVEL:
                values[tag] = query.level_text
            elif tag != T.SPECIFIC_CHARACTER_SET:
                found = source.get(tag)
                values[tag] = found if found is not None else ""
        values.update(computed.compute_tags(self.server.index, query.level, match.public_id,
                                            set(query.tags)))
        if file_dataset is not None:
            for tag in list(values) + query.sequences:
                if _is_private_data(tag) and tag in file_dataset \
                        and file_dataset[tag].VR == "SQ":
                    raise UnanswerableTag("private sequence %08x asked for" % tag)
        ds = Dataset()
        ds.SpecificCharacterSet = _term_of(encoding)
        # Backwards: pydicom converts a private creator already present when
        # a private element of its block is added (UN would become LO).
        for tag in sorted(values, reverse=True):
            ds[tag] = _element(tag, values[tag], encoding, little)
        for tag in query.sequences:
            found = file_dataset.get(tag) if file_dataset is not None else None
            if found is not None and found.VR == "SQ" and len(found.value):
                ds[tag] = found
            else:
                ds.add_new(tag, "SQ", Sequence())
        # Written as built: pydicom would otherwise convert (and validate)
        # every raw element, and turn UN private creators into LO.
        ds.set_original_encoding(implicit, little,
                                 convert_encodings([ds.SpecificCharacterSet]))
        return ds
