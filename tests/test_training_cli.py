"""`stylegan train`: NVIDIA's option names, overrides only for given options, run-directory names, dry run."""

from __future__ import annotations

import argparse
import json

import pytest
import torch
from training_support import write_tiny_dataset

from stylegan_core.cli import train as train_cli
from stylegan_core.io.snapshot import find_latest_snapshot
from stylegan_core.training.report import SnapshotGrid

TINY = ["--cbase=256", "--cmax=32", "--map=2", "--batch=4", "--mbstd-group=2", "--metrics=none", "--workers=0",
        "--fp32=1", "--snap=100"]  # fmt: skip


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    train_cli.register(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(["train", *argv])


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return write_tiny_dataset(tmp_path_factory.mktemp("data") / "tiny.zip")


def test_only_given_options_become_overrides():
    args = parse("--outdir=o", "--data=d.zip", "--gamma", "2", "--kimg=0.5", "--mirror=1", "--cond=true", "--fp32")
    assert train_cli.given_overrides(args) == {
        "data": "d.zip", "gamma": "2", "kimg": "0.5", "mirror": "1", "cond": "true", "fp32": "1",
    }  # fmt: skip
    assert args.cfg == "auto" and not args.dry_run


def test_dry_run_prints_resolved_options(dataset, tmp_path, capsys):
    args = parse(f"--outdir={tmp_path / 'runs'}", f"--data={dataset}", "--dry-run", "--gamma=3", "--kimg=0.25",
                 "--tick=0.5", "--mirror=0", "--glr=0.001", "--batch-gpu=8", "--batch=16")  # fmt: skip
    assert train_cli.run(args) == 0
    output = capsys.readouterr().out
    options = json.loads(output[: output.rindex("}") + 1])
    assert options["loss"]["r1_gamma"] == 3 and options["loop"]["total_kimg"] == 0.25
    assert options["loop"]["kimg_per_tick"] == 0.5 and options["data"]["mirror"] is False
    assert options["optimizer"]["g_lr"] == 0.001 and options["optimizer"]["d_lr"] == 0.0025  # auto preset at 16 px
    assert options["loop"]["batch"] == 16 and options["loop"]["batch_gpu"] == 8
    assert "tiny-auto1-gamma3-kimg0.25-batch16-batchgpu8-glr0.001" in output
    assert not (tmp_path / "runs").exists()


def test_bad_values_and_nvidia_augment_rules(dataset, tmp_path):
    base = [f"--outdir={tmp_path}", f"--data={dataset}", "--dry-run"]
    with pytest.raises(ValueError, match="'cond'"):
        train_cli.run(parse(*base, "--cond=maybe"))
    with pytest.raises(ValueError, match="--aug=fixed requires specifying --p"):
        train_cli.run(parse(*base, "--aug=fixed"))
    with pytest.raises(ValueError, match="--p can only be specified with --aug=fixed"):
        train_cli.run(parse(*base, "--p=0.3"))
    with pytest.raises(ValueError, match="--augpipe cannot be specified with --aug=noaug"):
        train_cli.run(parse(*base, "--aug=noaug", "--augpipe=bg"))
    with pytest.raises(ValueError, match=r"minibatch-stddev group \(4\) must divide batch_gpu \(6\)"):
        train_cli.run(parse(*base, "--batch=6"))


def test_run_directory_names_follow_nvidia(tmp_path):
    (tmp_path / "00007-old").mkdir()
    (tmp_path / "notes").mkdir()
    assert train_cli.next_run_dir(tmp_path, "x-auto1").name == "00008-x-auto1"
    assert train_cli.next_run_dir(tmp_path, "x-auto1").name == "00009-x-auto1"


def test_cli_trains_into_a_numbered_run_directory(dataset, tmp_path, monkeypatch):
    monkeypatch.setattr(SnapshotGrid, "write_fakes", lambda self, G_ema, path, batch: None)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        args = parse(f"--outdir={tmp_path}", f"--data={dataset}", "--cond=1", "--kimg=0.008", "--tick=0.004",
                     "--aug=noaug", *TINY)  # fmt: skip
        assert train_cli.run(args) == 0
    finally:
        torch.set_num_threads(threads)
    (run_dir,) = tmp_path.iterdir()
    assert run_dir.name == "00000-tiny-cond-auto1-kimg0.008-batch4-noaug-cbase256-cmax32-map2-mbstd2"
    assert find_latest_snapshot(run_dir).name == "network-snapshot-000000.008.pt"
    options = json.loads((run_dir / "training_options.json").read_text())
    assert options["data"]["cond"] is True and options["network"]["num_fp16_res"] == 0
