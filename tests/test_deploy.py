"""Deployment: BatchNorm folding, channels-last max pooling and the inference model give the trained
model's results (no timings here)."""
import pytest
import torch
from conftest import model_pair
from spikingjelly.activation_based import functional, layer

import sj_sew
from sj_sew.deploy import ChannelsLastMaxPool2d, InferenceModel, fold_batchnorm, fused_conv, inference_model
from sj_sew.memory import memory_saving


def test_fused_conv_equals_conv_then_bn_in_eval():
    conv = layer.Conv2d(3, 8, 3, padding=1, bias=False, step_mode="m")
    bn = layer.BatchNorm2d(8, step_mode="m")
    with torch.no_grad():
        bn.weight.uniform_(0.5, 1.5), bn.bias.uniform_(-0.3, 0.3)
        bn.running_mean.uniform_(-0.2, 0.2), bn.running_var.uniform_(0.5, 2.0)
    bn.eval()
    x = torch.randn(2, 4, 3, 6, 6)
    fused = fused_conv(conv, bn)
    assert fused.step_mode == "m"
    torch.testing.assert_close(fused(x), bn(conv(x)), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name,kwargs,x_shape", [
    ("sew_resnet18", {"num_classes": 10, "T": 4}, (4, 3, 32, 32)),
    ("sew_resnet50", {"num_classes": 10, "connect": "AND", "zero_init_residual": True, "width": 16},
     (2, 3, 3, 32, 32)),
    ("net7b", {}, (2, 1, 2, 128, 128)),
    ("ms_resnet", {"depth": 14, "T": 2}, (2, 3, 16, 16)),
    ("ds_resnet14", {"widths": (8, 16, 32), "T": 2}, (2, 3, 16, 16)),
])
def test_inference_model_same_predictions(name, kwargs, x_shape):
    model, _ = model_pair(name, **kwargs)
    norm = torch.nn.modules.batchnorm._BatchNorm  # BatchNorm2d, and DS-ResNet's tdBN (eps outside the root)
    for m in model.modules():
        if isinstance(m, norm):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    model = memory_saving(model) if name == "sew_resnet18" else model  # checkpointing is switched off
    deployed = inference_model(model)
    assert isinstance(deployed, InferenceModel) and "forward" not in vars(deployed.model)
    assert not any(isinstance(m, norm) for m in deployed.modules()), "every normalisation after a conv folds"
    assert any(isinstance(m, norm) for m in model.modules()), "the original stays as it was"
    assert not deployed.training and not any(p.requires_grad for p in deployed.parameters())
    x = torch.rand(*x_shape) * 3
    model.eval()
    with torch.no_grad():
        functional.reset_net(model)
        expected = model(x)
        functional.reset_net(model)
    got = deployed(x)
    assert torch.is_inference(got) and not got.requires_grad
    assert torch.equal(got.argmax(-1), expected.argmax(-1))
    torch.testing.assert_close(got, expected, rtol=1e-3, atol=1e-3)
    assert torch.equal(deployed(x), got), "each call starts from rest"


def test_fold_batchnorm_counts_every_conv_bn_pair():
    net = sj_sew.create_model("sew_resnet18", num_classes=10)
    n_bn = sum(isinstance(m, torch.nn.BatchNorm2d) for m in net.modules())
    assert fold_batchnorm(net.eval()) == n_bn == 20


def test_channels_last_max_pool_same_values():
    pool = torch.nn.MaxPool2d(3, 2, 1)
    fast = ChannelsLastMaxPool2d(pool)
    x = (torch.rand(3, 2, 4, 9, 9) < 0.4).float() + torch.rand(3, 2, 4, 9, 9) * (torch.rand(1) > 2)
    assert torch.equal(fast(x), pool(x.flatten(0, 1)).unflatten(0, (3, 2)))
    assert fast(x).is_contiguous()
    y = torch.randn(2, 4, 10, 10)
    assert torch.equal(fast(y), pool(y))
    with pytest.raises(ValueError, match="indices"):
        ChannelsLastMaxPool2d(torch.nn.MaxPool2d(2, return_indices=True))


def test_inference_model_refuses_training():
    deployed = inference_model(sj_sew.create_model("sew_resnet18", num_classes=10, width=8, T=2))
    assert deployed.eval() is deployed
    with pytest.raises(RuntimeError, match="cannot be trained"):
        deployed.train()
