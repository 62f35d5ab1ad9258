"""The channel-rule registry and the rules behind widen_channels' reach: each rule declares what it
reads and records and the registry holds it to that; blur pooling, global context, attention over
channels, stochastic depth, channel shuffle, GRN, one-group GroupNorm, channel padding and expand
widen with the output kept; what cannot be kept exact is refused with the node named."""

import operator

import pytest
import torch
import torch.nn.functional as F
from timm.layers import BlurPool2d, GlobalContext, GroupNorm1
from timm.layers.grn import GlobalResponseNorm
from torch import nn
from torchvision.ops import StochasticDepth

import rramfx
from rramfx.channels import DEFAULT_RULES, ChannelAnalysis, RuleSet, default_rules
from rramfx.channels.registry import NOTHING, TENSOR, TENSORS, VALUE, dim, out_shape, rule, tensor
from rramfx.channels.values import TV
from rramfx.errors import PassError
from rramfx.graph.record import rramfx_meta
from rramfx.passes import widen_channels

from .structural import rel_err

X = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))


def widen_exactly(model: nn.Module, x: torch.Tensor = X, factor: float = 1.5) -> nn.Module:
    """Widen preserving the function and check that the output is kept."""
    torch.manual_seed(0)
    model.eval()
    out = widen_channels(rramfx.trace(model), factor, x, preserve_function=True)
    with torch.no_grad():
        assert rel_err(out.eval()(x), model(x)) <= 1e-4
    assert rramfx_meta(out)["widen"]["kept"] == []
    return out


# ---- the registry ------------------------------------------------------------------------------------
def test_rules_are_found_by_what_a_node_calls():
    assert DEFAULT_RULES.functions[torch.cat].name == "cat"
    assert DEFAULT_RULES.methods["chunk"].name == DEFAULT_RULES.functions[torch.split].name == "split"
    assert DEFAULT_RULES.ops["placeholder"].name == "placeholder"
    assert DEFAULT_RULES.for_module(nn.Conv1d(2, 2, 3)).name == "convolution"  # through the MRO
    assert DEFAULT_RULES.for_module(nn.SiLU()).name == "activation"
    from timm.layers import LayerNorm2d  # a LayerNorm subclass with a forward of its own: not "layer norm"
    assert DEFAULT_RULES.for_module(nn.LayerNorm(4)).name == "layer norm"
    assert DEFAULT_RULES.for_module(LayerNorm2d(4)) is DEFAULT_RULES.module_fallback
    assert not DEFAULT_RULES.knows(LayerNorm2d(4)) and DEFAULT_RULES.knows(nn.BatchNorm2d(4))
    for r in DEFAULT_RULES.all_rules():
        assert r.produces in (TENSOR, TENSORS, VALUE, NOTHING), r.name
        assert all(e in ("layer", "hazard", "param") or e.startswith("rewrite:") for e in r.records), r.name


def test_a_key_has_one_rule_and_a_rule_its_declared_signature():
    @rule("mine", functions=(torch.cat,), reads=(tensor("x", 0), out_shape()))
    def mine(a, node, x, shape):
        return TV(shape, list(x.dims))

    with pytest.raises(rramfx.ArgumentError, match="channel rules 'cat' and 'mine' both claim"):
        RuleSet((*DEFAULT_RULES.all_rules(), mine))
    rules = default_rules()
    rules.add(mine, replace=True)
    assert rules.functions[torch.cat] is mine and DEFAULT_RULES.functions[torch.cat].name == "cat"
    with pytest.raises(rramfx.ArgumentTypeError,
                       match=r"takes \['a', 'node', 'y'\], its declaration says \['a', 'node', 'x'\]"):
        rule("bad", reads=(tensor("x", 0),))(lambda a, node, y: None)


class Cumsum(nn.Module):
    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(3, 8, 3, padding=1)
        self.c2 = nn.Conv2d(8, 4, 1)

    def forward(self, x):
        return self.c2(torch.cumsum(self.c1(x), dim=3)).mean((2, 3))


def test_new_rules_extend_the_analysis_and_keep_their_contract():
    gm = rramfx.trace(Cumsum())
    assert [b.node for b in ChannelAnalysis(gm, X).barriers] == ["cumsum"]

    @rule("cumsum", functions=(torch.cumsum,), reads=(tensor("x", 0), dim("dim", 1, of="x"), out_shape()))
    def cumsum(a, node, x, dim, shape):
        if dim == 1:
            return a.barrier(node, "cumsum over channels")
        return TV(shape, list(x.dims))

    rules = default_rules()
    rules.add(cumsum)
    analysis = ChannelAnalysis(gm, X, rules)
    assert analysis.barriers == [] and "c1" in analysis.modules

    @rule("cumsum", functions=(torch.cumsum,), reads=(tensor("x", 0), out_shape()))
    def sloppy(a, node, x, shape):  # records a hazard it did not declare
        a.hazard(node, "sums", x.dims[1], False)
        return TV(shape, list(x.dims))

    rules.add(sloppy, replace=True)
    with pytest.raises(rramfx.PassError, match=r"channel rule 'cumsum' recorded \['hazard'\] without declaring it"):
        ChannelAnalysis(gm, X, rules)


class RunTimePad(nn.Module):
    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(3, 8, 3, padding=1)
        self.c2 = nn.Conv2d(8, 4, 3)

    def forward(self, x):
        p = x.shape[-1] // 16
        return self.c2(F.pad(self.c1(x), [p, p, p, p])).mean((2, 3))


def test_a_declared_read_that_does_not_hold_names_the_operation_and_the_argument():
    with pytest.raises(PassError, match=r"node 'pad': pad: its argument 'pad' is computed at run time.*produced by c1"):
        widen_channels(rramfx.trace(RunTimePad()), 1.5, X)


# ---- rules for what users hit -------------------------------------------------------------------------
class Blur(nn.Module):
    def __init__(self, fixed_channels: bool):
        super().__init__()
        self.c1 = nn.Conv2d(3, 8, 3, padding=1)
        self.aa = BlurPool2d(8 if fixed_channels else None, stride=2)
        self.c2 = nn.Conv2d(8, 4, 3, padding=1)

    def forward(self, x):
        return self.c2(self.aa(torch.relu(self.c1(x))))


@pytest.mark.parametrize("fixed_channels", [True, False])
def test_blur_pooling_copies_its_filter_with_the_channels(fixed_channels):
    out = widen_exactly(Blur(fixed_channels))
    assert (out.c1.out_channels, out.c2.in_channels) == (12, 12)
    if fixed_channels:  # a filter per channel (a buffer) and a constant group count
        conv = next(n for n in out.graph.nodes if n.target is F.conv2d)
        assert out.aa.filt.shape == (12, 1, 3, 3) and conv.kwargs["groups"] == 12
    else:  # one filter for every channel, expanded at run time: the tracer leaves it a leaf module
        assert out.aa.filt.shape == (1, 1, 3, 3) and rramfx_meta(out)["auto_leaves"] == ["aa"]


class GC(nn.Module):
    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(3, 16, 3, padding=1)
        self.gc = GlobalContext(16)
        self.fc = nn.Linear(16, 4)

    def forward(self, x):
        return self.fc(self.gc(self.c1(x)).mean((2, 3)))


def test_global_context_attention_pools_over_positions():
    out = widen_exactly(GC())
    assert (out.c1.out_channels, out.gc.conv_attn.in_channels, out.fc.in_features) == (24, 24, 24)
    assert any(n.target is operator.matmul for n in out.graph.nodes)
    # the MLP's LayerNorm over 2 -> 3 hidden channels counts the copied one 1/2 (the matmul contracts
    # over positions, which keep their size: nothing to remedy there)
    assert rramfx_meta(out)["widen"]["remedied"] == ["node 'layer_norm': layer_norm normalises over it (weights)"]


class ChannelAttention(nn.Module):
    """Normalisation, softmax, a sum and attention scores over channels: duplicated channels change
    each of them unless every copy counts 1 / copies."""

    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(3, 16, 3, padding=1)
        self.c2 = nn.Conv2d(16, 16, 1)
        self.q, self.k = nn.Linear(16, 16), nn.Linear(16, 16)
        self.fc = nn.Linear(16, 4)

    def forward(self, x):
        y = self.c2(F.normalize(self.c1(x), dim=1))
        y = y * torch.softmax(y, dim=1) + y.sum(1, keepdim=True)
        t = y.flatten(2).transpose(1, 2)
        t = (self.q(t) @ self.k(t).transpose(1, 2)).softmax(-1) @ t
        return self.fc(t.mean(1))


def test_norms_softmax_sums_and_scores_over_channels_count_each_copy_once():
    out = widen_exactly(ChannelAttention())
    assert [r.split(":")[0] for r in rramfx_meta(out)["widen"]["remedied"]] == [
        "node 'normalize'", "node 'softmax'", "node 'sum_1'", "node 'matmul'"]
    assert out.q.in_features == 24
    targets = {getattr(n.target, "__name__", n.target) for n in out.graph.nodes}
    assert {"weighted_normalize", "weighted_softmax", "weighted_reduce", "mul"} <= targets
    fresh = widen_channels(rramfx.trace(ChannelAttention()), 1.5, X)  # from scratch: plain operations
    assert rramfx_meta(fresh)["widen"]["remedied"] == [] and len(rramfx_meta(fresh)["widen"]["inexact"]) == 4


class Shuffle(nn.Module):
    """Two ShuffleNetV2 units: split, branch, cat, channel shuffle."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 16, 3, padding=1)
        self.b1 = nn.Sequential(nn.Conv2d(8, 8, 1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1, groups=8))
        self.b2 = nn.Sequential(nn.Conv2d(8, 8, 1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1, groups=8))
        self.fc = nn.Linear(16, 4)

    @staticmethod
    def shuffle(x):
        b, c, h, w = x.size()
        return x.view(b, 2, c // 2, h, w).transpose(1, 2).contiguous().view(b, c, h, w)

    def forward(self, x):
        x = self.stem(x)
        for branch in (self.b1, self.b2):
            a, b = x.chunk(2, dim=1)
            x = self.shuffle(torch.cat([a, branch(b)], dim=1))
        return self.fc(x.mean((2, 3)))


def test_channel_shuffle_becomes_a_gather_of_the_widened_channels():
    out = widen_exactly(Shuffle())
    assert (out.stem.out_channels, out.get_submodule("b1.0").in_channels, out.fc.in_features) == (24, 12, 24)
    gathers = [n for n in out.graph.nodes if n.target is torch.index_select]
    assert len(gathers) == 2 and not any(n.target in ("transpose",) or "transpose" in str(n.target)
                                         for n in out.graph.nodes)
    first, second = (getattr(out, g.args[2].target).tolist() for g in gathers)
    # every original channel is read; copies are read where their counts match those of the output
    originals = [*range(8), *range(12, 20)]
    assert len(first) == 24 and set(originals) <= set(first) and first[:4] == [0, 12, 1, 13]
    assert sorted(second) == list(range(24))  # here the counts match: a permutation


class Misc(nn.Module):
    """Stochastic depth, GRN, one-group GroupNorm, zero-padded channels and an expand to a constant."""

    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(3, 8, 3, padding=1)
        self.c2 = nn.Conv2d(8, 8, 3, padding=1)
        self.sd = StochasticDepth(0.2, "row")
        self.grn = GlobalResponseNorm(8, channels_last=False)
        self.gn = GroupNorm1(8)
        self.c3 = nn.Conv2d(12, 12, 3, padding=1)
        self.gate = nn.Conv2d(12, 1, 1)
        self.fc = nn.Linear(12, 4)

    def forward(self, x):
        y = self.c1(x)
        y = self.gn(self.grn(y + self.sd(self.c2(y))))
        y = F.pad(y, (0, 0, 0, 0, 2, 2))  # 8 channels between 2 + 2 zero channels
        y = self.c3(y)
        y = y * torch.sigmoid(self.gate(y)).expand(-1, 12, -1, -1)
        return self.fc(y.mean((2, 3)))


def test_stochastic_depth_grn_groupnorm1_channel_padding_and_expand():
    out = widen_exactly(Misc())
    assert (out.c1.out_channels, out.c3.in_channels, out.c3.out_channels) == (12, 16, 18)
    assert out.grn.weight.shape == (12,) and out.gn.weight.shape == (12,)
    expand = next(n for n in out.graph.nodes if n.target == "expand")
    assert expand.args[1:] == (-1, 18, -1, -1)
    out.train()
    assert out(X).shape == (2, 4)  # stochastic depth in training mode still runs


class DenseFunctional(nn.Module):
    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(3, 8, 3, padding=1)
        self.w = nn.Parameter(torch.randn(8, 8, 3, 3))
        self.fc = nn.Linear(8, 4)

    def forward(self, x):
        return self.fc(F.conv2d(self.c1(x), self.w, padding=1).mean((2, 3)))


def test_a_functional_convolution_with_weights_of_its_own_is_refused_by_name():
    with pytest.raises(PassError, match=r"node 'conv2d': a functional convolution that is not depthwise.*by c1"):
        widen_channels(rramfx.trace(DenseFunctional()), 1.5, X, preserve_function=True)
