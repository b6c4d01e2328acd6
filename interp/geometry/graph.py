"""The dataflow graph of a model's forward, as call sites, traced three ways.

interp used to read a model as the chain of leaf-module hooks in firing order. That breaks on
real architectures: a torchvision ``BasicBlock`` calls one ``self.relu`` twice, residual
branches do not run after the main path, functional ops (``F.conv2d`` in a BlurPool,
``torch.flatten``, ``x.mean(-1)``, ``x[:, :, 100]``, ``permute``, ``cat``, ``add``) never fire a
hook, and a parametrized weight is not a layer. :func:`trace` builds the real graph:

1. ``torch.fx.symbolic_trace`` with a tracer that keeps standard ``torch.nn`` modules
   (including parametrized ones, whose class is generated at runtime) as leaves;
2. else ``torch.export.export(model, (x,), strict=False)`` (handles forwards that call
   ``len(x.shape)``), with aten ops mapped back to module call sites through
   ``node.meta['nn_module_stack']``;
3. else a chain of leaf-module calls in firing order, read with forward hooks.

Every traced graph is checked: its output on ``x`` must equal ``model(x)``; otherwise the next
method is tried. Every forward runs inside :func:`interp._guard.inspecting`, so the user's
model leaves exactly as it came, also when a trace fails midway.

Nodes are *call sites*: the second call of a module is its own node (``layer1.0.relu#2``).
:meth:`Graph.run` evaluates the graph, capturing or replacing any node's output;
:func:`geometry` (from :mod:`interp.geometry.axes`) gives each node's receptive field,
stride, offset and whether it is still shift-equivariant.
"""

from __future__ import annotations

import io
import logging
import warnings
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager, redirect_stderr
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.fx
from torch import nn
from torch.nn.utils import parametrize
from torch.utils import _pytree as pytree

from interp._guard import inspecting
from interp.errors import InterpError
from interp.geometry.axes import (
    GONE,
    Layout,
    NodeGeometry,
    SeqArg,
    TArg,
    collapse,
    describe_function,
    describe_module,
    first_break,
    geometry,
    guess_map,
    input_layout,
)

__all__ = [
    "Graph",
    "Node",
    "NodeGeometry",
    "collapse",
    "first_break",
    "geometry",
    "is_leaf_module",
    "trace",
]

METHODS = ("fx", "export", "hooks")


@dataclass(frozen=True)
class Node:
    """One call site of the forward.

    Attributes:
        name: module path for a module call (``layer1.0.relu``; ``#2``, ``#3`` for its second
            and third call in one forward); fx/export node names for functional ops
            (``add``, ``flatten``, ``getitem``, ``mean``); ``input`` / ``output``.
        op: 'input' | 'module' | 'function' | 'method' | 'output'.
        target: readable op (``Conv2d``, ``operator.add``, ``aten.add.Tensor``, ``flatten``).
        module: named_modules path of the module called; for a functional op, the module
            whose forward made the call (None at the top level).
        inputs: names of the producer nodes of its tensor inputs, in argument order.
        output_shape: output shape without the batch axis; None for a tuple output.
        kind: 'conv', 'pool', 'adaptive_pool', 'global_pool', 'pointwise', 'add',
            'mul_broadcast', 'cat', 'pad', 'reshape', 'linear', 'index', 'lstm', 'rnn',
            'opaque' (plus 'input' / 'output').
        params: window (``axes``, ``kernel``, ``stride``, ``dilation``, ``padding``,
            ``padding_after`` per window axis, ``groups``, ``padding_mode``), pad amounts
            (``axes``, ``before``, ``after``, ``mode``), reshape (``perm`` or ``shape``),
            index (``axis``, ``indices``, all of ``index``)... Tensor axes are negative.
    """

    name: str
    op: str
    target: str
    module: str | None
    inputs: tuple[str, ...]
    output_shape: tuple[int, ...] | None
    kind: str
    params: dict[str, Any] = field(default_factory=dict, hash=False)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields (tuples become lists).

        >>> Node("relu", "module", "ReLU", "relu", ("conv",), (4, 8), "pointwise").to_dict()["kind"]
        'pointwise'
        """
        return {
            "name": self.name, "op": self.op, "target": self.target, "module": self.module,
            "inputs": list(self.inputs), "kind": self.kind, "params": _jsonable(self.params),
            "output_shape": None if self.output_shape is None else list(self.output_shape),
        }  # fmt: skip


def _jsonable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return repr(value)


@dataclass(frozen=True, eq=False)
class Graph:
    """The traced dataflow graph of ``model`` on one input.

    Attributes:
        nodes: call sites in topological order, ``input`` first and ``output`` last.
        method: 'fx' | 'export' | 'hooks' (see :func:`trace`).
        fallback_reason: why the earlier methods failed, one line; None for 'fx'.
        input_shape: the traced input's shape without the batch axis.
    """

    nodes: tuple[Node, ...]
    method: str
    fallback_reason: str | None
    input_shape: tuple[int, ...]
    _model: nn.Module = field(repr=False)
    _gm: torch.fx.GraphModule | None = field(repr=False)
    _value: dict[str, str] = field(repr=False)  # public name -> fx node whose value it is
    _xdep: frozenset[str] = field(repr=False)  # fx nodes whose value depends on x
    _layouts: dict[str, Layout] = field(repr=False)  # public name -> output layout
    _in_layouts: dict[str, Layout] = field(repr=False)  # public name -> its main input's
    _sites: dict[str, nn.Module] = field(repr=False)  # hooks: module path -> module
    _module_calls: dict[str, tuple[str, ...]] = field(repr=False)  # path -> output node per call

    @property
    def names(self) -> tuple[str, ...]:
        """Node names in topological order.

        >>> trace(nn.Sequential(nn.ReLU()), torch.randn(1, 2, 5)).names
        ('input', '0', 'output')
        """
        return tuple(n.name for n in self.nodes)

    def node(self, name: str) -> Node:
        """The node called ``name``; InterpError listing the valid names otherwise.

        >>> trace(nn.Sequential(nn.ReLU()), torch.randn(1, 2, 5)).node("0").kind
        'pointwise'
        """
        for n in self.nodes:
            if n.name == name:
                return n
        raise InterpError(f"graph has no node named {name!r}; pass one of: {', '.join(self.names)}")

    def module_output(self, path: str, call: int = -1) -> str:
        """The node whose output is what module ``path`` returned on its ``call``-th call.

        Works for any module, not only leaves: ``module_output("layer4")`` is the last node
        inside ``layer4`` whose value leaves it (the block's final ``relu#2``, say).

        Args:
            path: a ``named_modules()`` path.
            call: which call (0-based; negative counts from the last).

        >>> trace(nn.Sequential(nn.Sequential(nn.ReLU())), torch.randn(1, 2, 5)).module_output("0")
        '0.0'
        """
        calls = self._module_calls.get(path)
        if not calls:
            known = ", ".join(sorted(p for p in self._module_calls if p)) or "none"
            raise InterpError(
                f"graph.module_output: module {path!r} made no node of this graph (not called, "
                f"or it returns its input unchanged); pass one of: {known}"
            )
        if not -len(calls) <= call < len(calls):
            raise InterpError(
                f"graph.module_output: module {path!r} was called {len(calls)} time(s); "
                f"pass call between {-len(calls)} and {len(calls) - 1}"
            )
        return calls[call]

    def producers(self, name: str) -> tuple[Node, ...]:
        """The nodes whose outputs node ``name`` reads, in argument order.

        >>> [n.name for n in trace(nn.Sequential(nn.ReLU()), torch.randn(1, 2, 5)).producers("0")]
        ['input']
        """
        return tuple(self.node(i) for i in self.node(name).inputs)

    def consumers(self, name: str) -> tuple[Node, ...]:
        """The nodes that read node ``name``'s output, in topological order.

        >>> [n.name for n in trace(nn.Sequential(nn.ReLU()), torch.randn(1, 2, 5)).consumers("0")]
        ['output']
        """
        self.node(name)
        return tuple(n for n in self.nodes if name in n.inputs)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready description: method, fallback reason, input shape, nodes.

        >>> trace(nn.Sequential(nn.ReLU()), torch.randn(1, 2, 5)).to_dict()["method"]
        'fx'
        """
        return {
            "method": self.method,
            "fallback_reason": self.fallback_reason,
            "input_shape": list(self.input_shape),
            "nodes": [n.to_dict() for n in self.nodes],
        }

    # --- running ---------------------------------------------------------------

    def _check_names(self, names: Iterable[str], arg: str) -> list[str]:
        names = list(names)
        for name in names:
            if name not in self._value and name not in ("input", "output"):
                raise InterpError(
                    f"graph.run: {arg} names no node {name!r}; pass names from: "
                    f"{', '.join(self.names)}"
                )
        return names

    def run(
        self,
        x: torch.Tensor,
        capture: Iterable[str] = (),
        replace: Mapping[str, torch.Tensor] | None = None,
        *,
        grad: bool = False,
        detach: bool = True,
    ) -> tuple[Any, dict[str, Any]]:
        """Evaluate the graph on ``x``, capturing and/or replacing node outputs.

        Each call site is recorded on its own (the second call of a reused module is node
        ``name#2``; two calls are never concatenated). A replaced node's value is the given
        tensor instead of what the op computes, so ``replace={"layer4": A}`` gives the
        logits as a function of the feature map ``A``.

        Args:
            x: the input, batched like the traced one.
            capture: node names whose outputs to return (detached copies).
            replace: node name -> tensor to use as that node's output.
            grad: run with autograd enabled (default: under ``torch.no_grad()``).
            detach: return captured outputs as detached copies (default); with
                ``grad=True, detach=False`` they keep their autograd history, e.g. to take
                the gradient of one feature map with respect to ``x``.

        Returns:
            ``(output, {name: captured output})``.

        >>> out, caps = graph.run(x, capture=("relu", "relu#2"))   # doctest: +SKIP
        """
        capture = self._check_names(capture, "capture")
        replace = dict(replace or {})
        self._check_names(replace, "replace")
        if "input" in replace:
            x = replace.pop("input")
        req = _Request(set(capture), replace, {}, _detached if detach else _same)
        with inspecting(self._model, grad=grad):
            if "input" in req.capture:
                req.captured["input"] = req.keep(x)
            run_path = self._run_hooks if self.method == "hooks" else self._run_fx
            out = run_path(x, req)
            if "output" in req.capture:
                req.captured["output"] = req.keep(out)
        return out, req.captured

    def _run_fx(self, x: torch.Tensor, req: _Request) -> Any:
        assert self._gm is not None
        inner_capture = {self._value[n]: n for n in req.capture if n in self._value}
        inner_replace = {self._value[n]: v for n, v in req.replace.items() if n in self._value}
        runner = _Runner(self._gm, inner_replace, inner_capture, req.captured, keep=req.keep,
                         checking=True)  # fmt: skip
        try:
            return runner.run(x)
        except _ModuleFailed as err:  # the model's own failure (a user hook...): as it was
            raise (err.__cause__ or err) from None
        except (RuntimeError, ValueError, IndexError) as err:
            raise InterpError(
                f"graph.run: the traced graph could not run on x of shape {tuple(x.shape)} "
                f"({_one_line(err)}); pass x (and replacements) shaped like the traced input "
                f"{(-1, *self.input_shape)}, or trace again with this input"
            ) from err

    def _run_hooks(self, x: torch.Tensor, req: _Request) -> Any:
        counts: dict[str, int] = defaultdict(int)

        def make(path: str) -> Callable[..., Any]:
            def hook(_m: nn.Module, _inputs: Any, output: Any) -> Any:
                counts[path] += 1
                name = _call_name(path, counts[path])
                if name in req.replace:
                    output = req.replace[name]
                if name in req.capture:
                    req.captured[name] = req.keep(output)
                return output if name in req.replace else None

            return hook

        handles = [m.register_forward_hook(make(p)) for p, m in self._sites.items()]
        try:
            return self._model(x)
        finally:
            for h in handles:
                h.remove()

    def callable_from(
        self, name: str, x: torch.Tensor, *, grad: bool = False
    ) -> Callable[[torch.Tensor], Any]:
        """The model's output as a function of node ``name``'s (batched) output.

        Everything that does not depend on ``name`` is computed from ``x`` once, here. The
        replacement may have a different batch size than ``x`` (e.g. a batch of shifted
        feature maps) only when no node after ``name`` also reads something computed from
        ``x`` (a residual skip around ``name``, or a shape such as ``x.size(0)`` taken before
        it; torch.export graphs read the batch size off ``x`` for every batch-dependent
        shape); otherwise the call raises InterpError. With
        the 'hooks' method the graph's branches are invisible: each call reruns the model on
        ``x`` (repeated along the batch when ``x`` has batch 1) with ``name``'s output replaced.

        Args:
            name: a node of this graph.
            x: the input that fixes every other node.
            grad: let the returned function run with autograd enabled.

        Returns:
            ``h`` with ``h(A)`` = the output when node ``name`` outputs ``A``.

        >>> h = graph.callable_from("layer4", x)   # doctest: +SKIP
        >>> logits = h(feature_maps)               # doctest: +SKIP
        """
        self.node(name)
        batch = int(x.shape[0])
        if self.method == "hooks":
            return self._hooks_callable(name, x, grad)
        assert self._gm is not None
        nodes = {n.name: n for n in self._gm.graph.nodes}
        inner = nodes[self._value[name]] if name != "input" else _placeholder(self._gm)
        with inspecting(self._model):
            keeper = _Runner(self._gm, {}, {}, {}, keep_env=True)
            keeper.run(x)
            env = {n: _detached(v) for n, v in keeper.env.items()}
        after: set[torch.fx.Node] = set()
        todo = [inner]
        while todo:
            for user in todo.pop().users:
                if user not in after:
                    after.add(user)
                    todo.append(user)
        from_x: set[torch.fx.Node] = set()  # anything computed from x, shapes included
        todo = [_placeholder(self._gm)]
        while todo:
            for user in todo.pop().users:
                if user not in from_x:
                    from_x.add(user)
                    todo.append(user)
        from_x.add(_placeholder(self._gm))
        side = sorted(
            {
                m.name
                for n in after
                for m in n.all_input_nodes
                if m not in after and m is not inner and m in from_x
            }
        )
        side_public = sorted(
            {self._public_of(s) if s in self._xdep else "a shape read off x" for s in side}
        )
        expected = (batch, *(self.node(name).output_shape or ()))
        gm, model = self._gm, self._model

        def h(value: torch.Tensor) -> Any:
            if int(value.shape[0]) != batch and side:
                raise InterpError(
                    f"graph.callable_from({name!r}): the replacement has batch "
                    f"{int(value.shape[0])} but x has batch {batch}, and later nodes also read "
                    f"{', '.join(side_public)} computed from x; pass a value with batch {batch}, "
                    f"or pick a node that everything after it depends on"
                )
            start = {n: v for n, v in env.items() if n not in after and n.op != "output"}
            start[inner] = value
            with inspecting(model, grad=grad):
                try:
                    return _Runner(gm, {}, {}, {}).run(x, initial_env=start)
                except (RuntimeError, ValueError, IndexError) as err:
                    raise InterpError(
                        f"graph.callable_from({name!r}): the graph could not run on a value "
                        f"of shape {tuple(value.shape)} ({_one_line(err)}); pass a value "
                        f"shaped like the node's output {expected}"
                    ) from err

        return h

    def _public_of(self, inner: str) -> str:
        for public, value in self._value.items():
            if value == inner:
                return public
        return inner

    def _hooks_callable(
        self, name: str, x: torch.Tensor, grad: bool
    ) -> Callable[[torch.Tensor], Any]:
        batch = int(x.shape[0])

        def h(value: torch.Tensor) -> Any:
            xb = x
            if int(value.shape[0]) != batch:
                if batch != 1:
                    raise InterpError(
                        f"graph.callable_from({name!r}): this graph was read with hooks, so "
                        f"a replacement with batch {int(value.shape[0])} needs x with batch 1 "
                        f"(got {batch}); pass x[:1] or a value with batch {batch}"
                    )
                xb = x.expand(int(value.shape[0]), *x.shape[1:])
            with inspecting(self._model, grad=grad):
                if name == "input":
                    return self._model(value)
                return self._run_hooks(xb, _Request(set(), {name: value}, {}, _detached))

        return h


# --- running an fx graph --------------------------------------------------------


@dataclass(frozen=True)
class _Request:
    """One :meth:`Graph.run`: public node names to capture and replace, and what came back.

    ``keep`` copies a captured value (detached, or as it is under ``detach=False``).
    """

    capture: set[str]
    replace: dict[str, Any]
    captured: dict[str, Any]
    keep: Callable[[Any], Any]


class _Runner(torch.fx.Interpreter):
    """fx Interpreter that substitutes and/or records node values (by fx node name)."""

    def __init__(
        self,
        gm: torch.fx.GraphModule,
        replace: Mapping[str, Any],
        capture: Mapping[str, str],
        captured: dict[str, Any],
        *,
        keep: Callable[[Any], Any] | None = None,
        keep_env: bool = False,
        record: dict[str, Any] | None = None,
        checking: bool = False,
    ) -> None:
        super().__init__(gm, garbage_collect_values=not keep_env and record is None)
        self.replace, self.capture, self.captured, self.record = replace, capture, captured, record
        self.keep = keep or _detached
        self.checking = checking

    def run_node(self, n: torch.fx.Node) -> Any:
        if n.name in self.replace:
            out = self.replace[n.name]
        elif self.checking and n.op == "call_module":
            try:
                out = super().run_node(n)
            except Exception as err:  # the model's own module failed: not a tracing problem
                raise _ModuleFailed(str(n.target)) from err
        else:
            out = super().run_node(n)
        if n.name in self.capture:
            self.captured[self.capture[n.name]] = self.keep(out)
        if self.record is not None:
            self.record[n.name] = _summary(out)
        return out


def _placeholder(gm: torch.fx.GraphModule) -> torch.fx.Node:
    return next(n for n in gm.graph.nodes if n.op == "placeholder")


def _same(value: Any) -> Any:
    return value


def _detached(value: Any) -> Any:
    return pytree.tree_map(
        lambda v: v.detach().clone() if isinstance(v, torch.Tensor) else v, value
    )


@dataclass(frozen=True)
class _Shape:
    shape: tuple[int, ...]


def _summary(value: Any) -> Any:
    """What the build keeps of a value: tensor shapes, and small non-tensor values."""
    if isinstance(value, torch.Tensor):
        return _Shape(tuple(int(s) for s in value.shape))
    if isinstance(value, torch.Size):
        return tuple(int(s) for s in value)
    if isinstance(value, list):
        return [_summary(v) for v in value]
    if isinstance(value, tuple):  # also namedtuples and torch.return_types
        return tuple(_summary(v) for v in value)
    return value


def _carries_tensor(summary: Any) -> bool:
    if isinstance(summary, _Shape):
        return True
    if isinstance(summary, (tuple, list)):
        return any(_carries_tensor(v) for v in summary)
    return False


def _first_shape(summary: Any) -> tuple[int, ...] | None:
    if isinstance(summary, _Shape):
        return summary.shape
    if isinstance(summary, (tuple, list)):
        for v in summary:
            found = _first_shape(v)
            if found is not None:
                return found
    return None


def _one_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0][:200] if text else ''}".rstrip(": ")


def _call_name(path: str, count: int) -> str:
    path = path or "<model>"
    return path if count == 1 else f"{path}#{count}"


# --- what is a leaf -------------------------------------------------------------


def is_leaf_module(module: nn.Module) -> bool:
    """True for a standard ``torch.nn`` module (not a container), parametrized or not.

    A parametrized module's class (``ParametrizedConv2d``) is generated at runtime in
    ``torch.nn.utils.parametrize``; it counts as its original class. Parametrization modules
    are never leaves of their own.

    >>> is_leaf_module(nn.Conv2d(1, 1, 3)), is_leaf_module(nn.Sequential())
    (True, False)
    """
    cls = type(module)
    if parametrize.is_parametrized(module) and cls.__bases__:
        cls = cls.__bases__[0]
    name = cls.__module__ or ""
    if name.startswith("torch.nn.utils.parametriz"):
        return False
    if isinstance(module, (nn.Sequential, nn.ModuleList, nn.ModuleDict)):
        return False
    return name.startswith(("torch.nn", "torch.ao.nn"))


class _Tracer(torch.fx.Tracer):
    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        return is_leaf_module(m)


# --- building the public graph from an fx GraphModule ------------------------------

_RENAMES = {
    "iadd": "add", "isub": "sub", "imul": "mul", "itruediv": "truediv", "radd": "add",
    "rmul": "mul", "rtruediv": "truediv", "rsub": "rsub", "concat": "cat",
    "concatenate": "cat", "unsafe_view": "view", "and_": "and", "or_": "or",
}  # fmt: skip


def _canon(n: torch.fx.Node) -> str:
    """A canonical op name shared by torch functions, Tensor methods and aten ops."""
    target = n.target
    if n.op == "call_method":
        name = str(target)
    elif isinstance(target, torch._ops.OpOverload):
        name = target._schema.name.split("::")[-1]
    else:
        name = getattr(target, "__name__", str(target))
    stripped = name.strip("_") or name
    return _RENAMES.get(stripped, stripped)


def _target_str(n: torch.fx.Node) -> str:
    if n.op == "call_method":
        return str(n.target)
    if isinstance(n.target, (torch._ops.OpOverload, torch._ops.OpOverloadPacket)):
        return str(n.target)
    try:
        name = torch.fx.node._get_qualified_name(n.target)  # type: ignore[arg-type]
    except Exception:
        name = str(n.target)
    return name.replace("_operator.", "operator.")


def _class_name(module: nn.Module) -> str:
    cls = type(module)
    if parametrize.is_parametrized(module) and cls.__bases__:
        cls = cls.__bases__[0]
    return cls.__name__


def _stack(n: torch.fx.Node) -> list[tuple[str, str]]:
    """(key, module path) of ``n``'s nn_module_stack, outermost first, root excluded."""
    stack = n.meta.get("nn_module_stack") or {}
    out = []
    for key, value in stack.items():
        path = value[0] if isinstance(value, tuple) else str(value)
        if path:
            out.append((str(key), str(path)))
    return out


class _Builder:
    """Turns a traced fx GraphModule plus one recorded run into public :class:`Node` s."""

    def __init__(
        self, model: nn.Module, gm: torch.fx.GraphModule, method: str, record: dict[str, Any]
    ):
        self.model, self.gm, self.method, self.record = model, gm, method, record
        self.modules = dict(model.named_modules())
        self.fx_nodes = list(gm.graph.nodes)
        self.index = {n: i for i, n in enumerate(self.fx_nodes)}
        self.xdep = self._x_dependent()
        self.public_of: dict[str, str] = {}

    def _x_dependent(self) -> set[str]:
        dep: set[str] = set()
        for n in self.fx_nodes:
            summary = self.record.get(n.name)
            if n.op == "output" or not _carries_tensor(summary):
                continue
            if n.op == "placeholder" or any(m.name in dep for m in n.all_input_nodes):
                dep.add(n.name)
        return dep

    def _groups(self) -> list[tuple[str, str | None, list[torch.fx.Node]]]:
        """Call sites: (group id, module path or None, fx nodes), in graph order."""
        groups: dict[str, tuple[str | None, list[torch.fx.Node]]] = {}
        for n in self.fx_nodes:
            if n.op in ("placeholder", "output", "get_attr"):
                continue
            if n.op == "call_module" and self.method == "fx":
                groups[n.name] = (str(n.target), [n])
                continue
            if n.op == "call_module":  # export's _guards_fn and the like
                continue
            site = None
            if self.method == "export":
                for key, path in _stack(n):
                    module = self.modules.get(path)
                    if module is not None and is_leaf_module(module):
                        site = (f"module:{key}", path)
                        break
            if site is None:
                groups[n.name] = (None, [n])
            else:
                groups.setdefault(site[0], (site[1], []))[1].append(n)
        return [(gid, path, nodes) for gid, (path, nodes) in groups.items()]

    def _resolve(self, value: Any, public_of: dict[str, str], layouts: dict[str, Layout]) -> Any:
        def fn(v: Any) -> Any:
            if not isinstance(v, torch.fx.Node):
                return v
            summary = self.record.get(v.name)
            public = public_of.get(v.name) if v.name in self.xdep else None
            if isinstance(summary, _Shape):
                return TArg(summary.shape, public, layouts.get(public) if public else None)
            if public is not None and _carries_tensor(summary):
                return SeqArg(public, layouts[public])
            return summary

        return torch.fx.node.map_aggregate(value, fn)

    def build(self) -> tuple[list[Node], dict[str, str], dict[str, Layout], dict[str, Layout]]:
        nodes: list[Node] = []
        public_of: dict[str, str] = self.public_of  # fx node name -> public name
        value: dict[str, str] = {}  # public name -> fx node name
        layouts: dict[str, Layout] = {}
        in_layouts: dict[str, Layout] = {}
        taken: set[str] = set()
        counts: dict[str, int] = defaultdict(int)
        placeholder = _placeholder(self.gm)
        x_shape = self.record[placeholder.name].shape
        public_of[placeholder.name] = "input"
        value["input"] = placeholder.name
        layouts["input"] = input_layout(x_shape)
        nodes.append(Node("input", "input", "input", None, (), tuple(x_shape[1:]), "input", {}))
        taken.update(("input", "output"))
        pending = []
        for gid, path, members in self._groups():
            live = [m for m in members if m.name in self.xdep]
            if not live:
                continue
            inside = set(members)
            external = [m for m in live if any(u not in inside for u in m.users)] or [live[-1]]
            pending.append((self.index[external[0]], gid, path, members, external))
        pending.sort(key=lambda item: item[0])
        # module paths take their names first, so a functional op cannot take one
        module_names: dict[str, str] = {}
        for _, gid, path, _members, _external in pending:
            if path is not None:
                counts[path] += 1
                module_names[gid] = _call_name(path, counts[path])
        taken.update(module_names.values())
        for _, gid, path, members, external in pending:
            main_out = external[0]
            if path is not None:
                name = module_names[gid]
            else:
                name = main_out.name
                while name in taken:
                    name += "_"
                taken.add(name)
            inside = set(members)
            inputs: list[str] = []
            for m in members:
                for src in m.all_input_nodes:
                    if src not in inside and src.name in self.xdep and src.name in public_of:
                        if public_of[src.name] not in inputs:
                            inputs.append(public_of[src.name])
            summary = self.record[main_out.name]
            is_tuple = not isinstance(summary, _Shape)
            out_shape = _first_shape(summary)
            if path is not None:
                module = self.modules[path]
                main = layouts[inputs[0]] if inputs else None
                kind, params, amap = describe_module(module, main, out_shape, is_tuple)
                if parametrize.is_parametrized(module):
                    params = {**params, "parametrized": sorted(module.parametrizations.keys())}
                op, target = "module", _class_name(module)
                where: str | None = path
            else:
                n = members[0]
                args = self._resolve(n.args, public_of, layouts)
                kwargs = self._resolve(n.kwargs, public_of, layouts)
                kind, params, amap = describe_function(_canon(n), args, kwargs, out_shape)
                op = "method" if n.op == "call_method" else "function"
                target = _target_str(n)
                stack = _stack(n)
                where = stack[-1][1] if stack else None
                main = next(
                    (a.layout for a in _flat(args, kwargs) if isinstance(a, (TArg, SeqArg))
                     and a.producer is not None and a.layout is not None),
                    None,
                )  # fmt: skip
            layout = Layout(out_shape, amap, is_tuple)
            for m in members:
                public_of[m.name] = name
            value[name] = main_out.name
            layouts[name] = layout
            if main is not None:
                in_layouts[name] = main
            nodes.append(
                Node(name, op, target, where, tuple(inputs), _no_batch(layout), kind, params)
            )
            for k, extra in enumerate(external[1:], start=1):  # more outputs of one call
                extra_name = f"{name}[{k}]"
                es = self.record[extra.name]
                eshape = _first_shape(es)
                elay = Layout(eshape, guess_map(layout, eshape), not isinstance(es, _Shape))
                public_of[extra.name], value[extra_name], layouts[extra_name] = (
                    extra_name,
                    extra.name,
                    elay,
                )
                in_layouts[extra_name] = layout
                nodes.append(
                    Node(extra_name, "function", f"output {k} of {target}", where, (name,),
                         _no_batch(elay), "opaque", {"item": k})
                )  # fmt: skip
        out_node = next(n for n in self.fx_nodes if n.op == "output")
        inputs = []
        for src in out_node.all_input_nodes:
            if src.name in public_of and public_of[src.name] not in inputs:
                inputs.append(public_of[src.name])
        last = layouts[inputs[0]] if inputs else Layout(None, {})
        layouts["output"] = last
        in_layouts["output"] = last
        value["output"] = out_node.name
        nodes.append(
            Node("output", "output", "output", None, tuple(inputs), _no_batch(last), "output", {})
        )
        return nodes, value, layouts, in_layouts

    def module_calls(self, public_of: dict[str, str]) -> dict[str, tuple[str, ...]]:
        """Module path -> the public node each of its calls returned, in call order."""
        calls: dict[str, tuple[str, list[torch.fx.Node]]] = {}
        for n in self.fx_nodes:
            if n.op in ("placeholder", "output", "get_attr"):
                continue
            stack = _stack(n)
            if n.op == "call_module" and self.method == "fx" and not stack:
                stack = [(str(n.target), str(n.target))]
            for key, path in stack:
                calls.setdefault(key, (path, []))[1].append(n)
        out: dict[str, list[str]] = defaultdict(list)
        for path, members in calls.values():
            inside = set(members)
            live = [m for m in members if m.name in self.xdep and m.name in public_of]
            escaping = [m for m in live if any(u not in inside for u in m.users)]
            chosen = escaping[-1] if escaping else (live[-1] if live else None)
            if chosen is not None:
                out[path].append(public_of[chosen.name])
        return {path: tuple(names) for path, names in out.items()}


def _flat(args: Any, kwargs: Any) -> list[Any]:
    leaves: list[Any] = []

    def visit(v: Any) -> Any:
        leaves.append(v)
        return v

    torch.fx.node.map_aggregate((args, kwargs), visit)
    return leaves


def _no_batch(layout: Layout) -> tuple[int, ...] | None:
    """Output shape without the batch axis (where the batch axis still is one)."""
    if layout.shape is None or layout.is_tuple:
        return None
    loc = layout.amap.get("batch", GONE)
    if loc.state != "live" or loc.axis is None:
        return tuple(layout.shape)
    p = loc.axis + len(layout.shape)
    return tuple(s for i, s in enumerate(layout.shape) if i != p)


# --- checking a trace ---------------------------------------------------------


def _same_output(got: Any, ref: Any) -> str | None:
    """None when ``got`` equals ``ref``; else a one-line reason."""
    g_leaves, g_spec = pytree.tree_flatten(got)
    r_leaves, r_spec = pytree.tree_flatten(ref)
    if len(g_leaves) != len(r_leaves):
        return f"output structure differs ({g_spec} vs {r_spec})"
    for g, r in zip(g_leaves, r_leaves, strict=True):
        if isinstance(r, torch.Tensor):
            if not isinstance(g, torch.Tensor) or g.shape != r.shape:
                return "output shapes differ"
            if torch.equal(g, r):
                continue
            if not r.is_floating_point():
                return "outputs differ"
            # float rounding of a reordered computation: a few ulps of the largest magnitude
            eps = torch.finfo(r.dtype).eps
            bound = 256 * eps * (1.0 + float(r.detach().abs().max()))
            err = float((g.detach() - r.detach()).abs().max())
            if not err <= bound:
                return f"outputs differ by {err:.3g} (bound {bound:.3g})"
        elif g != r:
            return "outputs differ"
    return None


# --- the three methods ----------------------------------------------------------


def _trace_fx(
    model: nn.Module, x: torch.Tensor, ref: Any
) -> tuple[torch.fx.GraphModule, dict[str, Any]]:
    tracer = _Tracer()
    fx_graph = tracer.trace(model)
    gm = torch.fx.GraphModule(tracer.root, fx_graph, type(model).__name__)
    return gm, _checked_record(gm, x, ref)


def _trace_export(
    model: nn.Module, x: torch.Tensor, ref: Any
) -> tuple[torch.fx.GraphModule, dict[str, Any]]:
    """Export with a dynamic batch where torch can; else for x's batch size only."""
    attempts: list[tuple[torch.Tensor, Any]] = []
    sample = x if x.shape[0] > 1 else torch.cat([x, x])
    attempts.append((sample, ({0: torch.export.Dim.AUTO},)))
    attempts.append((x, None))
    last: Exception | None = None
    for example, dynamic in attempts:
        try:
            with _quiet():
                program = torch.export.export(
                    model, (example,), strict=False, dynamic_shapes=dynamic
                )
                gm = program.module()
            return gm, _checked_record(gm, x, ref)
        except _ModuleFailed:
            raise
        except Exception as err:  # the next attempt, then the next method
            last = err
    assert last is not None
    raise last


@contextmanager
def _quiet() -> Iterator[None]:
    """Silence torch.export's logs, warnings and the partial graph it prints on failure."""
    previous = logging.root.manager.disable
    logging.disable(logging.CRITICAL)
    try:
        with warnings.catch_warnings(), redirect_stderr(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        logging.disable(previous)


def _checked_record(gm: torch.fx.GraphModule, x: torch.Tensor, ref: Any) -> dict[str, Any]:
    record: dict[str, Any] = {}
    out = _Runner(gm, {}, {}, {}, record=record, checking=True).run(x)
    reason = _same_output(out, ref)
    if reason is not None:
        raise _Mismatch(f"the traced graph's {reason} from model(x)")
    return record


class _Mismatch(Exception):
    pass


class _ModuleFailed(Exception):
    """A module of the model raised while the traced graph ran it: the model's failure
    (a user hook, a device error), which no other tracing method would avoid."""


def _hook_sites(model: nn.Module) -> dict[str, nn.Module]:
    """Leaf call sites for the hook fallback: standard modules and childless custom ones."""
    sites: dict[str, nn.Module] = {}

    def walk(module: nn.Module, path: str) -> None:
        children = [(n, c) for n, c in module.named_children() if n != "parametrizations"]
        if is_leaf_module(module) or not children:
            sites[path] = module
            return
        for name, child in children:
            walk(child, f"{path}.{name}" if path else name)

    walk(model, "")
    return sites


def _trace_hooks(
    model: nn.Module, x: torch.Tensor
) -> tuple[
    list[Node],
    dict[str, Layout],
    dict[str, Layout],
    dict[str, nn.Module],
    dict[str, str],
    dict[str, tuple[str, ...]],
]:
    """Leaf-module calls in firing order; a call reading an earlier call's very output
    tensor (or x itself) is wired to it, any other call to the latest call whose output had
    the shape it read, else to the call that fired before it."""
    sites = _hook_sites(model)
    calls: list[tuple[str, str, tuple[int, ...] | None, str | None, Any]] = []
    made: dict[int, str] = {id(x): "input"}  # id of an output tensor -> node that made it
    alive: list[Any] = [x]  # keeps those tensors (and their ids) alive during the forward
    counts: dict[str, int] = defaultdict(int)

    def make(path: str) -> Callable[..., None]:
        def hook(_m: nn.Module, inputs: Any, output: Any) -> None:
            counts[path] += 1
            name = _call_name(path, counts[path])
            tensors = [t for t in pytree.tree_leaves(inputs) if isinstance(t, torch.Tensor)]
            first = tuple(int(s) for s in tensors[0].shape) if tensors else None
            producer = made.get(id(tensors[0])) if tensors else None
            calls.append((name, path, first, producer, _summary(output)))
            for t in pytree.tree_leaves(output):
                if isinstance(t, torch.Tensor):
                    made[id(t)] = name  # the latest maker: in-place ops, Identity
                    alive.append(t)

        return hook

    module_calls: dict[str, list[str]] = defaultdict(list)

    def returned(path: str) -> Callable[..., None]:
        def hook(_m: nn.Module, _inputs: Any, output: Any) -> None:
            tensors = [t for t in pytree.tree_leaves(output) if isinstance(t, torch.Tensor)]
            if tensors and id(tensors[0]) in made:
                module_calls[path].append(made[id(tensors[0])])

        return hook

    handles = [m.register_forward_hook(make(p)) for p, m in sites.items()]
    handles += [
        m.register_forward_hook(returned(p))
        for p, m in model.named_modules()
        if p and p not in sites and not any(p.startswith(f"{s}.") for s in sites if s)
    ]
    try:
        out = model(x)
    finally:
        for h in handles:
            h.remove()
    for path in sites:
        module_calls[path] = [_call_name(path, k) for k in range(1, counts[path] + 1)]
    x_shape = tuple(int(s) for s in x.shape)
    prev = "input"
    layouts = {"input": input_layout(x_shape)}
    in_layouts: dict[str, Layout] = {}
    nodes = [Node("input", "input", "input", None, (), x_shape[1:], "input", {})]
    value = {"input": "input", "output": "output"}
    fired: list[str] = ["input"]
    for name, path, in_shape, producer, summary in calls:
        value[name] = name
        source = producer if producer is not None else prev
        if producer is None and in_shape is not None and layouts[prev].shape != in_shape:
            # made by ops no hook saw: guess the latest call whose output had this shape
            # (the trunk before a squeeze-excite gate, say), else the call that fired last
            source = next((f for f in reversed(fired) if layouts[f].shape == in_shape), prev)
        before = layouts[source]
        main = before
        if in_shape is not None and before.shape != in_shape:  # ops we could not see
            main = Layout(in_shape, guess_map(before, in_shape))
        out_shape = _first_shape(summary)
        is_tuple = not isinstance(summary, _Shape)
        module = sites[path]
        kind, params, amap = describe_module(module, main, out_shape, is_tuple)
        if producer is None:
            params = {**params, "unseen_ops_before": True}
        layouts[name] = Layout(out_shape, amap, is_tuple)
        in_layouts[name] = main
        nodes.append(
            Node(name, "module", _class_name(module), path, (source,), _no_batch(layouts[name]),
                 kind, params)
        )  # fmt: skip
        prev = name
        fired.append(name)
    out_leaves = [t for t in pytree.tree_leaves(out) if isinstance(t, torch.Tensor)]
    source = made.get(id(out_leaves[0]), prev) if out_leaves else prev
    out_shape = _first_shape(_summary(out))
    last = layouts[source]
    final = Layout(
        out_shape, dict(last.amap) if last.shape == out_shape else guess_map(last, out_shape)
    )
    layouts["output"] = final
    in_layouts["output"] = final
    nodes.append(
        Node("output", "output", "output", None, (source,), _no_batch(final), "output", {})
    )
    alive.clear()
    outputs = {path: tuple(names) for path, names in module_calls.items() if names}
    return nodes, layouts, in_layouts, sites, value, outputs


def _pass_through_calls(
    model: nn.Module, x: torch.Tensor, calls: dict[str, tuple[str, ...]]
) -> dict[str, tuple[str, ...]]:
    """Add modules that made no node because they return a tensor made before them (an
    ``Expression(identity)``, an ``Ensure4d`` on a 4-d input): their output is that node."""
    missing = [p for p, _ in model.named_modules() if p and p not in calls]
    if not missing:
        return calls
    made: dict[int, tuple[str, int]] = {id(x): ("", -1)}
    alive: list[Any] = [x]
    seen: dict[str, list[int]] = defaultdict(list)  # path -> id of each call's output
    counts: dict[str, int] = defaultdict(int)

    def make(path: str) -> Callable[..., None]:
        def hook(_m: nn.Module, _inputs: Any, output: Any) -> None:
            tensors = [t for t in pytree.tree_leaves(output) if isinstance(t, torch.Tensor)]
            if not tensors:
                return
            counts[path] += 1
            seen[path].append(id(tensors[0]))
            made.setdefault(id(tensors[0]), (path, counts[path] - 1))
            alive.append(tensors[0])

        return hook

    handles = [m.register_forward_hook(make(p)) for p, m in model.named_modules() if p]
    try:
        model(x)
    finally:
        for h in handles:
            h.remove()
    out = dict(calls)
    for path in missing:
        names = []
        for ident in seen.get(path, []):
            origin, k = made.get(ident, (None, 0))
            if origin == "":
                names.append("input")
            elif origin is not None and origin != path and k < len(calls.get(origin, ())):
                names.append(calls[origin][k])
        if names:
            out[path] = tuple(names)
    alive.clear()
    return out


def trace(model: nn.Module, x: torch.Tensor, *, methods: Iterable[str] = METHODS) -> Graph:
    """The dataflow graph of ``model`` on input ``x``, as call sites.

    Tries ``torch.fx`` (standard ``torch.nn`` modules as leaves), then ``torch.export``
    (non-strict), then a chain of leaf-module hooks; the first whose graph reproduces
    ``model(x)`` wins (``Graph.method``; ``Graph.fallback_reason`` says why earlier ones
    failed). The model is left exactly as it was (modes, requires_grad, grads, hooks, RNG).

    Args:
        model: the model; it is never changed.
        x: a batched input ``(N, C, ...)``; its shape fixes every node's shape.
        methods: the methods to try, in order (default all three).

    Returns:
        the :class:`Graph`.

    >>> g = trace(nn.Sequential(nn.Conv1d(1, 2, 3), nn.ReLU()), torch.randn(1, 1, 16))
    >>> g.method, g.names
    ('fx', ('input', '0', '1', 'output'))
    """
    if not isinstance(model, nn.Module):
        raise InterpError(f"trace: model must be a torch.nn.Module, got {type(model).__name__}")
    if not isinstance(x, torch.Tensor) or x.dim() < 1:
        raise InterpError(
            "trace: x must be a batched tensor shaped (N, C, ...); pass x[None] for one sample"
        )
    if isinstance(model, torch.jit.ScriptModule):
        return _trace_script(model, x)
    methods = list(methods)
    unknown = [m for m in methods if m not in METHODS]
    if unknown or not methods:
        raise InterpError(f"trace: methods must be some of {METHODS}, got {methods}")
    reasons: list[str] = []
    with inspecting(model) as m:
        try:
            ref = m(x)
        except Exception as err:
            raise InterpError(
                f"trace: model(x) failed on x of shape {tuple(x.shape)} ({_one_line(err)}); "
                f"pass an input the model accepts"
            ) from err
        for method in methods:
            try:
                if method == "hooks":
                    nodes, layouts, in_layouts, sites, value, calls = _trace_hooks(m, x)
                    return Graph(
                        tuple(nodes), "hooks", "; ".join(reasons) or None, tuple(x.shape[1:]),
                        model, None, value, frozenset(), layouts, in_layouts, sites, calls,
                    )  # fmt: skip
                gm, record = (_trace_fx if method == "fx" else _trace_export)(m, x, ref)
                builder = _Builder(model, gm, method, record)
                nodes, value, layouts, in_layouts = builder.build()
                calls = _pass_through_calls(m, x, builder.module_calls(builder.public_of))
                return Graph(
                    tuple(nodes), method, "; ".join(reasons) or None, tuple(x.shape[1:]),
                    model, gm, value, frozenset(builder.xdep), layouts, in_layouts, {}, calls,
                )  # fmt: skip
            except _ModuleFailed as err:
                raise (err.__cause__ or err) from None
            except Exception as err:
                reasons.append(f"{method}: {_one_line(err)}")
    raise InterpError(
        f"trace: no method could read the model ({'; '.join(reasons)}); "
        "pass methods including 'hooks', or simplify the forward"
    )


def _trace_script(model: nn.Module, x: torch.Tensor) -> Graph:
    """A TorchScript model takes no hooks and no fx/export tracing: convert its TorchScript
    graph to an ExportedProgram (torch's TS2EPConverter), unflatten it, and read that with
    torch.export. Call sites get aten names (``conv2d_1``, ``relu__3``)."""
    from dataclasses import replace

    try:
        from torch._export.converter import TS2EPConverter

        with inspecting(model), _quiet():
            program = TS2EPConverter(model, (x,)).convert()
            converted = torch.export.unflatten(program)
        graph = trace(converted, x, methods=("export",))
    except Exception as err:
        raise InterpError(
            f"trace: the TorchScript model's graph could not be read ({_one_line(err)}); "
            "save the model as a state dict or a torch.export .pt2 for its structure"
        ) from err
    reason = "TorchScript: its graph converted to an ExportedProgram (TS2EPConverter), then read"
    return replace(graph, fallback_reason=reason)
