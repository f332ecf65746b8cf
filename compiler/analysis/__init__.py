"""Shared analyses of IR graphs, each computed by one function that the passes, the runtime, the
emitters and the cost passes call: synaptic groups (``groups``), window plans (``windows``), integer
range bounds (``ranges``) and convolution cover (``cover``).

Invariant: an analysis reads a graph and never changes it; where a result is kept on the graph (the
window plan), a pass writes it and the integer validator checks that it is the analysis's value.
"""
