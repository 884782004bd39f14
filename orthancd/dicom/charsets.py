"""Specific Character Set handling, following Orthanc's rules.

Orthanc maps the first non-empty value of (0008,0005) to one encoding for the
whole dataset (nested items included); an unsupported value means 'ASCII,
drop every special character'; an absent or empty tag means the configured
DefaultEncoding.  Undecodable bytes are skipped rather than failing.
"""
import re

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
    "Korean": "iso2022_kr",
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


def encoding_of_term(term):
    """'ISO_IR 100' -> 'Latin1'; None when Orthanc does not support it."""
    return _TERMS.get(term.strip().upper())


def detect_encoding(raw_charset, default_encoding="Latin1"):
    """Orthanc encoding name for the raw bytes of (0008,0005) (or None)."""
    if raw_charset is None:
        return default_encoding
    text = raw_charset.decode("ascii", "ignore")
    for token in text.split("\\"):
        token = token.strip(" \0")
        if token:
            return encoding_of_term(token) or "Ascii"
    return default_encoding


def to_ascii(data):
    """Orthanc's ConvertToAscii: keep printable 7-bit characters only."""
    return "".join(chr(b) for b in data if 32 <= b < 127)


# ISO 2022 escape sequences (ESC $ B, ESC ( J, ESC $ ) C, ESC $ ( D...).
_ESCAPE = re.compile(rb"\x1b(?:\$[()*+\-./]?|[()*+\-./,])[\x20-\x7e]?")


def _decode_shift_jis(data):
    # Orthanc's Shift-JIS table (iconv) maps 0x5C and 0x7E to YEN SIGN and
    # OVERLINE (JIS X 0201 roman); escape sequences are dropped, not honoured.
    text = _ESCAPE.sub(b"", data).decode("shift_jis", "ignore")
    return text.replace("\\", "\u00a5").replace("~", "\u203e")


def _decode_korean(data):
    # DICOM's ISO 2022 IR 149 puts KS X 1001 in G1 (high bit set), i.e. EUC-KR
    # bytes after a designation escape.
    return _ESCAPE.sub(b"", data).decode("euc_kr", "ignore")


def decode(data, encoding):
    """Bytes of a string element -> text, as Orthanc converts it to UTF-8."""
    codec = ENCODING_CODECS.get(encoding)
    if codec is None:
        return to_ascii(data)
    if data.isascii() and b"\x1b" not in data and encoding != "Japanese":
        return data.decode("ascii")
    if encoding == "Japanese":
        return _decode_shift_jis(data)
    if encoding == "Korean":
        return _decode_korean(data)
    return data.decode(codec, "ignore")
