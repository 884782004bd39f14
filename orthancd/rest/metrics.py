"""/tools/metrics (are metrics collected?) and /tools/metrics-prometheus
(orthancd.metrics)."""
from orthancd.errors import ErrorCode, OrthancError
from orthancd.rest.http import render_text, text_body

PROMETHEUS_TEXT = b"text/plain; version=0.0.4"


def install(app, server):
    metrics = server.metrics

    @app.route("/tools/metrics", methods=["GET"])
    def metrics_enabled(request):
        return render_text(request, "1" if metrics.enabled else "0")

    @app.route("/tools/metrics", methods=["PUT"])
    def set_metrics_enabled(request):
        value = text_body(request).strip(" \t\r\n")
        if value not in ("0", "1", "false", "true"):
            raise OrthancError(ErrorCode.BadFileFormat, "Boolean value expected")
        metrics.set_enabled(value in ("1", "true"))
        return render_text(request, "")

    @app.route("/tools/metrics-prometheus", methods=["GET"])
    def prometheus(request):
        return render_text(request, metrics.prometheus_text(), PROMETHEUS_TEXT)
