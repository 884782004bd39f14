"""Comparing two DICOM files made by two servers from the same input: the
same elements at the same places with the same VRs and values, except that
identifiers each server generated (UIDs under Orthanc's root, UUIDs) are
compared by position: the n-th new identifier met in one file must sit
where the n-th one sits in the other, and repeat where it repeats."""
import io
import re

import pydicom

_GENERATED = re.compile(r"^(1\.2\.276\.0\.7230010\.3\.1\.[234]\.[\d.]+"
                        r"|[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})$")
# What may legitimately differ: the meta group length (longer UIDs), the
# group lengths of the groups holding new UIDs, and "AnonymizedN".
_IGNORED = ("(0002,0000)",)


def parse(data):
    return pydicom.dcmread(io.BytesIO(data), force=True)


def _value(element, names):
    value = element.value
    if isinstance(value, (bytes, bytearray)):
        return ("bytes", len(value), bytes(value))
    parts = []
    for part in str(value).split("\\") if not isinstance(value, pydicom.multival.MultiValue) \
            else [str(v) for v in value]:
        if _GENERATED.match(part):
            part = names.setdefault(part, "<new %d>" % len(names))
        parts.append(part)
    return "\\".join(parts)


def elements(ds, names, prefix=""):
    """{path: (VR, value)} of every element, nested ones included."""
    out = {}
    for element in ds:
        key = prefix + "(%04x,%04x)" % (element.tag.group, element.tag.element)
        if element.VR == "SQ":
            out[key] = ("SQ", len(element.value))
            for index, item in enumerate(element.value):
                out.update(elements(item, names, key + "[%d]." % index))
        else:
            out[key] = (element.VR, _value(element, names))
    return out


def structure(data):
    """(meta elements, data set elements) with generated identifiers named
    by order of appearance."""
    ds = parse(data)
    names = {}
    return elements(ds.file_meta, names), elements(ds, names)


def differences(ours, theirs, ignore=()):
    """The paths where two files disagree (besides what may differ)."""
    out = []
    for mine, reference in zip(structure(ours), structure(theirs)):
        for key in sorted(set(mine) | set(reference)):
            if key in _IGNORED or key in ignore:
                continue
            if key.endswith(",0000)") and mine.get(key, (None,))[0] == reference.get(key, (None,))[0]:
                continue  # group lengths follow the lengths of the new UIDs
            if mine.get(key) != reference.get(key):
                out.append((key, mine.get(key), reference.get(key)))
    return out
