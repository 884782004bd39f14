"""RequestedTags: the tags a client asks to see beside each resource found.

Worked out as Orthanc 1.13.0's ResourceFinder does it:
1. computed tags (counts of children, ModalitiesInStudy, SOPClassesInStudy,
   InstanceAvailability) at the level where they make sense; ModalitiesInStudy
   and SOPClassesInStudy asked elsewhere are left out of the answer, the
   counts asked at another level are looked for in the file (and end null);
2. the main tags of the resource and of its ancestors (a main tag the
   resource was indexed with but does not have is left out);
3. SOPClassUID of an instance from its metadata;
4. anything else from the file of one instance: its value, or null.
Tags of the file meta header are never given.

Values are strings, None, or (for sequences) Orthanc's full JSON node.
"""
import functools

from orthancd.dicom import main_tags as M
from orthancd.errors import ErrorCode, OrthancError
from orthancd.find import computed
from orthancd.find import tags as T
from orthancd.find.lookup import representative_instance
from orthancd.ids import ResourceLevel
from orthancd.index.base import MetadataType

INSTANCE_AVAILABILITY = T.INSTANCE_AVAILABILITY
SOP_CLASS_UID = 0x00080016
PIXEL_DATA = 0x7FE00010

_ALWAYS_COMPUTED = (T.MODALITIES_IN_STUDY, T.SOP_CLASSES_IN_STUDY, INSTANCE_AVAILABILITY)


def computed_here(level, tags):
    """The requested tags that count as computed at ``level`` (they never
    go to the file)."""
    return {t for t in tags
            if t in _ALWAYS_COMPUTED or (t in computed.COUNTS and computed.COUNTS[t][0] is level)}


def computed_values(index, level, public_id, tags):
    out = computed.compute_tags(index, level, public_id, tags)
    if level is ResourceLevel.INSTANCE and INSTANCE_AVAILABILITY in tags:
        out[INSTANCE_AVAILABILITY] = "ONLINE"
    return out


@functools.lru_cache(maxsize=64)
def _signature_tags(signature):
    """The frozenset of tags a MainDicomTagsSignature names (resources
    indexed under one configuration share it: parsed once)."""
    out = set()
    for item in (signature or "").split(";"):
        if len(item) == 9:
            try:
                out.add((int(item[:4], 16) << 16) | int(item[5:], 16))
            except ValueError:
                continue
    return frozenset(out)


def _level_values(index, resource, level):
    """{tag: value} of the main tags a resource of ``level`` holds (a study
    holds the patient's too), and the tags it was indexed with."""
    values = {}
    names = T.LEVEL_TAG_NUMBERS[level]
    if level is ResourceLevel.STUDY:
        for name, value in (resource.patient_tags or {}).items():
            if name in names:
                values[names[name]] = value
    for name, value in resource.main_tags.items():
        if name in names:
            values[names[name]] = value
    for key, node in resource.main_sequences.items():
        values[(int(key[:4], 16) << 16) | int(key[5:], 16)] = node
    saved = _signature_tags(index.get_metadata_value(resource.public_id, level,
                                                     MetadataType.MainDicomTagsSignature))
    if level is ResourceLevel.STUDY and saved:
        saved = saved | set(M.ORTHANC_MAIN_DICOM_TAGS[ResourceLevel.PATIENT])
    return values, saved


def _read_file_tags(server, instance_id, tags):
    info = server.dicom_attachment(instance_id)
    encoding = server.default_encoding

    # Reading up to the pixel data is enough, unless a tag lies beyond it.
    before_pixels = all(tag < PIXEL_DATA for tag in tags)

    def load():
        from orthancd.dicom.json_tags import dataset_to_json
        from orthancd.dicom.reading import read_dataset
        dataset = read_dataset(server.storage.read(info.uuid), stop_before_pixels=before_pixels)
        # The requested tags come whole, however long (ignoreTagLength).
        full = dataset_to_json(dataset, "full", encoding, max_length=0)
        out = {}
        for tag in tags:
            node = full.get(T.format_tag(tag))
            if node is None:
                continue
            if node.get("Type") == "String":
                out[tag] = node["Value"]
            elif node.get("Type") == "Sequence":
                out[tag] = node
            else:
                out[tag] = None
        return out
    return server.file_io.run(load)


def check_requested(level, requested):
    """SOPClassesInStudy needs the instances below: Orthanc refuses it for
    an instance."""
    if level is ResourceLevel.INSTANCE and T.SOP_CLASSES_IN_STUDY in requested:
        raise OrthancError(ErrorCode.ParameterOutOfRange)


async def requested_tags(server, level, public_id, requested, resource=None):
    """{tag: value} of the ``requested`` tags (ints) for one resource
    (``resource``: its Resource, when the caller read it already)."""
    index = server.index
    remaining = set(requested)
    computed = computed_here(level, remaining)
    out = computed_values(index, level, public_id, computed)
    remaining -= computed
    if not remaining:
        return out  # only computed tags (Orthanc Explorer 2's study list)
    # The resource and its ancestors up to the study: below the patient,
    # the patient's tags come from the study's copy.
    chain = []
    if resource is None:
        resource = index.get_resource(public_id, level)
    lv = level
    while True:
        chain.append((lv, resource))
        if resource.parent is None or lv.parent is ResourceLevel.PATIENT:
            break
        lv = lv.parent
        resource = index.get_resource(resource.parent, lv)
    for lv, resource in reversed(chain):  # the highest level first
        if not remaining:
            break
        values, saved = _level_values(index, resource, lv)
        for tag in list(remaining):
            if tag in values:
                out[tag] = values[tag]
                remaining.discard(tag)
            elif tag in saved:
                remaining.discard(tag)
    remaining = {t for t in remaining if t >> 16 != 0x0002}
    if level is ResourceLevel.INSTANCE and SOP_CLASS_UID in remaining:
        value = index.get_metadata_value(public_id, level, MetadataType.SopClassUid)
        if value is not None:
            out[SOP_CLASS_UID] = value
            remaining.discard(SOP_CLASS_UID)
    if remaining and not remaining <= T.COMPUTED_TAGS | {INSTANCE_AVAILABILITY}:
        instance_id = representative_instance(index, public_id, level)
        found = {}
        if instance_id is not None:
            found = await _read_file_tags(server, instance_id, remaining)
        for tag in remaining:
            out[tag] = found.get(tag)
    return out
