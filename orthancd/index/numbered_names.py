"""Metadata types and attachment content types are numbers in the index and
names in URIs: Orthanc's core names plus those the configuration declares."""
from orthancd.errors import OrthancError


class NumberedNames:

    def __init__(self, core, user, unknown_error):
        """``core``: {name: number}; ``user``: the configuration's UserMetadata or
        UserContentType ({name: number} or {name: [number, mime]});
        ``unknown_error``: (ErrorCode, details) for a name that is neither."""
        self.by_name = dict(core)
        for name, value in (user or {}).items():
            self.by_name[name] = int(value[0] if isinstance(value, list) else value)
        self.by_number = {number: name for name, number in self.by_name.items()}
        self._unknown = unknown_error

    def name(self, number):
        return self.by_number.get(number, str(number))

    def number(self, name):
        if name in self.by_name:
            return self.by_name[name]
        try:
            return int(name)
        except ValueError:
            code, details = self._unknown
            raise OrthancError(code, details % name if details else None)
