"""Artifact format: save → load is the identity; damage is detected and named; writes are atomic."""
from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lmhtc.compiler.artifact import ArtifactError, graphs_equal, load_artifact, save_artifact
from lmhtc.compiler.executor import run_float
from lmhtc.compiler.frontends import trace_to_ir
from lmhtc.compiler.pipeline import compile_graphs
from nets import TinyResNet, randomize


def compiled(seed=0, levels=2, T=2, reparam=True):
    return compile_graphs(trace_to_ir(randomize(TinyResNet(levels, T), seed), (2, 8, 8)), reparam=reparam)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 1000), levels=st.sampled_from([1, 2, 4]), T=st.sampled_from([1, 2, 3]),
       reparam=st.booleans())
def test_save_load_round_trip_is_identity(tmp_path_factory, seed, levels, T, reparam):
    graphs = compiled(seed, levels, T, reparam)
    path = tmp_path_factory.mktemp("art") / "net.lmhtc"
    save_artifact(path, graphs, {"note": "round trip", "seed": seed})
    loaded, meta = load_artifact(path)
    assert meta == {"note": "round trip", "seed": seed}
    assert set(loaded) == {"source", "compiled"}
    for name in graphs:
        assert graphs_equal(graphs[name], loaded[name])
        assert loaded[name].meta == json.loads(json.dumps(graphs[name].meta))
    x = np.random.default_rng(seed).normal(size=(3, 2, 8, 8)).astype(np.float32)
    a, b = run_float(graphs["compiled"], x), run_float(loaded["compiled"], x)
    assert np.array_equal(a.outputs, b.outputs) and np.array_equal(a.spike_counts, b.spike_counts)


def test_shared_weights_are_stored_once(tmp_path):
    graphs = compiled()
    path = save_artifact(tmp_path / "a.lmhtc", graphs)
    with zipfile.ZipFile(path) as z:
        manifest = json.loads(z.read("manifest.json"))
    refs = [k for g in manifest["graphs"].values() for n in g["nodes"] for k in n["arrays"].values()]
    conv_w = [n["arrays"]["weight"] for g in manifest["graphs"].values() for n in g["nodes"] if n["name"] == "conv.0"]
    assert conv_w[0] == conv_w[1] and len(set(refs)) < len(refs)


@pytest.fixture
def artifact(tmp_path):
    return save_artifact(tmp_path / "net.lmhtc", compiled())


def test_truncated_artifact(artifact):
    data = artifact.read_bytes()
    artifact.write_bytes(data[: len(data) // 2])
    with pytest.raises(ArtifactError, match=f"{artifact}: not an lmhtc artifact or truncated"):
        load_artifact(artifact)


def test_flipped_byte_in_tensors(artifact):
    data = bytearray(artifact.read_bytes())
    with zipfile.ZipFile(artifact) as z:
        info = z.getinfo("tensors.safetensors")
    offset = info.header_offset + 30 + len(info.filename) + len(info.extra) + info.file_size // 2
    data[offset] ^= 0xFF
    artifact.write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match="corrupted artifact \\(checksum mismatch in tensors.safetensors\\)"):
        load_artifact(artifact)


def _rewrite(path, manifest=None, tensors=None):
    with zipfile.ZipFile(path) as z:
        m, t = z.read("manifest.json"), z.read("tensors.safetensors")
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("manifest.json", manifest(m) if manifest else m)
        z.writestr("tensors.safetensors", tensors(t) if tensors else t)


def test_tampered_tensors_with_valid_zip(artifact):
    _rewrite(artifact, tensors=lambda t: t[:-4] + bytes(4))
    with pytest.raises(ArtifactError, match="tensor data does not match its checksum"):
        load_artifact(artifact)


def test_tampered_manifest_version(artifact):
    _rewrite(artifact, manifest=lambda m: m.replace(b'"version": 2', b'"version": 99'))
    with pytest.raises(ArtifactError, match="format version 99 is not supported"):
        load_artifact(artifact)


def test_tampered_manifest_graph(artifact):
    def edit(m):
        d = json.loads(m)
        d["graphs"]["compiled"]["nodes"][5]["inputs"] = ["no_such_node"]
        return json.dumps(d).encode()
    _rewrite(artifact, manifest=edit)
    with pytest.raises(ArtifactError, match="graph 'compiled'"):
        load_artifact(artifact)


def test_not_an_artifact(tmp_path):
    p = tmp_path / "x.lmhtc"
    p.write_text("{}")
    with pytest.raises(ArtifactError, match="not an lmhtc artifact"):
        load_artifact(p)
    with pytest.raises(ArtifactError, match="no such file"):
        load_artifact(tmp_path / "missing.lmhtc")


def test_failed_save_leaves_no_file(tmp_path):
    with pytest.raises(TypeError):
        save_artifact(tmp_path / "bad.lmhtc", compiled(), {"unserialisable": object()})
    assert list(tmp_path.iterdir()) == []


def test_tensor_entry_is_the_library_serialization(tmp_path):
    """The streamed tensor entry is byte for byte what safetensors' in-memory serializer writes for the
    same arrays, and the scratch file it was streamed from is gone."""
    from safetensors.numpy import load as st_load
    from safetensors.numpy import save as st_save

    path = save_artifact(tmp_path / "net.lmhtc", compiled(3))
    with zipfile.ZipFile(path) as z:
        blob = z.read("tensors.safetensors")
        assert z.getinfo("tensors.safetensors").file_size == len(blob)
    assert blob == st_save(st_load(blob))
    assert [p.name for p in tmp_path.iterdir()] == ["net.lmhtc"]


def test_failed_save_keeps_the_old_output(tmp_path):
    path = save_artifact(tmp_path / "net.lmhtc", compiled(1))
    before = path.read_bytes()
    with pytest.raises(TypeError):
        save_artifact(path, compiled(2), {"unserialisable": object()})
    assert path.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["net.lmhtc"]


@pytest.mark.parametrize("values, dtype, stored", [
    ([-128, 127], np.int32, np.int8), ([-129, 0], np.int32, np.int16), ([0, 128], np.int64, np.int16),
    ([-2 ** 15, 2 ** 15 - 1], np.int64, np.int16), ([2 ** 15, 0], np.int32, np.int32),
    ([-(2 ** 31), 2 ** 31 - 1], np.int64, np.int32), ([-(2 ** 31) - 1, 5], np.int64, np.int64),
    ([2 ** 31 - 1, -(2 ** 31)], np.int32, np.int32), ([-3, 3], np.int16, np.int8), ([-3, 3], np.int8, np.int8),
    ([1.0, 2.0], np.float32, np.float32), ([], np.int64, np.int64)])
def test_integer_arrays_are_stored_in_the_narrowest_type_that_holds_them(values, dtype, stored):
    from lmhtc.compiler.artifact import _narrowed, _widened
    arr = np.array(values, dtype)
    store = {"k": arr}
    narrowed = _narrowed(store)
    assert store["k"].dtype == stored and np.array_equal(store["k"], arr)
    assert narrowed == ({} if stored == dtype else {"k": np.dtype(dtype).name})
    _widened(store, narrowed, "f", {})
    assert store["k"].dtype == dtype and np.array_equal(store["k"], arr)


@pytest.fixture
def integer_artifact(tmp_path):
    from lmhtc.compiler.passes.quantize import QuantConfig
    from lmhtc.compiler.pipeline import lower_integer
    graphs = compiled()
    graphs["integer"], _ = lower_integer(graphs["compiled"], QuantConfig())
    return graphs, save_artifact(tmp_path / "q.lmhtc", graphs)


def test_an_integer_graph_round_trips_with_its_weights_stored_in_one_byte(integer_artifact):
    graphs, path = integer_artifact
    with zipfile.ZipFile(path) as z:
        manifest = json.loads(z.read("manifest.json"))
        blob = z.read("tensors.safetensors")
    header = json.loads(blob[8:8 + int.from_bytes(blob[:8], "little")])
    weights = [header[n["arrays"]["weight"]]["dtype"] for n in manifest["graphs"]["integer"]["nodes"]
               if n["kind"] == "qconv2d"]
    assert weights and set(weights) == {"I8"} and manifest["version"] == 2
    assert set(manifest["narrowed"].values()) <= {"int32", "int64"} and manifest["narrowed"]
    loaded, _ = load_artifact(path)
    for name in graphs:        # values and dtypes (int32 weights, int64 biases) as saved
        assert graphs_equal(graphs[name], loaded[name])
    assert {loaded["integer"].node(n.name).weight.dtype for n in graphs["integer"].topo() if n.kind == "qconv2d"} \
        == {np.dtype(np.int32)}


def test_a_version_1_artifact_still_loads(tmp_path):
    graphs = compiled()         # float arrays only: nothing narrowed, as a version-1 writer stored them
    path = save_artifact(tmp_path / "v1.lmhtc", graphs)

    def as_version_1(m):
        d = json.loads(m)
        assert d.pop("narrowed") == {}
        d["version"] = 1
        return json.dumps(d).encode()
    _rewrite(path, manifest=as_version_1)
    loaded, _ = load_artifact(path)
    assert all(graphs_equal(graphs[k], loaded[k]) for k in graphs)


@pytest.mark.parametrize("damage, message", [
    (lambda d, k: d.pop("narrowed"), "'narrowed' must map tensor keys to dtype names"),
    (lambda d, k: d.update(narrowed=["x"]), "'narrowed' must map tensor keys to dtype names"),
    (lambda d, k: d["narrowed"].update({"feedface": "int32"}), "'narrowed' names tensor 'feedface', which is not"),
    (lambda d, k: d["narrowed"].update({k: "float32"}), "node 'stem.0' array 'weight' .*'float32' is not a wider integer"),
    (lambda d, k: d["narrowed"].update({k: "int8"}), "'int8' is not a wider integer type than its stored int8"),
    (lambda d, k: d["narrowed"].update({k: 32}), "32 is not a wider integer"),
    (lambda d, k: d["narrowed"].update({k: "object"}), "'object' is not a wider integer"),
])
def test_a_damaged_narrowed_entry_is_named(integer_artifact, damage, message):
    graphs, path = integer_artifact
    first = next(n.name for n in graphs["integer"].topo() if n.kind == "qconv2d")

    def edit(m):
        d = json.loads(m)
        key = next(n["arrays"]["weight"] for n in d["graphs"]["integer"]["nodes"] if n["name"] == first)
        damage(d, key)
        return json.dumps(d).encode()
    _rewrite(path, manifest=edit)
    with pytest.raises(ArtifactError, match=message):
        load_artifact(path)
