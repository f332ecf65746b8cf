"""Shared test fixtures: paths to the authors' checkpoints in ../shared/fixtures."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

if os.environ.get("PYTEST_XDIST_WORKER"):
    # `make test` runs two workers on two cores: one torch thread each, or the second thread of each
    # worker mostly spins (measured on the ResNet-20 fixture's lowering: 8.8 s with 2 threads, 0.35 s with 1)
    torch.set_num_threads(1)

REPO = Path(__file__).resolve().parents[1]
FIXTURES = Path(os.environ.get("LMHTC_FIXTURES", REPO.parent / "shared" / "fixtures"))

RESNET18 = FIXTURES / "resnet18_digits_L2_T2.pth"
QCFS_RESNET20 = FIXTURES / "qcfs_resnet20_digits_Q8.pth"
HYBRID_RESNET20 = FIXTURES / "hybrid_resnet20_digits_Q8_L2_T2.pth"


def pytest_collection_modifyitems(config, items):
    if FIXTURES.is_dir():
        return
    if os.environ.get("CI"):
        raise pytest.UsageError(f"fixtures directory {FIXTURES} is missing (CI must have ../shared/fixtures)")
    skip = pytest.mark.skip(reason=f"fixtures directory {FIXTURES} not found")
    for item in items:
        if "fixtures" in item.fixturenames:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def fixtures() -> Path:
    return FIXTURES


@pytest.fixture(scope="session")
def digits32_test(fixtures):
    with np.load(fixtures / "digits32_test.npz") as f:
        return f["x"], f["y"]


def agreement_stats(out: np.ndarray, ref: np.ndarray) -> dict:
    """The float rule (docs/design.md §7): argmax agreement of mean-over-steps, mean |Δ|, share within 1e-3·(1+|ref|)."""
    diff = np.abs(out - ref)
    return {
        "argmax_agreement": float((out.mean(0).argmax(-1) == ref.mean(0).argmax(-1)).mean()),
        "mean_abs_diff": float(diff.mean()),
        "within_tol": float((diff <= 1e-3 * (1 + np.abs(ref))).mean()),
    }


def cli(*args) -> tuple[int, str]:
    """Run ``lmhtc ARGS`` in-process; (exit code, output)."""
    from typer.testing import CliRunner

    from lmhtc.compiler.cli import app

    res = CliRunner().invoke(app, [str(a) for a in args])
    return res.exit_code, res.output


def assert_one_line_error(code: int, output: str, *fragments: str) -> None:
    """A user error: exit status 2 and exactly one line ``error: ...`` containing every fragment."""
    assert code == 2, output
    lines = [ln for ln in output.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), output
    for frag in fragments:
        assert frag in lines[0], (frag, lines[0])
