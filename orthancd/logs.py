"""Logging with Orthanc's run-time verbosity (/tools/log-level).

Every orthancd module logs through ``logger()``, whose events pass a level
filter before reaching twistd's observers, so "default" hides debug events
and "verbose"/"trace" show them, category by category as in Orthanc.
"""
import logging

from twisted.logger import (FilteringLogObserver, Logger, LogLevel, LogLevelFilterPredicate,
                            globalLogPublisher)

LEVELS = ("default", "verbose", "trace")

# Orthanc's log categories (/tools/log-level-{category}) and the namespaces
# each covers in orthancd; "generic" is everything else.  LMDB plays the role
# of Orthanc's SQLite index; orthancd has no plugins, so that category covers
# nothing.
CATEGORIES = {
    "generic": (),
    "plugins": (),
    "http": ("orthancd.rest",),
    "sqlite": ("orthancd.index",),
    "dicom": ("orthancd.net", "pynetdicom"),
    "jobs": ("orthancd.jobs",),
    "lua": ("orthancd.lua", "orthancd.lua_service"),
}

_filter = LogLevelFilterPredicate(defaultLogLevel=LogLevel.info)
_observer = FilteringLogObserver(globalLogPublisher, [_filter])
_current = dict.fromkeys(CATEGORIES, "default")


def logger(namespace=None):
    return Logger(namespace=namespace, observer=_observer)


def _apply(category):
    # Twisted has no level below debug: "trace" shows what "verbose" shows.
    level = LogLevel.info if _current[category] == "default" else LogLevel.debug
    if category == "generic":
        _filter.setLogLevelForNamespace(None, level)
    for namespace in CATEGORIES[category]:
        _filter.setLogLevelForNamespace(namespace, level)


def set_level(name, category=None):
    """Set the verbosity of one category, or of all of them (Orthanc's
    /tools/log-level)."""
    if name not in LEVELS:
        raise ValueError(name)
    for each in ([category] if category else CATEGORIES):
        _current[each] = name
        _apply(each)


def is_verbose(category):
    """Whether a category logs more than by default (cheap enough to guard
    a log call on a hot path)."""
    return _current[category] != "default"


def get_level(category=None):
    """The verbosity of one category; without one, the most verbose of all
    categories (as Orthanc's /tools/log-level reports it)."""
    if category:
        return _current[category]
    return max(_current.values(), key=LEVELS.index)


for _category in CATEGORIES:
    _apply(_category)


class _ToTwistedLogs(logging.Handler):
    """Modules written against the standard library's logging (the DICOM
    network layer, pydicom) end up in twistd's log with everything else."""

    _LEVELS = ((logging.CRITICAL, LogLevel.critical), (logging.ERROR, LogLevel.error),
               (logging.WARNING, LogLevel.warn), (logging.INFO, LogLevel.info))

    def emit(self, record):
        level = next((twisted for threshold, twisted in self._LEVELS if record.levelno >= threshold),
                     LogLevel.debug)
        try:
            message = record.getMessage()
        except Exception:  # a malformed log call must not break the caller
            message = str(record.msg)
        logger(record.name).emit(level, "{message}", message=message)


def route_standard_logging(name="orthancd"):
    """Send the ``name`` hierarchy of standard logging to the Twisted logs."""
    standard = logging.getLogger(name)
    if not any(isinstance(h, _ToTwistedLogs) for h in standard.handlers):
        standard.addHandler(_ToTwistedLogs())
    standard.setLevel(logging.DEBUG)
    standard.propagate = False
