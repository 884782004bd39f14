"""The server's Lua automation, run on worker threads (Orthanc 1.13.0's
LuaScripting).

Two Lua states, as in Orthanc, each loaded with the LuaScripts in order and
each with a one-thread pool of its own:
  main    /tools/execute-script, the callbacks of the change stream
          (OnStoredInstance, OnStable*, OnDeleted*, OnUpdated*, OnJob*),
          OnHeartBeat, Initialize/Finalize, and the HTTP and C-FIND filters;
  filter  the filters of incoming instances (ReceivedInstanceFilter,
          ReceivedCStoreInstanceFilter), so that a slow callback does not
          hold up ingestion.
Scripts may block (RestApiGet waits for the reactor to answer; a script may
sleep): nothing here runs Lua on the reactor thread.  Which callbacks a
state defines is known without its lock (LuaEngine.is_defined), so the
reactor never waits for a script to learn there is nothing to call.
"""
from twisted.application import service
from twisted.internet import defer, task, threads
from twisted.python import threadable

from orthancd.automation import formats
from orthancd.automation.lua_jobs import LuaActions, LuaJobManager
from orthancd.changes import JOB_FAILURE, JOB_SUBMITTED, JOB_SUCCESS
from orthancd.errors import ErrorCode, OrthancError
from orthancd.ids import ResourceLevel
from orthancd.index.base import ChangeType, UnknownResource
from orthancd.logs import logger
from orthancd.lua import LuaEngine, LuaError, LuaInternalError, LuaResultError
from orthancd.rest.internal import BlockingRestCaller, InternalClient

log = logger(__name__)

ON_STORED_INSTANCE = "OnStoredInstance"
ON_HEART_BEAT = "OnHeartBeat"
STABLE_CALLBACKS = {"StablePatient": "OnStablePatient", "StableStudy": "OnStableStudy",
                    "StableSeries": "OnStableSeries"}
JOB_CALLBACKS = {JOB_SUBMITTED: "OnJobSubmitted", JOB_SUCCESS: "OnJobSuccess",
                 JOB_FAILURE: "OnJobFailure"}
HTTP_FILTER = "IncomingHttpRequestFilter"
RECEIVED_INSTANCE_FILTER = "ReceivedInstanceFilter"
RECEIVED_CSTORE_FILTER = "ReceivedCStoreInstanceFilter"
INCOMING_FIND_FILTER = "IncomingFindRequestFilter"
INCOMING_WORKLIST_FILTER = "IncomingWorklistRequestFilter"
OUTGOING_FIND_FILTER = "OutgoingFindRequestFilter"


def _per_level(prefix):
    return {level: prefix + level.title for level in ResourceLevel}


DELETED_CALLBACKS = _per_level("OnDeleted")
UPDATED_CALLBACKS = _per_level("OnUpdated")

WATCHED = (ON_STORED_INSTANCE, ON_HEART_BEAT, "Initialize", "Finalize", HTTP_FILTER,
           RECEIVED_INSTANCE_FILTER, RECEIVED_CSTORE_FILTER, INCOMING_FIND_FILTER,
           INCOMING_WORKLIST_FILTER, OUTGOING_FIND_FILTER,
           *STABLE_CALLBACKS.values(), *JOB_CALLBACKS.values(),
           *DELETED_CALLBACKS.values(), *UPDATED_CALLBACKS.values())


def orthanc_error(failure):
    """The OrthancError of a failed Lua call."""
    if isinstance(failure, LuaResultError):
        return OrthancError(ErrorCode[str(failure)])
    if isinstance(failure, LuaInternalError):
        return OrthancError(ErrorCode.InternalError,
                            "An unhandled exception was generated inside the HTTP server")
    if isinstance(failure, LuaError):
        return OrthancError(ErrorCode.CannotExecuteLua, str(failure))
    return failure


class ServerCalls:
    """What Lua reaches of the server beside the REST API, called from a Lua
    thread: each call runs on the reactor (index writes go through the
    writer) and the thread waits for it."""

    def __init__(self, server, reactor):
        self._server = server
        self._reactor = reactor

    def _on_reactor(self, function, *args):
        if threadable.isInIOThread():
            # A script loaded at start-up, before the reactor runs.
            raise OrthancError(ErrorCode.BadSequenceOfCalls,
                               "The Orthanc API is unavailable while the scripts load")
        return threads.blockingCallFromThread(self._reactor, function, *args)

    def store_key_value(self, store_id, key, value):
        self._on_reactor(self._server.index.store_key_value, store_id, key, value)

    def get_key_value(self, store_id, key):
        return self._on_reactor(self._server.index.get_key_value, store_id, key)

    def delete_key_value(self, store_id, key):
        self._on_reactor(self._server.index.delete_key_value, store_id, key)

    def set_stable_status(self, resource_id, stable):
        return self._on_reactor(self._server.stability.set_stable_status, resource_id, stable)


class LuaRestCaller(BlockingRestCaller):
    """RestApiGet... from a script loaded before the reactor runs cannot be
    answered (Orthanc would): they fail instead of waiting forever."""

    def call(self, method, uri, body=None, headers=None):
        if threadable.isInIOThread():
            raise OrthancError(ErrorCode.BadSequenceOfCalls,
                               "The REST API is unavailable while the scripts load")
        return super().call(method, uri, body, headers)


class LuaService(service.Service):
    Error = LuaError
    InternalError = LuaInternalError
    name = "lua"

    def __init__(self, server, reactor, main, main_pool, filters, filter_pool, scripts,
                 heartbeat_period=0, jobs=None):
        self.server = server
        self.engine = main
        self.filter_engine = filters
        self._reactor = reactor
        self._pool = main_pool
        self._filter_pool = filter_pool
        self._scripts = list(scripts)
        self._heartbeat_period = heartbeat_period
        self._heartbeat = None
        self._heartbeat_pending = False
        self._jobs = jobs
        # Events are handled one after the other, in the order they came.
        self._tail = defer.succeed(None)
        self._unsubscribe = None

    # -- life cycle -------------------------------------------------------

    def startService(self):
        super().startService()
        # Loaded at once, in both states, before the ports open (as Orthanc
        # does): a script's top-level code cannot call the REST API then.
        for engine in (self.engine, self.filter_engine):
            for path in self._scripts:
                log.info("Installing the Lua scripts from: {path}", path=path)
                try:
                    with open(path, "rb") as f:
                        engine.execute_bytes(f.read())
                except (OSError, LuaError) as e:
                    log.error("Lua script {path} failed: {error}", path=path, error=e)
        self._unsubscribe = self.server.changes.subscribe(self._on_change)
        self._enqueue_call(defer.succeed(("Initialize", ())))
        if self._heartbeat_period > 0 and self.engine.is_defined(ON_HEART_BEAT):
            log.info("Starting the Lua HeartBeat with a period of {n} seconds",
                     n=self._heartbeat_period)
            self._heartbeat = task.LoopingCall(self._beat)
            self._heartbeat.clock = self._reactor
            self._heartbeat.start(self._heartbeat_period, now=False)

    def stopService(self):
        super().stopService()
        if self._heartbeat is not None and self._heartbeat.running:
            self._heartbeat.stop()
        if self._unsubscribe is not None:
            self._unsubscribe()
        self._enqueue_call(defer.succeed(("Finalize", ())))
        done = defer.Deferred()
        self._tail.addBoth(lambda _: done.callback(None))
        return done

    # -- /tools/execute-script ------------------------------------------

    def execute(self, script):
        """Deferred printed output (bytes) of ``script``, in the main state."""
        return self._pool.run(self.engine.execute_bytes, script)

    def call_function(self, name, *args):
        return self._pool.run(self.engine.call_function, name, *args)

    def has_function(self, name):
        return self.engine.is_defined(name)

    # -- callbacks, driven by the change stream ---------------------------

    def _on_change(self, change):
        kind = change.change_type
        if kind == ChangeType.NewInstance.name:
            if self.engine.is_defined(ON_STORED_INSTANCE):
                self._enqueue_call(self._stored_instance_arguments(change.public_id),
                                   with_operations=True)
        elif kind in STABLE_CALLBACKS:
            name = STABLE_CALLBACKS[kind]
            if self.engine.is_defined(name):
                self._enqueue_call(defer.maybeDeferred(
                    self._stable_arguments, name, change.level, change.public_id),
                    with_operations=True)
        elif kind == ChangeType.Deleted.name:
            self._simple_event(DELETED_CALLBACKS.get(change.level), change.public_id)
        elif kind in (ChangeType.UpdatedAttachment.name, ChangeType.UpdatedMetadata.name):
            self._simple_event(UPDATED_CALLBACKS.get(change.level), change.public_id)
        elif kind in JOB_CALLBACKS:
            self._simple_event(JOB_CALLBACKS[kind], change.public_id)

    def _simple_event(self, name, public_id):
        if name is not None and self.engine.is_defined(name):
            self._enqueue_call(defer.succeed((name, (public_id,))))

    def _stored_instance_arguments(self, instance_id):
        """What OnStoredInstance gets, gathered at once (the instance may be
        gone when its turn comes): its tags, metadata and origin."""
        try:
            metadata = self.server.index.get_metadata(instance_id, ResourceLevel.INSTANCE)
            tags = self.server.render_dataset(
                instance_id, lambda dataset: formats.simplified_tags(
                    dataset, self.server.default_encoding))
        except (UnknownResource, OrthancError):
            return defer.succeed(None)
        origin = formats.format_origin(formats.origin_from_metadata(metadata))
        named = formats.named_metadata(metadata, self.server.metadata_names)
        return tags.addCallback(
            lambda tags: (ON_STORED_INSTANCE, (instance_id, tags, named, origin)))

    def _stable_arguments(self, name, level, public_id):
        try:
            metadata = self.server.index.get_metadata(public_id, level)
            tags = formats.level_main_tags(self.server, level, public_id)
        except UnknownResource:
            return None
        return name, (public_id, tags, formats.named_metadata(metadata, self.server.metadata_names))

    def _enqueue_call(self, arguments, with_operations=False):
        """Call a main-state function once the events before it are handled.
        ``arguments``: a Deferred of (name, args), or of None for nothing."""
        done = defer.Deferred()
        previous, self._tail = self._tail, done

        def call(prepared):
            if prepared is None:
                return None
            name, args = prepared
            if with_operations:
                d = self._pool.run(self._call_collecting, name, args)
                d.addCallback(self._submit_operations)
                return d
            return self._pool.run(self._call_if_defined, name, args)

        def run(_):
            d = arguments.addCallback(call)
            d.addErrback(lambda failure: log.error(
                "Error while processing Lua events: {error}",
                error=getattr(failure.value, "details", None) or failure.getErrorMessage()))
            d.addBoth(lambda _: done.callback(None))
        previous.addBoth(run)

    def _call_if_defined(self, name, args):
        if self.engine.has_function(name):
            self.engine.call_function(name, *args)

    def _call_collecting(self, name, args):
        if not self.engine.has_function(name):
            return []
        return self.engine.call_collecting_operations(name, *args)

    def _submit_operations(self, operations):
        if self._jobs is not None:
            self._jobs.submit(operations)

    def _beat(self):
        # A heartbeat still waiting for its turn is not doubled.
        if self._heartbeat_pending or not self.engine.is_defined(ON_HEART_BEAT):
            return
        self._heartbeat_pending = True

        def beaten(result):
            self._heartbeat_pending = False
            return result
        self._pool.run(self._call_if_defined, ON_HEART_BEAT, ()).addBoth(beaten).addErrback(
            lambda failure: log.error("Error in OnHeartBeat: {error}",
                                      error=failure.getErrorMessage()))

    # -- filters ------------------------------------------------------------

    def filter_http_request(self, method, uri, ip, username, headers):
        """Deferred Boolean of IncomingHttpRequestFilter, or None when no
        script defines it."""
        if not self.engine.is_defined(HTTP_FILTER):
            return None
        return self._checked(self._pool, self.engine.call_predicate, HTTP_FILTER,
                             method, uri, ip, username, headers)

    def filters_received_instances(self, origin):
        """Whether filter_received_instance needs the datasets of the
        instances coming from ``origin``."""
        return (self.filter_engine.is_defined(RECEIVED_INSTANCE_FILTER)
                or (self.filter_engine.is_defined(RECEIVED_CSTORE_FILTER)
                    and origin.get("Origin") == "DicomProtocol"))

    def filter_received_instance(self, dataset, summary, origin):
        """Deferred verdict on an incoming instance: None to keep it, or the
        C-STORE status to answer when a filter leaves it out (0 for
        ReceivedInstanceFilter, the returned status for
        ReceivedCStoreInstanceFilter).  None at once without filters."""
        received = self.filter_engine.is_defined(RECEIVED_INSTANCE_FILTER)
        cstore = (self.filter_engine.is_defined(RECEIVED_CSTORE_FILTER)
                  and origin.get("Origin") == "DicomProtocol")
        if not received and not cstore:
            return None
        encoding = self.server.default_encoding
        formatted_origin = formats.format_origin(origin)
        info = {"HasPixelData": getattr(dataset, "pixel_data_offset", None) is not None}
        if summary.transfer_syntax:
            info["TransferSyntaxUID"] = summary.transfer_syntax

        def run():
            tags = formats.simplified_tags(dataset, encoding)
            if received and self.filter_engine.has_function(RECEIVED_INSTANCE_FILTER):
                if not self.filter_engine.call_predicate(RECEIVED_INSTANCE_FILTER, tags,
                                                         formatted_origin, info):
                    return 0
            if cstore and self.filter_engine.has_function(RECEIVED_CSTORE_FILTER):
                status = self.filter_engine.call_integer(RECEIVED_CSTORE_FILTER, tags,
                                                         formatted_origin, info)
                if not 0 <= status <= 0xFFFF:
                    raise OrthancError(ErrorCode.ParameterOutOfRange,
                                       "The returned DIMSE status should be >= 0 and <= 0xFFFF")
                if status != 0:
                    return status
            return None
        return self._checked(self._filter_pool, run)

    def filter_find_query(self, name, query, second_argument):
        """Deferred of the query (a {"gggg,eeee": value} dict) as the C-FIND
        filter ``name`` rewrites it, or None when no script defines it."""
        if not self.engine.is_defined(name):
            return None
        return self._checked(self._pool, self.engine.call_function, name, query,
                             second_argument)

    @staticmethod
    def _checked(pool, function, *args):
        d = pool.run(function, *args)

        def failed(failure):
            failure.trap(LuaError)
            raise orthanc_error(failure.value)
        return d.addErrback(failed)


def build_lua(server, reactor, pool, filter_pool):
    """The LuaService, when orthancd.tap.lua_wanted."""
    configuration = server.configuration
    client = InternalClient(server.rest_resource)
    calls = ServerCalls(server, reactor)

    def engine():
        return LuaEngine(LuaRestCaller(reactor, client), configuration, calls, WATCHED)
    manager = LuaJobManager(server.jobs, reactor, LuaActions(server, reactor))
    manager.register()
    return LuaService(server, reactor, engine(), pool, engine(), filter_pool,
                      configuration.lua_scripts,
                      int(configuration.get("LuaHeartBeatPeriod", 0) or 0), manager)
