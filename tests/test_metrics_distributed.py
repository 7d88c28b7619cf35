"""Sharded metrics: two gloo ranks produce exactly the features (and FID) of one process."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from metrics_support import CountingDetector, random_images, tiny_generator, write_zip
from numerics import assert_close_to_scale

from stylegan_core.metrics import compute_metrics
from stylegan_core.metrics.sampling import Shard, dataset_features, generator_features

WORLD_SIZE = 2


def _no_labels(rng: np.random.Generator, count: int) -> np.ndarray:
    return np.zeros([count, 0], dtype=np.float32)


def _features(dataset_path: Path, shard: Shard) -> tuple[np.ndarray, np.ndarray]:
    from stylegan_core.data.dataset import ImageDataset

    detector = CountingDetector()
    dataset = ImageDataset(dataset_path)
    reals = dataset_features(dataset, detector, num_items=7, batch_size=2, shard=shard, progress=False)
    fakes = generator_features(tiny_generator(), detector, num_images=7, labels=_no_labels, batch_size=2, seed=5,
                               shard=shard, progress=False)  # fmt: skip
    return reals, fakes


def _worker(rank: int, folder: Path) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{folder / 'rendezvous'}", rank=rank, world_size=WORLD_SIZE)
    try:
        reals, fakes = _features(folder / "data.zip", Shard(rank, WORLD_SIZE))
        metric = compute_metrics(tiny_generator(), folder / "data.zip", ["fid7_full"], cache_dir=folder / "cache",
                                 batch_size=2, detector=CountingDetector(), rank=rank, world_size=WORLD_SIZE,
                                 progress=False)  # fmt: skip
        np.savez(folder / f"rank{rank}.npz", reals=reals, fakes=fakes, fid=metric["fid7_full"]["fid7_full"])
    finally:
        dist.destroy_process_group()


def test_two_ranks_match_one_process(tmp_path: Path) -> None:
    write_zip(tmp_path / "data.zip", random_images(9, resolution=16))
    mp.spawn(_worker, args=(tmp_path,), nprocs=WORLD_SIZE, join=True)
    reals, fakes = _features(tmp_path / "data.zip", Shard())
    single = compute_metrics(tiny_generator(), tmp_path / "data.zip", ["fid7_full"], cache_dir=tmp_path / "cache1",
                             batch_size=2, detector=CountingDetector(), progress=False)  # fmt: skip
    for rank in range(WORLD_SIZE):
        with np.load(tmp_path / f"rank{rank}.npz") as result:
            # Each rank runs other batches than the single process (and the generator's convolutions see another
            # batch size): float32 rounding at each array's scale, not element-wise.
            assert_close_to_scale(result["reals"], reals, rtol=1e-5, what=f"rank {rank} real features")
            assert_close_to_scale(result["fakes"], fakes, rtol=1e-5, what=f"rank {rank} generated features")
            assert_close_to_scale(result["fid"], single["fid7_full"]["fid7_full"], rtol=1e-5, what=f"rank {rank} FID")
