"""The training loop on a tiny CPU config: files, golden first losses, exact resume, divergence, abort, transfer."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import PIL.Image
import pytest
import torch
from training_support import replace_loop, tiny_options, write_tiny_dataset

from stylegan_core.config import LoopConfig, TrainOptions
from stylegan_core.io.snapshot import Progress, find_latest_snapshot, load_generator, load_snapshot
from stylegan_core.presets import resolve_options
from stylegan_core.training import TrainCallbacks, TrainingDivergedError, train
from stylegan_core.training.loop import ema_beta
from stylegan_core.training.loss import StyleGAN2Loss
from stylegan_core.training.report import SnapshotGrid
from stylegan_core.training.setup import lazy_regularization

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return write_tiny_dataset(tmp_path_factory.mktemp("data") / "tiny.zip")


@pytest.fixture
def quick_grids(monkeypatch):
    """Skip rendering the 1024-image fakes grids (seconds each on a CPU) in tests that do not look at them."""
    written = []
    monkeypatch.setattr(SnapshotGrid, "write_fakes", lambda self, G_ema, path, batch: written.append(path))
    return written


# First-tick (one iteration) loss means of the tiny conditional config with --aug=noaug, recorded from a first run.
GOLDEN_FIRST_TICK = {
    "Loss/G/loss": 0.9369660019874573,
    "Loss/D/loss": 1.465615600347519,
    "Loss/r1_penalty": 0.0064077257993631065,
    "Loss/pl_penalty": 0.8263996839523315,
}


def _stats_lines(run_dir):
    return [json.loads(line) for line in (run_dir / "stats.jsonl").read_text().splitlines()]


def test_tiny_run_writes_nvidia_files_and_pins_first_losses(dataset, tmp_path):
    options = tiny_options(dataset, cond=True, aug="noaug", kimg=0.024, tick=0.008, snap=2)
    ticks, snapshots = [], []
    result = train(options, tmp_path, TrainCallbacks(on_tick=ticks.append, on_snapshot=snapshots.append))
    names = {path.name for path in tmp_path.iterdir()}
    assert {"training_options.json", "log.txt", "stats.jsonl", "reals.png", "fakes_init.png"} <= names
    assert TrainOptions.from_dict(json.loads((tmp_path / "training_options.json").read_text())) == options
    # Ticks end after iteration 1 (tick 0), then every 8 images: kimg 0.004, 0.012, 0.020, 0.024 (done).
    assert [tick.cur_nimg for tick in ticks] == [4, 12, 20, 24]
    assert ticks[-1].done and not ticks[0].done
    assert [info.cur_nimg for info in snapshots] == [4, 20, 24]  # snap=2: ticks 0 and 2, plus the end
    assert all(info.snapshot_path.is_file() and info.image_path.is_file() for info in snapshots)
    assert find_latest_snapshot(tmp_path) == snapshots[-1].snapshot_path == result.last_snapshot
    lines = _stats_lines(tmp_path)
    assert len(lines) == 4
    for line in lines:
        losses = {name: value["mean"] for name, value in line.items() if name.startswith("Loss/")}
        assert losses and all(math.isfinite(value) for value in losses.values())
    reals = np.asarray(PIL.Image.open(tmp_path / "reals.png"))
    assert reals.shape == (32 * 16, 32 * 16, 3)  # NVIDIA's grid for 16 px images: 32 x 32
    log = (tmp_path / "log.txt").read_text()
    assert (
        sum(line.startswith("tick ") for line in log.splitlines()) == 4 and "sec/kimg" in log and "augment 0.000" in log
    )
    first = {name: lines[0][name]["mean"] for name in GOLDEN_FIRST_TICK}
    # Not bit-exact across CPUs (seeded init and kernels depend on the ISA): each loss moved <= 1.5e-6 relative over
    # ATEN_CPU_CAPABILITY default/avx2/avx512 x 1/4 threads (benchmarks/cpu_spread.py, family "training"). Each is
    # a mean of positive terms (no cancellation), so a relative bound ~70x above that is a scale-aware one.
    assert first == pytest.approx(GOLDEN_FIRST_TICK, rel=1e-4)


def test_resume_continues_bit_exactly(dataset, tmp_path, quick_grids):
    # ADA from p = 0.5 with a fast controller (p moves by 0.16 every 3 iterations), so the augment pipe is busy
    # and the half-way snapshot (iteration 4) holds a partly filled sign accumulator.
    options = tiny_options(dataset, cond=True, kimg=0.032, tick=0.012, snap="none", p=0.5, ada_kimg=0.1,
                           ada_interval=3)  # fmt: skip
    straight = train(options, tmp_path / "straight")
    first_half = train(replace_loop(options, total_kimg=0.016), tmp_path / "half")
    resumed = train(replace_loop(options, resume=str(first_half.last_snapshot)), tmp_path / "resumed")
    a, b = load_snapshot(straight.last_snapshot), load_snapshot(resumed.last_snapshot)
    assert a.progress == b.progress == Progress(cur_nimg=32, cur_tick=a.progress.cur_tick, batch_idx=8)
    # Bit-exact: both runs use the same kernels in the same order (one process, one_thread fixture, same ISA).
    for key in ("G", "D", "G_ema"):
        different = [name for name in getattr(a, key) if not torch.equal(getattr(a, key)[name], getattr(b, key)[name])]
        assert not different, f"{key} differs after resume: {different[:5]}"
    for key in ("G_opt", "D_opt"):
        for index, state in getattr(a, key)["state"].items():
            assert torch.equal(state["exp_avg_sq"], getattr(b, key)["state"][index]["exp_avg_sq"])
    assert torch.equal(a.pl_mean, b.pl_mean)
    assert a.augment_p != 0.5 and a.augment_p == b.augment_p
    assert a.ada == b.ada
    for line in _stats_lines(tmp_path / "straight"):  # the augmented run stays finite
        assert all(math.isfinite(value["mean"]) for name, value in line.items() if name.startswith("Loss/"))
    half = load_snapshot(first_half.last_snapshot)
    assert half.ada[0]["sign_count"] > 0 and half.augment_p != 0.5
    log = (tmp_path / "resumed" / "log.txt").read_text()
    assert "Continuing the training" in log and "not exact" not in log


def test_nonfinite_gradient_stops_and_keeps_last_good_snapshot(dataset, tmp_path, quick_grids, monkeypatch):
    original = StyleGAN2Loss.accumulate_gradients
    calls = {"Dmain": 0}

    def poisoned(self, phase, real_img, *args, **kwargs):
        if phase == "Dmain":
            calls["Dmain"] += 1
            if calls["Dmain"] == 3:  # the third iteration, inside tick 1
                real_img = real_img * float("nan")
        return original(self, phase, real_img, *args, **kwargs)

    monkeypatch.setattr(StyleGAN2Loss, "accumulate_gradients", poisoned)
    options = tiny_options(dataset, aug="noaug", kimg=0.032, tick=0.008, snap=1)
    with pytest.raises(TrainingDivergedError, match=r"phase Dmain at iteration 2.*tick 1") as error:
        train(options, tmp_path)
    good = tmp_path / "snapshots" / "network-snapshot-000000.004.pt"
    assert str(good) in str(error.value)
    assert find_latest_snapshot(tmp_path) == good  # nothing was written after the bad step
    state = load_snapshot(good)
    assert all(torch.isfinite(tensor).all() for tensor in state.D.values())
    assert "training diverged" in (tmp_path / "log.txt").read_text()


def test_abort_writes_a_final_snapshot(dataset, tmp_path, quick_grids):
    options = tiny_options(dataset, aug="noaug", kimg=1, tick=0.008, snap="none")
    ticks = []
    callbacks = TrainCallbacks(on_tick=ticks.append, should_abort=lambda: len(ticks) >= 2)
    result = train(options, tmp_path, callbacks)
    # Polled at the end of each tick: the third tick (kimg 0.020) sees two earlier ticks and stops there.
    assert result.aborted and result.cur_nimg == 20 and len(ticks) == 3 and ticks[-1].done
    assert result.last_snapshot == find_latest_snapshot(tmp_path)
    assert load_snapshot(result.last_snapshot).progress.cur_nimg == 20


def test_abort_skips_the_metrics_of_the_final_snapshot_and_says_how_to_run_them(dataset, tmp_path, quick_grids,
                                                                                 monkeypatch):  # fmt: skip
    calls = _fake_metrics(monkeypatch)
    options = tiny_options(dataset, aug="noaug", kimg=1, tick=0.008, snap="none", metrics="fid200_full")
    ticks = []
    result = train(options, tmp_path, TrainCallbacks(on_tick=ticks.append, should_abort=lambda: len(ticks) >= 1))
    assert result.aborted and not calls and result.metrics == {}
    log = (tmp_path / "log.txt").read_text()
    assert f"stylegan metrics --network {result.last_snapshot} --data {dataset} --metrics fid200_full" in log


def test_abort_during_a_snapshots_metrics_stops_after_that_snapshot(dataset, tmp_path, quick_grids, monkeypatch):
    requested = []
    calls = _fake_metrics(monkeypatch, during=lambda: requested.append(True))  # Ctrl-C while FID runs
    options = tiny_options(dataset, aug="noaug", kimg=1, tick=0.008, snap=1, metrics="fid200_full")
    ticks = []
    result = train(options, tmp_path, TrainCallbacks(on_tick=ticks.append, should_abort=lambda: bool(requested)))
    assert result.aborted and len(ticks) == 1 and len(calls) == 1  # no second tick, no second snapshot
    assert result.last_snapshot == find_latest_snapshot(tmp_path) and result.cur_nimg == 4  # tick 0: one batch
    assert "it is the last one" in (tmp_path / "log.txt").read_text()


def _fake_metrics(monkeypatch, during=lambda: None) -> list:
    import stylegan_core.metrics as metrics

    calls = []

    def fake_compute_metrics(G, dataset_path, names, device, **kwargs):
        calls.append(names)
        during()
        return {name: {name: 12.5} for name in names}

    monkeypatch.setattr(metrics, "compute_metrics", fake_compute_metrics)
    return calls


def test_snapshot_generator_matches_g_ema(dataset, tmp_path, quick_grids):
    options = tiny_options(dataset, cond=True, aug="noaug", kimg=0.008, tick=0.008, snap="none")
    result = train(options, tmp_path)
    state = load_snapshot(result.last_snapshot)
    G = load_generator(result.last_snapshot)
    assert not G.training and not any(p.requires_grad for p in G.parameters())
    assert all(torch.equal(G.state_dict()[name], tensor) for name, tensor in state.G_ema.items())
    assert state.dataset.label_dim == 3 and state.dataset.resolution == 16
    assert TrainOptions.from_dict(state.options) == options and len(state.rng) == 1
    z, c = torch.randn(2, G.z_dim), torch.eye(3)[:2]
    assert G(z, c, noise_mode="const").shape == (2, 3, 16, 16)


def test_transfer_copies_weights_and_resets_progress(dataset, tmp_path, quick_grids):
    source = train(tiny_options(dataset, aug="noaug", kimg=0.008, tick=0.008, snap="none"), tmp_path / "source")
    other_data = write_tiny_dataset(tmp_path / "other.zip", seed=5)
    options = tiny_options(other_data, aug="noaug", kimg=0.004, tick=0.004, snap="none", freezed=2,
                           resume=str(source.last_snapshot))  # fmt: skip
    assert options.ada.kimg == 100 and options.loop.ema_rampup is None  # NVIDIA's resume rules
    result = train(options, tmp_path / "tuned")
    assert result.cur_nimg == 4  # progress restarted
    before, after = load_snapshot(source.last_snapshot), load_snapshot(result.last_snapshot)
    frozen = [name for name in after.D if name.startswith("b16.fromrgb") or name.startswith("b16.conv0")]
    assert frozen and all(torch.equal(before.D[name], after.D[name]) for name in frozen)
    trained = "b8.conv1.weight"
    assert not torch.equal(before.D[trained], after.D[trained])
    assert "Fine-tuning from the weights" in (tmp_path / "tuned" / "log.txt").read_text()


def test_float16_snapshot_continues_on_a_cpu_in_float32(dataset, tmp_path, quick_grids):
    # A GPU run's snapshot has float16 blocks; resumed on a CPU (float32 by policy) it is the same network, so the
    # training continues (progress kept) and the log names the precision change instead of restarting as a fine-tune.
    gpu_like = tiny_options(dataset, aug="noaug", kimg=0.004, tick=0.004, snap="none", fp32=False, num_fp16_res=1,
                            fp16_on_cpu=True)  # fmt: skip
    assert gpu_like.network.num_fp16_res == 1
    source = train(gpu_like, tmp_path / "gpu")
    _check_float32_inference_on_cpu(source.last_snapshot)
    options = tiny_options(dataset, aug="noaug", kimg=0.008, tick=0.004, snap="none", fp32=False, num_fp16_res=1,
                           resume=str(source.last_snapshot))  # fmt: skip
    result = train(options, tmp_path / "cpu")
    assert result.cur_nimg == 8  # continued from 4, not restarted
    log = (tmp_path / "cpu" / "log.txt").read_text()
    assert "Continuing the training" in log and "network.num_fp16_res: 1 -> 0" in log


def _check_float32_inference_on_cpu(snapshot_path) -> None:
    # load_generator on a CPU runs the float16 block in float32: exactly the force_fp32 path of the same weights.
    from stylegan_core.networks import Generator

    snapshot = load_snapshot(snapshot_path)
    as_trained = Generator(**snapshot.G_kwargs).eval()
    as_trained.load_state_dict(snapshot.G_ema)
    loaded = load_generator(snapshot_path)
    assert loaded.init_kwargs["synthesis_kwargs"]["num_fp16_res"] == 1  # what it is, unchanged
    ws = as_trained.mapping(torch.randn(2, as_trained.z_dim), torch.eye(3)[:2])
    float32 = as_trained.synthesis(ws, noise_mode="const", force_fp32=True)
    float16 = as_trained.synthesis(ws, noise_mode="const")
    assert torch.equal(loaded.synthesis(ws, noise_mode="const"), float32)  # same kernels, same order
    assert not torch.equal(float16, float32)


def test_transfer_with_different_shapes_lists_the_tensors(dataset, tmp_path, quick_grids):
    source = train(tiny_options(dataset, aug="noaug", kimg=0.004, tick=0.004, snap="none"), tmp_path / "source")
    options = tiny_options(dataset, aug="noaug", kimg=0.004, cmax=16, resume=str(source.last_snapshot))
    with pytest.raises(ValueError, match=r"mismatched tensors:(.|\n)*G.synthesis.b4.const: source \[32, 4, 4\]"):
        train(options, tmp_path / "bad")


def test_resume_of_a_finished_run_returns_at_once(dataset, tmp_path, quick_grids):
    options = tiny_options(dataset, aug="noaug", kimg=0.004, tick=0.004, snap="none")
    first = train(options, tmp_path / "a")
    again = train(replace_loop(options, resume=str(first.last_snapshot)), tmp_path / "b")
    assert again.cur_nimg == first.cur_nimg and again.last_snapshot == first.last_snapshot


def test_not_a_snapshot_is_a_clear_error(dataset, tmp_path, quick_grids):
    bogus = tmp_path / "bogus.pt"
    bogus.write_bytes(b"definitely not a snapshot")
    options = tiny_options(dataset, aug="noaug", resume=str(bogus))
    with pytest.raises(ValueError, match="bogus.pt"):
        train(options, tmp_path / "run")


def test_batch_geometry_errors_are_clear(dataset):
    with pytest.raises(ValueError, match=r"batch \(6\) must equal batch_gpu \(4\)"):
        tiny_options(dataset, batch=6, batch_gpu=4)
    with pytest.raises(ValueError, match=r"minibatch-stddev group \(3\) must divide batch_gpu \(4\)"):
        tiny_options(dataset, mbstd_group=3)


def test_ema_beta_half_life_and_rampup():
    loop = LoopConfig(ema_kimg=10, ema_rampup=None)
    # After ema_kimg thousand images the old average has weight one half.
    assert ema_beta(32, 0, loop) ** (10_000 / 32) == pytest.approx(0.5)
    ramped = dataclasses.replace(loop, ema_rampup=0.05)
    assert ema_beta(32, 1000, ramped) == pytest.approx(0.5 ** (32 / 50))  # min(10000, 1000 * 0.05) = 50 images
    assert ema_beta(32, 10**7, ramped) == ema_beta(32, 0, loop)
    assert ema_beta(32, 0, ramped) == 0.0  # at the start G_ema simply copies G


def test_lazy_regularization_adjusts_lr_and_betas():
    optimizer = resolve_options("stylegan2", 16).optimizer
    lr, betas = lazy_regularization(optimizer, 0.002, 16)
    assert lr == pytest.approx(0.002 * 16 / 17)
    assert betas == pytest.approx((0.0, 0.99 ** (16 / 17)))
    assert lazy_regularization(optimizer, 0.002, None) == (0.002, (0.0, 0.99))


def test_worker_continues_in_its_run_directory(dataset, tmp_path, quick_grids, capsys):
    from stylegan_core.training.worker import main, run_training

    options = tiny_options(dataset, aug="noaug", kimg=0.004, tick=0.004, snap="none")
    assert run_training(options, tmp_path).cur_nimg == 4
    options_file = tmp_path / "longer.json"
    options_file.write_text(replace_loop(options, total_kimg=0.008).to_json())
    assert main(["--options", str(options_file), "--run-dir", str(tmp_path)]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["kimg"] == 0.008
    log = (tmp_path / "log.txt").read_text()
    assert "Continuing the training" in log and "total_kimg" not in log  # run length is not a trajectory change
    assert find_latest_snapshot(tmp_path).name == "network-snapshot-000000.008.pt"


def test_metrics_are_evaluated_at_snapshots(dataset, tmp_path, quick_grids, monkeypatch):
    import stylegan_core.metrics as metrics

    calls = []

    def fake_compute_metrics(G, dataset_path, names, device, **kwargs):
        calls.append((names, kwargs))
        return {name: {name: 12.5} for name in names}

    monkeypatch.setattr(metrics, "compute_metrics", fake_compute_metrics)
    options = tiny_options(dataset, aug="noaug", kimg=0.004, tick=0.004, snap="none", metrics="fid200_full")
    snapshots = []
    result = train(options, tmp_path, TrainCallbacks(on_snapshot=snapshots.append))
    ((names, kwargs),) = calls
    assert names == ["fid200_full"] and kwargs["run_dir"] == tmp_path and kwargs["world_size"] == 1
    assert kwargs["snapshot_path"] == result.last_snapshot
    assert snapshots[-1].metrics == result.metrics == {"fid200_full": {"fid200_full": 12.5}}
    with pytest.raises(ValueError, match="unknown metric 'fid_everything'"):
        train(tiny_options(dataset, metrics="fid_everything"), tmp_path / "bad")
