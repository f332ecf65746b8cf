"""The model zoo: architectures build, run, and use the authors' parameter names."""
from __future__ import annotations

import pytest
import torch

from lmhtc.compiler.errors import LmhtcError
from lmhtc.compiler.neurons import IFNeuron, LMHTNeuron, spiking_neurons
from lmhtc.compiler.zoo import ARCHS, build_qcfs_ann, build_snn

SMALL = {"resnet18-imagenet": (3, 64, 64), "resnet34-imagenet": (3, 64, 64)}


@pytest.mark.parametrize("arch", sorted(ARCHS))
def test_every_arch_builds_and_runs(arch):
    spec = ARCHS[arch]
    shape = SMALL.get(arch, spec.default_input_shape)
    for recipe in spec.recipes:
        model = build_snn(arch, 2, 2, 10, recipe, shape).eval()
        with torch.no_grad():
            out = model(torch.randn(2, *shape))
        assert out.shape == (2, 2, 10), (arch, recipe)
        neurons = spiking_neurons(model)
        assert neurons and all(isinstance(n, LMHTNeuron) for _, n in neurons)
        first_scale = 2.0 if recipe == "hybrid" else 1.0
        assert neurons[0][1].scale == first_scale
        assert {n.v_init for _, n in neurons} == {0.5 if recipe == "hybrid" else 0.0}


def test_resnet18_key_layout():
    keys = set(build_snn("resnet18", 2, 2).state_dict())
    for k in ["conv1.weight", "bn1.running_mean", "sn1.mask", "sn1.mask_linear", "layer1.0.conv1.0.weight",
              "layer1.0.conv1.1.running_var", "layer1.0.sn2.alpha", "layer2.0.downsample.0.0.weight",
              "layer2.0.downsample.0.1.bias", "layer4.1.sn2.v_threshold", "fc.0.weight", "fc.0.bias"]:
        assert k in keys, k
    assert not any("downsample" in k for k in keys if k.startswith("layer1."))


def test_resnet19_classifier_has_a_neuron_and_mixes_time_per_step():
    model = build_snn("resnet19", 2, 2).eval()
    keys = set(model.state_dict())
    assert {"fc.0.0.weight", "fc.1.mask_linear", "fc.2.0.weight"} <= keys
    assert not any(k.startswith("layer1.") for k in keys)
    with torch.no_grad():
        model.fc[1].mask_linear.normal_()
        out = model(torch.randn(3, 3, 32, 32))
    assert out.shape == (2, 3, 10)   # not T×T×B×C as the authors' broadcasting gives


def test_l1_uses_if_neurons_as_the_authors_do():
    model = build_snn("vgg11", 1, 4)
    assert all(isinstance(n, IFNeuron) for _, n in spiking_neurons(model))
    assert "layer1.1.v_threshold" in model.state_dict() and "layer1.1.mask" not in model.state_dict()


def test_vgg_layouts_and_biases():
    keys = set(build_snn("vgg16", 2, 2).state_dict())
    assert {"layer1.0.0.weight", "layer1.0.0.bias", "layer1.0.1.running_mean", "layer1.1.mask",
            "classifier.0.0.weight", "classifier.1.alpha", "classifier.3.0.bias", "classifier.6.0.weight"} <= keys
    assert "classifier.0.0.weight" in build_snn("cifarnet", 2, 2).state_dict()
    assert build_snn("cifarnet", 2, 2).state_dict()["classifier.0.0.weight"].shape == (1024, 512 * 8 * 8)
    assert set(build_snn("vgg11", 2, 2, num_classes=200).state_dict()) >= {"classifier.0.weight"}


def test_hybrid_forms_add_a_per_step_level_to_ann_keys():
    ann = set(build_qcfs_ann("resnet20").state_dict())
    snn = set(build_snn("resnet20", 2, 2, recipe="hybrid").state_dict())
    assert "conv1.0.weight" in ann and "conv1.2.thresh" in ann and "conv3_x.0.shortcut.0.weight" in ann
    assert "conv1.0.0.weight" in snn and "conv1.2.mask" in snn and "conv3_x.0.shortcut.0.0.weight" in snn
    assert "fc.0.weight" in snn and "fc.weight" in ann
    ann16 = set(build_qcfs_ann("vgg16").state_dict())
    assert {"layer1.0.weight", "layer1.2.thresh", "classifier.1.weight", "classifier.2.thresh"} <= ann16


def test_hybrid_snn_inherits_qcfs_thresholds():
    ann = build_qcfs_ann("resnet20")
    with torch.no_grad():
        ann.conv1[2].thresh.fill_(3.5)
    from lmhtc.compiler.zoo.hybrid import ann_to_hybrid_snn

    snn = ann_to_hybrid_snn(ann, 2, 4)
    assert snn.conv1[2].v_threshold.item() == 3.5 and snn.conv1[2].T == 4 and snn.conv1[2].v_init == 0.5


@pytest.mark.parametrize("kwargs, message", [
    ({"arch": "alexnet"}, "unknown architecture"),
    ({"arch": "resnet18", "recipe": "hybrid"}, "no 'hybrid' recipe"),
    ({"arch": "resnet18", "recipe": "online"}, "unknown recipe"),
    ({"arch": "resnet18", "levels": 0}, "--levels"),
    ({"arch": "resnet18", "timesteps": 0}, "--timesteps"),
    ({"arch": "vgg16", "input_shape": (3, 16, 16)}, "too small"),
    ({"arch": "digitsnet", "input_shape": (1, 6, 6)}, "multiples of 4"),
])
def test_bad_build_requests(kwargs, message):
    args = {"levels": 2, "timesteps": 2, **kwargs}
    with pytest.raises(LmhtcError, match=message):
        build_snn(args.pop("arch"), args.pop("levels"), args.pop("timesteps"), **args)
