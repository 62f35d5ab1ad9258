import dataclasses
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import rramfx
from rramfx import Policy, PolicyError


def test_defaults_follow_the_kernel_size_rule():
    p = Policy()
    assert (p.conv_kxk, p.conv_1x1, p.linear) == ("rram", "cpu", "cpu")
    assert p.drop_rate == 0.0 and p.fault_rate == 0.0 and p.overrides == ()


@pytest.mark.parametrize(
    "field,value,needle",
    [
        ("drop_rate", 1.0, "Policy.drop_rate must be in [0, 1)"),
        ("drop_rate", -0.1, "Policy.drop_rate must be in [0, 1)"),
        ("fault_rate", float("nan"), "Policy.fault_rate must be a number"),
        ("fault_rate", "0.1", "Policy.fault_rate must be a number"),
        ("drop_rate", True, "Policy.drop_rate must be a number"),
        ("conv_1x1", "gpu", "Policy.conv_1x1 must be one of ('rram', 'cpu')"),
        ("linear", None, "Policy.linear must be one of"),
        ("overrides", {"fc": "fpga"}, "Policy.overrides['fc'] must be one of"),
        ("overrides", [("fc",)], "(pattern, device) pairs"),
        ("overrides", 3, "Policy.overrides must map"),
    ],
)
def test_bad_values_name_the_field_and_range(field, value, needle):
    with pytest.raises(PolicyError) as e:
        Policy(**{field: value})
    assert needle in str(e.value)
    assert isinstance(e.value, ValueError)


def test_policy_is_frozen_and_hashable():
    p = Policy(drop_rate=0.2, overrides={"fc": "rram"})
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.drop_rate = 0.3
    assert hash(p) == hash(Policy(drop_rate=0.2, overrides=[("fc", "rram")]))


def test_overrides_keep_their_order():
    p = Policy(overrides={"layer*": "cpu", "layer1.*": "rram"})
    assert p.overrides == (("layer*", "cpu"), ("layer1.*", "rram"))


def test_dict_round_trip():
    p = Policy(drop_rate=0.3, fault_rate=0.1, linear="rram", overrides={"a.*": "cpu", "b": "rram"})
    d = p.to_dict()
    assert d["overrides"] == {"a.*": "cpu", "b": "rram"}
    assert Policy.from_dict(json.loads(json.dumps(d))) == p


def test_unknown_key_suggests_the_close_field():
    with pytest.raises(PolicyError, match=r"'droprate' \(did you mean 'drop_rate'\?\)"):
        Policy.from_dict({"droprate": 0.1})


@pytest.mark.parametrize("suffix", [".json", ".toml"])
def test_file_round_trip(tmp_path, suffix):
    p = Policy(drop_rate=0.25, fault_rate=0.2, conv_1x1="rram", overrides={"layer4.*": "cpu", "fc": "rram"})
    path = p.save(tmp_path / f"policy{suffix}")
    assert Policy.from_file(path) == p


def test_toml_written_by_hand(tmp_path):
    path = tmp_path / "p.toml"
    path.write_text('drop_rate = 0.2\nfault_rate = 0.1\n[overrides]\n"layer2.0.downsample.0" = "rram"\n')
    p = Policy.from_file(path)
    assert p.drop_rate == 0.2 and p.overrides == (("layer2.0.downsample.0", "rram"),)


def test_file_errors_name_the_file(tmp_path):
    with pytest.raises(PolicyError, match="policy file '.*missing.toml' does not exist"):
        Policy.from_file(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("drop_rate = [")
    with pytest.raises(PolicyError, match="bad.toml' is not valid TOML"):
        Policy.from_file(bad)
    yaml = tmp_path / "p.yaml"
    yaml.write_text("drop_rate: 0.1")
    with pytest.raises(PolicyError, match=r"must end in .json or .toml \(got '.yaml'\)"):
        Policy.from_file(yaml)
    out_of_range = tmp_path / "r.json"
    out_of_range.write_text('{"drop_rate": 1.5}')
    with pytest.raises(PolicyError, match=r"r.json': Policy.drop_rate must be in \[0, 1\), got 1.5"):
        Policy.from_file(out_of_range)


def test_prepare_accepts_a_policy_file(tmp_path, small_net):
    path = Policy(drop_rate=0.1, overrides={"pw": "rram"}).save(tmp_path / "p.json")
    gm = rramfx.prepare(small_net, path)
    assert rramfx.placement(gm)["pw"] == "rram"
    assert gm.get_submodule("pw").drop_rate == 0.1


_rates = st.floats(min_value=0.0, max_value=0.999, allow_nan=False)
_patterns = st.text(min_size=1, max_size=20).filter(lambda s: "\x00" not in s)


@settings(max_examples=60, deadline=None)
@given(drop=_rates, fault=_rates, rule=st.sampled_from(["rram", "cpu"]),
       overrides=st.lists(st.tuples(_patterns, st.sampled_from(["rram", "cpu"])), max_size=4,
                          unique_by=lambda t: t[0]),
       suffix=st.sampled_from([".json", ".toml"]))
def test_any_valid_policy_round_trips_through_files(tmp_path_factory, drop, fault, rule, overrides, suffix):
    p = Policy(drop_rate=drop, fault_rate=fault, conv_1x1=rule, overrides=overrides)
    path = p.save(tmp_path_factory.mktemp("p") / f"policy{suffix}")
    assert Policy.from_file(path) == p
