"""HttpClassifier against real loopback servers: the phalanx one, and ones that misbehave."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from phalanx.core import Classifier
from phalanx.errors import InvalidParameterError, NotDifferentiableError, TargetError

torch = pytest.importorskip("torch")


@pytest.fixture(scope="module")
def model() -> Any:
    from phalanx.zoo import load_model

    return load_model("digits-mlp")


@pytest.fixture(scope="module")
def served(model: Any) -> Iterator[tuple[Any, str]]:
    from phalanx.adapters.serve import serve_classifier

    with serve_classifier(model) as (server, url):
        yield server, url


@contextmanager
def fake_server(status: int = 200, body: Any = b"", delay: float = 0.0) -> Iterator[Any]:
    """A loopback server that answers every POST with ``status`` and ``body``."""

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.server.hits += 1  # type: ignore[attr-defined]
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            if delay:
                time.sleep(delay)
            data = body(self) if callable(body) else body
            self.send_response(status)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    class Server(ThreadingHTTPServer):
        def handle_error(self, request: Any, client_address: Any) -> None:
            pass  # e.g. the client gave up waiting: nothing to report

    server = Server(("127.0.0.1", 0), Handler)
    server.hits = 0  # type: ignore[attr-defined]
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def url_of(server: Any) -> str:
    return f"http://127.0.0.1:{server.server_address[1]}/"


def digits_x(n: int) -> Any:
    from phalanx.zoo import load_dataset

    return torch.as_tensor(load_dataset("digits", "test").x[:n])


def test_scores_over_http_match_the_local_model(model: Any, served: Any) -> None:
    from phalanx.adapters import HttpClassifier

    server, url = served
    remote = HttpClassifier(url, input_shape=(1, 8, 8), num_classes=10, batch_size=64)
    assert isinstance(remote, Classifier)
    assert remote.differentiable is False
    x = digits_x(100)
    before = server.requests
    with torch.no_grad():
        local = model.logits(x)
    got = remote.logits(x)
    assert got.shape == (100, 10) and got.dtype == torch.float32
    assert torch.allclose(got, local, atol=1e-5)
    assert remote.queries == 100
    assert remote.requests == 2  # batches of 64
    assert server.requests - before == 2
    assert torch.equal(remote.predict(x), local.argmax(1))


def test_num_classes_is_asked_of_the_endpoint(served: Any) -> None:
    from phalanx.adapters import HttpClassifier

    _, url = served
    remote = HttpClassifier(url, input_shape=(1, 8, 8))
    assert remote.num_classes == 10
    assert remote.queries == 0  # the probe is not an attack query


def test_the_server_describes_its_model(served: Any) -> None:
    import urllib.request

    _, url = served
    with urllib.request.urlopen(url, timeout=5) as response:
        info = json.loads(response.read())
    assert info == {"input_shape": [1, 8, 8], "num_classes": 10, "bounds": [0.0, 1.0]}


def test_a_white_box_attack_refuses_the_remote_model(served: Any) -> None:
    from phalanx.adapters import HttpClassifier
    from phalanx.evasion import PGD

    _, url = served
    remote = HttpClassifier(url, input_shape=(1, 8, 8), num_classes=10)
    with pytest.raises(NotDifferentiableError):
        PGD(eps=0.1).run(remote, digits_x(4), torch.zeros(4, dtype=torch.long))


def one_line_error(call: Any) -> str:
    with pytest.raises(TargetError) as info:
        call()
    text = str(info.value)
    assert "\n" not in text
    return text


def test_connection_refused_is_a_target_error() -> None:
    from phalanx.adapters import HttpClassifier

    with socket.socket() as sock:  # a port that was free a moment ago and is closed now
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    remote = HttpClassifier(
        f"http://127.0.0.1:{port}/", input_shape=(4,), num_classes=2, max_retries=1
    )
    text = one_line_error(lambda: remote.logits(torch.zeros(1, 4)))
    assert "connection refused" in text
    assert "2 attempts" in text
    assert remote.requests == 2


def test_server_errors_are_retried_then_reported() -> None:
    from phalanx.adapters import HttpClassifier

    with fake_server(500, b"Traceback (most recent call last):\n  boom\n") as server:
        remote = HttpClassifier(url_of(server), input_shape=(4,), num_classes=2)
        text = one_line_error(lambda: remote.logits(torch.zeros(3, 4)))
        assert server.hits == 3  # max_retries=2
    assert "HTTP 500" in text and "boom" in text and "3 attempts" in text


def test_client_errors_are_not_retried(served: Any) -> None:
    from phalanx.adapters import HttpClassifier

    server, url = served
    before = server.requests
    # The server's model takes (1, 8, 8) inputs: it answers 400 with the shape problem.
    remote = HttpClassifier(url, input_shape=(64,), num_classes=10)
    text = one_line_error(lambda: remote.logits(torch.zeros(2, 64)))
    assert "HTTP 400" in text and "expects inputs of shape" in text
    assert server.requests - before == 1


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"<html>not json</html>", "malformed JSON"),
        (b'{"predictions": [[0.1, 0.9]]}', "expected an object with 'scores'"),
        (b'{"scores": {"a": 1}}', "as a JSON dict"),
        (b'{"scores": [[0.1, 0.9]]}', "shape (1, 2); expected (3, 2)"),
        (b'{"scores": [[0.1], [0.2], [0.3]]}', "shape (3, 1); expected (3, 2)"),
        (b'{"scores": [[0.1, 0.9], [0.5], [1, 2]]}', "shape (3, ?)"),
        (b'{"scores": [[0.1, NaN], [0.5, 0.5], [1, 2]]}', "not finite"),
        (b'{"scores": [[0.1, "x"], [0.5, 0.5], [1, 2]]}', "not finite numbers"),
    ],
    ids=["html", "field", "type", "rows", "columns", "ragged", "nan", "string"],
)
def test_malformed_answers_are_target_errors(body: bytes, message: str) -> None:
    from phalanx.adapters import HttpClassifier

    with fake_server(200, body) as server:
        remote = HttpClassifier(url_of(server), input_shape=(4,), num_classes=2)
        text = one_line_error(lambda: remote.logits(torch.zeros(3, 4)))
        assert server.hits == 1  # a malformed answer is not retried
    assert message in text


def test_timeouts_are_target_errors() -> None:
    from phalanx.adapters import HttpClassifier

    with fake_server(200, b'{"scores": [[0, 1]]}', delay=0.5) as server:
        remote = HttpClassifier(
            url_of(server), input_shape=(4,), num_classes=2, timeout=0.1, max_retries=0
        )
        text = one_line_error(lambda: remote.logits(torch.zeros(1, 4)))
    assert "did not answer within 0.1 s" in text


def test_requests_carry_the_configured_fields_and_headers() -> None:
    from phalanx.adapters import HttpClassifier

    seen: dict[str, Any] = {}

    def answer(handler: Any) -> bytes:
        seen["auth"] = handler.headers.get("Authorization")
        seen["type"] = handler.headers.get("Content-Type")
        return json.dumps({"probs": [[0.25, 0.75], [0.5, 0.5]]}).encode()

    with fake_server(200, answer) as server:
        remote = HttpClassifier(
            url_of(server),
            input_shape=(4,),
            num_classes=2,
            headers={"Authorization": "Bearer t0ken"},
            output_field="probs",
        )
        scores = remote.logits(torch.zeros(2, 4))
    assert torch.allclose(scores, torch.tensor([[0.25, 0.75], [0.5, 0.5]]))
    assert seen == {"auth": "Bearer t0ken", "type": "application/json"}


def test_bad_settings_are_rejected_at_once() -> None:
    from phalanx.adapters import HttpClassifier

    with pytest.raises(InvalidParameterError) as info:
        HttpClassifier("file:///etc/passwd", input_shape=(4,), num_classes=2, timeout=0)
    assert "http://" in str(info.value) and "timeout" in str(info.value)


def test_serve_classifier_stops_serving_on_exit(model: Any) -> None:
    from phalanx.adapters import HttpClassifier
    from phalanx.adapters.serve import serve_classifier

    with serve_classifier(model) as (_, url):
        remote = HttpClassifier(url, input_shape=(1, 8, 8), num_classes=10, max_retries=0)
        assert remote.logits(digits_x(2)).shape == (2, 10)
    with pytest.raises(TargetError, match="connection refused"):
        remote.logits(digits_x(2))
