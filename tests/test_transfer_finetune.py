"""Fine-tuning from an NVIDIA pickle: Freeze-D keeps its layers, weights carry over, mismatches are listed."""

from __future__ import annotations

import argparse

import pytest
import torch
from training_support import tiny_options, write_tiny_dataset
from transfer_support import perturbed, write_nvidia_pickle

from stylegan_core.io.nvidia_pickle import load_nvidia_pickle
from stylegan_core.io.snapshot import load_snapshot
from stylegan_core.io.transfer import check_transfer_compatible
from stylegan_core.networks import build_discriminator, build_generator
from stylegan_core.training import train
from stylegan_core.training.state import _load_resume_state, can_continue

FREEZED = 2  # NVIDIA counts D layers from the highest resolution: b16.fromrgb (0), b16.conv0 (1), b16.conv1 (2), ...
FROZEN_PREFIXES = ("b16.fromrgb.", "b16.conv0.")
# No augmentation (Freeze-D does not need it) and 3 iterations of 4 images in 3 ticks, one snapshot at the end.
RUN = dict(aug="noaug", kimg=0.012, tick=0.004, snap=1000)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return write_tiny_dataset(tmp_path_factory.mktemp("data") / "tiny.zip")


def _source_networks(dataset, img_channels: int = 3, resolution: int = 16) -> dict[str, torch.nn.Module]:
    # NVIDIA source networks as its train.py would have built them (no Freeze-D), with non-initial weights.
    net = tiny_options(dataset).network
    G = perturbed(build_generator(net, resolution, img_channels, 0), seed=11)
    D = perturbed(build_discriminator(net, resolution, img_channels, 0), seed=12)
    return {"G": G, "D": D, "G_ema": perturbed(G, seed=13, scale=0.05)}


def test_finetune_with_freeze_d_keeps_frozen_layers(tmp_path, dataset):
    source = _source_networks(dataset)
    pickle_path = write_nvidia_pickle(tmp_path / "source.pkl", source)
    options = tiny_options(dataset, resume=str(pickle_path), freezed=FREEZED, **RUN)
    assert options.ada.kimg == 100  # ADA reacts faster when resuming, as NVIDIA's train.py sets
    result = train(options, tmp_path / "run")
    assert result.ticks >= 3 and result.last_snapshot is not None
    final = load_snapshot(result.last_snapshot)
    source_D = source["D"].state_dict()
    frozen = [key for key in source_D if key.startswith(FROZEN_PREFIXES) and not key.endswith("resample_filter")]
    assert len(frozen) == 4
    changed_frozen = [key for key in frozen if not torch.equal(final.D[key], source_D[key])]
    assert not changed_frozen, f"Freeze-D layers changed: {changed_frozen}"
    trained = [key for key in source_D if key.endswith("weight") and key not in frozen]
    assert all(not torch.equal(final.D[key], source_D[key]) for key in trained)
    # G and G_ema started from the source: G moved a little, G_ema's weights (an EMA over ~1.25 kimg) stayed close;
    # its buffers (w_avg, noise) are copied from G at every step, as NVIDIA does.
    source_G = source["G"].state_dict()
    assert any(not torch.equal(final.G[key], source_G[key]) for key in source_G)
    weights = dict(source["G_ema"].named_parameters())
    drift = max((final.G_ema[key] - value).abs().max().item() for key, value in weights.items())
    assert drift < 0.05, f"G_ema drifted {drift} from the source: weights were not transferred"


def test_imported_snapshot_resumes_as_transfer(tmp_path, dataset):
    from stylegan_core.cli import import_nvidia

    source = _source_networks(dataset)
    pickle_path = write_nvidia_pickle(tmp_path / "source.pkl", source)
    output = tmp_path / "source.pt"
    import_nvidia.run(argparse.Namespace(source=pickle_path, output=output, overwrite=False))
    for path in (pickle_path, output):
        state = _load_resume_state(path)  # TRAIN's --resume hook
        assert not can_continue(state, state.G_kwargs, state.D_kwargs, "any dataset hash")
        for name, module in source.items():
            assert all(torch.equal(getattr(state, name)[key], value) for key, value in module.state_dict().items())


def test_channel_mismatch_lists_tensors(tmp_path, dataset):
    pickle_path = write_nvidia_pickle(tmp_path / "grey.pkl", _source_networks(dataset, img_channels=1))
    options = tiny_options(dataset, resume=str(pickle_path), **RUN)
    with pytest.raises(ValueError, match="mismatched tensors") as error:
        train(options, tmp_path / "run")
    message = str(error.value)
    assert "G.synthesis.b16.torgb.weight: source [1, 16, 1, 1], target [3, 16, 1, 1]" in message
    assert "D.b16.fromrgb.weight: source [16, 1, 1, 1], target [16, 3, 1, 1]" in message


def _targets(dataset, resolution: int, **overrides: object) -> dict[str, torch.nn.Module]:
    net = tiny_options(dataset, freezed=FREEZED, **overrides).network
    G = build_generator(net, resolution, 3, 0)
    return {"G": G, "D": build_discriminator(net, resolution, 3, 0), "G_ema": G}


@pytest.mark.parametrize(
    ("resolution", "img_channels", "expected"),
    [
        (32, 3, ["G img_resolution: source 32, target 16", "G.synthesis.b32.torgb.weight: only in the source",
                 "D.b16.fromrgb.weight: only in the target"]),
        (16, 1, ["G img_channels: source 1, target 3", "G.synthesis.b16.torgb.weight: source [1, 16, 1, 1], target "
                 "[3, 16, 1, 1]", "D.b16.fromrgb.weight: source [16, 1, 1, 1], target [16, 3, 1, 1]"]),
    ],
)  # fmt: skip
def test_geometry_mismatch_is_an_error_listing_tensors(tmp_path, dataset, resolution, img_channels, expected):
    path = write_nvidia_pickle(tmp_path / "source.pkl", _source_networks(dataset, img_channels, resolution))
    source = load_nvidia_pickle(path)
    snapshot = {name: source[name].state_dict() for name in ("G", "D", "G_ema")}
    snapshot.update(G_kwargs=source.G.init_kwargs, D_kwargs=source.D.init_kwargs)
    with pytest.raises(ValueError, match="mismatched tensors") as error:
        check_transfer_compatible(snapshot, _targets(dataset, resolution=16), "--resume source.pkl")
    for line in expected:
        assert line in str(error.value)


def test_compatible_transfer_reports_tensors_left_at_init(dataset):
    # A deeper mapping network in the target: its extra layer starts at init, everything else carries over.
    source = _source_networks(dataset)
    snapshot = {name: module.state_dict() for name, module in source.items()}
    snapshot.update(G_kwargs=source["G"].init_kwargs, D_kwargs=source["D"].init_kwargs)
    left = check_transfer_compatible(snapshot, _targets(dataset, resolution=16, map=3), "--resume source.pkl")
    assert left == [f"{name}.mapping.fc2.{kind}" for name in ("G", "G_ema") for kind in ("weight", "bias")]
