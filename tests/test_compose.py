"""compose and prepare: passes run in the stated order, errors name the failing pass and the ones
before it, and the Policy fields that drive the structural passes validate and round-trip."""

import functools
import json

import pytest
import torch
from torch import fx, nn

import rramfx
from rramfx import Policy, PolicyError
from rramfx.errors import PassError
from rramfx.graph.record import rramfx_meta
from rramfx.passes import compose, pad_1x1_to_3x3, replace_with_bottleneck, widen_channels

from .conftest import SmallNet, assert_unchanged, snapshot

X = torch.randn(2, 3, 12, 12, generator=torch.Generator().manual_seed(0))


def kernels(gm):
    return {n: tuple(m.kernel_size) for n, m in gm.named_modules() if isinstance(m, nn.Conv2d)}


@pytest.fixture
def gm():
    torch.manual_seed(0)
    return rramfx.trace(SmallNet().eval())


def test_compose_is_function_composition_in_order(gm):
    pad = functools.partial(pad_1x1_to_3x3, select="all")
    widen = functools.partial(widen_channels, factor=1.5, example_inputs=X, preserve_function=True)
    pipeline = compose(pad, widen)
    assert repr(pipeline) == ("compose(pad_1x1_to_3x3(select='all'), widen_channels(factor=1.5, "
                              "example_inputs=Tensor(2, 3, 12, 12), preserve_function=True))")
    before = snapshot(gm)
    out = pipeline(gm)
    assert_unchanged(gm, before)
    by_hand = widen(pad(gm))
    assert rramfx_meta(out)["passes"] == pipeline.names
    assert kernels(out) == kernels(by_hand) and kernels(out)["pw"] == (3, 3)
    assert {n: p.shape for n, p in out.named_parameters()} == {n: p.shape for n, p in by_hand.named_parameters()}
    with torch.no_grad():
        assert torch.equal(out(X), by_hand(X))
        assert ((out(X) - gm(X)).abs().max() / gm(X).abs().max()).item() <= 1e-4


def test_order_matters_bottleneck_then_pad(gm):
    bottleneck = functools.partial(replace_with_bottleneck, targets=["stem"], expand_ratio=2)
    pad = functools.partial(pad_1x1_to_3x3, select="all")
    first = compose(bottleneck, pad)(gm)  # the bottleneck's 1x1 layers exist when pad runs
    second = compose(pad, bottleneck)(gm)
    assert (kernels(first)["stem.expand"], kernels(first)["stem.project"]) == ((3, 3), (3, 3))
    assert (kernels(second)["stem.expand"], kernels(second)["stem.project"]) == ((1, 1), (1, 1))
    assert kernels(first)["pw"] == kernels(second)["pw"] == (3, 3)


def test_errors_name_the_pass_and_the_ones_before(gm):
    pad = functools.partial(pad_1x1_to_3x3, select="all")
    bad = functools.partial(widen_channels, factor=0.5, example_inputs=X)
    with pytest.raises(rramfx.ArgumentError,  # a bad pass argument keeps its type through the pipeline
                       match=r"pass 2 of 3, widen_channels\(factor=0.5, example_inputs=Tensor\(2, 3, "
                             r"12, 12\)\) \(after pad_1x1_to_3x3\(select='all'\)\), failed: "
                             r"widen_channels: factor") as e:
        compose(pad, bad, pad)(gm)
    assert isinstance(e.value.__cause__, rramfx.ArgumentError)

    def explode(g):
        raise RuntimeError("boom")

    with pytest.raises(PassError, match=r"pass 1 of 1, explode \(as the first pass\), failed: boom"):
        compose(explode)(gm)
    with pytest.raises(PassError, match=r"pass 1 of 1, <lambda> \(as the first pass\), failed: returned Module"):
        compose(lambda g: nn.Module())(gm)
    with pytest.raises(rramfx.ArgumentTypeError, match="argument 2 is a int, not a callable pass"):
        compose(pad, 3)


def test_a_graph_broken_by_a_pass_is_caught_by_lint(gm):
    def dangling(g):
        out = fx.GraphModule(g, g.graph)
        node = next(n for n in out.graph.nodes if n.op == "call_module")
        node.target = "no.such.layer"
        return out

    with pytest.raises(PassError, match=r"pass 2 of 2, dangling \(after pad_1x1_to_3x3\(select='shortcut'\)\)"):
        compose(functools.partial(pad_1x1_to_3x3, select="shortcut"), dangling)(gm)


def test_pipeline_protects_its_input_from_in_place_passes(gm):
    def in_place(g):
        g.get_submodule("stem").weight.data.zero_()
        return g

    before = snapshot(gm)
    out = compose(in_place)(gm)
    assert_unchanged(gm, before)
    assert torch.count_nonzero(out.get_submodule("stem").weight) == 0


def test_prepare_runs_bottleneck_pad_widen_then_placement():
    torch.manual_seed(0)
    model = SmallNet().eval()
    policy = Policy(bottleneck=["stem"], bottleneck_expand_ratio=2, pad_1x1="all", widen=1.5,
                    widen_preserve_function=True, drop_rate=0.1)
    gm = rramfx.prepare(model, policy, example_inputs=X).eval()
    meta = rramfx_meta(gm)
    # bottleneck first: its 1x1 layers were padded; widen after both: their channels grew
    assert [r["path"] for r in meta["bottleneck"]["replaced"]] == ["stem"]
    assert meta["pad_1x1"]["padded"] == ["stem.expand", "stem.project", "pw", "shortcut"]
    assert meta["widen"]["layers"]["stem.expand"] == {"out": (6, 9)}  # 3 -> 2*3 -> x1.5; the input stays 3
    assert meta["widen"]["layers"]["stem.project"] == {"in": (6, 9), "out": (16, 24)}
    # placement last: every padded layer is on RRAM, as crossbar layers
    placed = rramfx.placement(gm)
    assert all(placed[p] == "rram" and isinstance(gm.get_submodule(p), rramfx.CrossbarLayer)
               for p in meta["pad_1x1"]["padded"])
    assert Policy.from_dict(meta["policy"]) == policy
    assert gm(X).shape == (2, 10)


def test_prepare_errors_name_the_pass_and_the_policy_field():
    with pytest.raises(PolicyError, match=r"Policy.widen=1.5 needs example_inputs"):
        rramfx.prepare(SmallNet(), Policy(widen=1.5))
    with pytest.raises(PassError, match=r"replace_with_bottleneck \(asked for by Policy.bottleneck\) failed: "
                                        r"replace_with_bottleneck: index 9 is out of range"):
        rramfx.prepare(SmallNet(), Policy(bottleneck=[9]))
    with pytest.raises(PassError, match=r"pad_1x1_to_3x3 \(asked for by Policy.pad_1x1\) failed: .*'head\*'"):
        rramfx.prepare(SmallNet(), Policy(pad_1x1=["head*"]))


@pytest.mark.parametrize("field,value,needle", [
    ("widen", 0.9, "Policy.widen must be in [1, 16], got 0.9"),
    ("widen", "2", "Policy.widen must be a number in [1, 16]"),
    ("widen", float("nan"), "Policy.widen must be a number in [1, 16]"),
    ("widen_divisor", 0, "Policy.widen_divisor must be an integer in [1, 1024]"),
    ("widen_divisor", 8.0, "Policy.widen_divisor must be an integer in [1, 1024]"),
    ("widen_preserve_function", 1, "Policy.widen_preserve_function must be true or false"),
    ("bottleneck", [0], "Policy.bottleneck entries must be module paths or indices >= 1, got 0"),
    ("bottleneck", [True], "Policy.bottleneck entries must be module paths or indices >= 1, got True"),
    ("bottleneck", [4, 4], "Policy.bottleneck lists a target twice"),
    ("bottleneck", 2.5, "Policy.bottleneck must be a list of module paths"),
    ("bottleneck_expand_ratio", 0, "Policy.bottleneck_expand_ratio must be in (0, 64], got 0"),
    ("pad_1x1", [""], "Policy.pad_1x1 entries must be 'all', 'shortcut' or non-empty module-path globs"),
    ("pad_1x1", 3, "Policy.pad_1x1 must be 'all', 'shortcut', a module-path glob or a list of them"),
])
def test_structural_fields_are_validated(field, value, needle):
    with pytest.raises(PolicyError) as e:
        Policy(**{field: value})
    assert needle in str(e.value)


def test_structural_fields_round_trip(tmp_path):
    p = Policy(bottleneck=[5, "layer1.1.conv2"], bottleneck_expand_ratio=4, pad_1x1="shortcut", widen=1.2,
               widen_preserve_function=True, widen_divisor=8, overrides={"fc": "rram"})
    assert (p.bottleneck, p.pad_1x1, p.widen, p.bottleneck_expand_ratio) == ((5, "layer1.1.conv2"), ("shortcut",),
                                                                             1.2, 4.0)
    d = p.to_dict()
    assert (d["bottleneck"], d["pad_1x1"]) == ([5, "layer1.1.conv2"], ["shortcut"])
    assert Policy.from_dict(json.loads(json.dumps(d))) == p
    for suffix in ("json", "toml"):
        assert Policy.from_file(p.save(tmp_path / f"p.{suffix}")) == p
    assert 'bottleneck = [5, "layer1.1.conv2"]' in (tmp_path / "p.toml").read_text()
    assert hash(p) == hash(Policy.from_dict(d))
    assert (Policy().structural, p.structural) == (False, True)
