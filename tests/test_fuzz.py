"""The fuzz suite (issue #18): hypothesis-driven mutators of artifacts, inputs, checkpoints, sidecars and
Lava directories (benchmarks/fuzz.py); every case must be handled: exit 0 with a valid result, or one
line ``error: ...`` naming the damaged file and, when the mutation damaged a key, node, process or tensor,
naming that too, with no output left; never a traceback or a changed input.

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
            "sidecar": 25, "lava directory": 30}


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    w = World.build(tmp_path_factory.mktemp("fuzz") / "world")
    w.commands = ("simulate", "inspect")      # the cheap readers of a manifest; the benchmark runs them all
    return w


@pytest.mark.parametrize("name", list(MUTATORS))
def test_every_mutation_is_handled(world, tmp_path, name):
    verdicts, named = [], []

    @settings(max_examples=EXAMPLES[name], deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    @given(st.data())
    def run(data):
        case = new_case(world, tmp_path / "case", name, data)
        verdict = judge(case)
        verdicts.append(verdict)
        named.append(case.names if verdict == "error" else ())
        assert not verdict.startswith("FAIL"), f"{verdict}: {' '.join(map(str, case.args))}: {case.detail}"

    run()
    assert len(verdicts) >= EXAMPLES[name] // 2 and "error" in verdicts     # the mutator does reach errors
    assert any(names for names in named), name         # and errors whose damaged key the judge checked


def test_the_judge_requires_the_damaged_key(world, tmp_path):
    """The same damaged artifact is handled when the error names the damaged node, and a failure when the
    judge is told another node was damaged (a line naming only the file is not enough)."""
    import json
    import zipfile

    from benchmarks.fuzz import Case, _mentions

    with zipfile.ZipFile(world.art) as z:
        m, blob = json.loads(z.read("manifest.json")), z.read("tensors.safetensors")
    conv = next(n for n in m["graphs"]["source"]["nodes"] if n["kind"] == "conv2d")
    conv["attrs"]["stride"] = [3, 3]
    art = tmp_path / "a.lmhtc"
    with zipfile.ZipFile(art, "w") as z:
        z.writestr("manifest.json", json.dumps(m))
        z.writestr("tensors.safetensors", blob)
    args = ["inspect", art, "--graph", "source"]
    assert judge(Case("manifest field", args, art, None, [art], names=(conv["name"],))) == "error"
    assert judge(Case("manifest field", args, art, None, [art], names=("classifier.0",))) == \
        "FAIL: error does not name the damaged key"
    assert _mentions("node 'features.0.0' (conv2d)", "features.0.0") and not _mentions("xfeatures.0.0", "features.0.0")
    assert not _mentions("features.0.0x", "features.0.0") and _mentions("model_spec.levels: ...", "levels")
