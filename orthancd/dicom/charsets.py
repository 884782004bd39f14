"""Specific Character Set handling, following Orthanc 1.13.0's rules.

Orthanc maps the first non-empty value of (0008,0005) to one encoding for the
whole dataset (nested items included); an unsupported value means 'ASCII,
drop every special character'; an absent or empty tag means the configured
DefaultEncoding.  A multi-valued (0008,0005) announces ISO 2022 code
extensions: the escape sequences are then removed from the converted text.

The byte-level behaviour (which bytes are skipped when a sequence is
invalid, which table a code page uses) is the one of the converters
Orthanc 1.13.0 goes through (Boost.Locale over ICU and its own UTF-8
decoder); where Python's codecs differ, the difference is written out below.
"""
import codecs
import collections

# Orthanc's encoding names (as in the DefaultEncoding option) -> Python codec.
ENCODING_CODECS = {
    "Ascii": None,
    "Utf8": "utf-8",
    "Latin1": "latin-1",
    "Latin2": "iso8859_2",
    "Latin3": "iso8859_3",
    "Latin4": "iso8859_4",
    "Latin5": "iso8859_9",
    "Cyrillic": "iso8859_5",
    "Windows1251": "cp1251",
    "Arabic": "iso8859_6",
    "Greek": "iso8859_7",
    "Hebrew": "iso8859_8",
    "Thai": "tis_620",
    "Japanese": "shift_jis",
    "Chinese": "gb18030",
    "JapaneseKanji": "iso2022_jp",
    "Korean": "cp949",
    "SimplifiedChinese": "gb2312",
}

_TERMS = {
    "ISO_IR 6": "Ascii", "ISO 2022 IR 6": "Ascii",
    "ISO_IR 192": "Utf8",
    "ISO_IR 100": "Latin1", "ISO 2022 IR 100": "Latin1",
    "ISO_IR 101": "Latin2", "ISO 2022 IR 101": "Latin2",
    "ISO_IR 109": "Latin3", "ISO 2022 IR 109": "Latin3",
    "ISO_IR 110": "Latin4", "ISO 2022 IR 110": "Latin4",
    "ISO_IR 148": "Latin5", "ISO 2022 IR 148": "Latin5",
    "ISO_IR 144": "Cyrillic", "ISO 2022 IR 144": "Cyrillic",
    "ISO_IR 127": "Arabic", "ISO 2022 IR 127": "Arabic",
    "ISO_IR 126": "Greek", "ISO 2022 IR 126": "Greek",
    "ISO_IR 138": "Hebrew", "ISO 2022 IR 138": "Hebrew",
    "ISO_IR 166": "Thai", "ISO 2022 IR 166": "Thai",
    "ISO_IR 13": "Japanese", "ISO 2022 IR 13": "Japanese",
    "GB18030": "Chinese", "GBK": "Chinese",
    "ISO 2022 IR 149": "Korean",
    "ISO 2022 IR 87": "JapaneseKanji",
    "ISO 2022 IR 58": "SimplifiedChinese",
}

SPECIFIC_CHARACTER_SET = 0x00080005

# VRs whose value is one text that may contain backslashes (the others are
# backslash-separated lists of values).
SINGLE_VALUE_VRS = frozenset(("LT", "ST", "UT", "UR"))


class Charset(collections.namedtuple("Charset", "encoding code_extensions")):
    """How the strings of one dataset are decoded: Orthanc's encoding name,
    and whether ISO 2022 code extensions are announced (several values in
    SpecificCharacterSet), in which case escape sequences are removed."""


def encoding_of_term(term):
    """'ISO_IR 100' -> 'Latin1'; None when Orthanc does not support it."""
    return _TERMS.get(term.strip().upper())


def detect_charset(raw_charset, default_encoding="Latin1"):
    """The Charset for the raw bytes of (0008,0005) (None when absent)."""
    if raw_charset is None:
        return Charset(default_encoding, False)
    text = raw_charset.decode("ascii", "ignore")
    tokens = text.split("\\")
    code_extensions = len(tokens) > 1
    for token in tokens:
        token = token.strip(" \0")
        if token:
            return Charset(encoding_of_term(token) or "Ascii", code_extensions)
    return Charset(default_encoding, code_extensions)


def detect_encoding(raw_charset, default_encoding="Latin1"):
    """Orthanc encoding name for the raw bytes of (0008,0005)."""
    return detect_charset(raw_charset, default_encoding).encoding


def to_ascii(data):
    """Orthanc's conversion to ASCII: printable 7-bit characters and line
    feeds are kept, everything else is dropped."""
    return "".join(chr(b) for b in data if 32 <= b < 127 or b == 10)


# ICU's converters skip only the first byte of an invalid sequence and go on
# with the next one; Python's codecs may drop more.
codecs.register_error("orthancd-skip-one", lambda error: ("", error.start + 1))


def _decode_utf8(data):
    """Boost.Locale's utf_to_utf with the 'skip' method: an invalid sequence
    is dropped together with the continuation bytes read so far, including
    the first one that did not fit."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        pass
    out = []
    i, n = 0, len(data)
    while i < n:
        lead = data[i]
        i += 1
        if lead < 0x80:
            out.append(chr(lead))
            continue
        if lead < 0xC2 or lead > 0xF4:
            continue
        trail = 1 if lead < 0xE0 else 2 if lead < 0xF0 else 3
        code = lead & ((1 << (6 - trail)) - 1)
        valid = True
        for _ in range(trail):
            if i >= n:
                valid = False
                break
            byte = data[i]
            i += 1
            if byte & 0xC0 != 0x80:
                valid = False
                break
            code = (code << 6) | (byte & 0x3F)
        if not valid or 0xD800 <= code <= 0xDFFF or code > 0x10FFFF:
            continue
        width = 1 if code < 0x80 else 2 if code < 0x800 else 3 if code < 0x10000 else 4
        if width == trail + 1:
            out.append(chr(code))
    return "".join(out)


def _decode_shift_jis(data):
    # Orthanc's Shift-JIS table maps 0x5C and 0x7E to YEN SIGN and OVERLINE
    # (JIS X 0201 roman).
    text = data.decode("shift_jis", "ignore")
    return text.replace("\\", "\u00a5").replace("~", "\u203e")


def _decode_korean(data):
    """ICU's windows-949 (Orthanc's 'ISO-IR-149'): UHC, 0x80 and 0xFF as
    single characters, the user-defined rows 0xC9 and 0xFE in the private use
    area, and an invalid pair whose second byte lies in the trail range
    (0x40-0x7E, 0x80-0xFE) dropped as a whole."""
    try:
        return data.decode("cp949")
    except UnicodeDecodeError:
        pass
    out = []
    i, n = 0, len(data)
    while i < n:
        lead = data[i]
        if lead < 0x80:
            out.append(chr(lead))
            i += 1
        elif lead == 0x80:
            out.append("\x80")
            i += 1
        elif lead == 0xFF:
            out.append("\uf8f7")
            i += 1
        elif i + 1 >= n:
            i += 1
        else:
            trail = data[i + 1]
            if lead in (0xC9, 0xFE) and 0xA1 <= trail <= 0xFE:
                out.append(chr((0xE000 if lead == 0xC9 else 0xE05E) + trail - 0xA1))
                i += 2
                continue
            try:
                out.append(data[i:i + 2].decode("cp949"))
                i += 2
            except UnicodeDecodeError:
                i += 2 if (0x40 <= trail <= 0x7E or 0x80 <= trail <= 0xFE) else 1
    return "".join(out)


# GB18030-2022 swapped these code points with the private use ones Python's
# (2005) table gives for the same bytes; ICU follows the 2022 edition.
_GB18030_2022 = dict(zip(
    (0xE78D, 0xE78E, 0xE78F, 0xE790, 0xE791, 0xE792, 0xE793, 0xE794, 0xE795, 0xE796,
     0xE7C7, 0xE81E, 0xE826, 0xE82B, 0xE82C, 0xE832, 0xE843, 0xE854, 0xE864),
    (0xFE10, 0xFE12, 0xFE11, 0xFE13, 0xFE14, 0xFE15, 0xFE16, 0xFE17, 0xFE18, 0xFE19,
     0x1E3F, 0x9FB4, 0x9FB5, 0x9FB6, 0x9FB7, 0x9FB8, 0x9FB9, 0x9FBA, 0x9FBB)))
_GB18030_2022.update({v: k for k, v in list(_GB18030_2022.items())})


def _decode_gb18030(data):
    return data.decode("gb18030", "orthancd-skip-one").translate(_GB18030_2022)


def _decode_thai(data):
    # ICU's TIS-620 has no C1 controls.
    return bytes(b for b in data if not 0x80 <= b <= 0x9F).decode("tis_620", "ignore")


# ISO-2022-JP: the designations ICU honours; any other ESC is dropped alone.
_JIS_DESIGNATIONS = (b"\x1b(B", b"\x1b(J", b"\x1b$@", b"\x1b$B", b"\x1b$A",
                     b"\x1b$(C", b"\x1b$(D", b"\x1b$)C", b"\x1b(I", b"\x1b.A", b"\x1b.F",
                     b"\x1bO")


def _decode_iso2022_jp(data):
    chunks = []
    i, n = 0, len(data)
    start = 0
    while i < n:
        byte = data[i]
        if byte in (0x0E, 0x0F) or data.startswith(b"\x1bO", i):
            # SO, SI and the single shift SS3 are consumed without output.
            chunks.append(data[start:i])
            i += 2 if byte == 0x1B else 1
            start = i
        elif byte == 0x1B:
            designation = next((d for d in _JIS_DESIGNATIONS if data.startswith(d, i)), None)
            if designation is None and any(d.startswith(data[i:]) for d in _JIS_DESIGNATIONS):
                n = i  # a designation cut short by the end of the value
                break
            if designation is None:
                chunks.append(data[start:i])
                i += 1
                start = i
            else:
                i += len(designation)
        else:
            i += 1
    chunks.append(data[start:n])
    return b"".join(chunks).decode("iso2022_jp_2", "ignore").replace("\x1b", "")


_DECODERS = {
    "Utf8": _decode_utf8,
    "Japanese": _decode_shift_jis,
    "Korean": _decode_korean,
    "Chinese": _decode_gb18030,
    "Thai": _decode_thai,
    "JapaneseKanji": _decode_iso2022_jp,
}

_LOCKING_SHIFTS = frozenset("NOno|}~")


def remove_iso2022_escapes(text):
    """Orthanc's RemoveIso2022EscapeSequences, on the converted text: ESC I..I F
    (intermediates 0x20-0x2F, final 0x30-0x7F), the single and locking shifts
    (ESC N, O, n, o, |, }, ~) and SO/SI go; a lone ESC stays."""
    if "\x1b" not in text and "\x0e" not in text and "\x0f" not in text:
        return text
    out = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c in "\x0e\x0f":
            i += 1
            continue
        if c == "\x1b" and i + 1 < n:
            if text[i + 1] in _LOCKING_SHIFTS:
                i += 2
                continue
            j = i + 1
            while j < n and "\x20" <= text[j] <= "\x2f":
                j += 1
            if j > i + 1 and j < n and "\x30" <= text[j] <= "\x7f":
                i = j + 1
                continue
        out.append(c)
        i += 1
    return "".join(out)


def _convert(data, encoding):
    decoder = _DECODERS.get(encoding)
    if decoder is not None:
        return decoder(data)
    codec = ENCODING_CODECS.get(encoding)
    if codec is None:
        return to_ascii(data)
    return data.decode(codec, "ignore")


def decode(data, charset, split_values=False):
    """Bytes of a string element -> text, as Orthanc converts it to UTF-8.

    ``charset`` is a Charset or an encoding name.  ``split_values`` says the
    element is a backslash-separated list (any string VR but LT, ST, UT, UR):
    Orthanc then converts Shift-JIS values one by one, keeping the
    separators."""
    if isinstance(charset, Charset):
        encoding, code_extensions = charset
    else:
        encoding, code_extensions = charset, False
    if encoding == "Ascii":
        return to_ascii(data)
    if data.isascii() and encoding not in ("Japanese", "JapaneseKanji"):
        text = data.decode("ascii")
    elif encoding == "Japanese" and split_values and b"\\" in data:
        text = "\\".join(_convert(part, encoding) for part in data.split(b"\\"))
    else:
        text = _convert(data, encoding)
    return remove_iso2022_escapes(text) if code_extensions else text
