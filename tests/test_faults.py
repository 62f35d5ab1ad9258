"""Stuck-at faults: statistics, reproducibility, the hand-computed reference, and clearing."""

import copy
import hashlib

import numpy as np
import pytest
import timm
import torch

import rramfx
from rramfx import SA0, SA1, FaultError, FaultModel, FaultSet, Policy
from rramfx.crossbar.faults import chip_seed, draw_fault_set, layer_rng, uint32_bound, uint32_draws


@pytest.fixture(scope="module")
def resnet():
    torch.manual_seed(0)
    return timm.create_model("resnet18", num_classes=10).eval()


def _prepared(model, fault_rate=0.1):
    return rramfx.prepare(model, Policy(drop_rate=0.2, fault_rate=fault_rate)).eval()


def test_sa1_sa0_fractions_within_binomial_bounds(resnet):
    gm = _prepared(resnet)
    faults = rramfx.inject_faults(gm, FaultModel(sa1=0.1, sa0=0.02), seed=3)
    n = sum(c.numel() for c in faults.values())
    counts = faults.counts()
    for code, rate in (("SA1", 0.1), ("SA0", 0.02)):
        assert abs(counts[code] - n * rate) < 5 * (n * rate * (1 - rate)) ** 0.5
    assert counts["healthy"] + counts["SA1"] + counts["SA0"] == n


def test_only_rram_layers_receive_faults(resnet):
    gm = _prepared(resnet)
    faults = rramfx.inject_faults(gm, FaultModel(sa1=0.1), seed=0)
    rram = {p for p, d in rramfx.placement(gm).items() if d == "rram"}
    assert set(faults) == rram and len(rram) == 17
    assert all(faults[p].dtype == torch.uint8 and faults[p].shape == gm.get_submodule(p).weight.shape
               for p in faults)


def test_same_seed_same_chip_other_seed_other_chip(resnet):
    x = torch.randn(2, 3, 32, 32)
    a, b = _prepared(resnet), _prepared(resnet)
    fa = rramfx.inject_faults(a, FaultModel(sa1=0.1), seed=5)
    fb = rramfx.inject_faults(b, FaultModel(sa1=0.1), seed=5)
    assert all(torch.equal(fa[p], fb[p]) for p in fa)
    assert torch.equal(a(x), b(x))
    fc = rramfx.inject_faults(b, FaultModel(sa1=0.1), seed=6)
    assert not torch.equal(fa["conv1"], fc["conv1"])
    assert not torch.equal(a(x), b(x))


def test_chip_of_a_layer_depends_on_its_path_not_on_other_layers():
    codes = FaultModel(sa1=0.2).sample((64, 3, 3, 3), layer_rng(11, "layer1.0.conv1"))
    again = FaultModel(sa1=0.2).sample((64, 3, 3, 3), layer_rng(11, "layer1.0.conv1"))
    other = FaultModel(sa1=0.2).sample((64, 3, 3, 3), layer_rng(11, "layer1.0.conv2"))
    assert torch.equal(codes, again) and not torch.equal(codes, other)


def test_fault_stream_is_pinned():
    # Guards cross-machine reproducibility: if this changes, saved chips and ONNX feeds change too.
    codes = FaultModel(sa1=0.1, sa0=0.05).sample((1000,), layer_rng(0, "conv1"))
    assert np.bincount(codes.numpy(), minlength=3).tolist() == [858, 92, 50]
    assert codes[:12].tolist() == [0, 0, 0, 1, 2, 0, 0, 1, 1, 1, 0, 0]


#: sha256 (first 24 hex digits) of the codes drawn for shapes (7,), (64, 3, 3, 3), (257, 129, 3) from
#: layer_rng(12345, "layer1.0.conv1"), recorded before the sampler was rewritten for speed.
PINNED_CODES = [
    (0.1, 0.0, "e722a2ddb1277d319a767329"),
    (0.1, 0.05, "683cc6fa05c11055c17b7dbe"),
    (0.0, 0.02, "8001f624892f0c9a58531df2"),
    (0.5, 0.5, "a0eff4a9246029152a75d9a3"),
    (1.0, 0.0, "35a7a072632eb3389be4a4fa"),
    (0.0, 1.0, "8bdbb020434484f8b7ed6b9d"),
    (0.3333333, 0.1234567, "5237f57d0107bb6c6f9d798c"),
    (0.0001, 2e-05, "76d6fe33fac7e401e561473e"),
]


@pytest.mark.parametrize(("sa1", "sa0", "digest"), PINNED_CODES)
def test_fault_codes_checksum_is_pinned(sa1, sa0, digest):
    # A chip's seed is a contract: the same seed must give bit-identical codes in every release.
    h = hashlib.sha256()
    for shape in [(7,), (64, 3, 3, 3), (257, 129, 3)]:
        h.update(FaultModel(sa1=sa1, sa0=sa0).sample(shape, layer_rng(12345, "layer1.0.conv1")).numpy().tobytes())
    assert h.hexdigest()[:24] == digest


def test_chip_checksum_is_pinned(small_net):
    gm = rramfx.prepare(small_net, Policy())
    chip = draw_fault_set(rramfx.crossbar_layers(gm), FaultModel(sa1=0.1, sa0=0.03), chip_seed(3, 5))
    h = hashlib.sha256()
    for path in sorted(chip):
        h.update(path.encode())
        h.update(chip[path].numpy().tobytes())
    assert sorted(chip) == ["dw", "grouped", "stem"]
    assert h.hexdigest()[:24] == "1d7e06fbb5202c3defa1cd80"
    assert chip.counts() == {"healthy": 2513, "SA1": 281, "SA0": 86}


def _sample_by_definition(fm, shape, rng):
    """FaultModel.sample as first written (float32 uniforms, three comparisons): the oracle."""
    u = rng.random(tuple(shape), dtype=np.float32)
    codes = np.zeros(u.shape, dtype=np.uint8)
    codes[u < fm.sa1] = SA1
    codes[(u >= fm.sa1) & (u < fm.sa1 + fm.sa0)] = SA0
    return torch.from_numpy(codes)


def _same_state(a: np.random.Generator, b: np.random.Generator) -> bool:
    sa, sb = a.bit_generator.state, b.bit_generator.state
    return repr({k: v for k, v in sa.items() if k != "state"}) == repr({k: v for k, v in sb.items() if k != "state"}) \
        and all(np.array_equal(x, y) for x, y in zip(sa["state"].values(), sb["state"].values(), strict=True))


@pytest.mark.parametrize("n", [0, 1, 2, 7, 1000])
@pytest.mark.parametrize("bitgen", [np.random.PCG64, np.random.MT19937, np.random.SFC64])
@pytest.mark.parametrize("skew", [0, 1])
def test_uint32_draws_are_the_float_draws_bits_and_leave_the_same_state(n, bitgen, skew):
    a, b = np.random.Generator(bitgen(5)), np.random.Generator(bitgen(5))
    a.random(skew, dtype=np.float32), b.random(skew, dtype=np.float32)  # odd start: a half word buffered
    bits, floats = uint32_draws(a, n), b.random(n, dtype=np.float32)
    assert bits.dtype == np.uint32 and np.array_equal((bits >> 8).astype(np.float32) * np.float32(2**-24), floats)
    assert _same_state(a, b)
    assert np.array_equal(a.random(3, dtype=np.float32), b.random(3, dtype=np.float32))


def test_uint32_bound_is_the_float32_comparison_in_integers():
    rates = [0.0, 1.0, 0.1, 0.5, 1e-9, 2**-24, 3 * 2**-25, 1 - 2**-24, 0.1000000020, 0.3333333]
    rates += np.random.default_rng(0).random(200).tolist()
    for rate in rates:
        k = uint32_bound(rate) >> 8  # draws below k·256 read as uniforms below float32(rate)
        assert uint32_bound(rate) % 256 == 0 and 0 <= k <= 2**24
        if k > 0:
            assert np.float32((k - 1) * 2**-24) < np.float32(rate)
        if k < 2**24:
            assert not np.float32(k * 2**-24) < np.float32(rate)


@pytest.mark.parametrize(("sa1", "sa0"), [(0.1, 0.0), (0.1, 0.05), (0.0, 0.3), (0.5, 0.5), (1.0, 0.0), (0.0, 1.0),
                                          (0.2, 1e-9), (0.7, 0.2999999), (0.0, 0.0)])
def test_sample_equals_its_definition(sa1, sa0):
    fm = FaultModel(sa1=sa1, sa0=sa0)
    for shape in [(5,), (64, 3, 3, 3), (33, 17, 5)]:
        a, b = layer_rng(3, "x"), layer_rng(3, "x")
        assert torch.equal(fm.sample(shape, a), _sample_by_definition(fm, shape, b))
        assert _same_state(a, b)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
@pytest.mark.parametrize("scale", [1.0, 1 / 0.9])
def test_read_weight_equals_corrupt_times_scale(dtype, scale):
    gen = torch.Generator().manual_seed(0)
    w = torch.randn(32, 16, 3, 3, generator=gen).to(dtype)
    w.view(-1)[:50] = -0.0
    codes = torch.randint(0, 4, w.shape, generator=gen, dtype=torch.uint8)  # 3: no fault kind, healthy
    for fm in (FaultModel(sa1=0.1, sa0=0.01), FaultModel(sa1=0.1)):
        for c in (codes, codes.clamp(max=1)):  # with and without SA0 cells
            want = fm.corrupt(w, c) * scale if scale != 1.0 else fm.corrupt(w, c)
            got = fm.read_weight(w, c, scale)
            assert got.dtype == dtype and got.shape == w.shape and torch.equal(got, want)
            # into a caller's buffer (NaN-filled: every element must be written), contiguous or not
            for layout in (torch.contiguous_format, torch.channels_last):
                out = torch.full_like(w, float("nan"), memory_format=layout)
                assert fm.read_weight(w, c, scale, out=out) is out and torch.equal(out, want)


def test_eval_weight_takes_the_fast_read_and_training_keeps_the_gradient(small_net):
    gm = rramfx.prepare(small_net, Policy(fault_rate=0.1)).eval()
    rramfx.inject_faults(gm, FaultModel(sa1=0.1, sa0=0.02), seed=4)
    layer = gm.get_submodule("stem")
    with torch.no_grad():
        fast = layer.effective_weight()
    graded = layer.effective_weight()  # grad enabled: the differentiable definition
    assert graded.grad_fn is not None and fast.grad_fn is None
    assert torch.equal(fast, graded.detach())


@pytest.mark.parametrize("p_expected", [0.0, 0.1])
def test_faulty_output_equals_hand_computed_reference(resnet, p_expected):
    gm = _prepared(resnet, fault_rate=p_expected)
    faults = rramfx.inject_faults(gm, FaultModel(sa1=0.1, sa0=0.01), seed=1)
    reference = copy.deepcopy(resnet).eval()
    with torch.no_grad():
        for path, codes in faults.items():
            w = reference.get_submodule(path).weight
            top = w.abs().max()
            w[codes == SA0] = torch.where(w[codes == SA0] >= 0, top, -top)
            w[codes == SA1] = 0
            w /= 1 - p_expected
    x = torch.randn(2, 3, 32, 32)
    y = gm(x)
    assert torch.allclose(y, reference(x), rtol=1e-5, atol=1e-5)
    assert not torch.allclose(y, resnet(x), atol=1e-3)


def test_inference_scale_follows_set_fault_rate(small_net):
    gm = rramfx.prepare(small_net, Policy(fault_rate=0.0)).eval()
    rramfx.inject_faults(gm, FaultModel(sa1=0.0), seed=0)  # no cell faulty: only the scale acts
    x = torch.randn(1, 3, 8, 8)
    unscaled = gm(x)
    rramfx.set_fault_rate(gm, 0.2)
    stem = gm.get_submodule("stem")
    assert torch.equal(stem.effective_weight(), stem.weight * (1 / 0.8))
    assert not torch.equal(gm(x), unscaled)


def test_clear_faults_restores_exact_output(resnet):
    gm = _prepared(resnet)
    x = torch.randn(2, 3, 32, 32)
    clean = gm(x)
    rramfx.inject_faults(gm, FaultModel(sa1=0.2, sa0=0.01), seed=0)
    assert not torch.equal(gm(x), clean)
    rramfx.clear_faults(gm)
    assert torch.equal(gm(x), clean) and torch.equal(clean, resnet(x))


def test_fault_set_save_load_apply(tmp_path, resnet):
    a = _prepared(resnet)
    faults = rramfx.inject_faults(a, FaultModel(sa1=0.1, sa0=0.01), seed=9)
    path = faults.save(tmp_path / "chip.pt")
    loaded = FaultSet.load(path)
    assert loaded.seed == 9 and loaded.fault_model == FaultModel(sa1=0.1, sa0=0.01)
    assert list(loaded) == list(faults) and all(torch.equal(loaded[p], faults[p]) for p in faults)
    b = _prepared(resnet)
    rramfx.apply_faults(b, loaded)
    x = torch.randn(2, 3, 32, 32)
    assert torch.equal(a(x), b(x))


def test_apply_faults_rejects_a_foreign_chip_without_changing_anything(small_net, resnet):
    gm = _prepared(resnet)
    chip = rramfx.inject_faults(gm, FaultModel(sa1=0.1), seed=0)
    small = rramfx.prepare(small_net, Policy()).eval()
    with pytest.raises(FaultError, match="codes for 'conv1', which is not an RRAM layer"):
        rramfx.apply_faults(small, chip)
    wrong = FaultSet({"stem": torch.zeros(3, 3, 3, 3, dtype=torch.uint8)}, FaultModel(sa1=0.1), 0)
    with pytest.raises(FaultError, match=r"codes for 'stem' have shape \(3, 3, 3, 3\), its weight \(16, 3, 3, 3\)"):
        rramfx.apply_faults(small, wrong)
    assert all(layer.fault_codes is None for layer in rramfx.crossbar_layers(small).values())


def test_fault_errors_name_the_problem(tmp_path, small_net):
    with pytest.raises(FaultError, match=r"FaultModel.sa1 must be in \[0, 1\], got 1.5"):
        FaultModel(sa1=1.5)
    with pytest.raises(FaultError, match="sa1 \\+ FaultModel.sa0 must be at most 1"):
        FaultModel(sa1=0.6, sa0=0.6)
    gm = rramfx.prepare(small_net, Policy())
    with pytest.raises(rramfx.ArgumentError, match="seed must be a non-negative int, got -1"):
        rramfx.inject_faults(gm, FaultModel(sa1=0.1), seed=-1)
    with pytest.raises(rramfx.ArgumentTypeError, match="fault_model must be an rramfx.FaultModel"):
        rramfx.inject_faults(gm, 0.1)
    with pytest.raises(FaultError, match="FaultSet file '.*nope.pt' does not exist"):
        FaultSet.load(tmp_path / "nope.pt")
    junk = tmp_path / "junk.pt"
    torch.save({"a": 1}, junk)
    with pytest.raises(FaultError, match="junk.pt' is not an rramfx.FaultSet file"):
        FaultSet.load(junk)
    no_rram = rramfx.prepare(small_net, Policy(conv_kxk="cpu"))
    with pytest.raises(rramfx.PlacementError, match="no crossbar \\(RRAM\\) layers"):
        rramfx.inject_faults(no_rram, FaultModel(sa1=0.1), seed=0)


def test_faults_apply_in_training_too(small_net):
    gm = rramfx.prepare(small_net, Policy(drop_rate=0.0)).train()
    rramfx.inject_faults(gm, FaultModel(sa1=1.0), seed=0)  # every RRAM cell reads 0
    assert torch.count_nonzero(gm.get_submodule("stem").effective_weight()) == 0


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_same_chip_on_gpu(resnet):
    cpu, gpu = _prepared(resnet), _prepared(resnet).cuda()
    a = rramfx.inject_faults(cpu, FaultModel(sa1=0.1, sa0=0.01), seed=2)
    b = rramfx.inject_faults(gpu, FaultModel(sa1=0.1, sa0=0.01), seed=2)
    assert all(torch.equal(a[p], b[p]) for p in a)
    assert gpu.get_submodule("conv1").fault_codes.is_cuda
    x = torch.randn(2, 3, 32, 32)
    assert torch.allclose(cpu(x), gpu(x.cuda()).cpu(), atol=1e-3)


