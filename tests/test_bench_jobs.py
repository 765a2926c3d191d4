"""Running benchmark rows side by side: a dataset is built by one row alone, results keep the asked order."""

from __future__ import annotations

import json

import pytest

from mmtrust.bench.runner import run_bench, run_order


def test_run_order_builds_each_dataset_with_a_cheap_row_first():
    names = ["physnet", "pos", "fgsm", "green", "dtn", "pgd", "vit"]
    order, key = run_order(names, None)
    assert sorted(order) == sorted(names)  # every row once
    assert key["pos"] == key["green"] == key["physnet"] and key["fgsm"] == key["pgd"] and key["dtn"] == key["vit"]
    assert key["pos"] != key["fgsm"] != key["dtn"]
    # builders: the first untrained row of each dataset (forgery has only trained rows: its first one)
    assert order[:3] == ["pos", "fgsm", "dtn"]
    assert order[3] == "physnet" and order[4] == "vit"  # then the trained rows, then the rest
    # a dataset given for every row: one key, so the rows run one after another whatever jobs says
    _, key = run_order(["pos", "green"], "some/folder")
    assert set(key.values()) == {"some/folder"}


def test_two_jobs_in_fresh_processes_match_one_in_process_run(tiny_still_rppg, tmp_path):
    """Forked from the preloading fork server, two jobs: the same metrics as in-process, asked order kept."""
    data = str(tiny_still_rppg)
    one = run_bench(["green", "pos"], data=data, out_dir=tmp_path / "one", isolate=False, progress=False)
    par = run_bench(["green", "pos"], data=data, out_dir=tmp_path / "par", jobs=2, progress=False)
    assert [r["method"] for r in par["rows"]] == ["green", "pos"]
    assert par["env"]["jobs"] == 2 and par["env"]["torch_threads_per_job"] >= 1
    for a, b in zip(one["rows"], par["rows"], strict=True):
        assert "metrics" in b, b.get("error")
        assert a["metrics"]["MAE"] == pytest.approx(b["metrics"]["MAE"], abs=1e-9)
        assert b["peak_rss_mb"] > 0
    assert "side by side" in (tmp_path / "par" / "report.md").read_text()
    assert len(json.loads((tmp_path / "par" / "results.json").read_text())["rows"]) == 2


def test_jobs_must_be_positive(tmp_path):
    with pytest.raises(ValueError, match="jobs"):
        run_bench(["pos"], out_dir=tmp_path, jobs=0, progress=False)


def test_demo_prefers_demo_presets_and_bench_quick_keeps_quick():
    from mmtrust.bench.runner import _preset_for
    from mmtrust.registry import get_method

    physnet, pos = get_method("physmamba"), get_method("pos")
    assert "demo" in physnet.presets and "quick" in physnet.presets
    assert _preset_for(physnet, None, quick=True) == "quick"
    assert _preset_for(physnet, None, quick=True, demo=True) == "demo"
    assert _preset_for(physnet, "tiny", quick=True, demo=True) == "tiny"  # an explicit preset wins
    assert _preset_for(physnet, None, quick=False) == "paper"
    assert _preset_for(pos, None, quick=True, demo=True) == ("quick" if "quick" in pos.presets else "tiny")
