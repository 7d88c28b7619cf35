"""Inception Score: the formula on known probabilities, NVIDIA's compute_is on a stand-in Inception, and the refusal
of pool3-only Inception files (no classification head)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from metrics_nvidia_support import nvidia_results, nvidia_stream_images, standin_files
from transfer_support import reference_generator

from stylegan_core.metrics.inception import (
    DetectorNotFoundError,
    InceptionDetector,
    InceptionProbabilities,
    detector_features,
    load_detector,
    load_probabilities_detector,
)
from stylegan_core.metrics.inception_score import inception_score


def test_confident_and_diverse_predictions_score_the_class_count() -> None:
    # Each image certain of one class, classes equally used within every split: KL = log(C), IS = C exactly.
    probs = np.eye(5)[np.arange(50) % 5]
    assert inception_score(probs) == pytest.approx((5.0, 0.0))


def test_identical_predictions_score_one() -> None:
    probs = np.tile([0.2, 0.5, 0.3], (20, 1))
    assert inception_score(probs) == pytest.approx((1.0, 0.0))


def test_splits_and_population_std() -> None:
    # Split 0 (items 0-9): two classes used equally, IS = 2. Split 1: one class only, IS = 1. mean 1.5, std 0.5.
    probs = np.concatenate([np.eye(2)[np.arange(10) % 2], np.tile([1.0, 0.0], (10, 1))])
    assert inception_score(probs, num_splits=2) == pytest.approx((1.5, 0.5))
    # Uneven sizes are split as NVIDIA does, item i·N // s: 11 items in 2 splits are 5 + 6.
    mean, _ = inception_score(np.eye(3)[np.arange(11) % 3], num_splits=2)
    kl = lambda counts: sum(c / sum(counts) * np.log(sum(counts) / c) for c in counts if c)  # noqa: E731
    assert mean == pytest.approx((np.exp(kl([2, 2, 1])) + np.exp(kl([2, 2, 2]))) / 2)


def test_needs_one_image_per_split() -> None:
    with pytest.raises(ValueError, match="N >= 10"):
        inception_score(np.full([9, 3], 1 / 3))


@pytest.fixture(scope="module")
def inception_path(tmp_path_factory):
    return standin_files(tmp_path_factory.mktemp("detectors"))[0]


def test_equals_nvidias_compute_is(inception_path) -> None:
    detector = InceptionProbabilities(load_detector(inception_path))
    probs = detector_features(detector, [nvidia_stream_images(reference_generator(), 64)], progress=False)
    assert probs.shape == (64, 1008)
    expected = nvidia_results()["is64"]
    np.testing.assert_allclose(inception_score(probs), (expected["is64_mean"], expected["is64_std"]), rtol=1e-5)
    assert expected["is64_mean"] > 1.5  # the stand-in's predictions differ between images: a score that can fail


class _Pool3(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=[2, 3]).repeat(1, 683)[:, :2048]


def test_pool3_files_are_refused_in_one_sentence(tmp_path, monkeypatch) -> None:
    path = tmp_path / "pool3.pt"
    torch.jit.script(_Pool3()).save(str(path))
    with pytest.raises(DetectorNotFoundError) as caught:
        InceptionProbabilities(load_detector(path))
    message = str(caught.value)
    assert "pool3.pt has none" in message and "inception-2015-12-05.pt" in message and "\n" not in message
    monkeypatch.delenv("STYLEGAN_INCEPTION", raising=False)
    with pytest.raises(DetectorNotFoundError, match="none is configured.*STYLEGAN_INCEPTION"):
        load_probabilities_detector(None)


def test_probabilities_accept_grey_images(inception_path) -> None:
    inception = load_detector(inception_path)
    assert isinstance(inception, InceptionDetector) and inception.kind == "nvidia"
    grey = torch.randint(0, 256, [2, 1, 16, 16], dtype=torch.uint8)
    with torch.no_grad():
        probs = inception.probabilities(grey)
        expected = inception.probabilities(grey.repeat(1, 3, 1, 1))
    assert torch.equal(probs, expected) and torch.allclose(probs.sum(1), torch.ones(2))
