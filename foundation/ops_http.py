"""The operator endpoints of a camcount process: ``/metrics`` (Prometheus), ``/healthz``, ``/readyz`` and JSON
status documents such as the inference worker's ``/models``."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

log = logging.getLogger(__name__)


class OpsServer:
    """Serves metrics from ``registry``; ``/readyz`` answers 200 only while ``is_ready()`` is true.

    ``/healthz`` answers 200 while the process serves requests at all (liveness). Each ``documents`` entry maps a
    path to a function whose JSON-serialisable result is served there, computed per request.
    """

    def __init__(self, port: int, registry: CollectorRegistry, is_ready: Callable[[], bool],
                 documents: Mapping[str, Callable[[], object]] | None = None) -> None:
        self.port = port
        self._registry = registry
        self._is_ready = is_ready
        self._documents = dict(documents or {})
        self._server: ThreadingHTTPServer | None = None

    def start(self) -> None:
        registry, is_ready, documents = self._registry, self._is_ready, self._documents

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                if self.path == "/metrics":
                    self._reply(200, generate_latest(registry), CONTENT_TYPE_LATEST)
                elif self.path == "/healthz":
                    self._reply(200, b"ok\n")
                elif self.path == "/readyz":
                    ready = is_ready()
                    self._reply(200 if ready else 503, b"ready\n" if ready else b"not ready\n")
                elif self.path in documents:
                    body = json.dumps(documents[self.path](), indent=2, default=str).encode() + b"\n"
                    self._reply(200, body, "application/json")
                else:
                    self._reply(404, b"not found\n")

            def _reply(self, status: int, body: bytes, content_type: str = "text/plain") -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("0.0.0.0", self.port), Handler)
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, name="ops-http", daemon=True).start()
        log.info("metrics and health on http://0.0.0.0:%d/metrics", self.port)

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
