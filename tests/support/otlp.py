"""A local OTLP/HTTP receiver standing in for the collector: it keeps every POST and decodes the
real protobuf the SDK's exporters send (traces and metrics)."""

from __future__ import annotations

import gzip
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class _Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if self.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        with self.server.lock:
            self.server.received.append((self.path, body))
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


class Receiver:
    def __init__(self, server: ThreadingHTTPServer):
        self.server = server

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.server.server_port}"

    def bodies(self, path: str) -> list[bytes]:
        with self.server.lock:
            return [body for p, body in self.server.received if p == path]

    def spans(self) -> list[tuple[str, object]]:
        """(service.name, span) of every span received."""
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

        found = []
        for body in self.bodies("/v1/traces"):
            for rs in ExportTraceServiceRequest.FromString(body).resource_spans:
                service = next((a.value.string_value for a in rs.resource.attributes if a.key == "service.name"), "")
                found += [(service, span) for ss in rs.scope_spans for span in ss.spans]
        return found

    def metrics(self) -> list[tuple[str, object]]:
        """(service.name, metric) of every metric in every export, oldest export first."""
        from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest

        found = []
        for body in self.bodies("/v1/metrics"):
            for rm in ExportMetricsServiceRequest.FromString(body).resource_metrics:
                service = next((a.value.string_value for a in rm.resource.attributes if a.key == "service.name"), "")
                found += [(service, m) for sm in rm.scope_metrics for m in sm.metrics]
        return found

    def metric_names(self) -> set[str]:
        return {m.name for _, m in self.metrics()}

    def latest(self, name: str) -> dict[frozenset, float]:
        """{attributes: value} of the last export of gauge or sum `name`."""
        values: dict[frozenset, float] = {}
        for _, metric in self.metrics():
            if metric.name != name:
                continue
            data = metric.gauge if metric.HasField("gauge") else metric.sum
            for point in data.data_points:
                attrs = frozenset((a.key, a.value.string_value) for a in point.attributes)
                values[attrs] = point.as_int if point.HasField("as_int") else point.as_double
        return values


@contextmanager
def otlp_receiver() -> Iterator[Receiver]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.received = []
    server.lock = threading.Lock()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield Receiver(server)
    finally:
        server.shutdown()
        server.server_close()
