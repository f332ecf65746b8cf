"""The fuzz suite (issue #18): hypothesis-driven mutators of artifacts, inputs, checkpoints, sidecars and
Lava directories (benchmarks/fuzz.py); every case must be handled: exit 0 with a valid result, or one
line ``error: ...`` naming the damaged file with no output left; never a traceback or a changed input.

A fixed, derandomized number of examples per mutator keeps it within the test-time budget;
``python -m benchmarks fuzz N`` runs more.
"""
from __future__ import annotations

import sys

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import REPO

sys.path.insert(0, str(REPO))
from benchmarks.fuzz import MUTATORS, World, judge, new_case  # noqa: E402

EXAMPLES = {"manifest field": 30, "tensor header": 15, "zip structure": 15, "input npz": 30, "checkpoint": 15,
            "sidecar": 15, "lava directory": 30}


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    w = World.build(tmp_path_factory.mktemp("fuzz") / "world")
    w.commands = ("simulate", "inspect")      # the cheap readers of a manifest; the benchmark runs them all
    return w


@pytest.mark.parametrize("name", list(MUTATORS))
def test_every_mutation_is_handled(world, tmp_path, name):
    verdicts = []

    @settings(max_examples=EXAMPLES[name], deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    @given(st.data())
    def run(data):
        case = new_case(world, tmp_path / "case", name, data)
        verdict = judge(case)
        verdicts.append(verdict)
        assert not verdict.startswith("FAIL"), f"{verdict}: {' '.join(map(str, case.args))}: {case.detail}"

    run()
    assert len(verdicts) >= EXAMPLES[name] // 2 and "error" in verdicts     # the mutator does reach errors
