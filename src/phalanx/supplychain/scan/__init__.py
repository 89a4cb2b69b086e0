"""Model-file scanners that never import, unpickle or execute what they scan.

The pickle analyser is allowlist-first: every import a pickle performs must be allowed by an
ecosystem's allowlist (Python, NumPy, PyTorch, scikit-learn, joblib); known-dangerous imports
are named with the reason, anything else is unknown and fails a scan at the default
threshold. See :mod:`phalanx.supplychain.scan.pickle_vm` for the analysis and
:mod:`phalanx.supplychain.scan.policy` for the allowlist.

Example:
    >>> from phalanx.supplychain.scan import is_safe_to_unpickle
    >>> report = is_safe_to_unpickle("model.pkl")  # doctest: +SKIP
    >>> report.allows_unpickling()  # doctest: +SKIP
    True
"""

from phalanx.supplychain.scan.base import FileScanner, ScanLimits, ScanSession, Source
from phalanx.supplychain.scan.engine import ModelScanCheck, ScanReport, scan_paths
from phalanx.supplychain.scan.pickle_vm import (
    Call,
    GlobalRef,
    PickleLimits,
    PickleReport,
    analyse_pickle,
    is_safe_to_unpickle,
    scan_pickle_file,
)
from phalanx.supplychain.scan.policy import PicklePolicy, Verdict, load_policy

__all__ = [
    "Call",
    "FileScanner",
    "GlobalRef",
    "ModelScanCheck",
    "PickleLimits",
    "PicklePolicy",
    "PickleReport",
    "ScanLimits",
    "ScanReport",
    "ScanSession",
    "Source",
    "Verdict",
    "analyse_pickle",
    "is_safe_to_unpickle",
    "load_policy",
    "scan_paths",
    "scan_pickle_file",
]
