"""Paths to tags inside sequences, in the syntax of DCMTK's dcmodify, as
Orthanc's modification requests accept them (DicomPath):

    PatientName
    ReferencedImageSequence[1].ReferencedSOPInstanceUID
    (0008,1140)[*].(0008,1155)

A path is a list of (sequence tag, item index or None for "every item")
followed by the final tag.  Tags are named as Orthanc names them
(``parse_tag``): a DCMTK dictionary name, "gggg,eeee", "gggg-eeee" or
"ggggeeee", or "(gggg,eeee)" between parentheses.
"""
import dataclasses

from orthancd.dicom import dictionary
from orthancd.errors import ErrorCode, OrthancError
from orthancd.find import tags as find_tags


def _hexadecimal(text):
    """DicomTag::ParseHexadecimal: "gggg,eeee", "gggg-eeee" or "ggggeeee"."""
    digits = None
    if len(text) == 9 and text[4] in ",-":
        digits = text[:4] + text[5:]
    elif len(text) == 8:
        digits = text
    if digits is None or not all(c in "0123456789abcdefABCDEF" for c in digits):
        return None
    return int(digits, 16)


def parse_tag(name):
    """FromDcmtkBridge::ParseTag: hexadecimal forms, then the names of the
    dictionary (public, then the private entries of the "Dictionary"
    option); an unknown name is Orthanc's "Unknown DICOM tag" (500)."""
    tag = _hexadecimal(name)
    if tag is not None:
        return tag
    try:
        return find_tags.parse_tag(name)
    except OrthancError:
        pass
    for (group, _creator, element), entry in list(dictionary.private_entries().items()):
        if entry.name == name:
            return (group << 16) | element
    raise OrthancError(ErrorCode.UnknownDicomTag, name, http_status=500)


def format_tag(tag):
    return "%04x,%04x" % (tag >> 16, tag & 0xFFFF)


@dataclasses.dataclass(frozen=True)
class DicomPath:
    prefix: tuple          # ((sequence tag, index or None), ...)
    final: int

    @property
    def is_top_level(self):
        return not self.prefix

    def format(self):
        """DicomPath::Format, the form jobs are saved with."""
        parts = ["(%s)[%s]." % (format_tag(tag), "*" if index is None else index)
                 for tag, index in self.prefix]
        return "".join(parts) + "(%s)" % format_tag(self.final)

    def matches(self, parent_tags, parent_indexes, tag):
        """DicomPath::IsMatch against an element met at ``tag`` below the
        items ``parent_tags``/``parent_indexes``: the element itself, or a
        descendant of the sequence the path designates."""
        depth = len(self.prefix)
        if len(parent_tags) < depth:
            return False
        for (sequence, index), parent, parent_index in zip(self.prefix, parent_tags,
                                                            parent_indexes):
            if parent != sequence or (index is not None and index != parent_index):
                return False
        if len(parent_tags) == depth:
            return tag == self.final
        return parent_tags[depth] == self.final


def _parse_path_tag(token):
    if len(token) >= 2 and token[0] == "(" and token[-1] == ")":
        tag = _hexadecimal(token[1:-1])
        if tag is None:
            raise OrthancError(ErrorCode.UnknownDicomTag, "Cannot parse tag: " + token)
        return tag
    return parse_tag(token)


def parse(text):
    """DicomPath::Parse."""
    tokens = text.split(".")
    final = _parse_path_tag(tokens[-1].strip())
    prefix = []
    for token in tokens[:-1]:
        position = token.find("[")
        if position < 0:
            raise OrthancError(ErrorCode.ParameterOutOfRange,
                               "Parent path doesn't contain an index")
        left = token[:position].strip()
        right = token[position + 1:].strip()
        if not left:
            raise OrthancError(ErrorCode.ParameterOutOfRange, "Parent path doesn't contain a tag")
        if not right or right[-1] != "]":
            raise OrthancError(ErrorCode.ParameterOutOfRange,
                               "Parent path doesn't contain the end of the index")
        tag = _parse_path_tag(left)
        index_text = right[:-1].strip()
        if index_text == "*":
            prefix.append((tag, None))
            continue
        try:
            index = _lexical_int(index_text)
        except ValueError:
            raise OrthancError(ErrorCode.ParameterOutOfRange,
                               "Not a valid index in parent path: [" + right)
        if index < 0:
            raise OrthancError(ErrorCode.ParameterOutOfRange,
                               "Negative index in parent path: " + index_text)
        prefix.append((tag, index))
    return DicomPath(tuple(prefix), final)


def _lexical_int(text):
    """boost::lexical_cast<int>: an optional sign and decimal digits only."""
    body = text[1:] if text[:1] in "+-" else text
    if not body or not body.isdigit() or not body.isascii():
        raise ValueError(text)
    value = int(text)
    if not -2 ** 31 <= value < 2 ** 31:
        raise ValueError(text)
    return value
