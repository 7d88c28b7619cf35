"""Precision/recall: the formula on hand-made features, and NVIDIA's compute_pr on stand-in detectors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from metrics_nvidia_support import REALS_ZIP, nvidia_results, nvidia_stream_images, standin_files
from transfer_support import reference_generator

from stylegan_core.data.dataset import ImageDataset
from stylegan_core.metrics.inception import detector_features
from stylegan_core.metrics.precision_recall import VGG16Features, pairwise_distances, precision_recall
from stylegan_core.metrics.sampling import dataset_features
from stylegan_core.metrics.vgg import load_vgg16


def test_hand_made_manifolds() -> None:
    # Reals at x = 0, 1, ..., 9 on a line: with k=1 every real ball has radius 1.
    real = np.stack([np.arange(10.0), np.zeros(10)], axis=1)
    gen = np.array([[2.5, 0.0], [7.0, 0.5], [4.0, 0.9], [50.0, 0.0]])
    precision, recall = precision_recall(real, gen, nhood_size=1)
    assert precision == 0.75  # (50, 0) lies outside every real ball; the other three are within 0.9 of a real
    # Generated radii (k=1): 1.75 (to (4, .9)), 3.03, 1.75, 43.0 (to (7, .5)). Real x=0 is 2.5 from the nearest
    # generated point, outside its 1.75 ball; x=9 is inside the big ball of (50, 0). So 9 of 10 reals are covered.
    assert recall == pytest.approx(0.9)
    # Without the far point its big ball goes, but (7, .5) with radius 3.03 still reaches x=9: recall stays 0.9.
    assert precision_recall(real, gen[:3], nhood_size=1) == (1.0, pytest.approx(0.9))
    # k=3 balls are larger: every real lies within the 3rd-nearest-neighbour radius of some generated point.
    assert precision_recall(real, gen, nhood_size=3)[1] == 1.0


def test_kth_neighbour_excludes_the_point_itself() -> None:
    # Two clusters far apart; with k=2 every point's radius reaches its two cluster neighbours, never the other cluster.
    real = np.array([[0.0], [1.0], [2.0], [100.0], [101.0], [102.0]])
    gen = np.array([[1.5], [50.0], [101.5]])
    assert precision_recall(real, gen, nhood_size=2)[0] == pytest.approx(2 / 3)


def test_distances_are_float16_and_independent_of_column_batches() -> None:
    rng = np.random.default_rng(0)
    rows = torch.from_numpy(rng.standard_normal([7, 5]).astype(np.float32)).half()
    cols = torch.from_numpy(rng.standard_normal([23, 5]).astype(np.float32)).half()
    whole = pairwise_distances(rows, cols)
    assert whole.dtype == torch.float16 and whole.shape == (7, 23)
    exact = torch.cdist(rows.double(), cols.double())
    assert torch.allclose(whole.double(), exact, rtol=1e-3, atol=0)  # float16 rounding of the result
    assert torch.equal(pairwise_distances(rows, cols, col_batch_size=4), whole)


def test_needs_more_samples_than_k() -> None:
    with pytest.raises(ValueError, match="k=3 needs more than 3"):
        precision_recall(np.zeros([3, 4]), np.zeros([5, 4]), nhood_size=3)


@pytest.fixture(scope="module")
def features(tmp_path_factory) -> tuple[np.ndarray, np.ndarray]:
    """VGG16 stand-in features of the 40 fixture reals and of NVIDIA's first 64 generated images."""
    _, vgg16 = standin_files(tmp_path_factory.mktemp("detectors"))
    detector = VGG16Features(load_vgg16(vgg16))
    dataset = ImageDataset(REALS_ZIP, xflip=False)
    try:
        real = dataset_features(dataset, detector, num_items=len(dataset), batch_size=64, progress=False)
    finally:
        dataset.close()
    gen = detector_features(detector, [nvidia_stream_images(reference_generator(), 64)], progress=False)
    return real, gen


@pytest.mark.parametrize(("name", "num_gen", "max_real", "nhood"),
                         [("pr643_full", 64, 40, 3), ("pr641_full", 64, 40, 1), ("pr323", 32, 32, 3)])  # fmt: skip
def test_equals_nvidias_compute_pr(features, name, num_gen, max_real, nhood) -> None:
    # The same stand-in VGG16, dataset, network and generated-image stream as NVIDIA's run (fixture README); NVIDIA
    # truncates its 64-image batches to num_gen and reads the first max_real reals, as the slices here do.
    real, gen = features
    ours = precision_recall(real[:max_real], gen[:num_gen], nhood)
    expected = nvidia_results()[name]
    reference = (expected[f"{name}_precision"], expected[f"{name}_recall"])
    assert 0 < min(reference) < 1 or name != "pr641_full"  # at least one comparison away from the 0/1 edges
    np.testing.assert_allclose(ours, reference, rtol=1e-5, atol=0)
