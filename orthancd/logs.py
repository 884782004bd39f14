"""Logging with Orthanc's run-time verbosity (/tools/log-level).

Every orthancd module logs through ``logger()``, whose events pass a level
filter before reaching twistd's observers, so "default" hides debug events
and "verbose"/"trace" show them.
"""
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
