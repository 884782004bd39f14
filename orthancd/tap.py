"""``twistd orthancd``: command-line options and the service tree.

makeService only builds objects: when twistd daemonizes, it forks after
makeService, and threads or an open LMDB environment do not survive a fork.
Everything that opens files or starts threads does it in its startService.
The tree, in start order (it stops in the reverse order, each service once
the one started after it has stopped):

  index          opens the storage area and the index, checks what a crash
                 left pending; closes them last
  index-writer   the LMDB writer thread (group commits)
  file-io        the pool that reads, writes and parses files
  small-files    the thread that parses and writes small uploads
  ingest-workers the helper processes parsing incoming headers
  pixels         the pool that decodes and encodes images
  lua-pool, lua-filter-pool, lua
                 the threads of the two Lua states, then the LuaScripts
                 (when Lua is on; orthancd.lua_service)
  stability      the stable-resources timer
  deflate        the pool that deflates the files of ZIP archives
  jobs           the job engine (reloads the saved jobs, runs the workers)
  metrics        the metrics (subscribes to the change stream, probes the reactor)
  HTTP, DICOM    the listening ports
"""
import functools
import gc
import os

from twisted.application import service, strports
from twisted.internet import defer
from twisted.internet import reactor as default_reactor
from orthancd.logs import logger, route_standard_logging
from twisted.python import usage

from orthancd import collector
from orthancd.config import ConfigurationError, load_configuration

log = logger(__name__)

# File reads, writes and DICOM parsing release the GIL for most of their time.
FILE_IO_THREADS = 10
# zlib releases the GIL while it deflates: one thread per core.
DEFLATE_THREADS = max(2, os.cpu_count() or 1)
# Decoding and encoding images is CPU-bound; codecs, zlib and numpy release
# the GIL for most of it.  A few threads keep both cores busy, and bound the
# memory that concurrent decodes take (bench/pixels_bench.py).
PIXEL_THREADS = 4
# Files written while the thread storing them hashes them (an upload
# alone): each job is one write, which never waits for anything.
STORAGE_WRITE_THREADS = 2


class Options(usage.Options):
    synopsis = "[--config FILE_OR_DIRECTORY]"
    longdesc = ("An Orthanc-compatible DICOM server.  Without --config it runs on an "
                "embedded default configuration, storing data in ./OrthancStorage.")
    optParameters = [
        ["config", "c", None, "Orthanc configuration file, or a directory of *.json files"],
        ["http-endpoint", None, None, "Override the HTTP endpoint (e.g. tcp:8042:interface=0.0.0.0)"],
        ["dicom-endpoint", None, None, "Override the DICOM endpoint (e.g. tcp:4242)"],
    ]

    def postOptions(self):
        try:
            self["configuration"] = load_configuration(self["config"])
        except ConfigurationError as e:
            # A configuration mistake is not a usage mistake: say what is
            # wrong (file, line, column) without the option summary.
            raise SystemExit("orthancd: cannot start: %s" % e)


class StackedServices(service.MultiService):
    """A MultiService whose children stop one at a time, in the reverse order
    of their start, each once the previous one has finished stopping: a
    service outlives the services started after it, which may use it (the
    index outlives the writer, which outlives the pools feeding it)."""

    def startService(self):
        super().startService()
        # What start-up made (modules, dictionaries, routes: some 10^5
        # objects) lives as long as the process: out of the garbage
        # collector's sight, its full collections no longer walk it all.
        gc.freeze()

    @defer.inlineCallbacks
    def stopService(self):
        service.Service.stopService(self)
        for child in reversed(list(self)):
            try:
                yield defer.maybeDeferred(child.stopService)
            except Exception:
                log.failure("Stopping {service} failed", service=child.name or child)


class IndexService(service.Service):
    """Opens the OrthancServer's storage and index (and removes what a crash
    left unreferenced) on start; closes them on stop."""
    name = "index"

    def __init__(self, server):
        self.server = server

    def startService(self):
        super().startService()
        self.server.open()

    def stopService(self):
        super().stopService()
        self.server.close()


def _endpoint(override, port, interface):
    if override:
        return override
    return "tcp:%d:interface=%s" % (port, interface)


def lua_wanted(configuration):
    """Orthanc runs a Lua engine when ExecuteLuaEnabled or LuaScripts ask for one."""
    return bool(configuration.get("ExecuteLuaEnabled", False) or configuration.get("LuaScripts"))


def _dicom_services(server):
    """The DICOM listener's services, made at its first association: with
    them come pydicom and pynetdicom (orthancd.pydicom_import)."""
    from orthancd.net.scp_services import scp_services
    return scp_services(server)


def makeService(options, reactor=default_reactor):
    # Making the tree imports most of orthancd and builds the routes.
    with collector.paused():
        return _make_service(options, reactor)


def _make_service(options, reactor):
    from orthancd.archives.service import Archives
    from orthancd.modalities import modality_registry
    from orthancd.net.server import DicomServerFactory
    from orthancd.ingest_workers import ParserPool, default_worker_count
    from orthancd.pools import ThreadPoolService
    from orthancd.rest.app import build_site
    from orthancd.server import OrthancServer

    configuration = options["configuration"]
    route_standard_logging()
    top = StackedServices()
    file_io = ThreadPoolService("file-io", reactor, maxthreads=FILE_IO_THREADS)
    pixel_pool = ThreadPoolService("pixels", reactor, maxthreads=PIXEL_THREADS)
    storage_writes = ThreadPoolService("storage-writes", reactor,
                                       maxthreads=STORAGE_WRITE_THREADS)
    small_files = ThreadPoolService("small-files", reactor, maxthreads=1)
    try:
        server = OrthancServer(configuration, reactor, file_io, pixel_pool, storage_writes,
                               small_files)
    except ConfigurationError as e:
        # Options whose values only the server checks (ExtraMainDicomTags,
        # IngestTranscoding): the same message as a configuration mistake.
        raise SystemExit("orthancd: cannot start: %s" % e)
    IndexService(server).setServiceParent(top)
    server.index.writer.setServiceParent(top)
    # File I/O threads may wait for a write: its pool stops after them.
    storage_writes.setServiceParent(top)
    file_io.setServiceParent(top)
    small_files.setServiceParent(top)
    # Helper processes parsing the headers of incoming instances.
    parsers = ParserPool(reactor, server.temporary_directory,
                         {"extra_main_dicom_tags": configuration.get("ExtraMainDicomTags")},
                         configuration.get("IngestWorkers", default_worker_count()))
    parsers.setServiceParent(top)
    server.ingest.parser_pool = parsers
    deflate = ThreadPoolService("deflate", reactor, maxthreads=DEFLATE_THREADS)
    server.archives = Archives(server, deflate)
    pixel_pool.setServiceParent(top)

    site = build_site(server)
    lua_pool = ThreadPoolService("lua-pool", reactor, maxthreads=1, minthreads=1)
    lua_filter_pool = ThreadPoolService("lua-filter-pool", reactor, maxthreads=1, minthreads=1)
    server.lua = None
    if lua_wanted(configuration):
        # Lua (lupa, the bindings, the internal REST client) is imported
        # only when asked for.
        from orthancd.lua_service import build_lua
        server.lua = build_lua(server, reactor, lua_pool, lua_filter_pool)
        lua_pool.setServiceParent(top)
        lua_filter_pool.setServiceParent(top)
        server.lua.setServiceParent(top)
        # The filters of the HTTP server and of the ingest path.
        site.resource.request_filter = server.lua.filter_http_request
        server.ingest.instance_filter = server.lua.filter_received_instance
        server.ingest.instance_filter_needed = server.lua.filters_received_instances
    server.stability.setServiceParent(top)
    deflate.setServiceParent(top)
    server.jobs.setServiceParent(top)
    server.metrics.setServiceParent(top)
    # Remote access is refused per request (403, as Orthanc does), so listen everywhere.
    http_endpoint = _endpoint(options["http-endpoint"], configuration.get("HttpPort", 8042),
                              "0.0.0.0")
    strports.service(http_endpoint, site).setServiceParent(top)

    if configuration.get("DicomServerEnabled", True):
        dicom_endpoint = _endpoint(options["dicom-endpoint"],
                                   configuration.get("DicomPort", 4242), "0.0.0.0")
        factory = DicomServerFactory(configuration, server, reactor,
                                     scp_services=functools.partial(_dicom_services, server),
                                     modalities=modality_registry(server))
        server.dicom_settings_listeners.append(factory.apply_runtime_settings)
        strports.service(dicom_endpoint, factory).setServiceParent(top)
    top.orthanc_server = server
    log.info("orthancd configured from {source}", source=configuration.source)
    return top

