import json

import pytest
import torch

from rramfx.cli import main
from rramfx.models.spec import ModelSpecError, create_model


def test_prepare_prints_the_placement_table(capsys):
    assert main(["prepare", "--model", "timm:resnet18", "--drop-rate", "0.2"]) == 0
    out = capsys.readouterr().out
    assert "layer2.0.downsample.0  Conv2d  1x1" in out and "rram: 17 layers" in out


def test_prepare_json_with_policy_file(tmp_path, capsys):
    policy = tmp_path / "p.toml"
    policy.write_text('[overrides]\n"fc" = "rram"\n')
    assert main(["prepare", "--model", "tv:resnet18", "--policy", str(policy), "--json"]) == 0
    placed = json.loads(capsys.readouterr().out)
    assert placed["fc"] == "rram" and placed["layer2.0.downsample.0"] == "cpu" and len(placed) == 21


@pytest.mark.parametrize("args,needle", [
    (["--model", "timm:resnet1"], "unknown timm model 'timm:resnet1'. Close names: resnet18"),
    (["--model", "tv:resnet19"], "unknown torchvision model 'tv:resnet19'"),
    (["--model", "nosuchpkg.mod:make"], "cannot import 'nosuchpkg.mod'"),
    (["--model", "timm:resnet18", "--policy", "/nonexistent/p.toml"], "policy file '/nonexistent/p.toml' does not"),
    (["--model", "timm:resnet18", "--policy", "{tmp}/p.json"], "Policy.drop_rate must be in [0, 1), got 1.5"),
])
def test_errors_are_one_line_naming_the_culprit(args, needle, capsys, tmp_path):
    (tmp_path / "p.json").write_text('{"drop_rate": 1.5}')  # a bad --drop-rate flag: test_bad_inputs_cli
    assert main(["prepare", *(a.replace("{tmp}", str(tmp_path)) for a in args)]) == 2
    err = capsys.readouterr().err
    assert needle in err and "Traceback" not in err and err.count("\n") == 1


def test_python_factory_spec():
    model = create_model("tests.conftest:SmallNet", num_classes=4)
    assert model(torch.randn(1, 3, 8, 8)).shape == (1, 4)
    with pytest.raises(ModelSpecError, match="'tests.conftest' has no callable 'Nope'"):
        create_model("tests.conftest:Nope")
