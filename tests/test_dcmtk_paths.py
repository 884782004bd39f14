"""pynetdicom installs its own storescu, findscu, echoscu... earlier on PATH
than DCMTK's: tests, benchmarks and scripts must run DCMTK by absolute path
(/usr/bin/...), or they silently test against pynetdicom instead."""
import os
import re

from tests.support.daemon import ROOT

DCMTK_TOOLS = ("storescu", "storescp", "findscu", "movescu", "getscu", "echoscu", "termscu",
               "dcmsend", "dcmrecv", "dcmqrscp", "wlmscpfs", "dcmdump", "dcmodify", "dcmconv",
               "dump2dcm", "img2dcm", "dcm2json", "dcm2xml", "dcmcjpeg", "dcmdjpeg", "dcmcrle",
               "dcmdrle", "dcmj2pnm", "dcm2pnm")
_TOOL = "(?:%s)" % "|".join(DCMTK_TOOLS)

# A command whose program is a bare DCMTK name: first item of an argument
# list, start of a command string, or shutil.which's argument in Python...
PYTHON_PATTERNS = [
    re.compile(r"""(?<![\w\])])\[\s*["']%s["']""" % _TOOL),  # a list, not a subscript
    re.compile(r"""["']%s\s[^"']*["']\s*,\s*shell\s*=\s*True""" % _TOOL),
    re.compile(r"""(?:which|Popen|run|check_call|check_output|call)\(\s*["']%s["']""" % _TOOL),
]
# ...or a word in command position of a shell script.
SHELL_PATTERN = re.compile(r"(?:^|[;&|(]|\bthen|\bdo|\bexec)\s*%s(?:\s|$)" % _TOOL, re.M)


def _files(folder, suffixes):
    for directory, _, names in os.walk(os.path.join(ROOT, folder)):
        for name in names:
            path = os.path.join(directory, name)
            if name.endswith(suffixes) or (folder == "scripts" and "." not in name):
                yield path


def test_dcmtk_is_called_by_absolute_path():
    offenders = []
    for folder in ("tests", "bench", "scripts", ".ci"):
        for path in _files(folder, (".py", ".sh")):
            with open(path, encoding="utf-8", errors="replace") as f:
                text = f.read()
            if os.path.samefile(path, __file__):
                continue  # its own examples of mistakes
            patterns = PYTHON_PATTERNS if path.endswith(".py") else [SHELL_PATTERN]
            for pattern in patterns:
                for match in pattern.finditer(text):
                    line = text.count("\n", 0, match.start()) + 1
                    offenders.append("%s:%d: %s" % (os.path.relpath(path, ROOT), line,
                                                    match.group(0).strip()))
    assert offenders == []


def test_the_pattern_catches_bare_names():
    """The check above is only worth something if it would see a mistake."""
    assert PYTHON_PATTERNS[0].search('subprocess.run(["storescu", "-aec", "X"])')
    assert PYTHON_PATTERNS[1].search('Popen("findscu -S host 4242", shell=True)')
    assert PYTHON_PATTERNS[2].search('shutil.which("echoscu")')
    assert SHELL_PATTERN.search("  storescu -aec ORTHANC localhost 4242 file.dcm\n")
    assert not PYTHON_PATTERNS[0].search('subprocess.run(["/usr/bin/storescu", "-v"])')
    assert not PYTHON_PATTERNS[0].search('figures["findscu"] = 1.5')
    assert not SHELL_PATTERN.search("if [ ! -x /usr/bin/storescu ]; then\n")


def test_dcmtk_tools_are_where_the_tests_call_them():
    missing = [tool for tool in ("storescu", "storescp", "findscu", "movescu", "getscu",
                                 "echoscu", "dcmdump") if not os.access("/usr/bin/" + tool, os.X_OK)]
    assert missing == []
