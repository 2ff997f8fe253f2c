"""Smoke tests of the inference benchmarks: the analytic counts of lisa-13b and a quick tiny-model timing run."""

from __future__ import annotations

import pytest

from bench import flops, infer


def test_flops_lisa13b_counts_and_view_cache(capsys):
    report = flops.main(["--preset", "lisa-13b", "--prompt-tokens", "80", "--answer-tokens", "20"])["lisa-13b"]
    params = report["params"]
    assert 13.0e9 <= params["lm"] <= 13.1e9
    assert 630e6 <= params["sam_encoder"] <= 640e6
    assert 300e6 <= params["clip"] <= 310e6
    assert params["total"] == sum(v for k, v in params.items() if k != "total")

    f = report["flops"]
    # the view cache removes exactly the SAM image encoder's 4 views
    assert report["flops_per_query_without_cache"] - report["flops_per_query_with_cache"] == pytest.approx(f["sam_encoder"])
    enc = report["flops_detail"]["sam_encoder_per_view"]
    assert enc["windowed_blocks"] > enc["global_blocks"] > 0
    assert 5.5e12 < enc["total"] < 6.5e12  # ≈ 3 T multiply-accumulates per 1024² view, as commonly quoted
    # 2·params per token for the LM
    assert 2 * 12.9e9 < report["flops_detail"]["generation_per_token"] < 2 * 13.1e9
    assert f["lm_prefill"] > 336 * 2 * 12.6e9
    mem = report["memory"]["weights_intended"]
    assert mem["bf16"] > mem["int8"] > mem["nf4"] > 0
    out = capsys.readouterr().out
    assert "SAM image encoder" in out and "total, view cache" in out


def test_infer_tiny_quick(capsys):
    result = infer.main(["--preset", "tiny", "--repeats", "1", "--min-time", "0", "--e2e-rounds", "1", "--batch", "2"])
    for stage in ("clip", "lm_prefill", "generation", "sam_encoder", "mask_decoder", "lifting"):
        assert stage in result["stages_s"] and result["stages_s"][stage] > 0  # each stage ran and was timed
    assert result["encoder_runs_cached"] == 0
    assert result["encoder_runs_uncached"] == 2  # one round = 2 uncached queries (A B B A)
    assert result["queries_per_s"]["cached"] > 0 and result["ratios"]["batch_speedup"] > 0
    assert result["equality"]["same_ids"] and result["ratios"]["prefix_speedup"] > 0
    assert "queries/s" in capsys.readouterr().out


def test_flops_original_path_vs_shared_prefix(capsys):
    report = flops.main(["--preset", "lisa-13b", "--objects", "1", "8"])["lisa-13b"]
    paths, ratios = report["paths"], report["path_ratios"]
    # "ours before" at one object per image is the per-query total with the view cache
    assert paths[1]["ours_before"]["total"] == pytest.approx(report["flops_per_query_with_cache"])
    t, a = report["prefill_tokens"], report["answer_tokens"]
    assert paths[1]["original"]["lm"] > a * 2 * 12.9e9 * t  # every generated token re-runs the whole sequence
    assert paths[1]["original"]["sam_encoder"] == pytest.approx(report["flops"]["sam_encoder"])
    # the shared prefix and the early stop cost nothing extra for a lone query and save ~5x the LM at 8 per image
    assert paths[1]["ours"]["total"] < paths[1]["ours_before"]["total"]
    assert paths[8]["ours"]["lm"] * 4 < paths[8]["ours_before"]["lm"]
    assert ratios[1]["original_over_ours"] >= 20 and ratios[8]["original_over_ours"] >= 50
    assert "original path vs ours" in capsys.readouterr().out
