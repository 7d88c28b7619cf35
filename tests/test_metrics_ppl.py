"""Perceptual path length: its pieces, and NVIDIA's compute_ppl on a stand-in VGG16 with the same random streams."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from metrics_nvidia_support import nvidia_results, standin_files
from metrics_support import tiny_generator
from transfer_support import reference_generator

from stylegan_core.metric_names import parse_metric_name
from stylegan_core.metrics.ppl import filtered_mean, lpips_images, path_lengths, slerp
from stylegan_core.metrics.vgg import load_vgg16

NO_LABELS = lambda rng, n: np.zeros([n, 0], dtype=np.float32)  # noqa: E731


def test_slerp_walks_the_great_circle() -> None:
    a = torch.tensor([[2.0, 0.0, 0.0]])
    b = torch.tensor([[0.0, 3.0, 0.0]])
    for t in (0.0, 0.25, 1.0):
        angle = t * np.pi / 2
        expected = torch.tensor([[np.cos(angle), np.sin(angle), 0.0]], dtype=torch.float32)
        assert torch.allclose(slerp(a, b, torch.tensor([[t]])), expected, atol=1e-6)


def test_filtered_mean_drops_the_outer_percentiles() -> None:
    values = np.arange(1, 201, dtype=np.float64)  # 1st percentile (lower) = 2, 99th (higher) = 199
    assert filtered_mean(values) == pytest.approx(np.arange(2, 200).mean())
    spiky = np.concatenate([np.ones(198), [1e9, -1e9]])
    assert filtered_mean(spiky) == 1.0


def test_face_crop_and_downsampling() -> None:
    G = tiny_generator(resolution=16)
    images = torch.arange(16.0).reshape(1, 1, 1, 16).expand(2, 3, 16, 16) / 8 - 1
    cropped = lpips_images(G, images, crop=True)
    # Rows 3/8..7/8, columns 2/8..6/8 of the image, then [-1, 1] -> [0, 255].
    assert cropped.shape == (2, 3, 8, 8)
    assert torch.allclose(cropped[0, 0, 0], (torch.arange(4.0, 12.0) / 8) * 127.5)
    big = type("Big", (), {"img_resolution": 1024})()
    down = lpips_images(big, torch.zeros([1, 3, 1024, 1024]), crop=False)
    assert down.shape == (1, 3, 256, 256) and torch.all(down == 127.5)


@pytest.fixture(scope="module")
def vgg16(tmp_path_factory):
    return load_vgg16(standin_files(tmp_path_factory.mktemp("detectors"))[1])


def test_seeded_and_leaves_the_generator_alone(vgg16) -> None:
    G = tiny_generator(resolution=16)
    noise = {name: buf.clone() for name, buf in G.named_buffers() if name.endswith("noise_const")}
    spec = parse_metric_name("ppl_6_wfull")
    once = path_lengths(G, vgg16, spec, NO_LABELS, seed=1)
    assert once.shape == (6,) and np.all(once > 0)
    np.testing.assert_array_equal(once, path_lengths(G, vgg16, spec, NO_LABELS, seed=1))
    assert not np.allclose(once, path_lengths(G, vgg16, spec, NO_LABELS, seed=2))
    assert all(torch.equal(buf, noise[name]) for name, buf in G.named_buffers() if name in noise)


@pytest.mark.parametrize("name", ["ppl2_32_wend", "ppl_32_zfull", "ppl_32_wfull", "ppl_32_zend", "ppl_32_wend"])
def test_equals_nvidias_compute_ppl(vgg16, name) -> None:
    # NVIDIA's sampler drew t, z and noise from torch's generator reseeded per batch with our per-batch seeds (the
    # fixture README), so both sides see the same paths. What remains is float32 rounding amplified by the
    # epsilon = 1e-4 finite difference: measured up to 1e-3 relative; asserted at 5e-3 and below 5% of the standard
    # error of the mean of the 32 samples (PPL's sampling noise).
    spec = parse_metric_name(name)
    distances = path_lengths(reference_generator(), vgg16, spec, NO_LABELS, seed=0)
    expected = nvidia_results()[name][name]
    assert filtered_mean(distances) == pytest.approx(expected, rel=5e-3)
    standard_error = distances.std() / np.sqrt(len(distances))
    assert abs(filtered_mean(distances) - expected) < 0.05 * standard_error
