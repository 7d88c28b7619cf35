"""Sharded PPL and PR: two gloo ranks give the per-sample path lengths and the PR values of one process."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from metrics_support import random_images, tiny_generator, write_zip
from numerics import assert_close_to_scale
from vgg_standin import save_standin_vgg16

from stylegan_core.metric_names import parse_metric_name
from stylegan_core.metrics import compute_metrics
from stylegan_core.metrics.ppl import path_lengths
from stylegan_core.metrics.sampling import Shard
from stylegan_core.metrics.vgg import load_vgg16

WORLD_SIZE = 2
PPL = parse_metric_name("ppl_7_zfull")  # 7 samples: 4 batches of 2, the last one cut


def _no_labels(rng: np.random.Generator, count: int) -> np.ndarray:
    return np.zeros([count, 0], dtype=np.float32)


def _evaluate(folder: Path, shard: Shard) -> tuple[np.ndarray, dict[str, float]]:
    vgg16 = load_vgg16(folder / "vgg16.pt")
    lengths = path_lengths(tiny_generator(), vgg16, PPL, _no_labels, seed=3, shard=shard)
    cache = folder / f"cache{shard.rank}"
    pr = compute_metrics(tiny_generator(), folder / "data.zip", ["pr93_full"], cache_dir=cache, batch_size=4,
                         vgg16=vgg16, rank=shard.rank, world_size=shard.world_size, progress=False)  # fmt: skip
    return lengths, dict(pr["pr93_full"])


def _worker(rank: int, folder: Path) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{folder / 'rendezvous'}", rank=rank, world_size=WORLD_SIZE)
    try:
        lengths, pr = _evaluate(folder, Shard(rank, WORLD_SIZE))
        np.savez(folder / f"rank{rank}.npz", lengths=lengths, **pr)
    finally:
        dist.destroy_process_group()


@pytest.mark.usefixtures("one_thread")  # as the workers: PPL's 1e-4 finite difference magnifies thread-count rounding
def test_two_ranks_match_one_process(tmp_path: Path) -> None:
    write_zip(tmp_path / "data.zip", random_images(11, resolution=16))
    save_standin_vgg16(tmp_path / "vgg16.pt", seed=0)
    mp.spawn(_worker, args=(tmp_path,), nprocs=WORLD_SIZE, join=True)
    lengths, pr = _evaluate(tmp_path, Shard())
    assert lengths.shape == (7,) and np.all(lengths > 0)
    for rank in range(WORLD_SIZE):
        with np.load(tmp_path / f"rank{rank}.npz") as result:
            # The same batches of the same size, on one thread each, on every side.
            assert_close_to_scale(result["lengths"], lengths, rtol=1e-5, what=f"rank {rank} path lengths")
            for key, value in pr.items():
                assert float(result[key]) == value, (rank, key)
