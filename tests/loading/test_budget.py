"""Tiny files that declare huge allocations are refused before anything is allocated.

Each hostile file is a few KB/MB built in tmp_path; the load runs in a subprocess
under a 2 GiB address-space limit (RLIMIT_AS), so a loader that materialised what
the file declares would die with MemoryError instead of refusing in one line. The
oracle is the file's own declaration, computed here by hand (6 GB for an expanded
view of shape (1500, 1, 1e6) float32, and so on).
"""

from __future__ import annotations

import io
import json
import pickle
import struct
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from _files import make_tiny, torch_bytes
from torch import nn

import interp
from interp.errors import InterpError
from interp.loading.budget import (
    DEFAULT_CAP,
    DEFAULT_MIN,
    Budget,
    default_budget,
    parse_memory,
    scan_pickle,
)

GiB = 2**30
LIMIT_AS = 2 * GiB

_RUNNER = textwrap.dedent(
    """
    import json, resource, sys, time
    resource.setrlimit(resource.RLIMIT_AS, ({limit}, {limit}))
    import interp
    from interp.errors import InterpError
    out = {{}}
    for name, kind, path, kwargs in json.loads(sys.argv[1]):
        try:
            (interp.load if kind == "model" else interp.load_data)(path, **kwargs)
            out[name] = None
        except InterpError as err:
            out[name] = str(err)
    # VmHWM belongs to this process image; ru_maxrss would carry the parent's peak
    # across fork + exec (a long pytest run is already past 1 GiB by itself).
    hwm = [l for l in open("/proc/self/status") if l.startswith("VmHWM:")][0]
    out["peak"] = int(hwm.split()[1]) * 1024
    print(json.dumps(out))
    """
).format(limit=LIMIT_AS)


def _load_limited(cases: list[tuple[str, str, Path, dict]]) -> dict:
    """{name: InterpError message or None, "peak": peak RSS} of loads under RLIMIT_AS 2 GiB.

    One subprocess for every case (torch's import dominates a run); the peak RSS is
    the largest over all of them.
    """
    spec = [(name, kind, str(path), kwargs) for name, kind, path, kwargs in cases]
    proc = subprocess.run([sys.executable, "-c", _RUNNER, json.dumps(spec)],
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _assert_refused(message: str | None, path: Path, *words: str) -> None:
    assert message is not None, "loaded instead of refusing"
    assert "\n" not in message and str(path) in message and "--max-memory" in message, message
    assert "memory budget" in message and all(w in message for w in words), message


def _zip_with(member: str, size: int, level: int = 1) -> bytes:
    """A zip whose ``member`` deflates to ``size`` zero bytes (a zip bomb)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED, compresslevel=level) as archive:
        with archive.open(member, "w", force_zip64=True) as handle:
            chunk = bytes(2**20)
            for _ in range(size // len(chunk)):
                handle.write(chunk)
    return buffer.getvalue()


def test_default_budget_is_proportional_to_the_file_and_capped():
    assert default_budget(0) == DEFAULT_MIN == GiB
    assert default_budget(32 * 2**20) == 2 * GiB  # 64 x 32 MiB
    assert default_budget(100 * 2**20) == DEFAULT_CAP == 4 * GiB
    assert default_budget(3 * GiB) == 6 * GiB  # a file's own contents are never refused
    assert parse_memory("8G") == 8 * GiB and parse_memory("1.5GiB") == 3 * GiB // 2
    assert parse_memory("512M") == 512 * 2**20 and parse_memory(4096) == 4096
    for bad in ("lots", "-3G", "0", True, "1e9G"):
        with pytest.raises(InterpError, match="max_memory"):
            parse_memory(bad)


def _expanded_data(path: Path) -> None:
    # (1500, 1, 1e6) float32 over one stored element: 5.59 GiB when made contiguous.
    x = torch.zeros(1, 1, 1).expand(1500, 1, 10**6)
    torch.save({"x": x, "y": torch.zeros(1500, dtype=torch.long)}, path)


def _wide_meta(path: Path) -> None:
    interp.save(make_tiny(), path, meta={"input_shape": [1, 10**9]})


def _stride_zero_linear(path: Path) -> None:
    model = nn.Sequential(nn.Flatten(), nn.Linear(1, 3))
    model[1].weight = nn.Parameter(torch.zeros(1).expand(3, 10**9))  # 12 GB declared
    model[1].in_features = 10**9
    torch.save(model, path)


def _liar_zip(path: Path) -> None:
    # Members hold 16 bytes, but the central directory entry claims 0xFFFFFF00.
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("x.npy", b"\x00" * 16)
        archive.writestr("y.npy", b"\x00" * 16)
    raw = bytearray(buffer.getvalue())
    central = raw.index(b"PK\x01\x02")
    raw[central + 24 : central + 28] = struct.pack("<I", 0xFFFFFF00)  # uncompressed size
    path.write_bytes(bytes(raw))


def _npy_header(path: Path) -> None:
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<f8", "fortran_order": False,
                                                  "shape": (10**6, 1, 10**4)})  # fmt: skip
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("x.npy", header.getvalue() + b"\x00" * 64)
    path.write_bytes(buffer.getvalue())


def _bytearray_pickle(n: int) -> bytes:
    """A protocol-2 pickle of ``bytearray(n)``: a call torch's weights-only allowlist permits."""
    return (b"\x80\x02cbuiltins\nbytearray\n" + b"\x8a" + bytes([8]) + n.to_bytes(8, "little")
            + b"\x85R.")  # LONG1 n, TUPLE1, REDUCE, STOP  # fmt: skip


def _torch_zip_with_pickle(pkl: bytes) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("archive/data.pkl", pkl)
        archive.writestr("archive/version", b"3\n")
        archive.writestr("archive/byteorder", b"little")
    return buffer.getvalue()


# name -> (file, builder, model or data, load kwargs, words the refusal must hold)
# The zip bombs hold 96 MiB of zeros (~0.4 MB deflated) against a 64 MiB budget set for
# the test: the 3.4 GB bomb is over the 1 GiB default of its 3 MB file alike.
CASES = {
    "expanded data x": ("expanded.pt", _expanded_data, "data", {},
                        ["(1500, 1, 1000000)", "5.59 GiB"]),
    "metadata input_shape": ("wide.pt", _wide_meta, "model", {},
                             ["input_shape", "[1, 1000000000]"]),
    "stride-0 Linear": ("linear.pt", _stride_zero_linear, "model", {}, ["(3, 1000000000)"]),
    "npz bomb": ("bomb.npz", lambda p: p.write_bytes(_zip_with("x.npy", 96 * 2**20)), "data",
                 {"max_memory": "64M"}, ["decompressed", "96"]),
    "torch zip bomb": ("bomb.pt", lambda p: p.write_bytes(_zip_with("a/data.pkl", 96 * 2**20)),
                       "model", {"max_memory": "64M"}, ["decompressed"]),
    "central directory lie": ("liar.npz", _liar_zip, "data", {}, ["decompressed", "4 GiB"]),
    "npy header": ("header.npz", _npy_header, "data", {}, ["(1000000, 1, 10000)"]),
    **{
        f"bytearray({n}) {kind}": (
            f"bytearray_{n}_{kind}.pt",
            lambda p, n=n: p.write_bytes(_torch_zip_with_pickle(_bytearray_pickle(n))),
            kind, {}, [f"bytearray({n})"],
        )
        for n in (3 * 10**9, 10**11) for kind in ("model", "data")
    },
}  # fmt: skip


@pytest.fixture(scope="module")
def refusals(tmp_path_factory: pytest.TempPathFactory) -> dict:
    folder = tmp_path_factory.mktemp("hostile")
    cases = []
    for name, (file, build, kind, kwargs, _) in CASES.items():
        build(folder / file)
        assert (folder / file).stat().st_size < 1_000_000, name  # a tiny file
        cases.append((name, kind, folder / file, kwargs))
    return {"folder": folder, **_load_limited(cases)}


@pytest.mark.parametrize("name", sorted(CASES))
def test_tiny_files_declaring_huge_allocations_are_refused_in_one_line(refusals, name):
    file, _, _, _, words = CASES[name]
    message = refusals[name]
    assert message is not None, f"{name}: loaded instead of refusing"
    _assert_refused(message, refusals["folder"] / file, *words)
    assert "corrupt" not in message


def test_refusing_them_all_stayed_well_under_a_gigabyte(refusals):
    assert refusals["peak"] < GiB, refusals["peak"]


def test_allowlisted_bytearray_pickle_is_what_it_says():
    assert pickle.loads(_bytearray_pickle(5)) == bytearray(5)


def test_expanded_view_within_the_budget_loads(tmp_path: Path):
    x = torch.arange(16.0).view(1, 1, 16).expand(8, 1, 16)
    path = tmp_path / "small_expanded.pt"
    torch.save({"x": x, "y": torch.zeros(8, dtype=torch.long)}, path)
    data = interp.load_data(path)
    assert torch.equal(data.x, x.contiguous()) and data.x.is_contiguous()


def test_legacy_storages_are_charged_by_their_declared_element_counts():
    # A legacy torch.save declares each storage's element count in its pickle.
    raw = torch_bytes({"x": torch.zeros(4), "y": torch.zeros(4, dtype=torch.long)}, legacy=True)
    budget = Budget("f", 10**6)
    scan_pickle(raw, budget, count=5)
    assert budget.used == 4 * 4 + 4 * 8  # float32 x 4 and int64 x 4, by hand


def test_declared_sizes_of_a_real_checkpoint_equal_its_tensors(tmp_path: Path):
    model = make_tiny()
    budget = Budget("m", GiB)
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    with zipfile.ZipFile(buffer) as archive:
        pkl = next(archive.read(n) for n in archive.namelist() if n.endswith("data.pkl"))
    scan_pickle(pkl, budget)
    by_hand = sum(t.numel() * t.element_size() for t in model.state_dict().values())
    assert budget.used == by_hand


def test_shipped_sized_files_load_under_the_default_budget(tmp_path: Path):
    path = tmp_path / "m.pt"
    interp.save(make_tiny(), path, meta={"input_shape": [1, 16]})
    _, info = interp.load(path)
    assert info.input_shape == (1, 16)
    with pytest.raises(InterpError, match=r"memory budget.*--max-memory"):
        interp.load(path, max_memory=64)
    interp.load(path, max_memory="1G")
