"""Data parallel training: the data and latent streams per rank, and a 2-process gloo run against a 1-process run."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import torch
import torch.multiprocessing as mp
from numerics import assert_close_to_scale
from training_support import tiny_options, write_tiny_dataset

from stylegan_core.config import TrainOptions
from stylegan_core.io.snapshot import load_snapshot
from stylegan_core.training.sampling import IterationBatchSampler, chunk_seed


def test_ranks_and_rounds_partition_the_global_batch():
    def global_batch(world_size, batch_gpu, iteration):
        ranks = [IterationBatchSampler(10, 3, 8, batch_gpu, rank, world_size).indices_for(iteration)
                 for rank in range(world_size)]  # fmt: skip
        return ranks

    single = global_batch(1, 4, 5)[0]  # one rank, two rounds of 4
    two = global_batch(2, 4, 5)  # two ranks, one round each
    assert two[0] == single[:4] and two[1] == single[4:]
    # Two ranks, two rounds of 2: global chunk = round * world + rank, so rank 0 holds chunks 0 and 2.
    rank0, rank1 = global_batch(2, 2, 5)
    assert rank0 == single[0:2] + single[4:6] and rank1 == single[2:4] + single[6:8]
    assert single != global_batch(1, 4, 6)[0]


def test_epochs_are_permutations_and_resume_mid_stream():
    sampler = IterationBatchSampler(6, 0, 4, 2)
    stream = iter(sampler)
    first = [next(stream) for _ in range(3)]  # 12 positions = two epochs of 6
    flat = [index for batch in first for index in batch]
    assert sorted(flat[:6]) == list(range(6)) and sorted(flat[6:]) == list(range(6))
    assert flat[:6] != flat[6:]  # each epoch is reshuffled
    resumed = iter(IterationBatchSampler(6, 0, 4, 2, start_iteration=2))
    assert next(resumed) == first[2]
    other_seed = IterationBatchSampler(6, 1, 4, 2)
    assert other_seed.indices_for(0) != sampler.indices_for(0)


def test_chunk_seeds_differ_per_component():
    seeds = {chunk_seed(0, 0, 0, 0), chunk_seed(1, 0, 0, 0), chunk_seed(0, 1, 0, 0), chunk_seed(0, 0, 1, 0),
             chunk_seed(0, 0, 0, 1)}  # fmt: skip
    assert len(seeds) == 5 and all(0 <= seed < 2**63 for seed in seeds)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _rank_main(rank: int, world_size: int, port: int, options: dict, run_dir: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world_size),
                      LOCAL_RANK=str(rank))  # fmt: skip
    torch.set_num_threads(1)
    from stylegan_core.training import init_distributed, train
    from stylegan_core.training.distributed import shutdown_distributed
    from stylegan_core.training.report import SnapshotGrid

    SnapshotGrid.write_fakes = lambda self, G_ema, path, batch: None  # grids are not under test here
    world = init_distributed(device=torch.device("cpu"), timeout_s=120)
    try:
        train(TrainOptions.from_dict(options), Path(run_dir), world=world)
    finally:
        shutdown_distributed(world)


def test_two_gloo_processes_match_one_process(tmp_path, one_thread, monkeypatch):
    from stylegan_core.training import train
    from stylegan_core.training.report import SnapshotGrid

    monkeypatch.setattr(SnapshotGrid, "write_fakes", lambda self, G_ema, path, batch: None)
    data = write_tiny_dataset(tmp_path / "tiny.zip")
    # Same global batch 8 in chunks of 4: one process runs two accumulation rounds, two processes one round each.
    # pl_weight 0: pl_mean is a per-rank running mean (as NVIDIA's), so it legitimately depends on the split.
    options = tiny_options(data, cond=True, aug="noaug", batch=8, batch_gpu=4, kimg=0.024, tick=0.024, snap="none",
                           pl_weight=0)  # fmt: skip
    single = train(options, tmp_path / "single")
    mp.spawn(_rank_main, args=(2, _free_port(), options.to_dict(), str(tmp_path / "double")), nprocs=2, join=True)
    a = load_snapshot(single.last_snapshot)
    b = load_snapshot(tmp_path / "double" / "snapshots" / single.last_snapshot.name)
    assert b.world_size == 2 and len(b.rng) == 2 and b.pl_mean.shape == (2,)
    assert a.progress == b.progress
    for key in ("G", "D", "G_ema"):
        for name, tensor in getattr(a, key).items():
            if name.endswith("w_avg"):
                continue  # updated from each rank's own half of the batch, as in NVIDIA's data parallel code
            # Each Adam step moves a weight by about lr = 2e-3, so differing data or latents would show far above
            # this tolerance (float rounding: ~1 ulp of the large lr-multiplier-0.01 mapping weights).
            # The gloo all-reduce sums gradients in another order than one process does: rounding at each tensor's
            # scale plus a floor far below one Adam step.
            assert_close_to_scale(getattr(b, key)[name], tensor, 1e-6, 2e-5, what=f"{key}.{name}")
    lines_a = (tmp_path / "single" / "stats.jsonl").read_text().splitlines()
    lines_b = (tmp_path / "double" / "stats.jsonl").read_text().splitlines()
    assert len(lines_a) == len(lines_b) == 2
    for line_a, line_b in zip(lines_a, lines_b, strict=True):
        stats_a, stats_b = json.loads(line_a), json.loads(line_b)
        assert "Loss/r1_penalty" in stats_a or "Loss/r1_penalty" not in stats_b
        for name in ("Loss/G/loss", "Loss/D/loss", "Loss/r1_penalty", "Loss/scores/real"):
            if name not in stats_a:
                continue
            assert stats_b[name]["num"] == stats_a[name]["num"]  # all-reduced over both ranks
            # A mean of per-sample values (scores can average to ~0): judged at the values' scale |mean| + std.
            scale = abs(stats_a[name]["mean"]) + stats_a[name]["std"]
            assert_close_to_scale(stats_b[name]["mean"], stats_a[name]["mean"], 1e-5, scale=scale, what=name)
