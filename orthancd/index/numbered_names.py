"""Metadata types and attachment content types are numbers in the index and
names in URIs: Orthanc's core names plus those the configuration declares."""
from orthancd.errors import ErrorCode, OrthancError

_INT32 = (-(1 << 31), (1 << 31) - 1)
# What the index can hold: a type is two bytes there.
STORED_TYPES = range(0, 65536)


def _looks_like_integer(text):
    """Orthanc's Toolbox::IsInteger (surrounding spaces allowed)."""
    text = text.strip(" \t\r\n")
    digits = text[1:] if text.startswith("-") else text
    return bool(digits) and all(c in "0123456789" for c in digits)


class NumberedNames:

    def __init__(self, core, user, unknown_error):
        """``core``: {name: number}; ``user``: the configuration's UserMetadata or
        UserContentType ({name: number} or {name: [number, mime]});
        ``unknown_error``: (ErrorCode, details) for a name that is neither."""
        self.by_name = dict(core)
        self.mime_types = {}
        for name, value in (user or {}).items():
            number = int(value[0] if isinstance(value, list) else value)
            self.by_name[name] = number
            if isinstance(value, list):
                self.mime_types[number] = value[1]
        self.by_number = {number: name for name, number in self.by_name.items()}
        self._unknown = unknown_error

    def name(self, number):
        return self.by_number.get(number, str(number))

    def number(self, name):
        """As Orthanc's EnumerationDictionary::Translate: a number is taken as
        it is (whether or not it has a name), a name must be known."""
        if _looks_like_integer(name):
            # boost::lexical_cast<int>: no spaces, no overflow.
            try:
                number = int(name) if name == name.strip() else None
            except ValueError:
                number = None
            if number is None or not _INT32[0] <= number <= _INT32[1]:
                raise OrthancError(ErrorCode.BadParameterType,
                                   "Syntax error in some user-supplied data")
            return number
        if name in self.by_name:
            return self.by_name[name]
        code, details = self._unknown
        raise OrthancError(code, details % name if details else None)

    def mime_type(self, number, default):
        """The MIME type a user content type was declared with."""
        return self.mime_types.get(number, default)
