"""The lmhtc intermediate representation: a typed dataflow graph of a spiking network.

Time semantics: the graph runs ``graph.steps`` time-steps (T before
reparameterization, T' = L·T after). Every edge carries a sequence of
``steps`` tensors, one per step; a node's ``shape`` is the per-sample shape of
one of them (``(C, H, W)`` or ``(N,)``). Synaptic and pooling nodes act on each
step independently; ``TemporalMix`` mixes steps (T-GIM, non-causal); ``Neuron``
carries membrane state across steps; ``Readout`` averages over steps.

The graph is a ``networkx.DiGraph`` whose nodes hold the node dataclasses; the
order of a node's inputs is its ``inputs`` list. Parameters are float32 numpy
arrays (float64 for schedules). ``validate`` names the offending node.
"""
from __future__ import annotations

import contextvars
import copy
from dataclasses import dataclass, field, fields
from typing import Iterator

import networkx as nx
import numpy as np

from .analysis.spikes import carries_spikes, spike_fed, spike_sources  # noqa: F401 (spike_sources re-exported)
from .errors import LmhtcError


class IRError(LmhtcError):
    """An ill-formed IR graph; the message names the offending node."""


@dataclass
class Node:
    name: str
    inputs: list[str] = field(default_factory=list)
    shape: tuple[int, ...] | None = None   # per-sample output shape, set by infer_shapes

    kind = "node"
    phases = frozenset({"float"})   # the graph phases this kind belongs to (compiler/lowering.py)
    arity = 1
    synaptic = False    # carries weights: its work is counted in synaptic operations
    linear = True       # a linear map of its inputs per step (needed between neurons for reparam)
    elementwise = False  # output shape = input shape
    counts_spikes = False   # a neuron kind whose output is its spike count (unit 1), not θ·k
    emits_spikes = False    # its output is a spike train (a neuron layer): analysis/spikes.py

    def arrays(self) -> dict[str, np.ndarray]:
        """Named array parameters (saved to the artifact's tensor store)."""
        return {f.name: getattr(self, f.name) for f in fields(self)
                if isinstance(getattr(self, f.name), np.ndarray)}

    def lint(self, steps: int) -> str | None:
        """What is wrong with this node's parameters in a graph of ``steps`` steps (None: nothing); the
        kinds with parameter rules (the bases below) override it, the validators raise it naming the node."""
        return None

    def attrs(self) -> dict:
        """JSON-serialisable non-array attributes."""
        out = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in ("name", "inputs", "shape") or isinstance(value, np.ndarray) or value is None:
                continue
            out[f.name] = list(value) if isinstance(value, tuple) else value
        return out


# -- semantics-free bases --------------------------------------------------------
# Geometry and shape rules shared by a float kind and the integer kind that implements it. A base has no
# ``kind`` of its own and is never a graph node; the float kinds below and the integer kinds
# (compiler/intir.py) derive from it side by side, so ``isinstance(node, Conv2d)`` is true of a float
# ``conv2d`` only, and code meant for both phases names the base (``ConvBase``).

@dataclass
class InputBase(Node):
    """A network input: per-sample ``input_shape`` and its ``encoding``."""
    input_shape: tuple[int, ...] = ()
    encoding: str = "direct"
    arity = 0

    def out_shape(self, ins: list[tuple[int, ...]]) -> tuple[int, ...]:
        return tuple(self.input_shape)


@dataclass
class ConvBase(Node):
    """2-D convolution geometry: weight [Cout, Cin/groups, kH, kW], bias [Cout], stride, padding, dilation."""
    weight: np.ndarray = None
    bias: np.ndarray | None = None
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int] = (0, 0)
    dilation: tuple[int, int] = (1, 1)
    groups: int = 1
    synaptic = True

    def out_shape(self, ins: list[tuple[int, ...]]) -> tuple[int, ...]:
        x = ins[0]
        if len(x) != 3:
            raise ValueError(f"expects a feature map (C,H,W), got {x}")
        cout, cin_g, kh, kw = self.weight.shape
        if x[0] != cin_g * self.groups:
            raise ValueError(f"expects {cin_g * self.groups} input channels, got {x[0]}")
        (sh, sw), (ph, pw), (dh, dw) = self.stride, self.padding, self.dilation
        h, w = _conv_out(x[1], kh, sh, ph, dh), _conv_out(x[2], kw, sw, pw, dw)
        if h < 1 or w < 1:
            raise ValueError(f"input {x} is too small for kernel {(kh, kw)}")
        return (cout, h, w)

    def synapses(self) -> int:
        """Synapses of the layer: every output reads Cin/groups · kH · kW inputs."""
        _, cin_g, kh, kw = self.weight.shape
        return int(np.prod(self.shape)) * cin_g * kh * kw

    def lint(self, steps: int) -> str | None:
        if self.bias is not None and self.bias.shape != (self.weight.shape[0],):
            return f"bias has shape {self.bias.shape}, expected ({self.weight.shape[0]},)"
        return None


@dataclass
class LinearBase(Node):
    """Dense geometry: weight [out, in], bias [out]."""
    weight: np.ndarray = None
    bias: np.ndarray | None = None
    synaptic = True

    def out_shape(self, ins: list[tuple[int, ...]]) -> tuple[int, ...]:
        x = ins[0]
        if len(x) != 1:
            raise ValueError(f"expects a vector input, got {x} (missing flatten?)")
        out_f, in_f = self.weight.shape
        if x[0] != in_f:
            raise ValueError(f"expects {in_f} input features, got {x[0]}")
        return (out_f,)

    def synapses(self) -> int:
        return int(self.weight.size)

    lint = ConvBase.lint      # the same bias rule


def _pool_shape(node, x: tuple[int, ...]) -> tuple[int, ...]:
    if len(x) != 3:
        raise ValueError(f"expects a feature map (C,H,W), got {x}")
    (kh, kw), (sh, sw), (ph, pw) = node.kernel, node.stride, node.padding
    h, w = _conv_out(x[1], kh, sh, ph), _conv_out(x[2], kw, sw, pw)
    if h < 1 or w < 1:
        raise ValueError(f"input {x} is too small for kernel {(kh, kw)}")
    return (x[0], h, w)


@dataclass
class PoolBase(Node):
    """Window-pooling geometry (average pooling and its integer window sum)."""
    kernel: tuple[int, int] = (2, 2)
    stride: tuple[int, int] = (2, 2)
    padding: tuple[int, int] = (0, 0)

    def out_shape(self, ins: list[tuple[int, ...]]) -> tuple[int, ...]:
        return _pool_shape(self, ins[0])


@dataclass
class GlobalPoolBase(Node):
    """Pooling of a whole feature map to ``(C, 1, 1)``."""

    def out_shape(self, ins: list[tuple[int, ...]]) -> tuple[int, ...]:
        x = ins[0]
        if len(x) != 3:
            raise ValueError(f"expects a feature map (C,H,W), got {x}")
        return (x[0], 1, 1)


@dataclass
class TemporalMixBase(Node):
    """A [steps, steps] mixing of the step sequence (T-GIM)."""
    omega: np.ndarray = None
    elementwise = True

    def lint(self, steps: int) -> str | None:
        return None if self.omega.shape == (steps, steps) else f"omega is {self.omega.shape}, graph runs {steps} steps"


@dataclass
class NeuronBase(Node):
    """A soft-reset multi-level neuron layer's parameters (threshold, levels, leak schedule [steps], v_init)."""
    threshold: float = 1.0
    levels: int = 1
    leak: np.ndarray = None
    v_init: float = 0.0
    input_scale: float = 1.0
    reset: str = "soft"
    elementwise = True
    linear = False
    emits_spikes = True

    def lint(self, steps: int) -> str | None:
        if self.leak is None or self.leak.shape != (steps,):
            return f"leak schedule must have {steps} entries"
        if not np.all(np.asarray(self.threshold) > 0):
            return f"threshold must be > 0, got {self.threshold}"
        if self.levels < 1:
            return f"levels must be >= 1, got {self.levels}"
        if self.reset != "soft":
            return f"only soft reset is supported, got {self.reset!r}"
        return None


@dataclass
class ReadoutBase(Node):
    """The network output."""
    elementwise = True


# -- float kinds ----------------------------------------------------------------

@dataclass
class Input(InputBase):
    """The analog input image, presented unchanged at every step (direct encoding)."""
    kind = "input"


@dataclass
class Conv2d(ConvBase):
    kind = "conv2d"


@dataclass
class Linear(LinearBase):
    kind = "linear"


@dataclass
class BatchNorm(Node):
    """Eval-mode batch normalisation over channels (removed by ``fold_batchnorm``)."""
    weight: np.ndarray = None
    bias: np.ndarray = None
    running_mean: np.ndarray = None
    running_var: np.ndarray = None
    eps: float = 1e-5
    kind = "batchnorm"

    def out_shape(self, ins: list[tuple[int, ...]]) -> tuple[int, ...]:
        if ins[0][0] != self.weight.shape[0]:
            raise ValueError(f"has {self.weight.shape[0]} channels, input has {ins[0][0]}")
        return ins[0]


@dataclass
class AvgPool2d(PoolBase):
    kind = "avgpool2d"


@dataclass
class GlobalAvgPool(GlobalPoolBase):
    """Adaptive average pooling to 1×1 (output keeps the ``(C, 1, 1)`` shape)."""
    kind = "globalavgpool"


@dataclass
class MaxPool2d(Node):
    kernel: tuple[int, int] = (3, 3)
    stride: tuple[int, int] = (2, 2)
    padding: tuple[int, int] = (1, 1)
    kind = "maxpool2d"
    linear = False

    def out_shape(self, ins: list[tuple[int, ...]]) -> tuple[int, ...]:
        return _pool_shape(self, ins[0])


@dataclass
class Add(Node):
    """Elementwise sum of two sequences (residual connection)."""
    kind = "add"
    phases = frozenset({"float", "integer"})
    arity = 2

    def out_shape(self, ins: list[tuple[int, ...]]) -> tuple[int, ...]:
        if ins[0] != ins[1]:
            raise ValueError(f"adds tensors of different shapes {ins[0]} and {ins[1]}")
        return ins[0]


@dataclass
class Flatten(Node):
    kind = "flatten"
    phases = frozenset({"float", "integer"})

    def out_shape(self, ins: list[tuple[int, ...]]) -> tuple[int, ...]:
        return (int(np.prod(ins[0])),)


@dataclass
class TemporalMix(TemporalMixBase):
    """T-GIM: step t receives ``Σ_j omega[t, j]·x[j]`` (non-causal; needs the whole input sequence)."""
    kind = "temporal_mix"


@dataclass
class Neuron(NeuronBase):
    """Soft-reset neuron. Per step t: ``v = leak[t]·v + input_scale·I(t)``; output
    ``o = θ·k`` with ``k = Σ_{i=1..levels} [v ≥ iθ]``; ``v -= o``. ``v`` starts at
    ``v_init·θ``. levels > 1: the multi-level LM-HT neuron; levels = 1: single-threshold LIF."""
    kind = "neuron"


@dataclass
class Readout(ReadoutBase):
    """Network output: the per-step sequence, and its mean over steps as the logits."""
    kind = "readout"


NODE_TYPES: dict[str, type[Node]] = {t.kind: t for t in
                                     (Input, Conv2d, Linear, BatchNorm, AvgPool2d, GlobalAvgPool, MaxPool2d,
                                      Add, Flatten, TemporalMix, Neuron, Readout)}


def register_node_type(cls: type[Node]) -> type[Node]:
    """Make a node kind known to the artifact loader (used by the integer kinds); a kind name is unique."""
    if NODE_TYPES.get(cls.kind, cls) is not cls:
        raise TypeError(f"node kind {cls.kind!r} is already registered by {NODE_TYPES[cls.kind].__name__}")
    NODE_TYPES[cls.kind] = cls
    return cls


@dataclass(eq=False)
class Graph:
    """A network: nodes in a networkx DiGraph plus the time and provenance metadata."""
    steps: int
    meta: dict = field(default_factory=dict)
    g: nx.DiGraph = field(default_factory=nx.DiGraph)

    # -- construction -------------------------------------------------------
    def add(self, node: Node) -> Node:
        if node.name in self.g:
            raise IRError(f"duplicate node name {node.name!r}")
        self.g.add_node(node.name, node=node)
        for src in node.inputs:
            self.g.add_edge(src, node.name)
        return node

    def unique_name(self, base: str) -> str:
        name, i = base, 1
        while name in self.g:
            i += 1
            name = f"{base}_{i}"
        return name

    def node(self, name: str) -> Node:
        try:
            return self.g.nodes[name]["node"]
        except KeyError:
            raise IRError(f"no node named {name!r}") from None

    def __contains__(self, name: str) -> bool:
        return name in self.g

    def __len__(self) -> int:
        return self.g.number_of_nodes()

    def topo(self) -> Iterator[Node]:
        """Nodes in a deterministic topological order (ties broken by insertion order)."""
        order = {n: i for i, n in enumerate(self.g.nodes)}
        for name in nx.lexicographical_topological_sort(self.g, key=lambda n: order[n]):
            yield self.node(name)

    def nodes_of(self, *types: type[Node]) -> list[Node]:
        return [n for n in self.topo() if isinstance(n, types)]

    def consumers(self, name: str) -> list[Node]:
        return [self.node(s) for s in self.g.successors(name)]

    @property
    def input(self) -> InputBase:
        """The input node (``input`` or ``qinput``)."""
        return self.nodes_of(InputBase)[0]

    @property
    def readout(self) -> ReadoutBase:
        """The readout node (``readout`` or ``qreadout``)."""
        return self.nodes_of(ReadoutBase)[0]

    def neuron_layers(self) -> list[NeuronBase]:
        """The multi-level neuron layers of either phase (``neuron`` or ``qneuron``), in topological order."""
        return self.nodes_of(NeuronBase)

    def replace_input(self, node: Node, old: str, new: str) -> None:
        node.inputs = [new if i == old else i for i in node.inputs]
        self.g.remove_edge(old, node.name)
        self.g.add_edge(new, node.name)

    def remove_passthrough(self, name: str) -> None:
        """Remove a single-input node, connecting its consumers to its input."""
        node = self.node(name)
        (src,) = node.inputs
        for consumer in self.consumers(name):
            self.replace_input(consumer, name, src)
        self.g.remove_node(name)

    def copy(self, share_arrays: bool = False) -> "Graph":
        """A deep copy; with ``share_arrays`` the new nodes hold the same parameter arrays (for a pass that
        only ever assigns new arrays to a node, never writes into one: no weight-sized copy)."""
        new = Graph(self.steps, copy.deepcopy(self.meta))
        for node in self.topo():
            memo = {id(a): a for a in node.arrays().values()} if share_arrays else {}
            new.add(copy.deepcopy(node, memo))
        return new


# -- shape inference -----------------------------------------------------------

def _pair(v) -> tuple[int, int]:
    return (int(v[0]), int(v[1])) if isinstance(v, (tuple, list)) else (int(v), int(v))


def _conv_out(size: int, k: int, s: int, p: int, d: int = 1) -> int:
    return (size + 2 * p - d * (k - 1) - 1) // s + 1


def _node_shape(node: Node, ins: list[tuple[int, ...]]) -> tuple[int, ...]:
    """Output shape of ``node`` from its input shapes; raises ValueError with the reason. Every kind with a
    shape rule of its own carries it (``out_shape``); the other elementwise kinds keep their input's shape."""
    if hasattr(node, "out_shape"):
        return node.out_shape(ins)
    if node.elementwise:
        return ins[0] if ins else None
    raise ValueError(f"unknown node kind {node.kind!r}")


def _shapes(graph: Graph, stored: dict | None = None) -> dict[str, tuple[int, ...]]:
    """Every node's output shape from the input's, without writing them; each node's attributes are checked
    (compiler/graph_checks.py) before its shape is computed, so a bad attribute never reaches the arithmetic.
    With ``stored`` (node name -> the shape a saved graph recorded), the first node whose attributes give
    another shape is named, rather than the later node that cannot consume it."""
    from .graph_checks import check_node

    shapes: dict[str, tuple[int, ...]] = {}
    for node in graph.topo():
        for src in node.inputs:
            if src not in graph:
                raise IRError(f"node {node.name!r} ({node.kind}): input {src!r} does not exist")
        if len(node.inputs) != node.arity:
            raise IRError(f"node {node.name!r} ({node.kind}): takes {node.arity} input(s), has {len(node.inputs)}")
        check_node(node, graph)
        try:
            shapes[node.name] = _node_shape(node, [shapes[i] for i in node.inputs])
        except ValueError as exc:
            raise IRError(f"node {node.name!r} ({node.kind}): {exc}") from None
        want = (stored or {}).get(node.name)
        if want is not None and tuple(want) != tuple(shapes[node.name]):
            raise IRError(f"node {node.name!r} ({node.kind}): its attributes and input give output shape "
                          f"{tuple(shapes[node.name])}, not the stored {tuple(want)}")
    return shapes


def infer_shapes(graph: Graph, stored: dict | None = None) -> Graph:
    """Set every node's ``shape`` (in place); raises IRError naming the first node that does not fit (or,
    with ``stored``, whose shape differs from the one recorded for it)."""
    _check_structure(graph)
    for name, shape in _shapes(graph, stored).items():
        graph.node(name).shape = shape
    return graph


# -- validation ----------------------------------------------------------------

def _check_structure(graph: Graph) -> None:
    from .graph_checks import check_steps

    if not nx.is_directed_acyclic_graph(graph.g):
        cycle = nx.find_cycle(graph.g)
        raise IRError(f"graph has a cycle through node {cycle[0][0]!r}")
    check_steps(graph)


def _lint(graph: Graph, phase: str) -> Graph:
    """The checks both validators share; the graph is not changed."""
    _check_structure(graph)
    actual = "integer" if graph.meta.get("integer") else "float"
    if actual != phase:
        raise IRError(f"expected a{'n' if phase == 'integer' else ''} {phase} graph, got a{'n' if actual == 'integer' else ''} "
                      f"{actual} graph")
    inputs = [n for n in graph.topo() if n.kind in ("input", "qinput")]
    readouts = [n for n in graph.topo() if n.kind in ("readout", "qreadout")]
    if len(inputs) != 1:
        raise IRError(f"graph needs exactly one input node, has {len(inputs)}")
    if len(readouts) != 1:
        raise IRError(f"graph needs exactly one readout node, has {len(readouts)}")
    for node in graph.topo():
        where = f"node {node.name!r} ({node.kind})"
        if phase not in node.phases:
            raise IRError(f"{where}: a {'/'.join(sorted(node.phases))} node kind in a {phase} graph")
        if len(node.inputs) != node.arity:
            raise IRError(f"{where}: takes {node.arity} input(s), has {len(node.inputs)}")
    shapes = _shapes(graph)
    for node in graph.topo():
        where = f"node {node.name!r} ({node.kind})"
        for key, arr in node.arrays().items():
            if arr.dtype.kind not in "iub" and not np.all(np.isfinite(arr)):     # integers are always finite
                raise IRError(f"{where}: parameter {key!r} has non-finite values")
        problem = node.lint(graph.steps)
        if problem is not None:
            raise IRError(f"{where}: {problem}")
    if graph.consumers(readouts[0].name):
        raise IRError(f"node {readouts[0].name!r} (readout) must be the last node")
    for node in graph.topo():
        if hasattr(node, "check"):   # kinds defined outside this module check their own parameters
            node.check()
        if node.shape is None or tuple(node.shape) != shapes[node.name]:
            raise IRError(f"node {node.name!r} ({node.kind}): stored shape {node.shape} is not the inferred "
                          f"{shapes[node.name]} (run infer_shapes after changing the graph)")
    return graph


def validate(graph: Graph) -> Graph:
    """Lint a float graph (structure, attributes, stored shapes = inferred shapes); never changes it.

    Raises IRError naming the offending node. Run after every pass by the pass runner.
    """
    return _lint(graph, "float")


def validate_integer(graph: Graph) -> Graph:
    """Lint an integer graph: ``validate``'s checks plus the integer ranges (weights within weight_bits,
    acc_bound covering the range analysis, shifts and widths int64-exact), the semantics version, and a
    window plan annotation, where present, equal to the plan the graph allows."""
    from lmhtc.semantics import SEMANTICS_VERSION

    from .analysis.windows import check_window_plan
    from .graph_checks import check_integer_ranges

    _lint(graph, "integer")
    if graph.meta.get("semantics_version") != SEMANTICS_VERSION:
        raise IRError(f"integer semantics version {graph.meta.get('semantics_version')} is not "
                      f"{SEMANTICS_VERSION}")
    check_integer_ranges(graph)
    check_window_plan(graph)
    return graph


def check(graph: Graph) -> Graph:
    """The validator of the graph's phase: ``validate`` or ``validate_integer``."""
    return validate_integer(graph) if graph.meta.get("integer") else validate(graph)


# Set while the pass runner (passes/manager.py) runs a pass: it lints the pass's result itself, so the
# pass's own ``finalize`` need not lint the same graph a moment earlier.
RUNNER_LINTS: contextvars.ContextVar[bool] = contextvars.ContextVar("runner_lints", default=False)


def finalize(graph: Graph) -> Graph:
    """What a graph builder ends with: infer the shapes, then check the graph with its phase's validator
    (inside a pass the runner runs, the runner's lint after the pass is that check)."""
    infer_shapes(graph)
    return graph if RUNNER_LINTS.get() else check(graph)


# -- analysis helpers ------------------------------------------------------------

def is_spiking(node: Node) -> bool:
    """A neuron layer of any kind (``neuron``, ``qneuron``, ``lif``, ``qlif``, ``msat_neuron``...): its kind
    declares ``emits_spikes`` (see analysis/spikes.py)."""
    return carries_spikes(node)


def spike_train_layers(graph: Graph) -> list[str]:
    """The layers of an integer graph whose output is a spike train (the runtime's ``layer_names``, what the
    integer targets compare): every multi-level neuron layer, and every other neuron kind whose
    ``spiking`` is true (a ``qlif`` that fires; not a non-spiking integrator)."""
    return [n.name for n in graph.topo()
            if isinstance(n, NeuronBase) or (is_spiking(n) and getattr(n, "spiking", False))]


def receives_spikes(graph: Graph, name: str) -> bool:
    """True when ``name``'s input comes from neurons only; False when from the analog input only
    (analysis/spikes.py's ``spike_fed``).

    Raises IRError when both reach it (the reparameterization rules differ for the two).
    """
    return spike_fed(graph, name, lambda n: IRError(
        f"node {n!r} mixes the analog input with spikes; lmhtc cannot reparameterize that"))


def summary_rows(graph: Graph) -> list[dict]:
    """Per-node rows for ``lmhtc inspect``: kind, shape, neurons, synapses, L, steps, threshold, leak."""
    rows = []
    for node in graph.topo():
        row = {"name": node.name, "kind": node.kind, "shape": node.shape, "neurons": 0, "synapses": 0,
               "levels": "", "steps": graph.steps, "threshold": "", "leak": ""}
        if isinstance(node, (ConvBase, LinearBase)):
            row["synapses"] = node.synapses()
        elif isinstance(node, NeuronBase):
            row["neurons"] = int(np.prod(node.shape))
            row["levels"] = node.levels
            th = np.asarray(node.threshold)
            row["threshold"] = f"{th.item():.4g}" if th.size == 1 else f"{th.min()}..{th.max()} (int)"
            row["leak"] = leak_summary(node.leak)
        elif getattr(node, "spiking", False):   # kinds defined elsewhere (``lif``): constant per-neuron β and θ
            row["neurons"] = int(np.prod(node.shape))
            row["levels"] = 1
            th, beta = np.asarray(node.threshold), np.asarray(node.beta)
            row["threshold"] = f"{th.min():.4g}" if th.min() == th.max() else f"{th.min():.4g}..{th.max():.4g}"
            row["leak"] = f"β {beta.min():.4g} (all steps)" if beta.min() == beta.max() else \
                f"β {beta.min():.4g}..{beta.max():.4g} (all steps)"
        rows.append(row)
    return rows


def leak_summary(leak: np.ndarray) -> str:
    """Compact text of a leak schedule, e.g. ``[1.02, 1, 1.02, 1]`` or ``1 (all steps)``."""
    vals = [f"{v:.4g}" for v in leak]
    if len(set(vals)) == 1:
        return f"{vals[0]} (all steps)"
    if len(vals) > 8:
        return "[" + ", ".join(vals[:8]) + ", …]"
    return "[" + ", ".join(vals) + "]"
