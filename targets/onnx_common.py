"""What the two ONNX emitters share: the opset, the IR version, a small graph builder and the model's metadata."""
from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

from lmhtc.compiler import __version__
from lmhtc.compiler.errors import LmhtcError
from lmhtc.compiler.ir import Graph

OPSET = 17
IR_VERSION = 10   # onnxruntime 1.23 loads at most IR version 11


class ExportError(LmhtcError):
    """The artifact holds something the target cannot express; the message names the node and the reason."""


class Builder:
    """Collects nodes and initializers under unique names derived from the IR node names."""

    def __init__(self):
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self.count = 0

    def name(self, base: str) -> str:
        self.count += 1
        return f"{base}__{self.count}"

    def const(self, base: str, value, dtype=np.float32) -> str:
        n = self.name(base)
        self.inits.append(numpy_helper.from_array(np.asarray(value, dtype=dtype), n))
        return n

    def op(self, op_type: str, inputs: list[str], base: str, out: str | None = None, **attrs) -> str:
        out = out or self.name(base)
        self.nodes.append(helper.make_node(op_type, inputs, [out], name=self.name(base), **attrs))
        return out

    def add_steps(self, a: list[str], c: list[str], steps: int, base: str) -> list[str]:
        """Step-wise sum of two step sequences; a static value (one tensor) is added at every step."""
        if len(a) != len(c):
            a, c = (a * steps if len(a) == 1 else a), (c * steps if len(c) == 1 else c)
        return [self.op("Add", [p, q], base) for p, q in zip(a, c)]


def finish_model(b: Builder, graph: Graph, inputs, outputs, metadata: dict) -> onnx.ModelProto:
    """Wrap the builder's nodes into a checked, shape-inferred model with lmhtc's metadata."""
    g = helper.make_graph(b.nodes, "lmhtc", inputs, outputs, initializer=b.inits)
    model = helper.make_model(g, producer_name="lmhtc", producer_version=__version__,
                              opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = IR_VERSION
    meta = {"producer": "lmhtc", "lmhtc_version": __version__, "steps": str(graph.steps),
            "reparameterized": str(bool(graph.meta.get("reparameterized"))),
            "levels": str(graph.meta.get("reparam_levels", graph.meta.get("levels", ""))),
            "schedule": str(graph.meta.get("schedule", "")), **{k: str(v) for k, v in metadata.items()}}
    helper.set_model_props(model, meta)
    onnx.checker.check_model(model, full_check=True)
    return onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True)
