"""Logging with Orthanc's run-time verbosity (/tools/log-level).

Every orthancd module logs through ``logger()``, whose events pass a level
filter before reaching twistd's observers, so "default" hides debug events
and "verbose"/"trace" show them.
"""
import logging

from twisted.logger import (FilteringLogObserver, Logger, LogLevel, LogLevelFilterPredicate,
                            globalLogPublisher)

LEVELS = ("default", "verbose", "trace")

_filter = LogLevelFilterPredicate(defaultLogLevel=LogLevel.info)
_observer = FilteringLogObserver(globalLogPublisher, [_filter])
_current = ["default"]


def logger(namespace=None):
    return Logger(namespace=namespace, observer=_observer)


def set_level(name):
    if name not in LEVELS:
        raise ValueError(name)
    _current[0] = name
    _filter.setLogLevelForNamespace(None, LogLevel.info if name == "default" else LogLevel.debug)


def get_level():
    return _current[0]


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
