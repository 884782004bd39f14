"""Usage metrics, published at /tools/metrics-prometheus.

``MetricsRegistry`` keeps values as Orthanc 1.13.0's MetricsRegistry does
(each with the time it was last set, some as the maximum over the last ten
seconds) and writes them in Orthanc's Prometheus text: one untyped
"name value timestamp-in-ms" line per metric, sorted by name, nothing at
all while metrics are disabled.

``ServerMetrics`` feeds it: the counts and sizes of the index, the jobs and
the last change when the text is asked for (as Orthanc refreshes them), job
completions from the change stream, REST requests as they come and go.  It
adds orthancd's own metrics, typed and described (``orthancd_`` names):
the lag of the reactor, the index writer's queue and group commits, and the
jobs by state.
"""
import struct
import threading
import time

from twisted.application import service
from twisted.internet import task
from twisted.logger import LogLevel, globalLogPublisher

from orthancd.changes import JOB_FAILURE, JOB_SUCCESS
from orthancd.jobs.model import JobState

DIRECTLY = "Directly"
MAX_OVER_10_SECONDS = "MaxOver10Seconds"
_PERIOD = 10  # seconds, for MAX_OVER_10_SECONDS
_MEGABYTE = 1024 * 1024
_FLOAT32 = struct.Struct("f")
_LAG_PROBE_INTERVAL = 0.5  # seconds


def format_float(value):
    """A C++ float as boost::lexical_cast writes it (9 significant digits)."""
    value = _FLOAT32.unpack(_FLOAT32.pack(value))[0]
    return "%.9g" % value


class _Item:
    __slots__ = ("is_float", "policy", "value", "time", "next_value")

    def __init__(self, is_float, policy):
        self.is_float = is_float
        self.policy = policy
        self.value = None
        self.time = None
        self.next_value = None

    def update(self, value, now):
        if self.policy == MAX_OVER_10_SECONDS and self.value is not None \
                and value <= self.value and now - self.time <= _PERIOD:
            self.next_value = value  # taken once the maximum is too old
            return
        self.value, self.time = value, now

    def refresh(self, now):
        if self.policy == MAX_OVER_10_SECONDS and self.next_value is not None \
                and now - self.time > _PERIOD:
            self.value, self.time, self.next_value = self.next_value, now, None

    def format(self):
        return format_float(self.value) if self.is_float else str(int(self.value))


class MetricsRegistry:
    """Orthanc's metrics: integers and floats, set, incremented or kept as a
    maximum; nothing is recorded while disabled."""

    def __init__(self, enabled=True, clock=time.time):
        self.enabled = enabled
        self._clock = clock
        self._items = {}
        # The storage area and the logs report from worker threads.
        self._lock = threading.Lock()

    def _item(self, name, is_float, policy):
        item = self._items.get(name)
        if item is None:
            item = self._items[name] = _Item(is_float, policy)
        return item

    def set_integer(self, name, value, policy=DIRECTLY):
        if self.enabled:
            with self._lock:
                self._item(name, False, policy).update(int(value), self._clock())

    def set_float(self, name, value, policy=DIRECTLY):
        if self.enabled:
            with self._lock:
                self._item(name, True, policy).update(float(value), self._clock())

    def increment(self, name, delta=1):
        if self.enabled:
            with self._lock:
                item = self._item(name, False, DIRECTLY)
                item.value = (item.value or 0) + delta
                item.time = self._clock()

    def value(self, name):
        item = self._items.get(name)
        return None if item is None else item.value

    def prometheus_lines(self):
        """Orthanc's lines: "name value timestamp-ms", by name."""
        if not self.enabled:
            return []
        now = self._clock()
        lines = []
        with self._lock:
            for name in sorted(self._items):
                item = self._items[name]
                if item.value is None:
                    continue
                stamp = int(item.time * 1000)
                item.refresh(now)
                lines.append("%s %s %d\n" % (name, item.format(), stamp))
        return lines


class _OwnMetric:
    def __init__(self, name, kind, description, samples):
        self.name, self.kind, self.description, self.samples = name, kind, description, samples

    def lines(self):
        out = ["# HELP %s %s\n" % (self.name, self.description),
               "# TYPE %s %s\n" % (self.name, self.kind)]
        for labels, value in self.samples:
            label_text = ("{%s}" % ",".join('%s="%s"' % item for item in labels)) if labels else ""
            out.append("%s%s %s\n" % (self.name, label_text, _format_sample(value)))
        return out


def _format_sample(value):
    return str(value) if isinstance(value, int) else repr(float(value))


class ServerMetrics(service.Service):
    """The metrics of one OrthancServer (``server.metrics``)."""
    name = "metrics"

    def __init__(self, server, reactor, enabled=True):
        self._server = server
        self._reactor = reactor
        # (Test reactors without a clock: the wall clock.)
        self.registry = MetricsRegistry(enabled, clock=getattr(reactor, "seconds", time.time))
        self._started_at = None
        self._unsubscribe = None
        self._probe = None
        self._probe_due = None
        self._lags = []  # (time, lag in seconds) of the last period
        self._active_requests = 0

    @property
    def enabled(self):
        return self.registry.enabled

    def set_enabled(self, enabled):
        self.registry.enabled = bool(enabled)

    # -- life cycle --

    def startService(self):
        super().startService()
        self._started_at = self._reactor.seconds()
        self._unsubscribe = self._server.changes.subscribe(
            self._job_finished, change_types=(JOB_SUCCESS, JOB_FAILURE))
        self._probe = task.LoopingCall(self._measure_lag)
        self._probe.clock = self._reactor
        self._probe_due = self._reactor.seconds()
        self._probe.start(_LAG_PROBE_INTERVAL, now=True)
        globalLogPublisher.addObserver(self._count_logged)

    def stopService(self):
        super().stopService()
        globalLogPublisher.removeObserver(self._count_logged)
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        if self._probe is not None and self._probe.running:
            self._probe.stop()

    # -- what happens --

    def _measure_lag(self):
        """How late the reactor runs a call due now: the time it spends on
        work that should have gone to threads."""
        now = self._reactor.seconds()
        lag = max(0.0, now - self._probe_due)
        self._probe_due = now + _LAG_PROBE_INTERVAL
        self._lags = [(t, v) for t, v in self._lags if now - t <= _PERIOD]
        self._lags.append((now, lag))

    def _count_logged(self, event):
        """Orthanc counts the warnings and errors it logs."""
        level = event.get("log_level")
        if level is LogLevel.warn:
            self.registry.increment("orthanc_logged_warnings_count")
        elif level in (LogLevel.error, LogLevel.critical):
            self.registry.increment("orthanc_logged_errors_count")

    def timed(self, name):
        """What to call once the operation ``name`` measures is over: its
        duration in ms, kept as the maximum over ten seconds (Orthanc's
        MetricsRegistry::Timer)."""
        started = time.perf_counter()

        def done(result=None):
            self.registry.set_integer(name, (time.perf_counter() - started) * 1000,
                                      MAX_OVER_10_SECONDS)
            return result
        return done

    def _job_finished(self, event):
        self.registry.increment("orthanc_jobs_total_completed")
        if event.change_type == JOB_SUCCESS:
            self.registry.increment("orthanc_jobs_total_success")
        else:
            self.registry.increment("orthanc_jobs_total_failed")

    def request_started(self):
        """A REST request comes in; returns what to call once it is answered."""
        self._active_requests += 1
        self.registry.set_integer("orthanc_rest_api_active_requests", self._active_requests)
        started = time.perf_counter()

        def finished(_=None):
            self._active_requests -= 1
            self.registry.set_integer("orthanc_rest_api_active_requests", self._active_requests)
            self.registry.set_integer("orthanc_rest_api_duration_ms",
                                      (time.perf_counter() - started) * 1000,
                                      MAX_OVER_10_SECONDS)
        return finished

    # -- the text --

    def _refresh(self):
        """What Orthanc sets when the metrics are read."""
        index = self._server.index
        stats = index.get_statistics()
        counts = self._server.jobs.registry.counts()
        registry = self.registry
        registry.set_float("orthanc_disk_size_mb", stats["disk"] / _MEGABYTE)
        # Orthanc 1.13.0 reports the disk size here too.
        registry.set_float("orthanc_uncompressed_size_mb", stats["disk"] / _MEGABYTE)
        registry.set_integer("orthanc_count_patients", stats["patients"])
        registry.set_integer("orthanc_count_studies", stats["studies"])
        registry.set_integer("orthanc_count_series", stats["series"])
        registry.set_integer("orthanc_count_instances", stats["instances"])
        # As Orthanc's JobsRegistry::GetStatistics: jobs to retry are
        # pending, paused ones running.
        registry.set_integer("orthanc_jobs_pending", counts.get(JobState.PENDING.value, 0)
                             + counts.get(JobState.RETRY.value, 0))
        registry.set_integer("orthanc_jobs_running", counts.get(JobState.RUNNING.value, 0)
                             + counts.get(JobState.PAUSED.value, 0))
        registry.set_integer("orthanc_up_time_s", self._reactor.seconds() - self._started_at)
        # The pools doing the work of Orthanc's storage and transcoder pools.
        registry.set_integer("orthanc_storage_available_threads",
                             self._server.file_io.available_threads())
        registry.set_integer("orthanc_transcoder_available_threads",
                             self._server.pixel_pool.available_threads())
        last = index.get_last_change()
        registry.set_integer("orthanc_last_change", 0 if last is None else last.seq)

    def _own_metrics(self):
        now = self._reactor.seconds()
        writer = self._server.index.writer
        counts = self._server.jobs.registry.counts()
        lags = [lag for t, lag in self._lags if now - t <= _PERIOD]
        return [
            _OwnMetric("orthancd_reactor_lag_seconds", "gauge",
                       "Longest delay of the reactor over the last 10 seconds",
                       [((), max(lags, default=0.0))]),
            _OwnMetric("orthancd_index_writer_queue_depth", "gauge",
                       "Index write operations waiting for the writer thread",
                       [((), writer.queue_depth)]),
            _OwnMetric("orthancd_index_group_commit_size", "gauge",
                       "Operations in the last group commit of the index",
                       [((), writer.last_batch_size)]),
            _OwnMetric("orthancd_index_group_commits_total", "counter",
                       "Group commits of the index since start-up",
                       [((), writer.commits)]),
            _OwnMetric("orthancd_index_committed_operations_total", "counter",
                       "Index write operations committed since start-up",
                       [((), writer.committed_operations)]),
            _OwnMetric("orthancd_jobs", "gauge", "Jobs by state",
                       [((("state", state.value),), counts.get(state.value, 0))
                        for state in JobState]),
        ]

    def prometheus_text(self):
        """The whole text (empty while disabled, as Orthanc)."""
        if not self.enabled:
            return ""
        self._refresh()
        lines = self.registry.prometheus_lines()
        for metric in self._own_metrics():
            lines.extend(metric.lines())
        return "".join(lines)
