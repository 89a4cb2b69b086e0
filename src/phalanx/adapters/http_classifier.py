"""HttpClassifier: a model behind a JSON HTTP endpoint, as a black-box classifier.

Only the standard library talks to the network (``urllib.request``), so this adapter adds no
dependency. The protocol is one POST per batch::

    request:  {"inputs": [[...], ...]}     nested lists of floats, shape (batch, *input_shape)
    response: {"scores": [[...], ...]}     shape (batch, num_classes): logits or probabilities

:func:`phalanx.adapters.serve.serve_classifier` serves any classifier with this protocol.
"""

from __future__ import annotations

import http.client
import json
import math
import socket
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from phalanx._optional import require
from phalanx.adapters.base import BaseClassifier
from phalanx.errors import InvalidParameterError, TargetError

if TYPE_CHECKING:
    import torch
else:
    torch = require("torch", extra="ml", purpose="HttpClassifier")

#: HTTP statuses worth another try: the server may answer the same request later.
RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
#: Seconds before the first retry; doubled before each further one.
RETRY_DELAY = 0.1
#: Characters of a server's error body quoted in an error message.
_QUOTE = 120


class HttpClassifier(BaseClassifier):
    """A classifier behind a JSON HTTP endpoint (black box, scores only).

    Each batch of up to ``batch_size`` inputs is one POST of ``{field: inputs}`` (nested
    lists of floats); the answer must be ``{output_field: scores}`` with one row of
    ``num_classes`` scores (logits or probabilities) per input. Attacks see these scores
    as logits: score-based attacks (Square) and decision-based ones (HopSkipJump) apply,
    gradient attacks do not (``differentiable`` is False). ``queries`` counts inputs sent,
    ``requests`` counts HTTP requests.

    Connection failures, timeouts and statuses 408, 429 and 5xx are retried up to
    ``max_retries`` times with a doubling delay; other failures are not.

    Args:
        url: The endpoint, ``http://`` or ``https://``.
        input_shape: Shape of one input, e.g. ``(3, 32, 32)`` (the endpoint cannot tell).
        num_classes: Number of classes; ``None`` asks the endpoint once, with a zero input.
        bounds: ``(low, high)`` range of valid inputs. Default ``(0, 1)``.
        batch_size: Most inputs per request. Default 64.
        timeout: Seconds to wait for an answer. Default 30.
        headers: Extra request headers, e.g. ``{"Authorization": "Bearer ..."}``.
        field: Request field holding the inputs. Default ``"inputs"``.
        output_field: Response field holding the scores. Default ``"scores"``.
        max_retries: Further attempts after a transient failure. Default 2.

    Shapes:
        x: ``(batch, *input_shape)``; logits: ``(batch, num_classes)``.

    Raises:
        InvalidParameterError: A bad URL scheme, timeout or retry count.
        TargetError: From any call (and from the constructor when it asks for
            ``num_classes``): the endpoint refused the connection, timed out, answered a
            status other than 200, malformed JSON or scores of the wrong shape. The message
            is one line.

    Example:
        >>> clf = HttpClassifier("http://127.0.0.1:8000/", input_shape=(1, 8, 8),
        ...                      num_classes=10)  # doctest: +SKIP
        >>> clf.predict(x[:4])  # doctest: +SKIP
        tensor([0, 4, 2, 7])
    """

    differentiable = False

    def __init__(
        self,
        url: str,
        *,
        input_shape: Sequence[int],
        num_classes: int | None = None,
        bounds: tuple[float, float] = (0.0, 1.0),
        batch_size: int = 64,
        timeout: float = 30.0,
        headers: Mapping[str, str] | None = None,
        field: str = "inputs",
        output_field: str = "scores",
        max_retries: int = 2,
    ) -> None:
        problems = []
        scheme = urllib.parse.urlsplit(url).scheme
        if scheme not in ("http", "https"):
            problems.append(f"url must start with http:// or https://, got {url!r}")
        if not (isinstance(timeout, (int, float)) and timeout > 0):
            problems.append(f"timeout must be a positive number of seconds, got {timeout!r}")
        if not (isinstance(max_retries, int) and max_retries >= 0):
            problems.append(f"max_retries must be a non-negative integer, got {max_retries!r}")
        if problems:
            raise InvalidParameterError(problems)
        self.url = url
        self.timeout = float(timeout)
        self.headers = dict(headers or {})
        self.field = field
        self.output_field = output_field
        self.max_retries = max_retries
        self.requests = 0
        super().__init__(
            input_shape=tuple(input_shape),
            num_classes=1 if num_classes is None else num_classes,
            bounds=bounds,
            batch_size=batch_size,
        )
        if num_classes is None:
            probe = self._post(torch.zeros((1, *self.input_shape)))
            if not probe or not isinstance(probe[0], list) or not probe[0]:
                raise TargetError(f"{self.url} returned no scores for one probe input")
            self.num_classes = len(probe[0])

    def _logits(self, x: torch.Tensor) -> torch.Tensor:
        parts = []
        for lo in range(0, len(x), self.batch_size):
            chunk = x[lo : lo + self.batch_size]
            rows = self._post(chunk)
            parts.append(self._to_tensor(rows, len(chunk)))
        return torch.cat(parts).to(x.device)

    def _post(self, x: torch.Tensor) -> list[Any]:
        """One request with retries; the parsed ``output_field`` of the answer."""
        body = json.dumps({self.field: x.detach().cpu().to(torch.float64).tolist()})
        request = urllib.request.Request(
            self.url,
            data=body.encode("utf-8"),
            headers={"Content-Type": "application/json", **self.headers},
            method="POST",
        )
        attempts = self.max_retries + 1
        for attempt in range(attempts):
            self.requests += 1
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as response:
                    status = response.status
                    raw = response.read()
            except urllib.error.HTTPError as exc:
                status, raw = exc.code, _read_quietly(exc)
                problem = f"{self.url} answered HTTP {status}{_quote(raw)}"
                retry = status in RETRY_STATUSES
            except urllib.error.URLError as exc:
                problem = f"cannot reach {self.url}: {_reason(exc.reason)}"
                retry = True
            except TimeoutError:
                problem = f"{self.url} did not answer within {self.timeout:g} s"
                retry = True
            except (OSError, http.client.HTTPException) as exc:  # reset or cut mid-answer
                problem = f"connection to {self.url} failed: {_reason(exc)}"
                retry = True
            else:
                if status != 200:
                    problem, retry = f"{self.url} answered HTTP {status}{_quote(raw)}", False
                else:
                    return self._parse(raw)
            if not retry or attempt == attempts - 1:
                tries = f" (after {attempt + 1} attempts)" if attempt else ""
                raise TargetError(problem + tries)
            time.sleep(RETRY_DELAY * 2**attempt)
        raise AssertionError("unreachable")  # pragma: no cover

    def _parse(self, raw: bytes) -> list[Any]:
        try:
            payload = json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise TargetError(
                f"{self.url} returned malformed JSON ({_one_line(str(exc))}){_quote(raw)}"
            ) from None
        if not isinstance(payload, dict) or self.output_field not in payload:
            keys = ", ".join(map(str, payload)) if isinstance(payload, dict) else None
            found = f"fields {keys}" if keys else f"a JSON {type(payload).__name__}"
            raise TargetError(
                f"{self.url} returned {found}; expected an object with {self.output_field!r}"
            )
        rows = payload[self.output_field]
        if not isinstance(rows, list):
            raise TargetError(
                f"{self.url} returned {self.output_field!r} as a JSON "
                f"{type(rows).__name__}; expected a list of score rows"
            )
        return rows

    def _to_tensor(self, rows: list[Any], n: int) -> torch.Tensor:
        """Scores as a ``(n, num_classes)`` float tensor, or a one-line ``TargetError``."""
        k = self.num_classes
        shape_ok = len(rows) == n and all(isinstance(r, list) and len(r) == k for r in rows)
        if not shape_ok:
            raise TargetError(
                f"{self.url} returned scores of shape {_describe(rows)}; expected ({n}, {k})"
            )
        numeric = all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for r in rows for v in r
        )
        if not numeric or not all(math.isfinite(v) for r in rows for v in r):
            raise TargetError(f"{self.url} returned scores that are not finite numbers")
        return torch.tensor(rows, dtype=torch.float32)

    def __repr__(self) -> str:
        return (
            f"HttpClassifier({self.url!r}, input_shape={self.input_shape}, "
            f"num_classes={self.num_classes}, bounds={self.bounds})"
        )


def _describe(rows: Any) -> str:
    """The shape of a nested list, as far as it is regular, e.g. ``(3, 10)`` or ``(3, ?)``."""
    if not isinstance(rows, list):
        return "()"
    widths = {len(r) if isinstance(r, list) else -1 for r in rows}
    if len(widths) == 1 and -1 not in widths:
        return f"({len(rows)}, {widths.pop()})"
    return f"({len(rows)}, ?)" if rows else "(0,)"


def _reason(reason: Any) -> str:
    if isinstance(reason, ConnectionRefusedError):
        return "connection refused"
    if isinstance(reason, (TimeoutError, socket.timeout)):
        return "timed out"
    return _one_line(str(reason)) or type(reason).__name__


def _read_quietly(exc: urllib.error.HTTPError) -> bytes:
    try:
        return exc.read() or b""
    except OSError:
        return b""


def _quote(raw: bytes) -> str:
    text = _one_line(raw.decode("utf-8", "replace"))
    if not text:
        return ""
    if len(text) > _QUOTE:
        text = text[:_QUOTE] + "..."
    return f": {text}"


def _one_line(text: str) -> str:
    return " ".join(text.split())
