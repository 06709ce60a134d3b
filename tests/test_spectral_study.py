"""The spectral-truncation convergence study's statistics, table, merging and figures."""

import numpy as np
import pytest

from dwt_keras.experiments.recipe import config_dict
from dwt_keras.experiments.spectral_study import StudyConfig
from dwt_keras.spectral import figures, study


def test_summarize_mean_and_sample_std():
    runs = [
        {"condition": "baseline", "epochs_to_target": e, "time_to_target_s": t, "epochs_to_target_val": None,
         "final_test_accuracy": a, "test_accuracy_at_best_val": a, "max_test_accuracy": a, "train_time_s": t}
        for e, t, a in [(3, 10.0, 0.5), (5, 14.0, 0.6), (None, None, 0.4)]
    ]
    s = study.summarize(runs)["baseline"]
    assert s["n_runs"] == 3
    assert s["epochs_to_target"] == {"mean": 4.0, "std": pytest.approx(np.std([3, 5], ddof=1)), "n": 2}
    assert s["final_test_accuracy"]["mean"] == pytest.approx(0.5)
    assert s["final_test_accuracy"]["std"] == pytest.approx(np.std([0.5, 0.6, 0.4], ddof=1))
    assert s["epochs_to_target_val"]["n"] == 0
    md = study.results_markdown(study.summarize(runs), config_dict(StudyConfig().validate()))
    assert "| baseline | 2/3 | 4.0 ± 1.4 |" in md
    assert "not reached" in md


def _is_png(path):
    data = path.read_bytes()
    return data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000


def test_figures_written_as_png(tmp_path):
    img = np.random.default_rng(0).random((16, 16, 3)).astype(np.float32)
    p1 = figures.plot_tau_progression(img, tmp_path / "prog.png", taus=(0.1, 1.0))
    p2 = figures.plot_mask_profiles(tmp_path / "masks.png", taus=(0.1, 0.5, 1.0))
    results = {"config": {"truncation_epochs": 1, "target_accuracy": 0.5}, "runs": [
        {"condition": c, "history": [{"test_accuracy": a} for a in accs]}
        for c, accs in [("baseline", [0.3, 0.5]), ("baseline", [0.4, 0.6]), ("cosine", [0.2, 0.55])]]}
    p3 = figures.plot_study_curves(results, tmp_path / "curves.png")
    assert _is_png(p1) and _is_png(p2) and _is_png(p3)
    assert sorted(f.name for f in tmp_path.iterdir()) == ["curves.png", "masks.png", "prog.png"]  # no temp files
    with pytest.raises(ValueError, match="no runs"):
        figures.plot_study_curves({"runs": []}, tmp_path / "bad.png")
    with pytest.raises(ValueError, match=r"\(0, 1\]"):
        figures.plot_mask_profiles(tmp_path / "bad.png", taus=(0.0,))
    with pytest.raises(ValueError, match="one image"):
        figures.plot_tau_progression(np.zeros((2, 8, 8, 3)), tmp_path / "bad.png")


def _fake_results(seeds, conditions=("baseline", "cosine")):
    runs = []
    for seed in seeds:
        for i, c in enumerate(conditions):
            acc = 0.4 + 0.01 * seed + 0.02 * i
            runs.append({"condition": c, "seed": seed, "epochs_to_target": 3 + seed,
                         "time_to_target_s": 1.0 + seed, "epochs_to_target_val": None,
                         "final_test_accuracy": acc, "test_accuracy_at_best_val": acc,
                         "max_test_accuracy": acc, "train_time_s": 2.0,
                         "history": [{"test_accuracy": acc}]})
    cfg = config_dict(StudyConfig(seeds=tuple(seeds), conditions=conditions))
    return {"config": cfg, "runs": runs, "summary": study.summarize(runs), "complete": True,
            "command": "x", "data": None, "machine": "m"}


def test_merge_results_recomputes_summary(tmp_path):
    a, b = _fake_results([0, 1]), _fake_results([2])
    merged = study.merge_results([a, b])
    assert merged["config"]["seeds"] == [0, 1, 2] and merged["complete"]
    accs = [0.4, 0.41, 0.42]
    assert merged["summary"]["baseline"]["final_test_accuracy"]["mean"] == pytest.approx(np.mean(accs))
    assert merged["summary"]["baseline"]["final_test_accuracy"]["std"] == pytest.approx(np.std(accs, ddof=1))
    out = study.write_results(merged, tmp_path)
    assert "| baseline | 3/3 |" in (out / "spectral_study.md").read_text()
    with pytest.raises(ValueError, match="twice"):
        study.merge_results([a, a])
    c = _fake_results([3])
    c["config"]["epochs"] = 99
    with pytest.raises(ValueError, match="different settings"):
        study.merge_results([a, c])
