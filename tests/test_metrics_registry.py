"""Metric names, compute_metrics end to end (tiny Generator, cheap detector), sharding and the jsonl report."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from metrics_support import CountingDetector, random_images, tiny_generator, write_zip

from stylegan_core.metrics import (
    compute_metrics,
    feature_statistics,
    frechet_distance,
    kernel_distance,
    parse_metric_name,
    report_metric,
)
from stylegan_core.metrics.registry import format_time
from stylegan_core.metrics.sampling import dataset_label_sampler, generator_features, interleave_ranks, quantize_images


@pytest.mark.parametrize(
    ("name", "kind", "num_gen", "max_real"),
    [
        ("fid50k_full", "fid", 50_000, None),
        ("kid50k_full", "kid", 50_000, 1_000_000),
        ("fid2k_full", "fid", 2_000, None),
        ("fid200_full", "fid", 200, None),
        ("kid1000_full", "kid", 1_000, 1_000_000),
    ],
)
def test_parse_metric_name(name: str, kind: str, num_gen: int, max_real: int | None) -> None:
    spec = parse_metric_name(name)
    assert (spec.name, spec.kind, spec.num_gen, spec.max_real) == (name, kind, num_gen, max_real)


@pytest.mark.parametrize(
    "name", ["fid50k", "fid0.5k_full", "fid0_full", "pr50k0_full", "FID50k_full", "is50k_full", "ppl_wmid", ""]
)
def test_unknown_metric_names_are_rejected(name: str) -> None:
    with pytest.raises(ValueError, match="<fid|kid><count>_full, pr<count><k>"):
        parse_metric_name(name)


def test_quantisation_is_nvidias() -> None:
    images = torch.tensor([-2.0, -1.0, -0.004, 0.0, 0.5, 0.9999, 1.0, 3.0])
    expected = torch.tensor([0, 0, 127, 128, 191, 255, 255, 255], dtype=torch.uint8)  # truncation, not rounding
    assert torch.equal(quantize_images(images), expected)


def test_interleave_ranks_restores_global_order() -> None:
    # 7 units over 3 ranks: rank r holds units r, r + 3, ... padded to 3 per rank.
    stacked = np.array([[0, 3, 6], [1, 4, -1], [2, 5, -1]])
    assert interleave_ranks(stacked, 7).tolist() == list(range(7))


def test_labels_are_drawn_from_dataset_items(tmp_path: Path) -> None:
    from stylegan_core.data.dataset import ImageDataset

    path = write_zip(tmp_path / "data.zip", random_images(8, resolution=8), labels=[0, 0, 0, 0, 0, 0, 1, 2])
    dataset = ImageDataset(path, use_labels=True)
    labels = dataset_label_sampler(dataset)(np.random.default_rng(0), 4000)
    assert labels.shape == (4000, 3) and labels.dtype == np.float32
    np.testing.assert_allclose(labels.mean(axis=0), [0.75, 0.125, 0.125], atol=0.03)


def test_generated_features_are_seeded() -> None:
    G = tiny_generator()
    detector = CountingDetector()
    labels = lambda rng, n: np.zeros([n, 0], dtype=np.float32)  # noqa: E731
    once = generator_features(G, detector, num_images=6, labels=labels, batch_size=4, seed=3, progress=False)
    again = generator_features(G, detector, num_images=6, labels=labels, batch_size=4, seed=3, progress=False)
    other = generator_features(G, detector, num_images=6, labels=labels, batch_size=4, seed=4, progress=False)
    assert once.shape == (6, 16)
    np.testing.assert_array_equal(once, again)
    assert not np.allclose(once, other)


def test_compute_metrics_end_to_end(tmp_path: Path) -> None:
    G = tiny_generator(c_dim=3)
    path = write_zip(tmp_path / "data.zip", random_images(12, resolution=16), labels=[i % 3 for i in range(12)])
    detector = CountingDetector()
    run_dir = tmp_path / "run"
    snapshot = run_dir / "snapshots" / "network-snapshot-000000.pt"
    kwargs = dict(cache_dir=tmp_path / "cache", batch_size=8, detector=detector, progress=False)
    results = compute_metrics(G, path, ["fid20_full", "kid20_full"], run_dir=run_dir, snapshot_path=snapshot, **kwargs)
    # Reals computed once (FID and KID share the entry), generated images once (same count): 12 + 20.
    assert detector.images_seen == 32
    assert set(results) == {"fid20_full", "kid20_full"}
    assert set(results["fid20_full"]) == {"fid20_full"} and results["fid20_full"]["fid20_full"] > 0

    # Recompute the numbers from the pieces: the real features, and G's features with the same seed.
    from stylegan_core.data.dataset import ImageDataset

    reference = CountingDetector()  # same fixed projection, its own counter
    # The same batches of 8 as compute_metrics: features then differ by no BLAS blocking, only the assembly is tested.
    reals = torch.from_numpy(random_images(12, 16).transpose(0, 3, 1, 2).copy())
    real = torch.cat([reference(batch) for batch in reals.split(8)]).detach().numpy()
    dataset = ImageDataset(path, use_labels=True)
    fake = generator_features(G, reference, num_images=20, labels=dataset_label_sampler(dataset), batch_size=8,
                              seed=0, progress=False)  # fmt: skip
    fid = frechet_distance(*feature_statistics(fake), *feature_statistics(real))
    # Same features on both sides; float64 statistics may be summed in another order (cache chunks): rounding only.
    # FID ~2.8 and KID ~1.2 here (far from 0, measured), so a relative bound is a scale-aware one.
    assert results["fid20_full"]["fid20_full"] == pytest.approx(fid, rel=1e-6)
    assert results["kid20_full"]["kid20_full"] == pytest.approx(kernel_distance(real, fake), rel=1e-6)

    lines = [json.loads(line) for line in (run_dir / "metric-fid20_full.jsonl").read_text().splitlines()]
    assert len(lines) == 1
    nvidia_keys = {"results", "metric", "total_time", "total_time_str", "num_gpus", "snapshot_pkl", "timestamp"}
    provenance = {"snapshot_sha256", "real_stats", "seed", "batch_size"}  # what the value was measured on (ours)
    assert set(lines[0]) == nvidia_keys | provenance
    assert lines[0]["snapshot_sha256"] is None  # no snapshot file here; the reuse tests cover a real one
    assert lines[0]["metric"] == "fid20_full" and lines[0]["num_gpus"] == 1
    assert lines[0]["snapshot_pkl"] == str(Path("snapshots") / "network-snapshot-000000.pt")
    assert lines[0]["results"] == {"fid20_full": results["fid20_full"]["fid20_full"]}

    again = compute_metrics(G, path, ["fid20_full"], **kwargs)  # real statistics from the cache now
    assert detector.images_seen == 32 + 20  # only the generated images
    assert again["fid20_full"]["fid20_full"] == results["fid20_full"]["fid20_full"]


def test_compute_metrics_checks_dataset_against_generator(tmp_path: Path) -> None:
    path = write_zip(tmp_path / "data.zip", random_images(4, resolution=8))
    with pytest.raises(ValueError, match="data.zip: images are 8x8, the generator makes 16x16"):
        compute_metrics(tiny_generator(), path, ["fid10_full"], detector=CountingDetector(), progress=False)
    path16 = write_zip(tmp_path / "data16.zip", random_images(4, resolution=16))
    with pytest.raises(ValueError, match="labels have 0 dimensions, the generator expects c_dim=3"):
        compute_metrics(tiny_generator(c_dim=3), path16, ["fid10_full"], detector=CountingDetector(), progress=False)


def test_report_metric_appends(tmp_path: Path) -> None:
    report_metric(tmp_path, "fid50k_full", {"fid50k_full": 1.5}, tmp_path / "a.pt", total_time=75.2, num_gpus=8)
    report_metric(tmp_path, "fid50k_full", {"fid50k_full": 1.25})
    lines = [json.loads(line) for line in (tmp_path / "metric-fid50k_full.jsonl").read_text().splitlines()]
    assert [line["results"]["fid50k_full"] for line in lines] == [1.5, 1.25]
    assert lines[0]["total_time_str"] == "1m 15s" and lines[0]["num_gpus"] == 8 and lines[0]["snapshot_pkl"] == "a.pt"
    assert lines[1]["snapshot_pkl"] is None


def test_format_time_like_nvidia() -> None:
    assert [format_time(s) for s in (4.4, 59.6, 187, 7509, 98_000)] == ["4s", "1m 00s", "3m 07s", "2h 05m 09s",
                                                                       "1d 03h 13m"]  # fmt: skip
