"""BN recalibration (the paper's Algorithm 1): statistics only, cumulative average, DropConnect at p',
inference scale set, everything else as it was."""

import pytest
import torch

import rramfx
from rramfx.errors import FaultError
from rramfx.evaluation.recalibrate import batchnorm_layers

from .tiny import TinyNet, loaders, trained


def _buffers(gm):
    return {k: v.clone() for k, v in gm.state_dict().items() if "running" in k or "num_batches" in k}


def _params(gm):
    return {k: v.detach().clone() for k, v in gm.named_parameters()}


def test_changes_running_statistics_only():
    gm = trained(drop_rate=0.3)
    params, stats = _params(gm), _buffers(gm)
    train, _ = loaders()
    out = rramfx.recalibrate_bn(gm, train, 0.2, batches=4)
    assert out is gm and not gm.training
    assert all(torch.equal(v, dict(gm.named_parameters())[k]) for k, v in params.items())
    after = _buffers(gm)
    assert not torch.allclose(after["bn1.running_var"], stats["bn1.running_var"])
    assert after["bn1.num_batches_tracked"].item() == 4  # reset, then 4 batches counted
    for m in rramfx.crossbar_layers(gm).values():
        assert m.fault_rate == 0.2 and m.drop_rate == 0.3  # inference scale p' set, training rate kept
    assert all(bn.momentum == 0.1 for bn in batchnorm_layers(gm).values())


def test_cumulative_average_of_batch_statistics():
    gm = trained(drop_rate=0.0)
    data = torch.randn(3, 16, 1, 12, 12, generator=torch.Generator().manual_seed(0))
    batches = [(x, torch.zeros(16, dtype=torch.long)) for x in data]
    rramfx.recalibrate_bn(gm, batches, 0.0)
    with torch.no_grad():
        feats = [gm.conv1(x) for x, _ in batches]  # p' = 0: no DropConnect
    want_mean = torch.stack([f.mean((0, 2, 3)) for f in feats]).mean(0)
    want_var = torch.stack([f.var((0, 2, 3), unbiased=True) for f in feats]).mean(0)
    assert torch.allclose(gm.bn1.running_mean, want_mean, atol=1e-6)
    assert torch.allclose(gm.bn1.running_var, want_var, rtol=1e-5)


def test_dropconnect_at_p_prime_is_seeded_and_leaves_global_rng_alone():
    runs = []
    for p, seed in ((0.3, 0), (0.3, 0), (0.3, 1), (0.0, 0)):
        train, _ = loaders()  # the same batches every time
        gm = trained(drop_rate=0.3)
        state = torch.get_rng_state()
        rramfx.recalibrate_bn(gm, train, p, seed=seed)
        assert torch.equal(state, torch.get_rng_state())
        runs.append(gm.bn1.running_var.clone())
    assert torch.equal(runs[0], runs[1])
    assert not torch.equal(runs[0], runs[2])
    # DropConnect at p' adds variance to conv1's outputs: averaged over masks, the batch variance of
    # w_m·x (kept weights × 1/(1-p')) is w'Cw + p'/(1-p') Σ w_i² C_ii. 8 masks here, so per channel
    # it is noisy; across channels the increase is clear.
    assert (runs[0] / runs[3]).log().mean() > 0.05


def test_recalibration_recovers_a_dropconnect_model_without_faults():
    gm = trained(drop_rate=0.3)
    train, test = loaders()
    before = rramfx.evaluate(gm, test)
    rramfx.recalibrate_bn(gm, train, 0.0, batches=8)
    assert rramfx.evaluate(gm, test) >= before - 0.02


def test_refuses_a_model_with_a_chip_applied_and_bad_arguments():
    gm = trained()
    train, _ = loaders()
    rramfx.inject_faults(gm, rramfx.FaultModel(sa1=0.1), seed=0)
    with pytest.raises(FaultError, match="call rramfx.clear_faults\\(gm\\) first"):
        rramfx.recalibrate_bn(gm, train, 0.1)
    rramfx.clear_faults(gm)
    with pytest.raises(rramfx.ArgumentError, match="fault_rate must be in \\[0, 1\\), got 1.0"):
        rramfx.recalibrate_bn(gm, train, 1.0)
    with pytest.raises(rramfx.ArgumentError, match="batches must be a positive int"):
        rramfx.recalibrate_bn(gm, train, 0.1, batches=0)


def test_model_without_rram_layers_is_recalibrated_plainly():
    torch.manual_seed(0)
    gm = rramfx.prepare(TinyNet(), rramfx.Policy(conv_kxk="cpu"))
    train, _ = loaders(n_train=64)
    rramfx.recalibrate_bn(gm, train, 0.2)
    assert gm.bn1.num_batches_tracked.item() == 1 and not gm.training


def test_without_scale_the_statistics_see_unscaled_weights_and_p_prime_stays_zero():
    # With p' = 0.5 and the same seed, the kept weights are w instead of 2w: conv1's outputs (bias-free)
    # halve, so bn1's running mean halves and its variance quarters; weights come back bit-identical.
    stats = {}
    for scale in (True, False):
        gm = trained(drop_rate=0.3)
        params = _params(gm)
        train, _ = loaders()
        rramfx.recalibrate_bn(gm, train, 0.5, batches=3, seed=4, scale=scale)
        assert all(torch.equal(v, dict(gm.named_parameters())[k]) for k, v in params.items())
        assert {m.fault_rate for m in rramfx.crossbar_layers(gm).values()} == ({0.5} if scale else {0.0})
        stats[scale] = (gm.bn1.running_mean.clone(), gm.bn1.running_var.clone())
    assert gm.conv1.bias is None
    assert torch.allclose(stats[False][0], stats[True][0] / 2, atol=1e-6)
    assert torch.allclose(stats[False][1], stats[True][1] / 4, rtol=1e-4)
