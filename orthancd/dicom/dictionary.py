"""The DICOM data dictionary exactly as Orthanc 1.13.0 sees it.

Orthanc names tags and chooses value representations through DCMTK, which
loads dicom.dic and private.dic (those of DCMTK 3.6.9, which the reference
Orthanc 1.13.0 build loads), plus the entries of the "Dictionary"
configuration option (register_configured).  Their tag names differ from pydicom's
keywords in places (retired tags are 'RETIRED_...', unknown ones are
'Unknown Tag & Data', private creators are 'PrivateCreator') and their VRs
decide how implicit-VR files are rendered, so the two DCMTK files are shipped
here (comments stripped, gzip'd) and parsed once, at the first lookup (an
idle daemon does without their 2.4 MB and 25 ms: orthancd.lazy_modules).

DCMTK range syntax: '(6000-60FF,0010)' repeats over even groups,
'(gggg-o-gggg,...)' over odd ones, '(gggg-u-gggg,...)' over both; the element
part may be a range too.  Private entries read '(gggg,"creator",ee)' where ee
is the low byte of the element (the high byte is the creator's block).
"""
import gzip
import os
import threading

UNKNOWN_NAME = "Unknown Tag & Data"

_DATA = os.path.join(os.path.dirname(__file__), "data")


class DictEntry:
    __slots__ = ("vr", "name")

    def __init__(self, vr, name):
        self.vr = vr
        self.name = name


def _parse_range(text):
    """'6000-60FF' -> (0x6000, 0x60ff, 'e'); '0010' -> (0x10, 0x10, 'u')."""
    parts = text.split("-")
    if len(parts) == 1:
        value = int(parts[0], 16)
        return value, value, "u"
    if len(parts) == 2:
        return int(parts[0], 16), int(parts[1], 16), "e"
    return int(parts[0], 16), int(parts[2], 16), parts[1]


def _in_range(value, spec):
    low, high, parity = spec
    if not low <= value <= high:
        return False
    if parity == "e" and low != high:
        return value % 2 == low % 2
    if parity == "o":
        return value % 2 == 1
    return True


def _lines(name):
    with gzip.open(os.path.join(_DATA, name), "rt", encoding="latin-1") as f:
        for line in f:
            fields = line.rstrip("\n").split("\t")
            if len(fields) >= 3 and fields[0].startswith("("):
                yield fields


def _load():
    public, public_ranges = {}, []
    for fields in _lines("dcmtk-dicom.dic.gz"):
        group, element = fields[0][1:-1].split(",")
        entry = DictEntry(fields[1], fields[2].replace(" ", ""))
        g, e = _parse_range(group), _parse_range(element)
        if g[0] == g[1] and e[0] == e[1]:
            public[(g[0] << 16) | e[0]] = entry
        else:
            public_ranges.append((g, e, entry))
    private, private_ranges = {}, []
    for fields in _lines("dcmtk-private.dic.gz"):
        inner = fields[0][1:-1]
        group, rest = inner.split(",", 1)
        creator, element = rest.rsplit(",", 1)
        creator = creator.strip('"')
        entry = DictEntry(fields[1], fields[2].replace(" ", ""))
        g = _parse_range(group)
        element = int(element, 16)
        if g[0] == g[1]:
            private.setdefault((g[0], creator, element), entry)
        else:
            private_ranges.append((g, creator, element, entry))
    # Orthanc renames this main DICOM tag, retired in the standard.
    public[0x00101000] = DictEntry(public[0x00101000].vr, "OtherPatientIDs")
    return public, public_ranges, private, private_ranges


_tables = None   # (public, public ranges, private, private ranges), once loaded
_loading = threading.Lock()


def _loaded():
    global _tables
    with _loading:
        if _tables is None:
            _tables = _load()
    return _tables


def public_entries():
    """{tag: DictEntry} of the public dictionary (with the configured entries)."""
    return (_tables or _loaded())[0]


def private_entries():
    """{(group, creator, element low byte or whole): DictEntry}."""
    return (_tables or _loaded())[2]


_RANGE_CACHE = {}
# Built into DCMTK rather than read from dicom.dic.
_GENERIC_GROUP_LENGTH = DictEntry("UL", "GenericGroupLength")


def lookup(tag, creator=None):
    """The DictEntry for an int tag, or None when DCMTK does not know it.

    For private tags DCMTK needs the private creator of the element's block;
    without it only the generic private entries (group length, creator
    elements) match.
    """
    public, public_ranges, private, private_ranges = _tables or _loaded()
    group, element = tag >> 16, tag & 0xFFFF
    if group % 2 == 1 and creator is not None and element >= 0x1000:
        low = element & 0xFF
        entry = private.get((group, creator, low)) or private.get((group, creator, element))
        if entry is not None:
            return entry
        for g, c, e, entry in private_ranges:
            if c == creator and e in (low, element) and _in_range(group, g):
                return entry
        return None
    entry = public.get(tag)
    if entry is not None:
        return entry
    if element == 0 and group % 2 == 0:
        return _GENERIC_GROUP_LENGTH
    if group % 2 == 1 and element >= 0x0100:
        return None
    key = tag
    if key in _RANGE_CACHE:
        return _RANGE_CACHE[key]
    found = None
    for g, e, entry in public_ranges:
        if _in_range(group, g) and _in_range(element, e):
            found = entry
            break
    _RANGE_CACHE[key] = found
    return found


def lookup_vr(tag, creator=None):
    """The VR DCMTK reads an implicit VR element with: the private entry of
    its creator, else an entry registered for the tag without creator."""
    entry = lookup(tag, creator)
    if entry is None and creator is not None:
        entry = public_entries().get(tag)
    return entry.vr if entry is not None else None


# Value representations DCMTK accepts in a dictionary entry.
_KNOWN_VRS = frozenset(
    "AE AS AT CS DA DS DT FD FL IS LO LT OB OD OF OL OV OW PN SH SL SQ SS ST SV TM UC UI "
    "UL UN UR US UT UV".split())


class DictionaryError(ValueError):
    """An entry of the "Dictionary" option that Orthanc refuses at startup."""


def parse_tag_key(text):
    """'7053,1003', '7053,03', '7053,3' or '70531003' -> int tag."""
    parts = text.split(",")
    try:
        if len(parts) == 2 and all(1 <= len(p) <= 4 for p in parts):
            return (int(parts[0], 16) << 16) | int(parts[1], 16)
        if len(parts) == 1 and len(text) == 8:
            return int(text, 16)
    except ValueError:
        pass
    raise DictionaryError("Unknown DICOM tag: \"%s\"" % text)


def parse_configured(option):
    """The entries of the "Dictionary" option as (tag, DictEntry, creator),
    validated as Orthanc 1.13.0 does (it refuses to start otherwise)."""
    entries = []
    for key, content in (option or {}).items():
        if not isinstance(content, list) or not 2 <= len(content) <= 5 \
                or not isinstance(content[0], str) or not isinstance(content[1], str) \
                or any(not isinstance(v, int) or isinstance(v, bool) for v in content[2:4]) \
                or (len(content) == 5 and not isinstance(content[4], str)):
            raise DictionaryError(
                "The definition of the '%s' dictionary entry is invalid." % key)
        tag = parse_tag_key(key)
        vr, name = content[0], content[1]
        if vr not in _KNOWN_VRS:
            raise DictionaryError("Unsupported value representation encountered: %s" % vr)
        # Orthanc 1.13.0 reads the minimum multiplicity even when it is
        # missing, and refuses a null one: two-item entries never load.
        low = content[2] if len(content) >= 3 else 0
        high = content[3] if len(content) >= 4 else 1
        if low <= 0 or (high != 0 and high < low):
            raise DictionaryError("Parameter out of range")
        creator = content[4] if len(content) == 5 else ""
        group = tag >> 16
        if creator and (group % 2 == 0 or group in (0x0001, 0x0003, 0x0005, 0x0007, 0xFFFF)):
            raise DictionaryError(
                "Trying to register private tag (%04x,%04x), but it must have an odd "
                "group >= 0x0009" % (group, tag & 0xFFFF))
        if not creator and (tag in public_entries() or any(k[0] == tag for k in entries if not k[2])):
            raise DictionaryError(
                "Cannot register twice the tag (%04x,%04x), whose symbolic name is \"%s\""
                % (group, tag & 0xFFFF, name))
        entries.append((tag, DictEntry(vr, name), creator))
    return entries


def register_configured(option):
    """Add the entries of the "Dictionary" option to the dictionary (once,
    at startup, as Orthanc does with DCMTK's global dictionary)."""
    for tag, entry, creator in parse_configured(option):
        if creator:
            # DCMTK matches private entries on the low byte of the element.
            private_entries()[(tag >> 16, creator, tag & 0xFFFF)] = entry
        else:
            public_entries()[tag] = entry
    _RANGE_CACHE.clear()


def tag_name(tag, creator=None):
    entry = lookup(tag, creator)
    return entry.name if entry is not None else UNKNOWN_NAME


def is_private(tag):
    return (tag >> 16) % 2 == 1
