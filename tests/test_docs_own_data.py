"""docs/own-data.md's Python code runs as written, and the docs name only files that are in the project.

The page's ``python`` blocks are executed in order in one namespace, in a temporary folder: the
Dataset and plain-loop block (tiny by design: 256 images of 16x16, 3 epochs) writes ``squares.onnx``;
the onnxruntime block then reads that file under the page's name ``pets.onnx`` and a made-up
``some_cat.png``. (The page's command-line block is what tests/test_own_data.py runs on a 3-class
ImageFolder.)"""

import contextlib
import io
import re
import shutil
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
PAGE = ROOT / "docs" / "own-data.md"


def python_blocks(path: Path) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", path.read_text(encoding="utf-8"), flags=re.S | re.M)


@pytest.mark.slow  # trains resnet20 for 3 epochs on 256 images: about 30 s on an idle 2-core CPU
def test_own_data_page_code_runs(tmp_path, monkeypatch):
    blocks = python_blocks(PAGE)
    assert len(blocks) == 2, "docs/own-data.md: a new python block needs a place in this test"
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": "own_data_doc"}
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(blocks[0], f"{PAGE}:block1", "exec"), namespace)
    chips = re.fullmatch(r"(\d+\.\d)% \+- (\d+\.\d) over 20 chips\n", out.getvalue())
    assert chips, out.getvalue()
    assert 100 / 3 < float(chips[1]) <= 100  # learnt above chance on the made-up, separable data
    meta = ort.InferenceSession("squares.onnx", providers=["CPUExecutionProvider"]).get_modelmeta()
    assert '"a", "b", "c"' in meta.custom_metadata_map["rramfx.class_names"]
    assert '"input_shape": [3, 16, 16]' in meta.custom_metadata_map["rramfx.preprocessing"]

    shutil.copy("squares.onnx", "pets.onnx")
    Image.fromarray(np.full((20, 24, 3), 200, dtype=np.uint8)).save("some_cat.png")
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(blocks[1], f"{PAGE}:block2", "exec"), {"__name__": "own_data_doc"})
    assert out.getvalue().strip() in ("a", "b", "c")


def test_docs_name_only_files_in_the_project():
    """Every file path the README and docs/ quote in backticks (``dir/name.ext``) is in the checkout
    (from the root, from rramfx/ or from docs/), so a reader on a fresh clone finds it."""
    pattern = r"`([A-Za-z0-9_.-]+/[A-Za-z0-9_./-]+\.(?:py|md|toml|sh|txt|cfg|json|yml))`"
    missing = []
    for doc in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for path in set(re.findall(pattern, doc.read_text(encoding="utf-8"))):
            if not any((base / path).exists() for base in (ROOT, ROOT / "rramfx", ROOT / "docs")):
                missing.append((doc.name, path))
    assert missing == []
    assert "tests/test_own_data.py" in PAGE.read_text(encoding="utf-8")
