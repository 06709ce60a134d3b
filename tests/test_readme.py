"""Every ```python block of README.md runs: offline, seeded, in a temporary folder.

Each block runs in a fresh namespace. Two HTML comments (invisible on GitHub), on the line right
above a block's opening fence, change that:

* ``<!-- readme-test: continue -->``: the block continues the previous python block (same
  namespace, e.g. it uses a model the block above built);
* ``<!-- readme-test: skip: <reason> -->``: the block is not run, and the test report says why
  (only for a block that truly cannot run offline: a download, a GPU, hours of training).

```bash`` blocks and unlabelled ``` blocks (commands, outputs) are not executed.
"""

import pathlib
import re

import numpy as np
import pytest

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"
_FENCE = re.compile(r"^```(\S*)\s*$")
_MARKER = re.compile(r"^<!--\s*readme-test:\s*(.*?)\s*-->\s*$")


def python_blocks(text):
    """``[(line number, marker or None, code)]`` of the python blocks of a Markdown text."""
    lines = text.splitlines()
    blocks, i = [], 0
    while i < len(lines):
        m = _FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        start, lang = i, m.group(1).lower()
        j = i + 1
        while j < len(lines) and lines[j].rstrip() != "```":
            j += 1
        if j == len(lines):
            raise ValueError(f"README.md:{start + 1}: code block never closed.")
        if lang in ("python", "py"):
            above = lines[start - 1] if start else ""
            marker = _MARKER.match(above)
            blocks.append((start + 1, marker.group(1) if marker else None,
                           "\n".join(lines[start + 1:j]) + "\n"))
        i = j + 1
    return blocks


def runs(blocks):
    """Groups blocks into runs (a block and its continuations): ``[(line, skip reason, code)]``."""
    out = []
    for line, marker, code in blocks:
        if marker is None:
            out.append([line, None, [(line, code)]])
        elif marker == "continue":
            if not out:
                raise ValueError(f"README.md:{line}: 'continue' on the first python block.")
            out[-1][2].append((line, code))
        elif marker.startswith("skip:") and marker[5:].strip():
            out.append([line, marker[5:].strip(), [(line, code)]])
        else:
            raise ValueError(
                f"README.md:{line}: unknown marker <!-- readme-test: {marker} -->; use "
                "'<!-- readme-test: continue -->' or '<!-- readme-test: skip: <reason> -->'.")
    return [(line, reason, parts) for line, reason, parts in out]


_RUNS = runs(python_blocks(README.read_text(encoding="utf-8")))


def test_harness_reads_markers_and_continuations():
    text = ("x\n```python\na = 1\n```\n<!-- readme-test: continue -->\n```python\nb = a + 1\n```\n"
            "```bash\nexit 1\n```\n<!-- readme-test: skip: downloads ImageNet -->\n"
            "```python\nraise SystemExit\n```\n```\nplain\n```\n")
    got = runs(python_blocks(text))
    assert [(line, reason, [c for _, c in parts]) for line, reason, parts in got] == [
        (2, None, ["a = 1\n", "b = a + 1\n"]), (13, "downloads ImageNet", ["raise SystemExit\n"])]
    for bad in ("<!-- readme-test: skip -->", "<!-- readme-test: skip: -->",
                "<!-- readme-test: contineu -->"):
        with pytest.raises(ValueError, match="unknown marker"):
            runs(python_blocks(f"{bad}\n```python\npass\n```\n"))
    assert len(_RUNS) >= 5  # README.md has python blocks to run


@pytest.mark.parametrize("line, reason, parts", _RUNS,
                         ids=[f"README.md:{line}" for line, _, _ in _RUNS])
def test_readme_block_runs(line, reason, parts, tmp_path, monkeypatch):
    if reason is not None:
        pytest.skip(f"README.md:{line}: {reason}")
    import keras
    import matplotlib

    matplotlib.use("Agg")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DWT_KERAS_OFFLINE", "1")
    keras.utils.set_random_seed(0)
    np.random.seed(0)
    namespace = {"__name__": f"readme_{line}"}
    for start, code in parts:
        exec(compile(code, f"README.md:{start + 1}", "exec"), namespace)  # noqa: S102
