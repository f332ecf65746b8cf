"""How the ``lmhtc`` commands show their results: the rich tables and the summary lines they print.

Invariant: presentation only formats; every function here takes results already computed (reports,
records, rows) and prints them, so what a command computes never depends on how it is shown. The
table titles, columns and console widths are part of the command line's output and stay stable.
"""
from __future__ import annotations

import typer


def _console(width: int):
    from rich.console import Console

    return Console(width=width)


def _table(title: str, columns, right=()):
    """A rich Table with ``columns``; those in ``right`` (or all but the first when ``right`` is True)
    right-justified."""
    from rich.table import Table

    table = Table(title=title)
    for i, col in enumerate(columns):
        flush = (i > 0) if right is True else col in right
        table.add_column(col, justify="right" if flush else "left")
    return table


def method_note(qm: dict) -> str:
    """What of the lowering method ran: bias correction and threshold-aware rounding need data."""
    if qm["method"] == "maxabs" or qm["bias_correction"]:
        return ""
    return " (no calibration data: scales only, no bias correction)"


def lowering_line(qm: dict) -> str:
    """The one line ``lmhtc compile`` prints for the integer lowering it ran (the ``quantization`` meta)."""
    return (f"integer lowering: {qm['weight_bits']}-bit weights ({'per channel' if qm['per_channel'] else 'per layer'}), "
            f"{qm['membrane_bits']}-bit membranes, input range ±{qm['input_range']:.4g} from {qm['input_rule']}; "
            f"method {qm['method']}{method_note(qm)}")


def mixed_precision_line(mp, low_bits: int, budget: float) -> str:
    """The one line ``lmhtc compile --mixed-precision`` prints for the widths it chose."""
    return (f"mixed precision: {len(mp.layer_bits)} layer(s) at 8 bits "
            f"({', '.join(n for n, _ in mp.layer_bits) or 'none'}), the rest at {low_bits}; "
            f"argmax agreement on --calib {100 * mp.agreement:.2f} % "
            f"({'meets' if mp.met else 'misses'} the budget {100 * budget:.2f} %)")


def print_exactness(report) -> None:
    """The per-layer exactness table of a reparameterization and its two summary lines."""
    table = _table(f"reparameterization exactness ({report.schedule} schedule, L={report.levels}, "
                   f"{report.images} images)",
                   ("layer", "(neuron, window) pairs", "matching", "fraction", "max |count - level|"), right=True)
    for layer in report.layers:
        table.add_row(layer.layer, str(layer.pairs), str(layer.matching), f"{layer.fraction:.6f}", str(layer.max_abs_diff))
    _console(160).print(table)
    typer.echo(f"all layers: {100 * report.fraction:.4f} % of (neuron, window) spike counts equal the M-HT levels")
    typer.echo(f"logits (x L) vs M-HT: argmax agreement {100 * report.argmax_agreement:.2f} %, "
               f"mean |d| {report.mean_abs_dlogits:.3g}, within 1e-3(1+|ref|): {100 * report.within_tol:.2f} %")


def print_schedule_comparison(reports: dict) -> None:
    """Window schedules side by side (one column per schedule name in ``reports``)."""
    table = _table("window schedules side by side: share of (neuron, window) spike counts equal to the M-HT "
                   "levels", ("layer", *reports), right=True)
    first = next(iter(reports.values()))
    for i, layer in enumerate(first.layers):
        table.add_row(layer.layer, *[f"{r.layers[i].fraction:.6f}" for r in reports.values()])
    table.add_row("all layers", *[f"{r.fraction:.6f}" for r in reports.values()], end_section=True)
    table.add_row("logits within 1e-3(1+|ref|)", *[f"{r.within_tol:.4f}" for r in reports.values()])
    table.add_row("argmax agreement", *[f"{r.argmax_agreement:.4f}" for r in reports.values()])
    _console(160).print(table)


def print_layer_table(title: str, rows: list[dict]) -> None:
    """``lmhtc inspect``'s layer table (rows of ir.summary_rows) with a total row."""
    table = _table(title, ("node", "kind", "shape", "neurons", "synapses", "L", "T'", "threshold", "leak schedule"),
                   right=("neurons", "synapses", "L", "T'"))
    for r in rows:
        table.add_row(r["name"], r["kind"], "x".join(map(str, r["shape"])), str(r["neurons"] or ""),
                      str(r["synapses"] or ""), str(r["levels"]), str(r["steps"]), r["threshold"], r["leak"])
    table.add_row("total", "", "", str(sum(r["neurons"] for r in rows)), str(sum(r["synapses"] for r in rows)),
                  "", "", "", "", end_section=True)
    _console(200).print(table)


def print_verify(n_inputs: int, runs, pairs) -> None:
    """``lmhtc verify``'s timing line, pair table and (when spikes were compared) per-layer spike table."""
    console = _console(120)
    console.print(f"{n_inputs} inputs; " + ", ".join(f"{r.name} {r.seconds:.2f} s" for r in runs))
    table = _table("pairs", ("a", "b", "argmax agreement", "max |Δlogits|", "spikes equal", "bit-exact", "required"))
    for p in pairs:
        table.add_row(p.a, p.b, f"{100 * p.argmax_agreement:.2f} %", f"{p.max_abs_dlogits:.3g}",
                      "-" if p.spikes_equal is None else str(p.spikes_equal), str(p.bit_exact),
                      "bit-exact" if p.required else "-")
    console.print(table)
    spike_pairs = [p for p in pairs if p.spikes_equal is not None]
    if spike_pairs:
        layers = _table("spike trains per neuron layer (differing entries)",
                        ("layer", *[f"{p.a} vs {p.b}" for p in spike_pairs]))
        for layer in spike_pairs[0].layer_mismatches:
            layers.add_row(layer, *[("equal" if p.layer_mismatches.get(layer) == 0
                                     else str(p.layer_mismatches.get(layer))) for p in spike_pairs])
        console.print(layers)


def print_sweep(title: str, result, spikes: bool) -> None:
    """``lmhtc sweep``'s table: one row per (setting, method)."""
    cols = ["setting", "method", "int accuracy", "vs float LM-HT (pp)", "argmax agreement", "saturations",
            "spikes int/float"] + (["spike agr. first", "spike agr. last"] if spikes else [])
    table = _table(title, cols, right=tuple(c for c in cols if c not in ("setting", "method")))
    for r in result.rows:
        table.add_row(r.setting, r.method, f"{100 * r.accuracy:.2f} %", f"{r.delta_pp:+.2f}", f"{100 * r.agreement:.2f} %",
                      str(r.saturations), f"{r.spike_ratio:.4f}",
                      *([f"{100 * r.spikes_first:.2f} %", f"{100 * r.spikes_last:.2f} %"] if spikes else []))
    _console(160).print(table)
