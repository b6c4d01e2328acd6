"""Property: on any bytes, the loaders raise only InterpError, write nothing, and finish.

Seeds are valid files of every kind the loaders read; cases are random bytes,
random metadata, pickles calling torch's allowlisted globals with random arguments,
truncations, and byte mutations of them. The default run (3,000 cases)
takes well under a minute; set ``INTERP_FUZZ_EXAMPLES`` (cases per test, default
1000) for a longer run, as docs/SECURITY.md describes.
"""

from __future__ import annotations

import io
import os
import tempfile
import warnings
import zipfile
from functools import cache
from pathlib import Path

import numpy as np
import torch
from _files import data_arrays, make_tiny, npz_bytes, tiny, torch_bytes
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.torch import save as st_save

import interp
from interp.loading.core import load, load_data, save

EXAMPLES = int(os.environ.get("INTERP_FUZZ_EXAMPLES", "1000"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=2000,  # ms per case: a hang or a huge allocation fails the test
    database=None,  # write nothing into the working tree
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@cache
def seeds() -> dict[str, bytes]:
    """One valid file of each kind (built once)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "m.pt"
        save(tiny(), path, meta={"classes": ["a", "b", "c"], "input_shape": [1, 16]})
        checkpoint = path.read_bytes()
    x, y = data_arrays(n=4)
    return {
        "checkpoint": checkpoint,
        "pickle": torch_bytes(tiny()),
        "legacy": torch_bytes(tiny().state_dict(), legacy=True),
        "state-dict": torch_bytes({"state_dict": tiny().state_dict(), "epoch": 1}),
        "safetensors": st_save(tiny().state_dict()),
        "npz": npz_bytes(x=x, y=y, classes=np.array(["a", "b", "c"])),
        "pt-data": torch_bytes({"x": torch.from_numpy(x), "y": torch.from_numpy(y)}),
    }


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    data = bytearray(seeds()[draw(st.sampled_from(sorted(seeds())))])
    for _ in range(draw(st.integers(1, 8))):
        position = draw(st.integers(0, len(data) - 1))
        data[position] = draw(st.integers(0, 255))
    return bytes(data)


@st.composite
def truncated(draw: st.DrawFn) -> bytes:
    data = seeds()[draw(st.sampled_from(sorted(seeds())))]
    return data[: draw(st.integers(0, len(data) - 1))]


def _only_interp_errors(raw: bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "input"
        path.write_bytes(raw)
        messages = []
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch warns about odd files; errors are the point
            for call in (
                lambda: load(path),
                lambda: load(path, arch=make_tiny),
                lambda: load_data(path),
                lambda: load_data(path, model=tiny(), num_classes=3),
            ):
                try:
                    call()
                except interp.InterpError as err:
                    messages.append(str(err))
        assert all("\n" not in m and str(path) in m for m in messages), messages
        assert [p.name for p in Path(tmp).iterdir()] == ["input"]


@FUZZ
@given(st.one_of(st.binary(max_size=512), st.sampled_from([b"PK\x03\x04", b"\x80\x02", b"{"])))
def test_random_bytes(raw: bytes) -> None:
    _only_interp_errors(raw)


@FUZZ
@given(truncated())
def test_truncations_of_valid_files(raw: bytes) -> None:
    _only_interp_errors(raw)


@FUZZ
@given(mutated())
def test_byte_mutations_of_valid_files(raw: bytes) -> None:
    _only_interp_errors(raw)


def test_seeds_are_valid() -> None:
    """The unmutated seeds load, so the mutations start from real files."""
    s = seeds()
    with tempfile.TemporaryDirectory() as tmp:
        for kind, raw in s.items():
            path = Path(tmp) / kind
            path.write_bytes(raw)
            if kind in ("npz", "pt-data"):
                assert load_data(path, model=tiny()).x.shape == (4, 1, 16)
            else:
                arch = None if kind in ("checkpoint", "pickle") else make_tiny
                assert isinstance(load(path, arch=arch)[0], torch.nn.Module)
    assert io.BytesIO(s["npz"]).read(2) == b"PK"


# --- metadata -----------------------------------------------------------------------

_JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner,
                                                                 max_size=4),
    max_leaves=12,
)  # fmt: skip


@st.composite
def metadata(draw: st.DrawFn) -> dict:
    """Random values under the keys interp reads, sometimes shaped almost right."""
    from interp.zoo.datasets import GENERATORS

    meta: dict = {}
    for key in draw(st.sets(st.sampled_from(["input_shape", "classes", "axis", "recipe"]))):
        meta[key] = draw(_JSON)
    if draw(st.booleans()):
        generator = draw(st.sampled_from(sorted(GENERATORS)))
        keys = sorted(GENERATORS[generator].DEFAULTS)
        params = {k: draw(_JSON) for k in draw(st.sets(st.sampled_from(keys), max_size=3))}
        meta["recipe"] = {"generator": generator, "params": params, "seed": draw(_JSON)}
    if draw(st.booleans()):
        meta["input_shape"] = draw(st.lists(st.integers(-3, 2**40), max_size=4))
    return meta


def _checkpoint_with(meta: dict) -> bytes:
    from interp.loading import checkpoint

    payload = checkpoint.pack(tiny(), {})
    payload["meta"] = meta
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    return buffer.getvalue()


@settings(FUZZ, max_examples=max(EXAMPLES // 5, 20))
@given(metadata())
def test_random_metadata(meta: dict) -> None:
    _only_interp_errors(_checkpoint_with(meta))


# --- pickles built from torch's allowlisted globals -----------------------------------

_ALLOWED = ["builtins.bytearray", "builtins.set", "builtins.complex", "collections.OrderedDict",
            "collections.Counter", "torch.Size", "_codecs.encode", "torch.device",
            "torch.FloatStorage", "torch.FloatTensor", "torch.storage.UntypedStorage",
            "torch._utils._rebuild_tensor_v2", "torch._utils._rebuild_parameter"]  # fmt: skip


def _op_int(n: int) -> bytes:
    if -(2**31) <= n < 2**31:
        return b"J" + n.to_bytes(4, "little", signed=True)  # BININT
    raw = n.to_bytes((n.bit_length() + 8) // 8, "little", signed=True)
    return b"\x8a" + bytes([len(raw)]) + raw  # LONG1


def _op_str(s: str) -> bytes:
    raw = s.encode("utf-8", "surrogatepass")
    return b"X" + len(raw).to_bytes(4, "little") + raw  # BINUNICODE


@st.composite
def _value(draw: st.DrawFn, depth: int = 0) -> bytes:
    """Pickle opcodes that push one value: a literal, a tuple/list, or an allowlisted call."""
    kinds = ["int", "str", "bytes"] + (["tuple", "list", "call", "call"] if depth < 3 else [])
    kind = draw(st.sampled_from(kinds))
    if kind == "int":  # small, or huge enough that the budget must refuse it
        return _op_int(draw(st.integers(-5, 1000) | st.integers(2**33, 2**70)))
    if kind == "str":
        return _op_str(draw(st.sampled_from(["latin1", "cpu", "storage", "0", "x"])))
    if kind == "bytes":
        raw = draw(st.binary(max_size=8))
        return b"C" + bytes([len(raw)]) + raw  # SHORT_BINBYTES
    items = b"".join(draw(st.lists(_value(depth + 1), max_size=4)))
    if kind == "tuple":
        return b"(" + items + b"t"
    if kind == "list":
        return b"](" + items + b"e"
    module, _, name = draw(st.sampled_from(_ALLOWED)).rpartition(".")
    args = b"".join(draw(st.lists(_value(depth + 1), max_size=4)))
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n(" + args + b"tR"


@st.composite
def allowlisted_pickles(draw: st.DrawFn) -> bytes:
    pkl = b"\x80\x03" + draw(_value()) + b"."
    if draw(st.booleans()):
        return pkl
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("archive/data.pkl", pkl)
        archive.writestr("archive/version", b"3\n")
        archive.writestr("archive/byteorder", b"little")
    return buffer.getvalue()


@settings(FUZZ, max_examples=max(EXAMPLES // 5, 20))
@given(allowlisted_pickles())
def test_pickles_of_allowlisted_globals(raw: bytes) -> None:
    _only_interp_errors(raw)
