"""Serve any classifier over the JSON protocol that :class:`HttpClassifier` speaks.

A tiny standard-library server (``http.server.ThreadingHTTPServer``) for tests, demos and for
exposing a model to black-box testing::

    with serve_classifier(model) as (server, url):
        remote = HttpClassifier(url, input_shape=model.input_shape)
        Square(eps=0.1, max_queries=1000).run(remote, x, y)
        server.requests  # HTTP requests answered

``POST /`` takes ``{"inputs": [[...], ...]}`` and answers ``{"scores": [[...], ...]}``;
``GET /`` answers the model's ``input_shape``, ``num_classes`` and ``bounds``. Bad requests get
status 400 (413 when too large) and ``{"error": "..."}``; a failing model gets 500. The server
binds to loopback by default and has no authentication: do not expose it to a network you do
not trust.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any, cast

from phalanx._optional import require
from phalanx.core.protocols import Classifier
from phalanx.errors import InputError

if TYPE_CHECKING:
    import torch
else:
    torch = require("torch", extra="ml", purpose="serve_classifier")

logger = logging.getLogger(__name__)

#: Largest request body accepted, in bytes.
MAX_BODY = 64 * 2**20


class ClassifierServer(ThreadingHTTPServer):
    """An HTTP server answering the JSON classifier protocol for one classifier.

    Args:
        address: ``(host, port)`` to bind; port 0 picks a free one.
        classifier: The model served.
        field: Request field holding the inputs. Default ``"inputs"``.
        output_field: Response field holding the scores. Default ``"scores"``.
        max_body: Largest request body accepted, in bytes.

    Attributes:
        requests: POST requests received (answered with any status).
        samples: Inputs scored.
    """

    daemon_threads = True

    def __init__(
        self,
        address: tuple[str, int],
        classifier: Classifier,
        *,
        field: str = "inputs",
        output_field: str = "scores",
        max_body: int = MAX_BODY,
    ) -> None:
        super().__init__(address, _Handler)
        self.classifier = classifier
        self.field = field
        self.output_field = output_field
        self.max_body = max_body
        self.requests = 0
        self.samples = 0
        # One request at a time reaches the model: adapters and their counters are not
        # thread-safe.
        self.lock = threading.Lock()

    def handle_error(self, request: Any, client_address: Any) -> None:
        # socketserver would print the traceback to stderr; the library never prints.
        logger.warning("error while answering %s", client_address, exc_info=True)

    @property
    def url(self) -> str:
        """The endpoint's URL."""
        host, port = self.server_address[:2]
        return f"http://{host!s}:{port}/"

    def score(self, inputs: Any) -> list[list[float]]:
        """Scores for a nested list of inputs (raises ``InputError`` when unusable)."""
        try:
            x = torch.tensor(inputs, dtype=torch.float32)
        except (TypeError, ValueError, RuntimeError) as exc:
            raise InputError(f"{self.field!r} must be nested lists of numbers ({exc})") from None
        with self.lock, torch.no_grad():
            scores = torch.as_tensor(self.classifier.logits(x))
            self.samples += len(x)
        return cast("list[list[float]]", scores.detach().cpu().to(torch.float64).tolist())


class _Handler(BaseHTTPRequestHandler):
    server_version = "phalanx-serve"

    def do_GET(self) -> None:
        clf = cast(ClassifierServer, self.server).classifier
        self._answer(
            200,
            {
                "input_shape": list(clf.input_shape),
                "num_classes": clf.num_classes,
                "bounds": list(clf.bounds),
            },
        )

    def do_POST(self) -> None:
        server = cast(ClassifierServer, self.server)
        with server.lock:
            server.requests += 1
        try:
            length = int(self.headers.get("Content-Length") or "")
        except ValueError:
            self._answer(411, {"error": "a Content-Length header is required"})
            return
        if length < 0 or length > server.max_body:
            self._answer(413, {"error": f"request bodies are limited to {server.max_body} bytes"})
            return
        body = self.rfile.read(length)
        try:
            payload = json.loads(body)
        except (UnicodeDecodeError, json.JSONDecodeError):
            self._answer(400, {"error": "the request body is not valid JSON"})
            return
        if not isinstance(payload, dict) or server.field not in payload:
            self._answer(400, {"error": f"expected a JSON object with {server.field!r}"})
            return
        try:
            scores = server.score(payload[server.field])
        except InputError as exc:  # includes ShapeError: the client sent unusable inputs
            self._answer(400, {"error": str(exc)})
            return
        except Exception:  # the model failed: report 500 and keep serving
            logger.exception("the served classifier failed")
            self._answer(500, {"error": "the model failed on this request"})
            return
        self._answer(200, {server.output_field: scores})

    def _answer(self, status: int, payload: dict[str, Any]) -> None:
        data = json.dumps(payload).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        # The library never prints: access logs go to the module logger.
        logger.debug("%s - %s", self.address_string(), format % args)


@contextmanager
def serve_classifier(
    classifier: Classifier,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    field: str = "inputs",
    output_field: str = "scores",
) -> Iterator[tuple[ClassifierServer, str]]:
    """Serve ``classifier`` over HTTP in a background thread for the ``with`` block.

    Args:
        classifier: Any classifier (torch, scikit-learn, ONNX, ...).
        host: Interface to bind (IPv4). Default loopback, ``"127.0.0.1"``.
        port: Port to bind; 0 (the default) picks a free one.
        field: Request field holding the inputs. Default ``"inputs"``.
        output_field: Response field holding the scores. Default ``"scores"``.

    Yields:
        ``(server, url)``: the running :class:`ClassifierServer` (its ``requests`` and
        ``samples`` count the traffic) and the URL to give :class:`HttpClassifier`.

    Example:
        >>> with serve_classifier(model) as (server, url):  # doctest: +SKIP
        ...     remote = HttpClassifier(url, input_shape=(1, 8, 8), num_classes=10)
        ...     remote.predict(x[:4])
    """
    server = ClassifierServer((host, port), classifier, field=field, output_field=output_field)
    thread = threading.Thread(
        target=server.serve_forever,
        kwargs={"poll_interval": 0.05},
        name=f"phalanx-serve:{server.server_address[1]}",
        daemon=True,
    )
    thread.start()
    try:
        yield server, server.url
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
