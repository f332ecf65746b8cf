"""Batches on threads: results in input order whatever finishes first, errors raised, torch's thread count
restored; calibration on two threads equals calibration on one bit for bit."""
from __future__ import annotations

import threading
import time

import numpy as np
import pytest
import torch

from lmhtc.compiler.batch_threads import batch_workers, ordered_map
from lmhtc.compiler.frontends import trace_to_ir
from lmhtc.compiler.passes.calibrate import calibrate
from lmhtc.compiler.pipeline import compile_graphs
from nets import TinyResNet, randomize


def test_results_come_in_input_order_when_later_items_finish_first():
    seen_threads, seen_intra = set(), set()

    def slow_first(i):
        seen_threads.add(threading.get_ident())
        seen_intra.add(torch.get_num_threads())
        time.sleep(0.05 if i % 3 == 0 else 0.0)
        return i * i

    before = torch.get_num_threads()
    assert list(ordered_map(slow_first, range(10), workers=2)) == [i * i for i in range(10)]
    assert len(seen_threads) == 2 and seen_intra == {max(1, before // 2)}
    assert torch.get_num_threads() == before


def test_one_worker_runs_in_the_calling_thread_and_errors_propagate():
    assert list(ordered_map(lambda i: threading.get_ident(), range(3), workers=1)) == [threading.get_ident()] * 3

    def fail_at_3(i):
        if i == 3:
            raise ValueError("batch 3")
        return i

    before = torch.get_num_threads()
    with pytest.raises(ValueError, match="batch 3"):
        list(ordered_map(fail_at_3, range(8), workers=2))
    assert torch.get_num_threads() == before
    assert batch_workers(1) == 1 and batch_workers(2) == 2 and batch_workers(16) == 2


@pytest.mark.parametrize("near", [False, True])
def test_calibration_on_two_threads_equals_one_thread(near):
    graph = compile_graphs(trace_to_ir(randomize(TinyResNet(2, 2), 5), (2, 8, 8)))["compiled"]
    x = np.random.default_rng(5).normal(size=(11, 2, 8, 8)).astype(np.float32) * 2
    one, two = (calibrate(graph, x, batch_size=2, near=near, workers=w) for w in (1, 2))
    assert one.images == two.images == 11 and one.peaks == two.peaks
    for a, b in ((one.mean_in, two.mean_in), (one.sq_in, two.sq_in)):
        assert a.keys() == b.keys() and a and all(np.array_equal(a[k], b[k]) for k in a)
    assert one.near.keys() == two.near.keys()
    for k in one.near:
        for f in ("channel", "step", "level", "prior", "margin"):
            assert np.array_equal(getattr(one.near[k], f), getattr(two.near[k], f))
    assert not near or any(len(n.margin) for n in two.near.values())


def test_calibration_on_no_images_is_refused():
    from lmhtc.compiler.errors import LmhtcError
    graph = compile_graphs(trace_to_ir(randomize(TinyResNet(2, 2), 5), (2, 8, 8)))["compiled"]
    with pytest.raises(LmhtcError, match="calibration data holds no images"):
        calibrate(graph, np.zeros((0, 2, 8, 8), np.float32))
