"""Snapshot files: the one Snapshot type, atomic save, strict weights_only load with one-line errors, names."""

from __future__ import annotations

import dataclasses
import errno
import zipfile

import pytest
import torch

from stylegan_core.errors import InputError
from stylegan_core.io.snapshot import (
    SNAPSHOT_FORMAT,
    DatasetInfo,
    Progress,
    Snapshot,
    find_latest_snapshot,
    load_snapshot,
    save_snapshot,
    snapshot_label,
    snapshot_path,
)
from stylegan_core.networks import Discriminator, Generator

G_KWARGS = dict(z_dim=4, c_dim=0, w_dim=4, img_resolution=8, img_channels=3, mapping_kwargs={"num_layers": 1},
                synthesis_kwargs={"channel_base": 32, "channel_max": 4})  # fmt: skip
D_KWARGS = dict(c_dim=0, img_resolution=8, img_channels=3, channel_base=32, channel_max=4)


@pytest.fixture(scope="module")
def full() -> Snapshot:
    G, D = Generator(**G_KWARGS), Discriminator(**D_KWARGS)
    opt = torch.optim.Adam(G.parameters()).state_dict()
    rng = {"torch": torch.get_rng_state(), "numpy": {"kind": "MT19937"}, "python": [3, [1, 2], None]}
    return Snapshot(
        G_kwargs=G.init_kwargs, D_kwargs=D.init_kwargs, G=G.state_dict(), D=D.state_dict(), G_ema=G.state_dict(),
        options={"loop": {}}, progress=Progress(8, 1, 2), G_opt=opt, D_opt=opt, augment_pipe="bgc", augment_p=0.25,
        ada=({"sign_sum": 1.0, "sign_count": 2.0},), pl_mean=torch.zeros(1), rng=(rng,), world_size=1,
        dataset=DatasetInfo("abc", 8, 3, 0),
    )  # fmt: skip


def _write(path, state):
    torch.save(state, path)
    return path


def test_save_and_load_round_trip_without_leftovers(tmp_path, full):
    path = save_snapshot(tmp_path / "snapshots" / "network-snapshot-000001.pt", full)
    loaded = load_snapshot(path)
    assert loaded.progress == Progress(8, 1, 2) and loaded.dataset == full.dataset and loaded.augment_p == 0.25
    assert all(torch.equal(loaded.G[key], value) for key, value in full.G.items()) and not loaded.weights_only
    assert loaded.rng[0]["python"] == [3, [1, 2], None] and loaded.ada == full.ada
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # the temporary file was renamed away
    with pytest.raises(dataclasses.FrozenInstanceError):
        loaded.world_size = 2


def test_failed_save_keeps_the_previous_file(tmp_path, full):
    path = save_snapshot(tmp_path / "s.pt", full)

    class Unpicklable:
        def __reduce__(self):
            raise RuntimeError("cannot pickle this")

    with pytest.raises(RuntimeError, match="cannot pickle"):
        save_snapshot(path, dataclasses.replace(full, options={"bad": Unpicklable()}))
    assert load_snapshot(path).progress == Progress(8, 1, 2)
    assert [p.name for p in tmp_path.iterdir()] == ["s.pt"]


# ENOSPC as Python's file layer raises it, and as torch's zip writer reports it (a RuntimeError).
DISK_FULL = {
    "oserror": (OSError(errno.ENOSPC, "No space left on device"), "No space left on device"),
    "torch": (RuntimeError("[enforce fail at inline_container.cc:778] . PytorchStreamWriter failed writing file "
                           "data/3: file write failed"), "PytorchStreamWriter failed writing file"),
}


@pytest.mark.parametrize("kind", sorted(DISK_FULL))
def test_disk_full_names_the_file_and_keeps_the_previous_snapshot(tmp_path, full, monkeypatch, kind):
    path = save_snapshot(tmp_path / "s.pt", full)
    before = path.read_bytes()
    error, reason = DISK_FULL[kind]

    def no_space(*args, **kwargs):
        raise error

    monkeypatch.setattr(torch, "save", no_space)
    with pytest.raises(OSError, match=rf"cannot write snapshot .*s\.pt: .*{reason}.* \(the previous"):
        save_snapshot(path, dataclasses.replace(full, progress=Progress(16, 2, 4)))
    assert path.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["s.pt"]


def test_code_in_a_snapshot_is_refused(tmp_path, full):
    path = _write(tmp_path / "evil.pt", {**full.to_dict(), "extra": zipfile.ZipInfo("x")})  # needs full unpickling
    with pytest.raises(ValueError, match="evil.pt: cannot read snapshot"):
        load_snapshot(path)


def test_other_files_are_clear_errors(tmp_path, full):
    with pytest.raises(FileNotFoundError, match="missing.pt does not exist"):
        load_snapshot(tmp_path / "missing.pt")
    (tmp_path / "text.pt").write_text("hello")
    with pytest.raises(ValueError, match="not a stylegan_core snapshot"):
        load_snapshot(tmp_path / "text.pt")
    with pytest.raises(ValueError, match="format is None"):
        load_snapshot(_write(tmp_path / "plain.pt", {"weights": torch.zeros(1)}))
    with pytest.raises(ValueError, match="missing"):
        load_snapshot(_write(tmp_path / "partial.pt", {"format": SNAPSHOT_FORMAT}))


def test_truncated_snapshot_says_truncated_or_corrupt(tmp_path, full):
    data = save_snapshot(tmp_path / "s.pt", full).read_bytes()
    for cut in (len(data) // 2, 100, len(data) - 10):
        (tmp_path / "cut.pt").write_bytes(data[:cut])
        with pytest.raises(InputError, match=r"cut\.pt: truncated or corrupt snapshot"):
            load_snapshot(tmp_path / "cut.pt")


# Each malformed-but-well-formed state (the examples) and the key the one-line error must name.
MALFORMED = {
    "odd_G_kwargs": ({"G_kwargs": [1, 2]}, "G_kwargs is a list"),
    "G_kwargs_missing_z_dim": ({"G_kwargs": {"c_dim": 0}}, "G_kwargs lacks"),
    "huge_channel_base": ({"G_kwargs": {**G_KWARGS, "synthesis_kwargs": {"channel_base": 1 << 40}}}, "channel_base"),
    "huge_resolution": ({"D_kwargs": {**D_KWARGS, "img_resolution": 1 << 30}}, "img_resolution"),
    "missing_G_opt": ({"G_opt": None}, "missing ['G_opt']"),
    "missing_rng": ({"rng": None}, "missing ['rng']"),
    "nan_pl_mean": ({"pl_mean": torch.tensor([float("nan")])}, "pl_mean must be 1 finite"),
    "pl_mean_wrong_shape": ({"pl_mean": torch.zeros(3)}, "pl_mean must be 1 finite"),
    "pl_mean_string": ({"pl_mean": "x"}, "pl_mean"),
    "progress_negative": ({"progress": {"cur_nimg": -1, "cur_tick": 0, "batch_idx": 0}}, "progress.cur_nimg"),
    "progress_float": ({"progress": {"cur_nimg": 1.5, "cur_tick": 0, "batch_idx": 0}}, "progress.cur_nimg"),
    "tensor_in_place_of_dict": ({"G": torch.zeros(2)}, "snapshot G is a Tensor"),
    "non_tensor_weight": ({"G": {"w": 3}}, "entry 'w' is not a tensor"),
    "augment_p_out_of_range": ({"augment": {"pipe": "bgc", "p": torch.tensor(7.0), "ada": None}}, "augment.p"),
    "world_size_zero": ({"world_size": 0}, "world_size"),
    "rng_wrong_length": ({"rng": []}, "rng must hold one"),
    "bad_optimizer": ({"D_opt": {"state": 1}}, "D_opt is not an optimiser state"),
    "dataset_hash_int": ({"dataset": {"content_hash": 1, "resolution": 8, "num_channels": 3, "label_dim": 0}},
                         "content_hash"),
    # A 256 px network's kwargs over the tiny weights: refused before a 19 M-value network is built.
    "kwargs_larger_than_weights": ({"G_kwargs": {**G_KWARGS, "img_resolution": 256, "synthesis_kwargs": {
        "channel_base": 16384, "channel_max": 512}}}, "refusing to build it"),  # fmt: skip
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_snapshots_are_one_line_input_errors(tmp_path, full, case):
    changes, message = MALFORMED[case]
    state = {**full.to_dict(), **changes}
    state = {key: value for key, value in state.items() if value is not None}
    path = _write(tmp_path / f"{case}.pt", state)
    with pytest.raises(InputError) as error:
        load_snapshot(path)
    text = str(error.value)
    assert message in text and str(path) in text and "\n" not in text


def test_names_and_latest_snapshot(tmp_path, full):
    assert snapshot_label(25_000_000, 4) == "025000"
    assert snapshot_label(1_052, 0.02) == "000001.052"
    assert snapshot_path(tmp_path, 8_000, 4).name == "network-snapshot-000008.pt"
    assert find_latest_snapshot(tmp_path) is None
    for nimg in (4, 1_000, 996, 1_004):
        save_snapshot(snapshot_path(tmp_path, nimg, 0.5), full)
    (tmp_path / "snapshots" / "network-snapshot-999999.pt.tmp").write_text("")
    assert find_latest_snapshot(tmp_path).name == "network-snapshot-000001.004.pt"


@pytest.mark.skipif(not __import__("os").path.exists("/dev/full"), reason="needs /dev/full")
def test_disk_full_for_real_through_dev_full(tmp_path, full, monkeypatch):
    import builtins

    from stylegan_core.io import atomic

    path = save_snapshot(tmp_path / "s.pt", full)
    before = path.read_bytes()

    def open_full(file, mode="r", *args, **kwargs):  # the temporary file lands on a device that is always full
        target = "/dev/full" if str(file).endswith(".tmp") else file
        return builtins.open(target, mode, *args, **kwargs)

    monkeypatch.setattr(atomic, "open", open_full, raising=False)
    with pytest.raises(OSError, match=r"cannot write snapshot .*s\.pt: No space left on device"):
        save_snapshot(path, dataclasses.replace(full, progress=Progress(16, 2, 4)))
    assert path.read_bytes() == before
