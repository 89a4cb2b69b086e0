"""Python's warnings about text a scanned file carries.

Decoders the scanners rely on warn when the text they decode is odd: ``pickletools`` (through
``codecs.escape_decode``), Jinja (the ``unicode-escape`` codec) and ``ast.literal_eval``
warn about invalid escape sequences. That text is the file's, written by whoever made it:
the warning is not the caller's problem, and with warnings turned into errors (``pytest -W
error``, common in CI) it would turn a valid file into an unparsable one.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["file_text_warnings_ignored"]


@contextmanager
def file_text_warnings_ignored() -> Iterator[None]:
    """Ignore the deprecation and syntax warnings raised while decoding a file's text."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", SyntaxWarning)
        yield
