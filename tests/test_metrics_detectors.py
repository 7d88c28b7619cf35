"""PR / IS / PPL names, their detector files (absent -> one sentence, before any work), and compute_metrics with them
(result keys, jsonl rows, reuse of recorded values)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from metrics_nvidia_support import REALS_ZIP, standin_files
from transfer_support import reference_generator

from stylegan_core.cli import main
from stylegan_core.io.atomic import sha256_file
from stylegan_core.metric_names import (
    INCEPTION_PATH_ENV,
    VGG16_PATH_ENV,
    missing_detectors,
    parse_metric_name,
)
from stylegan_core.metrics import compute_metrics
from stylegan_core.metrics import vgg as vgg_module


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("pr50k3_full", dict(kind="pr", num_gen=50_000, max_real=200_000, nhood_size=3)),
        ("pr50k3", dict(kind="pr", num_gen=50_000, max_real=50_000, nhood_size=3)),
        ("pr1k3_full", dict(kind="pr", num_gen=1_000, max_real=200_000, nhood_size=3)),
        ("pr2003", dict(kind="pr", num_gen=200, max_real=200, nhood_size=3)),
        ("is50k", dict(kind="is", num_gen=50_000, max_real=0)),
        ("is200", dict(kind="is", num_gen=200, max_real=0)),
        ("ppl2_wend", dict(kind="ppl", num_gen=50_000, space="w", sampling="end", crop=False)),
        ("ppl_zfull", dict(kind="ppl", num_gen=50_000, space="z", sampling="full", crop=True)),
        ("ppl_wfull", dict(kind="ppl", num_gen=50_000, space="w", sampling="full", crop=True)),
        ("ppl_zend", dict(kind="ppl", num_gen=50_000, space="z", sampling="end", crop=True)),
        ("ppl_wend", dict(kind="ppl", num_gen=50_000, space="w", sampling="end", crop=True)),
        ("ppl2_1k_wend", dict(kind="ppl", num_gen=1_000, space="w", sampling="end", crop=False)),
        ("ppl_200_zfull", dict(kind="ppl", num_gen=200, space="z", sampling="full", crop=True)),
    ],
)
def test_nvidia_names_and_small_variants(name: str, expected: dict) -> None:
    spec = parse_metric_name(name)
    assert {key: getattr(spec, key) for key in expected} == expected


def test_result_keys_are_nvidias() -> None:
    assert parse_metric_name("pr50k3_full").result_keys == ("pr50k3_full_precision", "pr50k3_full_recall")
    assert parse_metric_name("is50k").result_keys == ("is50k_mean", "is50k_std")
    assert parse_metric_name("ppl2_wend").result_keys == ("ppl2_wend",)
    assert parse_metric_name("fid50k_full").result_keys == ("fid50k_full",)


BAD_VARIANTS = [("is19", "at least 20 images"), ("pr33", "more than k images"), ("ppl2_0_wend", "unknown metric"),
                ("pr50k3full", "unknown metric")]  # fmt: skip


@pytest.mark.parametrize(("name", "message"), BAD_VARIANTS)
def test_bad_variants_say_why(name: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_metric_name(name)


def test_the_check_reads_no_weights_and_needs_no_torch() -> None:
    code = "import sys; from stylegan_core.metric_names import missing_detectors; missing_detectors(['is50k']); "
    code += "assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


@pytest.fixture(scope="module")
def detectors(tmp_path_factory):
    return standin_files(tmp_path_factory.mktemp("detectors"))


class _Pool3(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=[2, 3])


def test_missing_detectors_sentences(monkeypatch, tmp_path, detectors) -> None:
    inception, vgg16 = detectors
    monkeypatch.delenv(INCEPTION_PATH_ENV, raising=False)
    monkeypatch.delenv(VGG16_PATH_ENV, raising=False)
    (problem,) = missing_detectors(["pr50k3_full", "ppl2_wend"])
    assert problem.startswith("no VGG16 weights") and vgg_module.VGG16_URL in problem and VGG16_PATH_ENV in problem
    (problem,) = missing_detectors(["is50k"])
    assert "inception-2015-12-05.pt" in problem and "none is configured" in problem
    pool3 = tmp_path / "pool3.pt"
    torch.jit.script(_Pool3()).save(str(pool3))
    (problem,) = missing_detectors(["is50k"], inception=str(pool3))
    assert f"{pool3} has none" in problem
    assert missing_detectors(["ppl2_wend"], vgg16=str(tmp_path / "gone.pt")) == [
        f"VGG16 weights {tmp_path / 'gone.pt'} do not exist (needed for PR and PPL): download NVIDIA's vgg16.pt "
        f"from {vgg_module.VGG16_URL} and point {VGG16_PATH_ENV} (or --vgg16) at it"
    ]
    monkeypatch.setenv(INCEPTION_PATH_ENV, str(inception))
    monkeypatch.setenv(VGG16_PATH_ENV, str(vgg16))
    assert missing_detectors(["is50k", "pr50k3_full", "ppl2_wend", "fid50k_full"]) == []
    assert VGG16_PATH_ENV == vgg_module.VGG16_PATH_ENV  # one variable, named in two modules


def test_cli_refuses_in_one_line_before_loading_anything(monkeypatch, tmp_path, capsys) -> None:
    monkeypatch.delenv(VGG16_PATH_ENV, raising=False)
    argv = ["metrics", "--network", str(tmp_path / "absent.pt"), "--data", str(REALS_ZIP), "--metrics", "ppl2_wend"]
    assert main(argv) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("stylegan metrics: error: --metrics ppl2_wend: no VGG16 weights (needed for PR and PPL)")
    assert "\n" not in err and "Traceback" not in err


def test_training_refuses_before_a_run_directory_exists(monkeypatch, tmp_path) -> None:
    monkeypatch.delenv(INCEPTION_PATH_ENV, raising=False)
    argv = [sys.executable, "-m", "stylegan_core.cli", "train", "--data", str(REALS_ZIP), "--outdir",
            str(tmp_path / "runs"), "--gpus", "1", "--kimg", "1", "--metrics", "is1k"]  # fmt: skip
    result = subprocess.run(argv, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert result.returncode == 1, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("stylegan train: error: --metrics is1k: the Inception Score")
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_compute_metrics_records_and_reuses(tmp_path, detectors) -> None:
    inception, vgg16 = detectors
    run_dir = tmp_path / "run"
    snapshot = run_dir / "network-snapshot-000000.pt"
    run_dir.mkdir()
    torch.save({"weights": torch.ones(2)}, snapshot)
    names = ["pr163_full", "is20", "ppl2_4_wend"]
    kwargs = dict(cache_dir=tmp_path / "cache", detector=inception, vgg16=vgg16, progress=False, run_dir=run_dir,
                  snapshot_path=snapshot, reuse_recorded=True)  # fmt: skip
    first = compute_metrics(reference_generator(), REALS_ZIP, names, **kwargs)
    assert set(first["pr163_full"]) == {"pr163_full_precision", "pr163_full_recall"}
    assert set(first["is20"]) == {"is20_mean", "is20_std"} and first["is20"]["is20_mean"] > 1
    assert first["ppl2_4_wend"]["ppl2_4_wend"] > 0
    assert all(0 <= value <= 1 for value in first["pr163_full"].values())
    for name in names:
        (row,) = [json.loads(line) for line in (run_dir / f"metric-{name}.jsonl").read_text().splitlines()]
        assert row["metric"] == name and row["results"] == pytest.approx(dict(first[name]))
        assert row["snapshot_sha256"] == sha256_file(snapshot) and row["snapshot_pkl"] == snapshot.name
    (ppl_row,) = [json.loads(line) for line in (run_dir / "metric-ppl2_4_wend.jsonl").read_text().splitlines()]
    assert ppl_row["real_stats"] == f"detector-{sha256_file(vgg16)}" and ppl_row["batch_size"] == 2
    again = compute_metrics(reference_generator(), REALS_ZIP, names, **kwargs)
    assert all(again[name].reused and dict(again[name]) == pytest.approx(dict(first[name])) for name in names)
