"""BENCHMARKS.md's generated tables equal what benchmarks/render_benchmarks.py makes of the
committed result files (offline, no TensorFlow: only JSON / CSV / markdown are read)."""

import pathlib
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import render_benchmarks as rb  # noqa: E402


def test_committed_tables_equal_the_tables_generated_from_the_result_files():
    text = (ROOT / "BENCHMARKS.md").read_text()
    assert rb.render(text) == text, (
        "BENCHMARKS.md differs from its result files: run python benchmarks/render_benchmarks.py")


def test_every_table_has_markers_and_every_marker_a_table():
    text = (ROOT / "BENCHMARKS.md").read_text()
    names = [m.group("name") for m in rb.MARKER.finditer(text)]
    assert sorted(names) == sorted(rb.TABLES) and len(names) == len(set(names))
    for name in names:   # a table is generated content, never an empty fence
        assert rb.TABLES[name]().strip()
    with pytest.raises(ValueError, match=r"without a table function: \['nosuch'\]"):
        rb.render(text + "\n<!-- table:nosuch -->\n<!-- /table:nosuch -->\n")
    first = names[0]
    with pytest.raises(ValueError, match=rf"functions without markers: \['{first}'\]"):
        rb.render(text.replace(f"table:{first} -->", f"table:{first}X -->"))


def test_check_mode_reports_a_hand_edited_table(tmp_path):
    doc = tmp_path / "BENCHMARKS.md"
    text = (ROOT / "BENCHMARKS.md").read_text()
    body = rb.MARKER.search(text).group("body")
    edited = body.replace("|", "| 1", 1)   # a hand edit inside the first table
    doc.write_text(text.replace(body, edited, 1))
    assert rb.main(["--check", "--doc", str(doc)]) == 1
    assert rb.main(["--doc", str(doc)]) == 0          # regenerate ...
    assert doc.read_text() == text                     # ... gives the committed file back
    assert rb.main(["--check", "--doc", str(doc)]) == 0


def test_a_timing_taken_on_a_busy_machine_is_not_quoted():
    meta = {"quiet": False, "load_before": 4.2, "load_after": 3.9, "machine": {"cores": 2},
            "command": "python benchmarks/bench_x.py"}
    note = rb.timing_note(meta)
    assert "no timing is quoted" in note and "load 4.2 → 3.9" in note
    assert "python benchmarks/bench_x.py" in note
    assert rb.timing_note(dict(meta, quiet=True)) is None
    # older files: ratios only, one decimal, marked as approximate
    assert rb.ratio(1.7064) == "~1.7x"


def test_number_helpers():
    assert rb.mean_std([0.5, 0.7]) == "60.00 ± 14.14"
    assert rb.mean_std([0.5]) == "50.00"
    assert rb.num(6256.49) == "6,256" and rb.pct(0.9781) == "97.81"
    assert rb.per_seed([0.1, 0.25], digits=1) == "10.0 / 25.0"
