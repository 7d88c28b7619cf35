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


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["--cond=maybe"], ["argument --cond", "boolean"]),
        (["--augpipe=bgcx"], ["argument --augpipe", "bgcfnc", "'bgcx'"]),
        (["--batch=0"], ["argument --batch", "[1, 65536]"]),
        (["--glr=nan"], ["argument --glr", "finite"]),
        (["--dlr=-1"], ["argument --dlr", "(0, 1]"]),
        (["--gamma=inf"], ["argument --gamma", "finite"]),
        (["--z-dim=1000000000"], ["argument --z-dim", "[1, 8192]"]),
        (["--kimg=0"], ["argument --kimg", "(0,"]),
        (["--p=1.5"], ["argument --p", "[0, 1]"]),
        (["--grid=8x0"], ["argument --grid"]),
    ],
)
def test_bad_values_are_refused_while_parsing(argv, words, capsys):
    with pytest.raises(SystemExit) as caught:
        parse("--outdir=o", "--data=d.zip", *argv)
    assert caught.value.code == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    for word in words:
        assert word in error, (word, error)


def test_nvidia_augment_rules_name_flags(dataset, tmp_path):
    base = [f"--outdir={tmp_path}", f"--data={dataset}", "--dry-run"]
    with pytest.raises(ValueError, match="^--aug: --aug=fixed requires --p"):
        train_cli.run(parse(*base, "--aug=fixed"))
    with pytest.raises(ValueError, match="^--p: cannot be given with --aug=noaug"):
        train_cli.run(parse(*base, "--aug=noaug", "--p=0.3"))
    with pytest.raises(ValueError, match="^--augpipe: cannot be given with --aug=noaug"):
        train_cli.run(parse(*base, "--aug=noaug", "--augpipe=bg"))
    with pytest.raises(
        ValueError, match=r"^--mbstd-group: the minibatch-stddev group \(4\) must divide batch_gpu \(6\)"
    ):
        train_cli.run(parse(*base, "--batch=6"))
    assert train_cli.run(parse(*base, "--aug=fixed", "--p=0.2", "--augpipe=bgcfnc")) == 0


def test_every_spec_option_is_a_train_flag(dataset, tmp_path, capsys):
    """`train` accepts what a spec accepts (z_dim, w_dim, ...): both come from the one table."""
    args = parse(f"--outdir={tmp_path}", f"--data={dataset}", "--dry-run", "--z-dim=64", "--w-dim=32",
                 "--style-mixing=0.5", "--pl-weight=0", "--d-reg-interval=none", "--ema=2",
                 "--ada-kimg=50")  # fmt: skip
    assert train_cli.run(args) == 0
    options = json.loads(capsys.readouterr().out.rsplit("}", 1)[0] + "}")
    assert (options["network"]["z_dim"], options["network"]["w_dim"]) == (64, 32)
    assert options["loss"]["style_mixing_prob"] == 0.5 and options["loss"]["d_reg_interval"] is None
    assert options["loop"]["ema_kimg"] == 2 and options["ada"]["kimg"] == 50


def test_gpus_answers_with_the_torchrun_command(dataset, tmp_path, monkeypatch):
    for name in ("WORLD_SIZE", "RANK"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr("sys.argv", ["stylegan", "train", "--outdir=o", f"--data={dataset}", "--gpus", "2", "--kimg=1"])
    with pytest.raises(
        ValueError, match="torchrun --standalone --nproc_per_node=2 -m stylegan_core.cli train"
    ) as caught:
        train_cli.run(parse("--outdir=o", f"--data={dataset}", "--gpus", "2", "--kimg=1"))
    assert "--gpus" not in str(caught.value).split("run: ")[1] and "--kimg=1" in str(caught.value)
    monkeypatch.setenv("WORLD_SIZE", "4")
    with pytest.raises(ValueError, match="disagrees with torchrun's 4 processes"):
        train_cli.run(parse("--outdir=o", f"--data={dataset}", "--gpus=2"))


@pytest.mark.parametrize("value", ["0", "-1", "70000", "two", "1e30"])
def test_gpus_is_a_bounded_whole_number_checked_at_parse(value, capsys):
    # Before: a plain int: 0 and -1 passed the parser (refused only after the dataset was opened) and 70000 was
    # answered with a torchrun command for 70000 processes.
    with pytest.raises(SystemExit) as exit_info:
        parse("--outdir=o", "--data=d.zip", f"--gpus={value}")
    assert exit_info.value.code == 2 and "--gpus" in capsys.readouterr().err


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
