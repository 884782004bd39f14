"""``twistd orthancd``: command-line options and the service tree.

makeService builds one MultiService: the HTTP endpoint serving the REST API,
the DICOM endpoint, the stability monitor, and the index (closed last).
"""
from twisted.application import service, strports
from twisted.internet import reactor as default_reactor
from orthancd.logs import logger, route_standard_logging
from twisted.python import usage

from orthancd.config import ConfigurationError, load_configuration

log = logger(__name__)


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


class IndexService(service.Service):
    """Owns the OrthancServer: consistency sweep on start, index closed on stop."""

    def __init__(self, server):
        self.server = server

    def startService(self):
        super().startService()
        self.server.check_consistency()

    def stopService(self):
        super().stopService()
        self.server.close()


def _endpoint(override, port, interface):
    if override:
        return override
    return "tcp:%d:interface=%s" % (port, interface)


def makeService(options, reactor=default_reactor):
    from orthancd.lua_service import build_lua
    from orthancd.modalities import modality_registry
    from orthancd.net.scp_services import scp_services
    from orthancd.net.server import DicomServerFactory
    from orthancd.rest.app import build_site
    from orthancd.server import OrthancServer

    configuration = options["configuration"]
    route_standard_logging()
    server = OrthancServer(configuration, reactor)
    top = service.MultiService()
    IndexService(server).setServiceParent(top)
    server.stability.setServiceParent(top)

    site = build_site(server)
    server.lua = build_lua(server, reactor)
    # Remote access is refused per request (403, as Orthanc does), so listen everywhere.
    http_endpoint = _endpoint(options["http-endpoint"], configuration.get("HttpPort", 8042),
                              "0.0.0.0")
    strports.service(http_endpoint, site).setServiceParent(top)

    if configuration.get("DicomServerEnabled", True):
        dicom_endpoint = _endpoint(options["dicom-endpoint"],
                                   configuration.get("DicomPort", 4242), "0.0.0.0")
        factory = DicomServerFactory(configuration, server, reactor,
                                     scp_services=scp_services(server),
                                     modalities=modality_registry(server))
        server.dicom_settings_listeners.append(factory.apply_runtime_settings)
        strports.service(dicom_endpoint, factory).setServiceParent(top)
    top.orthanc_server = server
    log.info("orthancd configured from {source}", source=configuration.source)
    return top

