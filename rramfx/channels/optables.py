"""Tables of operations the analysis knows (elementwise, binary, reductions, pooling) and small helpers."""

from __future__ import annotations

import operator

import torch
import torch.nn.functional as F
from torch import fx, nn

__all__ = [
    "BINARY_FUNCTIONS",
    "BINARY_METHODS",
    "ELEMENTWISE_FUNCTIONS",
    "ELEMENTWISE_METHODS",
    "ELEMENTWISE_MODULES",
    "POOL_MODULES",
    "REDUCTIONS",
    "REDUCTION_FUNCTIONS",
    "SPATIAL_FUNCTIONS",
    "VIEW_METHODS",
    "WEIGHTED_REDUCTIONS",
    "describe",
]

POOL_MODULES = (
    nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d,
    nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d, nn.AdaptiveMaxPool1d,
    nn.AdaptiveMaxPool2d, nn.AdaptiveMaxPool3d, nn.LPPool1d, nn.LPPool2d, nn.Upsample,
    nn.UpsamplingNearest2d, nn.UpsamplingBilinear2d, nn.ZeroPad2d, nn.ConstantPad1d, nn.ConstantPad2d,
    nn.ConstantPad3d, nn.ReflectionPad1d, nn.ReflectionPad2d, nn.ReplicationPad1d, nn.ReplicationPad2d,
)
ELEMENTWISE_MODULES = (
    nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.ELU, nn.SELU, nn.CELU, nn.GELU, nn.SiLU, nn.Mish, nn.Hardswish,
    nn.Hardsigmoid, nn.Hardtanh, nn.Sigmoid, nn.Tanh, nn.Softplus, nn.Softsign, nn.LogSigmoid,
    nn.Identity, nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout, nn.Threshold,
    nn.Tanhshrink,
)
ELEMENTWISE_FUNCTIONS = {
    torch.relu, torch.relu_, torch.sigmoid, torch.tanh, torch.exp, torch.abs, torch.neg, torch.sqrt,
    torch.rsqrt, torch.clamp, torch.clip, torch.sign, torch.erf, torch.log, torch.square,
    F.relu, F.relu_, F.relu6, F.gelu, F.silu, F.mish, F.hardswish, F.hardsigmoid, F.hardtanh, F.hardtanh_,
    F.leaky_relu, F.leaky_relu_, F.elu, F.selu, F.celu, F.softplus, F.sigmoid, F.tanh, F.logsigmoid,
    F.dropout, F.alpha_dropout, F.dropout1d, F.dropout2d, F.dropout3d, operator.neg, torch.clamp_min,
}
ELEMENTWISE_METHODS = {
    "relu", "relu_", "sigmoid", "sigmoid_", "tanh", "tanh_", "exp", "abs", "neg", "sqrt", "rsqrt",
    "clamp", "clamp_", "clamp_min", "clamp_min_", "clamp_max", "clip", "contiguous", "clone", "detach",
    "float", "half", "double", "bfloat16", "to", "type_as", "type", "square", "log", "erf", "sign",
    "hardtanh_", "exp_", "requires_grad_",
}
BINARY_FUNCTIONS = {
    operator.add, operator.sub, operator.mul, operator.truediv, operator.iadd, operator.isub,
    operator.imul, operator.itruediv, operator.pow, torch.add, torch.sub, torch.mul, torch.div,
    torch.true_divide, torch.maximum, torch.minimum, torch.where, torch.pow, torch.lerp, torch.addcmul,
    torch.addcdiv,
}
BINARY_METHODS = {
    "add", "add_", "sub", "sub_", "mul", "mul_", "div", "div_", "true_divide", "maximum", "minimum",
    "pow", "pow_", "lerp", "addcmul", "addcmul_", "addcdiv", "addcdiv_", "where",
}
REDUCTIONS = {  # name -> hazard kind over the reduced dims: None, "uniform" or "any"
    "mean": "uniform", "sum": "any", "amax": None, "amin": None, "max": None, "min": None,
    "std": "any", "var": "any", "prod": "any", "logsumexp": "any", "nansum": "any", "nanmean": "uniform",
    "median": None,
}
REDUCTION_FUNCTIONS = {getattr(torch, n): n for n in REDUCTIONS if hasattr(torch, n)}
#: Reductions the widening can keep exact over unevenly copied channels by weighting each element
#: 1 / copies of its source (``rramfx.passes.widen_ops``).
WEIGHTED_REDUCTIONS = ("mean", "sum")
VIEW_METHODS = {"view", "reshape"}
SPATIAL_FUNCTIONS = {
    F.adaptive_avg_pool1d, F.adaptive_avg_pool2d, F.adaptive_avg_pool3d, F.adaptive_max_pool1d,
    F.adaptive_max_pool2d, F.adaptive_max_pool3d, F.avg_pool1d, F.avg_pool2d, F.avg_pool3d,
    F.max_pool1d, F.max_pool2d, F.max_pool3d, F.interpolate, F.upsample, F.lp_pool2d,
    torch.max_pool2d, torch.avg_pool1d, torch.adaptive_avg_pool1d,
}


def describe(node: fx.Node) -> str:
    """How error messages name what a node calls."""
    if node.op == "call_module":
        return f"module '{node.target}'"
    if node.op == "call_method":
        return f"method .{node.target}()"
    return f"{getattr(node.target, '__name__', node.target)}()"
