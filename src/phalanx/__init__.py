"""phalanx: attack, harden and audit AI systems.

The top-level package imports nothing heavy: ``import phalanx`` never pulls in torch,
numpy or a database driver. Reach the toolkit through its subpackages::

    from phalanx.core import Finding, Severity
    from phalanx.evasion import PGD            # needs the ``ml`` extra
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
