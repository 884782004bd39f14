"""/tools/*: clock, UID generation, lookup, runtime settings (encoding, DICOM
negotiation, log levels), DICOM conformance, bulk delete."""
import json
import time
import uuid

from orthancd import logs
from orthancd.dicom.main_tags import normalize_for_find
from orthancd.errors import ErrorCode, OrthancError
from orthancd.ids import ResourceLevel
from orthancd.rest.http import (get_argument, json_body, no_answer, render_json,
                                render_text, text_body)

# Orthanc's UID root (DCMTK's), followed by a digit telling the level.
_UID_ROOT = "1.2.276.0.7230010.3.1."
_UID_LEVELS = {level.title.lower(): level for level in ResourceLevel}
_UID_LEVEL_DIGIT = {ResourceLevel.STUDY: "2", ResourceLevel.SERIES: "3",
                    ResourceLevel.INSTANCE: "4"}

# The encodings Orthanc knows, by their configuration names.
ENCODINGS = ("Ascii", "Utf8", "Latin1", "Latin2", "Latin3", "Latin4", "Latin5", "Cyrillic",
             "Windows1251", "Arabic", "Greek", "Hebrew", "Thai", "Japanese", "Chinese",
             "JapaneseKanji", "Korean", "SimplifiedChinese")

_ENCODINGS_BY_UPPER_NAME = {name.upper(): name for name in ENCODINGS}

_LOOKUP_TAGS = (
    (ResourceLevel.PATIENT, 0x00100020, "PatientID"),
    (ResourceLevel.STUDY, 0x0020000D, "StudyInstanceUID"),
    (ResourceLevel.SERIES, 0x0020000E, "SeriesInstanceUID"),
    (ResourceLevel.INSTANCE, 0x00080018, "SOPInstanceUID"),
)


def lookup(index, value):
    """Resources whose PatientID, StudyInstanceUID, SeriesInstanceUID or
    SOPInstanceUID equals ``value``, ignoring case (Orthanc 1.13.0 no longer
    looks at the AccessionNumber).  Orthanc compares the normalized forms
    when normalizing leaves the value as it is, the values themselves
    otherwise."""
    normalized = normalize_for_find(value)
    found = []
    for level, tag, keyword in _LOOKUP_TAGS:
        for public_id in index.lookup_identifier(level, tag, normalized):
            stored = index.get_resource(public_id, level).main_tags.get(keyword, "")
            if normalized == value:
                if normalize_for_find(stored) != normalized:
                    continue  # the index keeps a prefix of long values
            elif stored.lower() != value.lower():
                continue
            entry = {"ID": public_id, "Path": "/%s/%s" % (level.plural, public_id),
                     "Type": level.title}
            if entry not in found:
                found.append(entry)
    return found


def install(app, server):

    @app.route("/tools/now", methods=["GET"])
    def now(request):
        return render_text(request, time.strftime("%Y%m%dT%H%M%S", time.gmtime()))

    @app.route("/tools/now-local", methods=["GET"])
    def now_local(request):
        return render_text(request, time.strftime("%Y%m%dT%H%M%S", time.localtime()))

    @app.route("/tools/generate-uid", methods=["GET"])
    def generate(request):
        level = _UID_LEVELS.get(get_argument(request, "level"))
        if level is None:
            raise no_answer(request)  # Orthanc leaves a missing or bad level unanswered
        if level is ResourceLevel.PATIENT:
            return render_text(request, str(uuid.uuid4()))
        from pydicom.uid import generate_uid
        return render_text(request, generate_uid(prefix=_UID_ROOT + _UID_LEVEL_DIGIT[level] + "."))

    @app.route("/tools/lookup", methods=["POST"])
    def tools_lookup(request):
        return render_json(request, lookup(server.index, text_body(request)))

    @app.route("/tools/default-encoding", methods=["GET"])
    def get_default_encoding(request):
        return render_text(request, server.default_encoding)

    @app.route("/tools/default-encoding", methods=["PUT"])
    def set_default_encoding(request):
        # Any case, but no surrounding space (as Orthanc).
        value = _ENCODINGS_BY_UPPER_NAME.get(text_body(request).upper())
        if value is None:
            raise OrthancError(ErrorCode.ParameterOutOfRange)
        server.set_default_encoding(value)
        return render_text(request, value)

    @app.route("/tools/accepted-transfer-syntaxes", methods=["GET"])
    def get_transfer_syntaxes(request):
        return render_json(request, server.accepted_transfer_syntaxes)

    @app.route("/tools/accepted-transfer-syntaxes", methods=["PUT"])
    def set_transfer_syntaxes(request):
        # A JSON string or a JSON list of UIDs, wildcards allowed.  Like
        # Orthanc's lenient JSON reader, the first JSON value counts and a
        # body that has none means no pattern at all.
        try:
            patterns, _ = json.JSONDecoder().raw_decode(text_body(request).lstrip())
        except ValueError:
            patterns = []
        if isinstance(patterns, str):
            patterns = [patterns]
        if not isinstance(patterns, list) or not all(isinstance(p, str) for p in patterns):
            raise OrthancError(ErrorCode.BadFileFormat)
        return render_json(request, server.set_accepted_transfer_syntaxes(patterns))

    @app.route("/tools/unknown-sop-class-accepted", methods=["GET"])
    def get_unknown_sop(request):
        return render_text(request, "1" if server.unknown_sop_class_accepted else "0")

    @app.route("/tools/unknown-sop-class-accepted", methods=["PUT"])
    def set_unknown_sop(request):
        value = text_body(request).strip()
        if value not in ("0", "1", "true", "false"):
            raise OrthancError(ErrorCode.BadFileFormat, "Boolean value expected")
        server.set_unknown_sop_class_accepted(value in ("1", "true"))
        return render_text(request, "")

    def log_level_routes(suffix, category):
        path = "/tools/log-level" + suffix

        @app.route(path, methods=["GET"], endpoint="get_log_level" + suffix)
        def get_log_level(request):
            return render_text(request, logs.get_level(category))

        @app.route(path, methods=["PUT"], endpoint="set_log_level" + suffix)
        def set_log_level(request):
            value = text_body(request)
            if value not in logs.LEVELS:
                raise OrthancError(ErrorCode.ParameterOutOfRange,
                                   'Verbosity can be "default", "verbose" or "trace": ' + value)
            logs.set_level(value, category)
            return render_text(request, "")

    log_level_routes("", None)
    for category in logs.CATEGORIES:
        log_level_routes("-" + category, category)

    @app.route("/tools/dicom-conformance", methods=["GET"])
    def dicom_conformance(request):
        from orthancd.net.conformance import conformance_statement
        return render_text(request, conformance_statement(server))

    @app.route("/tools/accepted-sop-classes", methods=["GET"])
    def get_accepted_sop_classes(request):
        from orthancd.net.conformance import accepted_sop_classes
        return render_json(request, accepted_sop_classes(server))

    @app.route("/tools/bulk-delete", methods=["POST"])
    async def bulk_delete(request):
        body = json_body(request)
        resources = body.get("Resources")
        if not isinstance(resources, list) or not all(isinstance(r, str) for r in resources):
            raise OrthancError(ErrorCode.BadRequest,
                               'The body must contain a "Resources" array of identifiers')
        for public_id in resources:
            try:
                resource = server.index.get_resource(public_id)
            except KeyError:
                continue  # already gone, e.g. with a parent deleted earlier in the list
            await server.delete_resource(public_id, resource.level)
        return render_text(request, "")
