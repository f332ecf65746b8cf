"""The cost report of a network (`lmhtc report`): static costs, activity on data, energy and chip resources.

``build_report`` joins the passes of ``compiler/cost`` into one JSON-ready
record; ``print_report`` renders it as a terminal table (per layer + totals)
and ``report_plots.write_report_plots`` as PNG plots, both from that record
alone, so the table, the JSON and the plots always say the same.

Record layout: ``totals`` (at least ``sops_per_image``, ``macs_per_image`` and
``energy_mj_per_image``, means over the inputs, SOPs as plain counts), ``layers``
(one record per neuron layer and the readout, with the synaptic layers that
feed it), ``synaptic_layers`` (one per synaptic unit, the runtime's names),
``resources``, the energy model and the core description with their sources,
and the counting conventions in words.
"""
from __future__ import annotations

import numpy as np

from .cost.dynamic import Activity, measure_activity
from .cost.energy import EnergyModel, pj_to_mj
from .cost.fanout import cost_graph
from .cost.hardware import CoreSpec, estimate_resources
from .cost.static import static_costs
from .finite import check_finite_outputs
from .ir import Graph

CONVENTIONS = {
    "sops": "synaptic operations: sum over spike events of the event's level times its fan-out (outputs reached); "
            "linear pooling folds into the next synaptic layer (global avg-pool + fc: one SOP per class), identity "
            "shortcuts have fan-out 1; counted per image, summed over all time-steps",
    "macs": "the analog-input layer does MACs, counted once per distinct input frame (direct encoding: once per "
            "image); macs_per_image_per_step is the same count x time-steps, the convention of much of the "
            "literature",
    "firing_rate": "spike events (levels summed) per neuron per time-step; spikes_per_image = events per image",
    "energy": "E_SNN = e_sop*SOPs + e_mac*MACs + e_neuron_update*neurons*steps; E_ANN = e_mac*MACs of one pass of "
              "the equivalent ANN (same conv/linear layers)",
    "worst_case_sops": "every neuron emitting its largest level at every time-step",
}


def _mean(a) -> float:
    return float(np.mean(a)) if np.size(a) else 0.0


def build_report(graph: Graph, x: np.ndarray, mode: str, energy: EnergyModel, hardware: CoreSpec,
                 y: np.ndarray | None = None, graph_name: str = "", batch_size: int = 16,
                 progress: bool = False, meta: dict | None = None, cg=None, where: str | None = None) -> dict:
    """Run the cost passes on ``graph`` with inputs ``x``; the whole report as a JSON-ready dict
    (``cg``: the graph's cost graph, when the caller built it already; ``where``: the artifact an error names,
    by default ``meta["artifact"]``)."""
    cg = cg or cost_graph(graph)
    activity = measure_activity(graph, x, mode, batch_size=batch_size, progress=progress, cg=cg)
    check_finite_outputs(activity.logits, graph, x, where or (meta or {}).get("artifact") or "artifact",
                         batch_size=batch_size)
    return report_from_activity(graph, activity, energy, hardware, y=y, graph_name=graph_name, meta=meta, cg=cg)


def report_from_activity(graph: Graph, activity: Activity, energy: EnergyModel, hardware: CoreSpec,
                         y: np.ndarray | None = None, graph_name: str = "", meta: dict | None = None,
                         cg=None) -> dict:
    """The report of ``graph`` from activity measured elsewhere (in shards, on Dask workers); non-finite
    logits are refused (named at the readout: the inputs that would locate the layer are on the workers)."""
    check_finite_outputs(activity.logits, graph, None, (meta or {}).get("artifact") or "artifact")
    static = static_costs(graph, cg or cost_graph(graph))
    resources = estimate_resources(static, hardware)
    return assemble(graph, static, activity, resources, energy, y=y, graph_name=graph_name, meta=meta)


def assemble(graph: Graph, static, activity: Activity, resources, energy: EnergyModel,
             y: np.ndarray | None = None, graph_name: str = "", meta: dict | None = None) -> dict:
    steps = activity.steps
    unit_sops = dict(zip(activity.unit_names, activity.sops.mean(axis=0)))         # name → [steps] per image
    rates = dict(zip(activity.layer_names, activity.firing_rate_per_step()))       # name → [steps]
    spikes = dict(zip(activity.layer_names, activity.spikes.sum(axis=2).mean(axis=0) if activity.images
                      else np.zeros(len(activity.layer_names))))
    res = {r.layer: r for r in resources.layers}
    synaptic = []
    for u in static.units:
        per_step = unit_sops.get(u.name, np.zeros(steps))
        synaptic.append({"name": u.name, "kind": u.kind, "target": u.target, "sources": u.sources,
                         "analog": u.analog, "fan_in": u.fan_in, "synapses": u.synapses, "ann_macs": u.ann_macs,
                         "worst_case_sops": u.worst_case_sops, "sops_per_image": float(per_step.sum()),
                         "sops_per_step": [float(v) for v in per_step],
                         "macs_per_image": u.analog_macs, "macs_per_image_per_step": u.analog_macs_per_step})
    by_target: dict[str, list[dict]] = {}
    for s in synaptic:
        by_target.setdefault(s["target"], []).append(s)
    layers = []
    for layer in static.layers:
        ins = by_target.get(layer.name, [])
        sops = sum(s["sops_per_image"] for s in ins)
        sops_step = np.sum([s["sops_per_step"] for s in ins], axis=0) if ins else np.zeros(steps)
        updates = layer.neurons * steps
        e = energy.snn_pj(sops, layer.analog_macs, updates)
        r = res[layer.name]
        rate = rates.get(layer.name)
        layers.append({
            "name": layer.name, "kind": layer.kind, "shape": layer.shape, "neurons": layer.neurons,
            "levels": layer.levels, "inputs": layer.units, "fan_in": layer.fan_in, "synapses": layer.synapses,
            "parameters": layer.parameters, "ann_macs": layer.ann_macs, "worst_case_sops": layer.worst_case_sops,
            "spikes_per_image": float(spikes.get(layer.name, 0.0)),
            "firing_rate": None if rate is None else float(rate.mean()),
            "firing_rate_per_step": None if rate is None else [float(v) for v in rate],
            "sops_per_image": float(sops), "sops_per_step": [float(v) for v in sops_step],
            "macs_per_image": layer.analog_macs, "macs_per_image_per_step": layer.analog_macs_per_step,
            "neuron_updates_per_image": updates,
            "energy_mj_per_image": pj_to_mj(e["total"]),
            "energy_breakdown_mj": {k: pj_to_mj(v) for k, v in e.items() if k != "total"},
            "ann_energy_mj_per_image": pj_to_mj(energy.ann_pj(layer.ann_macs)),
            "weight_bits": layer.weight_bits, "membrane_bits": layer.membrane_bits,
            "weight_memory_bytes": layer.weight_memory_bytes, "state_memory_bytes": layer.state_memory_bytes,
            "cores": r.cores, "neurons_per_core": r.neurons_per_core,
            "synaptic_memory_bytes_per_core": r.synaptic_memory_bytes_per_core, "fits": r.fits,
            "does_not_fit_because": r.reason or None,
        })
    st = static.totals()
    sops_total = float(activity.sops.sum(axis=(1, 2)).mean()) if activity.images else 0.0
    macs = _mean(activity.macs)
    updates = sum(layer.neurons for layer in static.layers) * steps
    e = energy.snn_pj(sops_total, macs, updates)
    ann = energy.ann_pj(st["ann_macs"])
    neurons = st["neurons"]
    total_spikes = float(activity.spikes.sum(axis=(1, 2)).mean()) if activity.images else 0.0
    totals = {
        "sops_per_image": sops_total, "macs_per_image": macs,
        "macs_per_image_per_step": float(st["analog_macs_per_step"]),
        "ann_macs_per_image": st["ann_macs"], "neuron_updates_per_image": updates,
        "spikes_per_image": total_spikes,
        "firing_rate": total_spikes / (neurons * steps) if neurons else 0.0,
        "energy_mj_per_image": pj_to_mj(e["total"]),
        "energy_breakdown_mj": {k: pj_to_mj(v) for k, v in e.items() if k != "total"},
        "ann_energy_mj_per_image": pj_to_mj(ann),
        "energy_ratio_snn_to_ann": e["total"] / ann if ann else None,
        "neurons": neurons, "synapses": st["synapses"], "parameters": st["parameters"],
        "worst_case_sops_per_image": st["worst_case_sops"],
        "weight_memory_bytes": st["weight_memory_bytes"], "state_memory_bytes": st["state_memory_bytes"],
        "cores": resources.cores, "chips": resources.chips,
    }
    accuracy = None
    if y is not None and activity.images:
        accuracy = float((activity.logits.argmax(1) == np.asarray(y)[:activity.images]).mean())
    meta = meta or {}
    return {
        "artifact": meta.get("artifact"), "arch": meta.get("arch"), "graph": graph_name, "mode": activity.mode,
        "images": activity.images, "steps": steps, "levels": static.levels,
        "reparameterized": bool(graph.meta.get("reparameterized")),
        "window": int(graph.meta.get("reparam_levels", 1)) if graph.meta.get("reparameterized") else 1,
        "accuracy": accuracy,
        "energy_model": energy.to_json(), "hardware": resources.hardware.to_json(),
        "conventions": CONVENTIONS, "totals": totals, "layers": layers, "synaptic_layers": synaptic,
        "resources": {"hardware": resources.hardware.name, "cores": resources.cores, "chips": resources.chips,
                      "does_not_fit": [{"layer": r.layer, "reason": r.reason} for r in resources.does_not_fit]},
    }


# -- terminal rendering ------------------------------------------------------------------------

def si(value: float | None, digits: int = 3) -> str:
    """``37.7 M``-style engineering text of a count."""
    if value is None:
        return "-"
    v = float(value)
    for factor, suffix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(v) >= factor:
            return f"{v / factor:.{digits}g} {suffix}"
    return f"{v:.{digits}g}"


def print_report(report: dict, console=None) -> None:
    """The per-layer table, its totals row and the summary lines."""
    from rich.console import Console
    from rich.table import Table

    console = console or Console(width=200)
    t = report["totals"]
    em, hw = report["energy_model"], report["hardware"]
    title = (f"{report.get('artifact') or ''}: {report.get('arch') or ''} {report['graph']} graph, {report['mode']} "
             f"mode, {report['images']} images, {report['steps']} steps, energy model {em['name']}, {hw['name']}")
    table = Table(title=title)
    cols = ("layer", "neurons", "synapses", "ANN MACs", "worst SOPs", "rate", "spikes/img", "SOPs/img", "MACs/img",
            "E (uJ)", "E ANN (uJ)", "cores")
    for col in cols:
        table.add_column(col, justify="left" if col == "layer" else "right")
    for layer in report["layers"]:
        rate = layer["firing_rate"]
        table.add_row(layer["name"], si(layer["neurons"]) if layer["neurons"] else "", si(layer["synapses"]),
                      si(layer["ann_macs"]), si(layer["worst_case_sops"]),
                      "" if rate is None else f"{rate:.4f}",
                      "" if rate is None else si(layer["spikes_per_image"]), si(layer["sops_per_image"]),
                      si(layer["macs_per_image"]) if layer["macs_per_image"] else "",
                      f"{1e3 * layer['energy_mj_per_image']:.3g}", f"{1e3 * layer['ann_energy_mj_per_image']:.3g}",
                      "no fit" if not layer["fits"] else str(layer["cores"]))
    table.add_row("total", si(t["neurons"]), si(t["synapses"]), si(t["ann_macs_per_image"]),
                  si(t["worst_case_sops_per_image"]), f"{t['firing_rate']:.4f}", si(t["spikes_per_image"]),
                  si(t["sops_per_image"]), si(t["macs_per_image"]), f"{1e3 * t['energy_mj_per_image']:.3g}",
                  f"{1e3 * t['ann_energy_mj_per_image']:.3g}", str(t["cores"]), end_section=True)
    console.print(table)
    lines = [
        f"SOPs per image: {t['sops_per_image']:.6g} ({t['sops_per_image'] / 1e9:.4g} G); analog-input MACs: "
        f"{t['macs_per_image']:.6g} once per image ({t['macs_per_image_per_step']:.6g} counted at every one of "
        f"{report['steps']} steps)",
        f"energy per image ({em['name']}: {em['e_sop_pj']:g} pJ/SOP, {em['e_mac_pj']:g} pJ/MAC, "
        f"{em['e_neuron_update_pj']:g} pJ/neuron update): {t['energy_mj_per_image']:.4g} mJ "
        f"(SOPs {t['energy_breakdown_mj']['sop']:.4g}, MACs {t['energy_breakdown_mj']['mac']:.4g}, neuron updates "
        f"{t['energy_breakdown_mj']['neuron_update']:.4g}); equivalent ANN ({si(t['ann_macs_per_image'])} MACs): "
        f"{t['ann_energy_mj_per_image']:.4g} mJ; SNN/ANN = {t['energy_ratio_snn_to_ann']:.4g}",
        f"memory: weights {si(t['weight_memory_bytes'])}B, neuron state {si(t['state_memory_bytes'])}B "
        f"({'integer widths' if report['mode'] == 'int' or report['graph'] == 'integer' else 'float32'}); "
        f"{hw['name']}: {t['cores']} cores, {t['chips']} chip(s)"
        + (" for the layers that fit" if report["resources"]["does_not_fit"] else ""),
    ]
    by_reason: dict[str, list[str]] = {}
    for m in report["resources"]["does_not_fit"]:
        by_reason.setdefault(m["reason"], []).append(m["layer"])
    for reason, names in by_reason.items():
        lines.append(f"does not fit {hw['name']} ({reason}): {', '.join(names)}")
    if report.get("accuracy") is not None:
        lines.append(f"accuracy: {100 * report['accuracy']:.2f} %")
    for line in lines:
        console.print(line, highlight=False, markup=False, soft_wrap=True)
