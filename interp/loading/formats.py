"""Tell file formats apart from their bytes, and list a pickle's globals without
running it.

Nothing here executes file content: zip archives are read as a directory of
member names, pickles are walked opcode by opcode with :mod:`pickletools`.
"""

from __future__ import annotations

import _compat_pickle
import io
import pickletools
import struct
import zipfile
from typing import Any, Literal, cast

Kind = Literal[
    "empty", "torch-zip", "torchscript", "export", "zip", "legacy-pickle", "pickle",
    "safetensors", "npz", "unknown",
]  # fmt: skip

# torch.save(..., _use_new_zipfile_serialization=False) starts with this pickle of its
# magic number (torch/serialization.py MAGIC_NUMBER, protocol 2).
LEGACY_MAGIC = b"\x80\x02\x8a\nl\xfc\x9cF\xf9 j\xa8P\x19."
_SAFETENSORS_MAX_HEADER = 100 * 2**20  # the safetensors crate's own limit


def sniff(data: bytes) -> Kind:
    """Return the kind of file ``data`` is, from magic bytes and archive members.

    >>> sniff(b"")
    'empty'
    >>> sniff(b"\\x89PNG\\r\\n\\x1a\\n")
    'unknown'
    """
    if not data:
        return "empty"
    if data[:2] == b"PK":
        return _sniff_zip(data)
    if data.startswith(LEGACY_MAGIC):
        return "legacy-pickle"
    if data[0] == 0x80 and len(data) > 1 and 2 <= data[1] <= 5:
        return "pickle"
    if len(data) >= 10 and data[8:9] == b"{":
        (size,) = struct.unpack("<Q", data[:8])
        if size <= min(len(data) - 8, _SAFETENSORS_MAX_HEADER):
            return "safetensors"
    return "unknown"


def zip_names(data: bytes) -> list[str] | None:
    """Member names of a zip archive, or None when it is not a readable zip."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            return archive.namelist()
    except Exception:  # untrusted bytes: zipfile raises many types (even NotImplementedError)
        return None


def _sniff_zip(data: bytes) -> Kind:
    names = zip_names(data)
    if names is None:
        return "zip"  # starts like a zip but is not readable: truncated or corrupt
    tails = {n.split("/", 1)[1] if "/" in n else n for n in names}
    if "archive_format" in tails or any(t.startswith("models/") for t in tails):
        return "export"
    if "constants.pkl" in tails or any(t.startswith("code/") for t in tails):
        return "torchscript"
    if "data.pkl" in tails:
        return "torch-zip"
    if any(n.endswith(".npy") for n in names):
        return "npz"
    return "zip"


def torchscript_code(data: bytes, limit: int = 6) -> list[str]:
    """Return the Python modules a TorchScript archive carries code for (a few)."""
    mods = []
    for name in zip_names(data) or []:
        _, _, tail = name.partition("/code/")
        if tail.endswith(".py"):
            mods.append(tail[: -len(".py")].replace("/", ".").removeprefix("__torch__."))
    return sorted(set(mods))[:limit]


def pickle_globals(data: bytes, count: int = 1) -> list[str]:
    """Return the ``module.name`` globals named by the first ``count`` pickles in ``data``.

    Walks opcodes only (:func:`pickletools.genops`); nothing is imported or called.
    ``STACK_GLOBAL`` takes its two names from the strings most recently pushed or
    fetched from the memo, which is how every pickler writes it.

    Raises:
        ValueError: the bytes are not a well-formed pickle.
    """
    stream = io.BytesIO(data)
    found: list[str] = []
    for _ in range(count):
        memo: dict[int, object] = {}
        recent: list[object] = []
        try:
            for op, arg, _pos in pickletools.genops(stream):
                name, value = op.name, cast(Any, arg)
                if name in ("GLOBAL", "INST"):
                    module, _, attr = str(arg).partition(" ")
                    found.append(_py3_name(module, attr))
                    recent.append(None)
                elif name == "STACK_GLOBAL":
                    pair = recent[-2:] if len(recent) >= 2 else [None, None]
                    found.append(f"{pair[0]}.{pair[1]}")
                    recent.append(None)
                elif name in ("SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "UNICODE",
                              "SHORT_BINSTRING", "BINSTRING", "STRING"):  # fmt: skip
                    recent.append(arg)
                elif name in ("BINPUT", "LONG_BINPUT", "PUT"):
                    memo[int(value)] = recent[-1] if recent else None
                elif name == "MEMOIZE":
                    memo[len(memo)] = recent[-1] if recent else None
                elif name in ("BINGET", "LONG_BINGET", "GET"):
                    recent.append(memo.get(int(value)))
                else:
                    recent.append(None)
                del recent[:-4]
        except Exception as err:  # pickletools raises ValueError, but also others on junk
            raise ValueError(f"malformed pickle: {err}") from None
    return sorted(set(found))


def _py3_name(module: str, attr: str) -> str:
    """``module.attr`` as Python 3 resolves it (protocol 2 pickles write ``__builtin__``)."""
    module, attr = _compat_pickle.NAME_MAPPING.get((module, attr), (module, attr))
    return f"{_compat_pickle.IMPORT_MAPPING.get(module, module)}.{attr}"


def safe_load_globals() -> set[str]:
    """Globals torch's ``weights_only`` unpickler accepts without any allowlist.

    Uses a private torch helper when present; otherwise a minimal set, which
    only makes interp refuse more, never less.
    """
    try:
        from torch._weights_only_unpickler import _get_allowed_globals

        return set(_get_allowed_globals())
    except (ImportError, AttributeError):  # pragma: no cover - torch internals moved
        return {
            "collections.OrderedDict", "torch._utils._rebuild_tensor_v2",
            "torch._utils._rebuild_parameter", "torch.Size", "builtins.set",
        }  # fmt: skip


def qualified(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def zip_member(data: bytes, suffix: str, limit: int = 2**30) -> bytes | None:
    """Return the bytes of the first archive member named ``*/suffix`` (or None).

    Raises:
        ValueError: the member is larger than ``limit`` or cannot be read.
    """
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            for info in archive.infolist():
                if info.filename == suffix or info.filename.endswith("/" + suffix):
                    if info.file_size > limit:
                        raise ValueError(f"{info.filename} is larger than {limit} bytes")
                    with archive.open(info) as member:
                        return member.read(limit + 1)
    except ValueError:
        raise
    except Exception as err:  # untrusted bytes: zipfile raises many types
        raise ValueError(str(err)) from None
    return None


_SIGNATURES = (
    (b"\x89PNG", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF8", "a GIF image"),
    (b"%PDF", "a PDF document"),
    (b"\x89HDF", "an HDF5 file (Keras? convert the model to PyTorch first)"),
    (b"\x93NUMPY", "a NumPy array (data, not a model; pass it with --data)"),
    (b"\x1f\x8b", "a gzip archive (unpack it first)"),
)


def not_a_model(data: bytes, label: str, kind: str) -> str:
    if kind == "zip":
        if zip_names(data) is None:
            return f"{label} is a truncated or corrupt archive; save the model again"
        return f"{label} is a zip archive but not a PyTorch file; pass a saved model"
    if kind == "npz":
        return f"{label} is a NumPy .npz archive (data, not a model); pass it with --data"
    what = next((desc for magic, desc in _SIGNATURES if data.startswith(magic)), None)
    if what is None:
        try:
            data[:4096].decode("utf-8")
            what = "text"
        except UnicodeDecodeError:
            what = "bytes of an unknown format"
    return (
        f"{label} is not a model file ({what}); expected an interp checkpoint, a torch.save "
        "file or .safetensors"
    )
