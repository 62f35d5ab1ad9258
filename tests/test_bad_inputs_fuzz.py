"""Issue 13: random and corrupted policy files, fault sets, checked torch files and partition manifests
fed to the loaders give an rramfx error or a correct load, never another exception."""

import contextlib
import json
import warnings

import torch
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import rramfx
from rramfx.crossbar.faults import FaultModel, FaultSet
from rramfx.errors import RramfxError
from rramfx.files import load_checked_torch, save_checked_torch
from rramfx.onnx.partition import check_partition
from rramfx.policy import Policy

SETTINGS = settings(max_examples=60, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])
_json = st.recursive(st.none() | st.booleans() | st.integers(-5, 300) | st.floats(allow_nan=True) | st.text(max_size=8),
                     lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=12), c, max_size=4),
                     max_leaves=8)
_fields = st.dictionaries(st.sampled_from(["drop_rate", "fault_rate", "conv_kxk", "linear", "overrides",
                                           "widen", "bogus", "tile_rows"]), _json, max_size=4)


def _flip(data: bytes, where: int, byte: int) -> bytes:
    if not data:
        return bytes([byte])
    i = where % len(data)
    return data[:i] + bytes([data[i] ^ (byte or 1)]) + data[i + 1:]


@SETTINGS
@given(raw=st.binary(max_size=64) | _fields.map(lambda d: json.dumps(d).encode()))
def test_policy_files(tmp_path, raw):
    path = tmp_path / "p.json"
    path.write_bytes(raw)
    with contextlib.suppress(RramfxError):
        assert isinstance(Policy.from_file(path), Policy)


@SETTINGS
@given(where=st.integers(0, 10**6), byte=st.integers(0, 255), cut=st.integers(0, 10**6))
def test_corrupted_fault_sets(tmp_path, where, byte, cut):
    chip = FaultSet({"c": torch.tensor([[0, 1], [2, 0]], dtype=torch.uint8)}, FaultModel(sa1=0.2, sa0=0.1), 1)
    data = chip.save(tmp_path / "c.pt").read_bytes()
    bad = _flip(data, where, byte)[: max(1, cut % (len(data) + 1))]
    (tmp_path / "c.pt").write_bytes(bad)
    try:
        loaded = FaultSet.load(tmp_path / "c.pt")
        assert torch.equal(loaded["c"], chip["c"])
    except RramfxError:
        pass


@SETTINGS
@given(payload=_json, where=st.integers(0, 10**6), byte=st.integers(0, 255))
def test_corrupted_checked_torch_files(tmp_path, payload, where, byte):
    data = save_checked_torch(tmp_path / "x.pt", "rramfx.T", 2, {"p": payload}).read_bytes()
    (tmp_path / "x.pt").write_bytes(_flip(data, where, byte))
    try:
        version, got = load_checked_torch(tmp_path / "x.pt", "rramfx.T")
        assert version == 2 and json.dumps(got, default=str) == json.dumps({"p": payload}, default=str)
    except RramfxError:
        pass


@SETTINGS
@given(manifest=_json | st.dictionaries(st.sampled_from(["format", "segments", "sha256"]), _json, max_size=3))
def test_random_manifests(tmp_path, manifest):
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    with contextlib.suppress(RramfxError):
        check_partition(tmp_path)



_DTYPES = st.sampled_from([torch.float32, torch.float64, torch.float16, torch.int64, torch.uint8, torch.bool])


@settings(max_examples=30, deadline=None, derandomize=True)
@given(shape=st.lists(st.integers(0, 14), min_size=0, max_size=5), dtype=_DTYPES, widen=st.sampled_from([1.0, 1.5]))
@example(shape=[2, 1, 12, 12], dtype=torch.float32, widen=1.5)
def test_random_example_inputs_leave_the_model_unchanged(shape, dtype, widen):
    """Example inputs of any rank, size and dtype: prepare either works or raises an rramfx error, and
    the user's model (weights, buffers, training flags, modules) is untouched either way."""
    from tests.bad_inputs import assert_model_unchanged, snapshot_model
    from tests.tiny import TinyNet

    torch.manual_seed(0)
    net = TinyNet(in_chans=1).train()
    before = snapshot_model(net)
    x = torch.zeros(shape, dtype=dtype)
    with contextlib.suppress(RramfxError), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        gm = rramfx.prepare(net, {"widen": widen}, example_inputs=x)
        assert gm.training and set(rramfx.placement(gm)) == {"conv1", "conv2", "fc"}
    assert_model_unchanged(net, before)
    assert x.shape == tuple(shape) and not x.any()
