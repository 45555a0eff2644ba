import torch
from spikingjelly.activation_based import layer

from sj_sew.fuse import fused_conv


def test_fused_conv_equals_conv_then_bn_in_eval():
    conv = layer.Conv2d(3, 5, 3, padding=1, bias=False, step_mode="m")
    bn = layer.BatchNorm2d(5, step_mode="m")
    bn.running_mean.uniform_(-1, 1), bn.running_var.uniform_(0.5, 2), bn.weight.data.uniform_(0.5, 2)
    bn.eval()
    x = torch.randn(2, 4, 3, 8, 8)
    fused = fused_conv(conv, bn)
    assert fused.step_mode == "m"
    torch.testing.assert_close(fused(x), bn(conv(x)), atol=1e-5, rtol=1e-5)
