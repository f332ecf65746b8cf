"""Input sources read by slices, the one reduction of per-batch records, and the resume store (no Dask)."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lmhtc.compiler.errors import LmhtcError
from lmhtc.compiler.records import combine, load_record, save_record
from lmhtc.compiler.sources import open_inputs

X = np.random.default_rng(0).normal(size=(23, 2, 3, 3)).astype(np.float32)
Y = np.arange(23) % 10


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("src")
    np.savez(tmp / "one.npz", x=X, y=Y)
    np.savez_compressed(tmp / "packed.npz", x=X, y=Y)
    np.save(tmp / "x.npy", X)
    (tmp / "dir").mkdir()
    for i, (a, b) in enumerate([(0, 5), (5, 6), (6, 20), (20, 23)]):
        np.savez(tmp / "dir" / f"part{i:02d}.npz", x=X[a:b], y=Y[a:b])
    return {name: open_inputs(tmp / name) for name in ("one.npz", "packed.npz", "x.npy", "dir")}


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(a=st.integers(0, 23), n=st.integers(0, 25))
def test_every_source_reads_exactly_its_slice(sources, a, n):
    for name, src in sources.items():
        got = src.read(a, a + n)
        assert got.dtype == np.float32 and np.array_equal(got, X[a:a + n]), name


def test_labels_counts_limit_and_memory_mapping(sources):
    assert [len(s) for s in sources.values()] == [23] * 4
    assert np.array_equal(sources["dir"].labels(), Y) and np.array_equal(sources["one.npz"].labels(), Y)
    assert sources["x.npy"].labels() is None
    lim = sources["dir"].limited(7)
    assert len(lim) == 7 and np.array_equal(lim.labels(), Y[:7]) and np.array_equal(lim.read(0, 99), X[:7])
    from lmhtc.compiler.sources import _member

    assert isinstance(_member(sources["one.npz"].files[0], "x"), np.memmap)      # np.savez: stored, mapped
    assert not isinstance(_member(sources["packed.npz"].files[0], "x"), np.memmap)


def test_bad_inputs_are_one_line_errors(tmp_path):
    np.savez(tmp_path / "nox.npz", z=X)
    with pytest.raises(LmhtcError, match="no array 'x'"):
        open_inputs(tmp_path / "nox.npz")
    (tmp_path / "d").mkdir()
    np.savez(tmp_path / "d" / "a.npz", x=X, y=Y)
    np.savez(tmp_path / "d" / "b.npz", x=X)
    with pytest.raises(LmhtcError, match="b.npz: no labels 'y'"):
        open_inputs(tmp_path / "d")
    np.save(tmp_path / "i.npy", np.zeros((2, 1, 2, 2), np.int32))
    with pytest.raises(LmhtcError, match="floating point"):
        open_inputs(tmp_path / "i.npy")
    (tmp_path / "empty").mkdir()
    with pytest.raises(LmhtcError, match="no .npz shards"):
        open_inputs(tmp_path / "empty")


def _record(lo: int, hi: int) -> dict:
    return {"logits": X[lo:hi, 0, 0], "outputs": np.moveaxis(X[lo:hi], 0, 1), "names": ["a", "b"],
            "kernels": {"conv": {"event": hi - lo, "dense": 1}}, "nested": {"spikes": np.moveaxis(X[lo:hi], 0, 2)}}


@settings(max_examples=30, deadline=None)
@given(cuts=st.lists(st.integers(1, 22), unique=True, max_size=6))
def test_combining_a_split_gives_the_whole(cuts):
    bounds = [0, *sorted(cuts), 23]
    parts = [_record(a, b) for a, b in zip(bounds, bounds[1:])]
    whole = combine(parts, axes={"outputs": 1, "spikes": 2}, sums={"kernels"})
    ref = _record(0, 23)
    for key in ("logits", "outputs"):
        assert np.array_equal(whole[key], ref[key])
    assert np.array_equal(whole["nested"]["spikes"], ref["nested"]["spikes"])
    assert whole["names"] == ["a", "b"]
    assert whole["kernels"] == {"conv": {"event": 23, "dense": len(parts)}}


def test_combine_refuses_shards_that_disagree():
    a, b = _record(0, 3), _record(3, 5)
    b["names"] = ["a", "c"]
    with pytest.raises(RuntimeError, match="disagree on names"):
        combine([a, b], axes={"outputs": 1, "spikes": 2}, sums={"kernels"})


def test_record_round_trip(tmp_path):
    rec = _record(2, 9)
    rec.update(seconds=0.25, mode="int", none=None, count=3)
    save_record(tmp_path / "r.npz", rec)
    back = load_record(tmp_path / "r.npz")
    assert list(back) == list(rec) and back["names"] == rec["names"] and back["kernels"] == rec["kernels"]
    assert back["seconds"] == 0.25 and back["mode"] == "int" and back["none"] is None and back["count"] == 3
    assert np.array_equal(back["nested"]["spikes"], rec["nested"]["spikes"])
    assert back["outputs"].dtype == rec["outputs"].dtype and np.array_equal(back["outputs"], rec["outputs"])
