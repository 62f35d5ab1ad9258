"""The user's own data and weights (issue 15): ImageFolder from the CLI, dict batches and the first-batch
check from Python, --weights / --pretrained, and the settings a trained file and an ONNX file carry."""

import json

import pytest
import torch
from PIL import Image

from rramfx.cli import main
from rramfx.data import ImageLoader, as_pairs, check_batch_fits, load_dataset, load_imagefolder, split_batch
from rramfx.errors import ArgumentTypeError, DataError, DataFileError, ModelFileError, ModelSpecError
from rramfx.models.spec import create_model
from rramfx.models.weights import load_weights

CLASSES = ["cat", "dog", "fish"]
COLOURS = {"cat": (220, 30, 30), "dog": (30, 220, 30), "fish": (30, 30, 220)}


def make_imagefolder(root, per_class=(4, 2), size=16, test_name="val"):
    """ROOT/train/<class>/*.png and ROOT/<test_name>/<class>/*.png: one colour per class plus noise."""
    g = torch.Generator().manual_seed(0)
    for split, n in zip(("train", test_name), per_class, strict=True):
        for name in CLASSES:
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(n):
                base = torch.tensor(COLOURS[name]).view(3, 1, 1).float()
                pixels = (base + 20 * torch.randn(3, size, size, generator=g)).clamp(0, 255).to(torch.uint8)
                Image.fromarray(pixels.permute(1, 2, 0).numpy()).save(folder / f"{i}.png")
    return root


@pytest.fixture
def folder(tmp_path):
    return make_imagefolder(tmp_path / "pets")


def test_imagefolder_reads_classes_sizes_and_normalisation(folder):
    train = load_imagefolder(folder, "train")
    test = load_dataset(f"imagefolder:{folder}", "test")
    assert train.classes == tuple(CLASSES) and train.num_classes == 3
    assert train.images.shape == (12, 3, 16, 16) and test.images.shape == (6, 3, 16, 16)
    assert train.labels.tolist() == [0] * 4 + [1] * 4 + [2] * 4
    assert test.mean == train.mean and 0.3 < train.mean[0] < 0.5  # each channel is bright in one class of three
    assert load_imagefolder(folder, "train", image_size=8).images.shape == (12, 3, 8, 8)


def test_imagefolder_errors_name_the_folder(tmp_path, folder):
    with pytest.raises(DataFileError, match="has no .*val.* or .*test.* folder"):
        (tmp_path / "only").mkdir()
        (tmp_path / "only" / "train").mkdir()
        load_imagefolder(tmp_path / "only", "test")
    with pytest.raises(DataFileError, match="is not a folder"):
        load_dataset(f"imagefolder:{tmp_path / 'nope'}", "train")
    with pytest.raises(SystemExit):  # argparse's usage error
        main(["train", "--model", "resnet20", "--dataset", "imagefolder:", "--out", str(tmp_path / "x.pt")])
    assert main(["train", "--model", "resnet20", "--dataset", f"imagefolder:{tmp_path / 'only'}", "--out",
                 str(tmp_path / "x.pt")]) == 2
    assert not (tmp_path / "x.pt").exists()


def test_dict_batches_and_the_first_batch_check():
    model = create_model("resnet20", num_classes=3, in_chans=3).eval()
    x, y = torch.randn(4, 3, 16, 16), torch.tensor([0, 1, 2, 1])
    assert split_batch({"image": x, "label": y})[1] is y
    assert split_batch({"pixel_values": x, "labels": y})[0] is x
    with pytest.raises(DataError, match=r"no image key .*as_pairs"):
        split_batch({"img_": x, "label": y})
    pairs = list(as_pairs([{"a": x, "b": y}], keys=("a", "b")))
    assert pairs[0][0] is x and pairs[0][1] is y
    with pytest.raises(ArgumentTypeError, match="must yield"):
        split_batch(x)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    check_batch_fits(model, (x, y), classes=CLASSES)
    with pytest.raises(DataError, match="1-channel inputs .* takes 3 channels.*in_chans=1"):
        check_batch_fits(model, (x[:, :1], y))
    with pytest.raises(DataError, match="5 classes .* 3 outputs.*num_classes=5"):
        check_batch_fits(model, (x, y), classes=list("abcde"))
    with pytest.raises(DataError, match="labels from 0 to 7"):
        check_batch_fits(model, (x, torch.tensor([0, 7, 1, 1])))
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_train_and_monte_carlo_take_dict_loaders_and_refuse_a_class_mismatch(folder):
    from torch.utils.data import DataLoader

    import rramfx

    data = load_imagefolder(folder, "train")
    loader = ImageLoader(data, 4)
    dicts = [{"image": xb, "label": yb} for xb, yb in loader]
    gm = rramfx.prepare(create_model("resnet20", num_classes=3), rramfx.Policy(drop_rate=0.1))
    history = rramfx.train(gm, dicts, 1, progress=False)
    assert len(history) == 1 and history[0]["epoch"] == 1
    result = rramfx.monte_carlo(gm, dicts, rramfx.FaultModel(sa1=0.1), trials=2, fault_rate=0.1, progress=False)
    assert result.trials == 2 and result.samples == 12
    wrong = rramfx.prepare(create_model("resnet20", num_classes=10), rramfx.Policy())
    batches = DataLoader(torch.utils.data.TensorDataset(data.images.float(), data.labels), batch_size=4)
    batches.dataset.classes = CLASSES
    before = {k: v.clone() for k, v in wrong.state_dict().items()}
    with pytest.raises(DataError, match="3 classes .* 10 outputs"):
        rramfx.train(wrong, batches, 1, progress=False)
    with pytest.raises(DataError, match="3 classes .* 10 outputs"):
        rramfx.recalibrate_bn(wrong, batches, 0.1, progress=False)
    assert all(torch.equal(before[k], v) for k, v in wrong.state_dict().items())


def test_cli_train_evaluate_export_on_an_imagefolder(folder, tmp_path, capsys):
    import onnx

    from rramfx.training.saved import load_prepared

    out = tmp_path / "pets.pt"
    args = ["train", "--model", "timm:resnet18", "--dataset", f"imagefolder:{folder}", "--epochs", "1",
            "--batch-size", "4", "--drop-rate", "0.1", "--test-subset", "5", "--out", str(out), "--device", "cpu"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "3 classes" in printed and "epoch 1/1: loss" in printed
    _, record = load_prepared(out)
    assert record["data"]["class_names"] == CLASSES and record["input_shape"] == [3, 16, 16]
    assert record["data"]["test_subset"] == 5 and len(record["data"]["mean"]) == 3
    assert record["model_kwargs"] == {"num_classes": 3, "in_chans": 3}
    stamp = out.stat().st_mtime_ns
    assert main(args) == 0 and out.stat().st_mtime_ns == stamp
    assert "nothing to train" in capsys.readouterr().out

    assert main(["evaluate", str(out), "--trials", "2", "--fault-rates", "0,0.2", "--json", "--quiet",
                 "--device", "cpu"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["fault_rate"] for r in rows] == [0.0, 0.2] and rows[0]["samples"] == 5  # the training's subset

    onnx_path = tmp_path / "pets.onnx"
    assert main(["export", "--trained", str(out), "--out", str(onnx_path)]) == 0
    assert "input 3x16x16" in capsys.readouterr().out
    meta = {p.key: p.value for p in onnx.load(str(onnx_path)).metadata_props}
    assert json.loads(meta["rramfx.class_names"]) == CLASSES
    pre = json.loads(meta["rramfx.preprocessing"])
    assert pre["input_shape"] == [3, 16, 16] and pre["mean"] == record["data"]["mean"] and len(pre["std"]) == 3


def test_weights_from_a_plain_state_dict(folder, tmp_path, capsys):
    torch.manual_seed(0)
    good, bad = tmp_path / "good.pth", tmp_path / "bad.pth"
    torch.save(create_model("resnet20", num_classes=3).state_dict(), good)
    torch.save({"state_dict": create_model("resnet20", num_classes=5).state_dict()}, bad)
    data = ["--dataset", f"imagefolder:{folder}", "--device", "cpu"]
    assert main(["evaluate", "--model", "resnet20", "--weights", str(good), "--trials", "2", "--fault-rates", "0",
                 "--json", "--quiet", *data]) == 0
    assert json.loads(capsys.readouterr().out)[0]["samples"] == 6
    out = tmp_path / "tuned.pt"
    assert main(["train", "--model", "resnet20", "--weights", str(good), "--epochs", "1", "--batch-size", "4",
                 "--quiet", "--out", str(out), *data]) == 0
    capsys.readouterr()
    assert main(["evaluate", "--model", "resnet20", "--weights", str(bad), "--trials", "2", *data]) == 2
    err = capsys.readouterr().err
    assert f"the weights in '{bad}' do not fit resnet20 (3 classes" in err
    assert "fc.weight (5, 64) in the file, (3, 64) in the model" in err
    assert main(["train", "--model", "resnet20", "--weights", str(tmp_path / "none.pth"), "--out",
                 str(tmp_path / "n.pt"), *data]) == 2
    assert "weights file" in capsys.readouterr().err and not (tmp_path / "n.pt").exists()


def test_load_weights_reads_checkpoints_and_names_keys(tmp_path):
    src = create_model("resnet20", num_classes=3)
    path = tmp_path / "ckpt.pt"
    torch.save({"epoch": 3, "model_state_dict": {f"module.{k}": v for k, v in src.state_dict().items()}}, path)
    dst = load_weights(create_model("resnet20", num_classes=3), path)
    assert all(torch.equal(a, b) for a, b in zip(src.state_dict().values(), dst.state_dict().values(), strict=True))
    torch.save({"conv.weight": torch.zeros(1)}, path)
    with pytest.raises(ModelFileError, match=r"missing: conv1.weight.*1 unexpected: conv.weight"):
        load_weights(create_model("resnet20", num_classes=3), path)


def test_timm_names_follow_timm(tmp_path):
    assert create_model("timm:resnet18.a1_in1k", num_classes=3).fc.out_features == 3
    with pytest.raises(ModelSpecError, match="Did you mean timm:resnet18 or tv:resnet18"):
        create_model("resnet18")
    src = create_model("timm:resnet18", num_classes=7)
    path = tmp_path / "r18.pth"
    torch.save(src.state_dict(), path)
    model = create_model("timm:resnet18", num_classes=3, pretrained_file=str(path))  # timm swaps the classifier
    assert torch.equal(model.conv1.weight, src.conv1.weight) and model.fc.out_features == 3
    with pytest.raises(ModelFileError, match="does not exist"):
        create_model("timm:resnet18", pretrained_file=str(tmp_path / "none.pth"))


def _summary(seeds=1, tie=True):
    """Two drop rates at two fault rates: at 20% the two are within their spread when ``tie``."""
    rows = []
    for d, f, acc, chip in [(0.0, 0.0, 0.90, 0.0), (0.2, 0.0, 0.85, 0.0), (0.0, 0.2, 0.40, 0.05),
                            (0.2, 0.2, 0.42 if tie else 0.70, 0.05)]:
        rows += [{"drop_rate": d, "fault_rate": f, "seed": s, "accuracy": acc + 0.01 * s, "chip_std": chip,
                  "clean_accuracy": 0.9} for s in range(seeds)]
    from rramfx.experiment.report import summarize

    return summarize(rows)


def test_plots_show_their_spread_fixed_scale_and_ties(tmp_path):
    from matplotlib.container import ErrorbarContainer

    from rramfx.experiment.plots import clear_best, plot_accuracy, plot_best_drop_rate, plot_heatmap
    from rramfx.experiment.report import markdown_table

    one = _summary(seeds=1)
    assert clear_best(one) == {0.0: 0.0, 0.2: None}  # 42 vs 40 with chip std 5 each: a tie
    assert clear_best(_summary(seeds=1, tie=False))[0.2] == 0.2
    assert "**" not in markdown_table(one).split("\n")[3]  # the 20% column has no bold cell
    fig = plot_accuracy(one, chance=0.1, sa0_fraction=0.5)
    ax = fig.axes[0]
    assert sum(isinstance(c, ErrorbarContainer) for c in ax.containers) == 2  # error bars with one seed
    legend = ax.get_legend()
    assert "error bars: std over simulated chips (1 training seed)" in legend.get_title().get_text()
    assert "chance (10%)" in [t.get_text() for t in legend.get_texts()]
    assert ax.get_ylim() == (0, 100) and "SA1+SA0, 50% SA0" in ax.get_xlabel()
    assert "std over 3 training seeds" in plot_accuracy(_summary(seeds=3)).axes[0].get_legend().get_title().get_text()
    heat = plot_heatmap(one)
    assert heat.axes[0].images[0].get_clim() == (0.0, 100.0)
    texts = {t.get_text(): t.get_fontweight() for t in heat.axes[0].texts}
    assert texts["42.0\n±5.0"] == "normal" and texts["90.0\n±0.0"] == "bold"
    assert "(tie)" in heat.axes[0].get_xticklabels()[1].get_text()
    assert heat.axes[0].get_title().endswith("cells: mean ± std over simulated chips (1 training seed)")
    from matplotlib.figure import Figure

    own = Figure()
    ax = own.add_subplot()
    assert plot_best_drop_rate(one, ax) is own and ax.get_xlabel() == "fault rate (% of cells, SA1)"
    heat.savefig(tmp_path / "h.png")
    assert (tmp_path / "h.png").stat().st_size > 1000


def test_report_accepts_results_json_and_version(tmp_path, capsys):
    rows = [{"drop_rate": s["drop_rate"], "fault_rate": s["fault_rate"], "seed": 0, "accuracy": s["accuracy"],
             "chip_std": s["chip_std"]} for s in _summary()]
    (tmp_path / "results.json").write_text(json.dumps({"config": {"dataset": "mnist"}, "rows": rows}))
    assert main(["report", str(tmp_path / "results.json")]) == 0
    assert (tmp_path / "heatmap.png").stat().st_size > 1000 and "| p = 0.2" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["--version"])
    from rramfx.version import __version__

    assert capsys.readouterr().out.strip() == f"rramfx {__version__}"


def test_cli_defaults_agree_with_the_api_and_help_states_them():
    """`rramfx sweep`'s defaults are SweepConfig's, `rramfx evaluate`'s --recal-batches and --trials are
    the sweep's, and each help text names the default it has."""
    from dataclasses import MISSING, fields

    from rramfx.cli import build_parser
    from rramfx.experiment.config import SweepConfig

    sub = next(a for a in build_parser()._actions if a.dest == "command").choices
    flags = {p: {a.dest: a for a in sub[p]._actions} for p in ("sweep", "evaluate")}
    checked = 0
    for f in fields(SweepConfig):
        action = flags["sweep"].get(f.name)
        if action is None or f.default is MISSING or isinstance(action.const, bool):
            continue
        if f.name in ("model", "dataset"):  # the CLI asks for them (or a config file), as it should
            assert action.default is None
            continue
        assert action.default == f.default, f.name
        checked += 1
    assert checked >= 10
    assert flags["sweep"]["seeds"].default == SweepConfig.seeds == (0,)
    assert "default 0," in flags["sweep"]["seeds"].help
    for name in ("recal_batches", "trials"):
        assert flags["evaluate"][name].default == flags["sweep"][name].default == getattr(SweepConfig, name)
    assert "default: the whole training set" in flags["evaluate"]["recal_batches"].help
    assert "default: all" in flags["sweep"]["recal_batches"].help


def test_docs_refer_only_to_files_in_the_project():
    """README and docs/: no path out of the checkout, every markdown link to a file resolves, and the
    own-data page covers the folder, the Dataset and the onnxruntime feed."""
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    docs = [root / "README.md", *sorted((root / "docs").glob("*.md"))]
    for doc in docs:
        text = doc.read_text(encoding="utf-8")
        assert "../" not in text and "DESIGN.md" not in text and "/work/" not in text, doc.name
        for link in re.findall(r"\]\(((?!https?:)[^)#\s]+)", text):
            assert (doc.parent / link).exists(), (doc.name, link)
    page = (root / "docs" / "own-data.md").read_text(encoding="utf-8")
    for needed in ("--dataset imagefolder:", "class Squares(Dataset)", "cross_entropy(gm(x), y).backward()",
                   "onnxruntime", "rramfx.class_names", "rramfx.preprocessing", "--weights"):
        assert needed in page, needed
