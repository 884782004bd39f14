"""C-FIND SCP for the Patient Root and Study Root Query/Retrieve models,
answering like Orthanc 1.10.1's OrthancFindRequestHandler.

Matching goes through orthancd.find, the same lookup as POST /tools/find,
with DICOM's case rules (case-sensitive except PN, which follows
CaseSensitivePN).  Each answer carries RetrieveAETitle, the echoed
QueryRetrieveLevel and every requested attribute: taken from the main DICOM
tags of the level and above, or from one instance's file when the query
names a tag that is not a main tag or asks for a sequence; computed
attributes (NumberOfStudyRelatedSeries, ModalitiesInStudy...) come from the
index.  Answers go out as pending responses as they are found; a C-CANCEL
stops them.  LimitFindResults / LimitFindInstances (Orthanc's names for
the FindMaximum* limits) cut the answer short,
which Orthanc reports with the final status 0xFE00.
"""
import logging

from pydicom.datadict import dictionary_VR
from pydicom.dataset import Dataset
from pynetdicom.dsutils import encode

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
_NUMERIC_VRS = {"US": int, "SS": int, "UL": int, "SL": int, "FL": float, "FD": float,
                "UV": int, "SV": int}


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
            if element.is_sequence:
                self.sequences.append(element.tag)
            else:
                value = element.value
                self.elements.append((element.tag, value.strip() if value else value))
        values = dict(self.elements)
        level = (values.get(T.QUERY_RETRIEVE_LEVEL) or "").strip().upper()
        if not level:
            raise ValueError("C-FIND request without the tag 0008,0052 (QueryRetrieveLevel)")
        if level not in _LEVELS:
            raise ValueError("Unknown QueryRetrieveLevel %r" % level)
        self.level_text = values[T.QUERY_RETRIEVE_LEVEL]
        self.level = _LEVELS[level]
        self.tags = [tag for tag, _ in self.elements]

    def needs_file(self):
        return bool(self.sequences) or any(
            not T.is_main_tag(tag) for tag in self.tags if tag not in _SPECIAL)


def _vr_of(tag):
    try:
        vr = dictionary_VR(tag)
    except KeyError:
        return "UN"
    return vr.split(" or ")[0] if " or " in vr else vr


def _representable(value, encoding):
    """Orthanc drops the characters the answer's character set cannot hold
    (pydicom would write '?')."""
    codec = ENCODING_CODECS.get(encoding) or "ascii"
    return value.encode(codec, "ignore").decode(codec)


def _set(ds, tag, value, encoding):
    vr = _vr_of(tag)
    if isinstance(value, str):
        value = _representable(value, encoding)
    if vr == "SQ":
        vr = "UN"
    if vr in _NUMERIC_VRS:
        try:
            value = [_NUMERIC_VRS[vr](v) for v in value.split("\\")] if value else None
        except ValueError:
            value = None
        if isinstance(value, list) and len(value) == 1:
            value = value[0]
    elif vr in ("UN", "OB", "OW", "OF", "OD", "OL", "OV"):
        value = value.encode("utf-8") if value else b""
    elif value and "\\" in value and vr not in ("LT", "ST", "UT", "UR"):
        value = value.split("\\")
    ds.add_new(tag, vr, value)


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
        syntax = request.context.transfer_syntax
        try:
            dataset = decode_in(raw, syntax)
            query = FindQuery(dataset, self.server.default_encoding)
            constraints = parse_dicom_query(
                query.elements, bool(self._configuration("CaseSensitivePN", False)))
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
        for match in outcome.matches:
            if request.cancelled:
                request.respond(dimse.CANCEL)
                return
            try:
                answer = await self._answer_dataset(query, match, encoding)
            except Exception as exc:  # deleted meanwhile, unreadable file...
                log.warning("C-FIND: skipping %s: %s", match.public_id, exc)
                continue
            if not request.respond(dimse.PENDING, encode(answer, implicit, little), final=False):
                return  # the association is gone
        if request.cancelled:
            request.respond(dimse.CANCEL)
        elif outcome.complete:
            request.respond(dimse.SUCCESS)
        else:
            log.warning("Too many results for an incoming C-FIND query")
            request.respond(dimse.CANCEL)

    async def _answer_dataset(self, query, match, encoding):
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
        ds = Dataset()
        ds.SpecificCharacterSet = _term_of(encoding)
        for tag in sorted(values):
            _set(ds, tag, values[tag], encoding)
        if file_dataset is not None:
            for tag in query.sequences:
                if tag in file_dataset and file_dataset[tag].VR == "SQ":
                    ds[tag] = file_dataset[tag]
        return ds
