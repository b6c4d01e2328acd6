"""A memory budget for loading untrusted files, checked before anything is materialised.

A small file can declare a huge allocation: a zip member that deflates to gigabytes,
a storage of 3e9 elements, a stride-0 view that becomes 6 GB when made contiguous,
``bytearray(3_000_000_000)`` through torch's weights-only allowlist, an
``input_shape`` of ``[1, 1e9]``. Every such size is read from the file's own
declarations (the zip central directory, the pickle's opcodes walked symbolically,
``.npy`` headers, metadata) and charged to a :class:`Budget` before torch or numpy
allocates anything; over the budget is a one-line :class:`InterpError` that names
``--max-memory``. See docs/SECURITY.md.

>>> budget = Budget("m.pt", default_budget(1000))
>>> budget.limit == DEFAULT_MIN
True
"""

from __future__ import annotations

import io
import math
import pickletools
import re
import zipfile
from typing import Any

from interp.errors import InterpError

GiB = 2**30
DEFAULT_MIN = 1 * GiB  # every file may use this much
DEFAULT_FACTOR = 64  # ... or this many times its own size
DEFAULT_CAP = 4 * GiB  # ... but no more than this, unless the file itself is larger
# One probe sample may take this fraction of the budget: a forward's activations are
# many times its input (a Conv with 64 kernels makes 64 copies of a 1-channel signal).
SAMPLE_FRACTION = 16
FIX = "pass --max-memory (max_memory= in Python) to allow more, only for a file you trust"

_UNITS = {"": 1, "b": 1, "k": 2**10, "kb": 2**10, "kib": 2**10, "m": 2**20, "mb": 2**20,
          "mib": 2**20, "g": GiB, "gb": GiB, "gib": GiB, "t": 2**40, "tb": 2**40,
          "tib": 2**40}  # fmt: skip


def default_budget(file_size: int) -> int:
    """``max(1 GiB, 64 x file size)`` capped at 4 GiB, and never below twice the file.

    A file's own contents are never refused (twice: its bytes and its tensors); what
    the budget stops is amplification, a small file that declares a large allocation.

    >>> default_budget(3 * 2**20) == 2**30, default_budget(2**40) == 2**41
    (True, True)
    """
    return max(min(max(DEFAULT_MIN, DEFAULT_FACTOR * file_size), DEFAULT_CAP), 2 * file_size)


def parse_memory(value: int | str) -> int:
    """Bytes from an int or a size such as ``"8G"``, ``"512MiB"``, ``"2.5GB"`` (powers of 2).

    Raises:
        InterpError: not a positive size.

    >>> parse_memory("8G") == 8 * 2**30, parse_memory(1024)
    (True, 1024)
    """
    if isinstance(value, bool):
        raise InterpError(f"`max_memory` must be a size such as 8G, got {value!r}")
    if isinstance(value, int):
        number: float = value
    else:
        match = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]*)?)\s*([a-zA-Z]*)\s*", str(value))
        unit = match[2].lower() if match else ""
        if match is None or unit not in _UNITS:
            raise InterpError(
                f"`max_memory` {value!r} is not a size; write it like 8G, 512M or 2.5GiB"
            )
        number = float(match[1]) * _UNITS[unit]
    if not math.isfinite(number) or number < 1 or number > 2**62:
        raise InterpError(f"`max_memory` must be a positive size such as 8G, got {value!r}")
    return int(number)


def human(n: float) -> str:
    """``1.5 GiB``: a byte count for messages."""
    for unit, size in (("TiB", 2**40), ("GiB", GiB), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= size:
            return f"{n / size:.3g} {unit}"
    return f"{int(n)} bytes"


class Budget:
    """Bytes a load may allocate; :meth:`charge` raises once the total is over ``limit``."""

    def __init__(self, label: str, limit: int) -> None:
        self.label, self.limit, self.used = label, int(limit), 0

    def check(self, nbytes: float, what: str) -> None:
        """Refuse one allocation of ``nbytes`` larger than the whole budget."""
        if nbytes > self.limit:
            raise InterpError(
                f"{self.label}: {what} would take {human(nbytes)}, over the memory budget of "
                f"{human(self.limit)}; {FIX}"
            )

    def charge(self, nbytes: float, what: str) -> None:
        """Add ``nbytes`` to the running total; refuse when the total is over budget."""
        self.check(self.used + nbytes, what)
        self.used += int(nbytes)

    def sample(self, shape: tuple[int, ...], what: str) -> None:
        """Refuse an input shape whose single float32 sample is over 1/16 of the budget."""
        nbytes = 4 * math.prod(shape)
        if nbytes * SAMPLE_FRACTION > self.limit:
            raise InterpError(
                f"{self.label}: {what} {list(shape)} makes one input sample of {human(nbytes)}, "
                f"too large for the memory budget of {human(self.limit)} (a forward needs "
                f"many times its input); {FIX}"
            )


def check_zip(data: bytes, budget: Budget) -> None:
    """Charge the declared (central directory) sizes of every member of a zip archive.

    Python's zipfile and torch's reader both stop at the declared size, so the sum
    bounds what reading the archive can decompress.
    """
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            infos = archive.infolist()
    except Exception:  # untrusted bytes; the format check reports the damage
        return
    total = sum(max(int(i.file_size), 0) for i in infos)
    budget.charge(total, f"the archive's {len(infos)} members, decompressed,")


def check_npz(data: bytes, budget: Budget) -> None:
    """Charge every ``.npy`` member's declared array size (from its header) before loading.

    numpy allocates the declared shape before reading the data, so a header can
    ask for far more than the member holds.
    """
    import numpy as np
    from numpy.lib import format as npy

    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except Exception:
        return
    with archive:
        for info in archive.infolist():
            if not info.filename.endswith(".npy"):
                continue
            try:
                with archive.open(info) as member:
                    version = npy.read_magic(member)
                    reader = npy.read_array_header_1_0 if version == (1, 0) else (
                        npy.read_array_header_2_0)
                    shape, _, dtype = reader(member, max_header_size=10_000)
            except Exception:  # a damaged member: np.load reports it
                continue
            nbytes = math.prod(int(s) for s in shape) * np.dtype(dtype).itemsize
            budget.charge(nbytes, f"array {info.filename[:-4]!r} of shape {tuple(shape)}")


# --- pickles, walked symbolically -------------------------------------------------

_MARK = object()
_ITEMSIZE = {
    "Double": 8, "Float": 4, "Half": 2, "BFloat16": 2, "Long": 8, "Int": 4, "Short": 2,
    "Char": 1, "Byte": 1, "Bool": 1, "ComplexDouble": 16, "ComplexFloat": 8, "QInt32": 4,
    "QInt8": 1, "QUInt8": 1, "QUInt4x2": 1, "QUInt2x4": 1, "Untyped": 1,
}  # fmt: skip
_TENSOR_REBUILDS = ("torch._utils._rebuild_tensor", "torch._utils._rebuild_tensor_v2",
                    "torch._utils._rebuild_tensor_v3", "torch._utils._rebuild_qtensor")  # fmt: skip
_PASS_THROUGH = ("torch._utils._rebuild_parameter", "torch._utils._rebuild_parameter_with_state")
_SAME_OBJECT = ("APPEND", "APPENDS", "SETITEM", "SETITEMS", "ADDITEMS", "BUILD")
_LITERAL_NONE = {"NONE": None, "NEWTRUE": True, "NEWFALSE": False}


class _Global:
    def __init__(self, name: str) -> None:
        self.name = name


class _Storage:
    def __init__(self, nbytes: int, itemsize: int) -> None:
        self.nbytes, self.itemsize = nbytes, itemsize


class _Tensor:
    def __init__(self, shape: tuple[int, ...]) -> None:
        self.shape = shape


def _storage_itemsize(kind: Any) -> int:
    name = kind.name.rpartition(".")[2] if isinstance(kind, _Global) else ""
    return _ITEMSIZE.get(name.removesuffix("Storage"), 8)


def _ints(value: Any) -> tuple[int, ...] | None:
    if isinstance(value, _Tensor):
        return None
    if isinstance(value, (tuple, list)) and all(
        isinstance(v, int) and not isinstance(v, bool) for v in value
    ):
        return tuple(value)
    return None


def _sized_call(name: str, args: Any, budget: Budget) -> None:
    """Charge what an allowlisted constructor would allocate from its literal arguments."""
    if not isinstance(args, tuple):
        return
    leaf = name.rpartition(".")[2]
    constructor = name == "builtins.bytearray" or (
        name.startswith("torch.") and (leaf.endswith("Storage") or leaf.endswith("Tensor"))
    )
    if not constructor:
        return
    itemsize = 1 if name == "builtins.bytearray" or leaf == "UntypedStorage" else 8
    sizes = [a for a in args if isinstance(a, int) and not isinstance(a, bool)]
    if sizes:
        nbytes = math.prod(max(s, 0) for s in sizes) * itemsize
        budget.charge(nbytes, f"the pickle's call {leaf}({', '.join(map(str, sizes[:4]))})")


def _call(func: Any, args: Any, budget: Budget) -> Any:
    name = func.name if isinstance(func, _Global) else ""
    if not name:
        return None
    if name == "torch.Size" and isinstance(args, tuple) and args:
        return _ints(args[0])
    if name in _PASS_THROUGH and isinstance(args, tuple) and args:
        return args[0]
    if name in _TENSOR_REBUILDS and isinstance(args, tuple) and len(args) >= 3:
        storage, shape = args[0], _ints(args[2])
        if isinstance(storage, _Storage) and shape is not None:
            nbytes = math.prod(max(s, 0) for s in shape) * storage.itemsize
            if nbytes > storage.nbytes:  # an expanded (stride-0) or overlapping view
                budget.charge(
                    nbytes, f"a tensor of shape {shape} over a storage of {human(storage.nbytes)}"
                )
            return _Tensor(shape)
        return None
    _sized_call(name, args, budget)
    return None


def _persistent(pid: Any, budget: Budget) -> Any:
    # torch.save writes ('storage', storage type, key, location, numel).
    if isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage":
        numel = pid[4]
        if isinstance(numel, int) and not isinstance(numel, bool):
            itemsize = _storage_itemsize(pid[1])
            nbytes = max(numel, 0) * itemsize
            budget.charge(nbytes, f"a storage of {numel} elements")
            return _Storage(nbytes, itemsize)
    return None


def scan_pickle(data: bytes, budget: Budget, count: int = 1) -> None:
    """Walk the first ``count`` pickles in ``data`` on a symbolic stack; charge sizes.

    Nothing is imported or called: values are literals, tuples of them, or
    placeholders for globals, storages and tensors. Malformed pickles are left for
    the loader to report.
    """
    stream = io.BytesIO(data)
    try:
        for _ in range(count):
            if stream.tell() >= len(data):
                return
            _scan_one(stream, budget)
    except InterpError:
        raise
    except Exception:  # malformed: the real loader says so in its own words
        return


def _scan_one(stream: io.BytesIO, budget: Budget) -> None:
    stack: list[Any] = []
    memo: dict[Any, Any] = {}
    for op, arg, _pos in pickletools.genops(stream):
        name = op.name
        if name in ("PUT", "BINPUT", "LONG_BINPUT"):
            memo[arg] = stack[-1]
            continue
        if name == "MEMOIZE":
            memo[len(memo)] = stack[-1]
            continue
        if name in ("GET", "BINGET", "LONG_BINGET"):
            stack.append(memo.get(arg))
            continue
        if name == "MARK":
            stack.append(_MARK)
            continue
        if name == "DUP":
            stack.append(stack[-1])
            continue
        before = op.stack_before
        sliced: list[Any] = []
        if pickletools.markobject in before:
            while stack and stack[-1] is not _MARK:
                sliced.insert(0, stack.pop())
            if stack:
                stack.pop()
            below = before.index(pickletools.markobject)
        else:
            below = len(before)
        popped = [stack.pop() for _ in range(min(below, len(stack)))][::-1]
        if name == "STOP":
            return
        if not op.stack_after:
            continue
        stack.append(_result(name, arg, popped, sliced, budget))
    return


def _result(name: str, arg: Any, popped: list[Any], sliced: list[Any], budget: Budget) -> Any:
    if name in _LITERAL_NONE:
        return _LITERAL_NONE[name]
    if name in _SAME_OBJECT:
        return popped[0] if popped else None
    if name in ("GLOBAL", "INST"):
        module, _, attr = str(arg).partition(" ")
        found = _Global(f"{module}.{attr}")
        return found if name == "GLOBAL" else _call(found, tuple(sliced), budget)
    if name == "OBJ" and sliced:
        return _call(sliced[0], tuple(sliced[1:]), budget)
    if name == "STACK_GLOBAL":
        parts = [p if isinstance(p, str) else "?" for p in popped]
        return _Global(".".join(parts))
    if name in ("TUPLE", "TUPLE1", "TUPLE2", "TUPLE3"):
        return tuple(sliced if name == "TUPLE" else popped)
    if name == "EMPTY_TUPLE":
        return ()
    if name in ("EMPTY_LIST", "LIST"):
        return list(sliced)
    if name == "REDUCE" and len(popped) == 2:
        return _call(popped[0], popped[1], budget)
    if name == "NEWOBJ" and len(popped) == 2:
        return _call(popped[0], popped[1], budget)
    if name == "NEWOBJ_EX" and len(popped) == 3:
        return _call(popped[0], popped[1], budget)
    if name == "BINPERSID" and popped:
        return _persistent(popped[0], budget)
    if arg is not None and name not in ("PERSID", "EXT1", "EXT2", "EXT4"):
        return arg  # ints, floats, strings, bytes
    return None
