"""/{level}/{id}/module and /{level}/{id}/shared-tags renderings.

Orthanc answers /module with the instance's tags filtered to a fixed list per
level (its DicomTag::AddTagsForModule, tables of DICOM PS 3.3: Patient,
General Study, General Series, SOP Common); the list is reproduced verbatim,
including its (0029,0109) typo for LargestPixelValueInSeries.
"""
from orthancd.lazy_modules import LazyModule
from orthancd.ids import ResourceLevel

# Data sets to JSON (pydicom): imported by the first use (orthancd.lazy_modules).
json_tags = LazyModule("orthancd.dicom.json_tags")

MODULE_TAGS = {
    ResourceLevel.PATIENT: frozenset((
        0x00100010, 0x00100020, 0x00100021, 0x00100030, 0x00100040, 0x00081120, 0x00100032,
        0x00101000, 0x00101001, 0x00101002, 0x00102160, 0x00104000,
        0x00120062, 0x00120063, 0x00120064)),
    ResourceLevel.STUDY: frozenset((
        0x0020000D, 0x00080020, 0x00080030, 0x00080090, 0x00080096, 0x00200010, 0x00080050,
        0x00081030, 0x00081048, 0x00081049, 0x00081060, 0x00081062, 0x00081110, 0x00081032)),
    ResourceLevel.SERIES: frozenset((
        0x00080060, 0x0020000E, 0x00200011, 0x00200060, 0x00080021, 0x00080031,
        0x00081050, 0x00081052, 0x00181030, 0x0008103E, 0x00081070, 0x00081072, 0x00081111,
        0x00081250, 0x00180015,
        0x00185100, 0x00280108, 0x00290109, 0x00400275, 0x00102210,
        0x00400244, 0x00400245, 0x00400253, 0x00400254, 0x00400260, 0x00400280)),
    ResourceLevel.INSTANCE: frozenset((
        0x00080016, 0x00080018, 0x00080005, 0x00080012, 0x00080013, 0x00080014,
        0x0008001A, 0x0008001B, 0x00080110, 0x00080201, 0x0018A001, 0x00200013,
        0x01000410, 0x01000420, 0x01000424, 0x01000426, 0x04000500, 0x04000561,
        0x0040A390, 0x00280303, 0x4FFE0001, 0xFFFAFFFA)),
}


def _key(tag):
    return "%04x,%04x" % (tag >> 16, tag & 0xFFFF)


def module_to_json(ds, module, mode="full", default_encoding="Latin1", ignore_length=frozenset()):
    """Tags of `ds` that belong to the module of `module` (a ResourceLevel,
    or a level name such as 'patient'), e.g. /studies/{id}/module-patient is
    module_to_json(ds, ResourceLevel.PATIENT)."""
    if not isinstance(module, ResourceLevel):
        module = ResourceLevel.parse(module)
    if mode not in json_tags.MODES:
        raise ValueError("Unknown JSON format: %r" % (mode,))
    full = json_tags.dataset_to_json(ds, "full", default_encoding, ignore_length=ignore_length)
    wanted = {_key(tag) for tag in MODULE_TAGS[module]}
    selected = {key: node for key, node in full.items() if key in wanted}
    return convert_full_json(selected, mode)


def convert_full_json(full, mode):
    """Re-render a 'full' JSON object as 'simplify' or 'short'."""
    if mode == "full":
        return full
    result = {}
    for key, node in full.items():
        name = node["Name"] if mode == "simplify" else key
        if node["Type"] == "Sequence":
            result[name] = [convert_full_json(item, mode) for item in node["Value"] or []]
        elif node["Type"] == "String":
            result[name] = node["Value"]
        else:
            result[name] = None
    return dict(sorted(result.items()))


def shared_tags_to_json(datasets, mode="full", default_encoding="Latin1"):
    """/{level}/{id}/shared-tags: top-level text elements whose value is the
    same in every instance (sequences, binary and too-long values never are)."""
    if mode not in json_tags.MODES:
        raise ValueError("Unknown JSON format: %r" % (mode,))
    shared = None
    for ds in datasets:
        tags = json_tags.dataset_to_json(ds, "full", default_encoding,
                                         json_tags.MAX_STRING_LENGTH)
        strings = {key: node for key, node in tags.items() if node["Type"] == "String"}
        if shared is None:
            shared = strings
        else:
            shared = {key: node for key, node in shared.items()
                      if key in strings and strings[key]["Value"] == node["Value"]}
    return convert_full_json(dict(sorted((shared or {}).items())), mode)
