"""Loading NVIDIA's VGG16 TorchScript (stylegan_core/metrics/vgg.py), with the stand-in of tests/vgg_standin.py."""

from __future__ import annotations

import pytest
import torch

from stylegan_core.errors import InputError
from stylegan_core.io import limits
from stylegan_core.io.atomic import sha256_file
from stylegan_core.io.limits import LimitError
from stylegan_core.metrics import vgg
from stylegan_core.metrics.inception import DetectorNotFoundError
from tests.vgg_standin import save_standin_vgg16


@pytest.fixture
def standin(tmp_path):
    return tmp_path / "vgg16.pt", save_standin_vgg16(tmp_path / "vgg16.pt", seed=0)


def test_absent_weights_say_where_to_get_them(monkeypatch):
    monkeypatch.delenv(vgg.VGG16_PATH_ENV, raising=False)
    with pytest.raises(DetectorNotFoundError) as caught:
        vgg.load_vgg16()
    message = str(caught.value)
    assert vgg.VGG16_URL in message and vgg.VGG16_PATH_ENV in message and "\n" not in message


def test_missing_configured_file_names_it(monkeypatch, tmp_path):
    monkeypatch.setenv(vgg.VGG16_PATH_ENV, str(tmp_path / "nothing.pt"))
    with pytest.raises(DetectorNotFoundError, match="nothing.pt do not exist"):
        vgg.load_vgg16()


def test_loads_from_environment_and_records_provenance(monkeypatch, standin):
    path, _ = standin
    monkeypatch.setenv(vgg.VGG16_PATH_ENV, str(path))
    detector = vgg.load_vgg16()
    assert detector.sha256 == sha256_file(path) and detector.num_bytes == path.stat().st_size
    images = torch.rand([2, 3, 16, 16]) * 255
    features = detector.lpips(images)
    assert features.ndim == 2 and features.shape[0] == 2
    # Grey images are the same image repeated to RGB.
    grey = images[:, :1]
    torch.testing.assert_close(detector.lpips(grey), detector.lpips(grey.repeat([1, 3, 1, 1])), rtol=0, atol=0)
    assert detector.features(images).shape == (2, 16)


def test_sha256_pin(monkeypatch, standin):
    path, _ = standin
    vgg.load_vgg16(path, expected_sha256=sha256_file(path))
    with pytest.raises(InputError, match="sha256 is"):
        vgg.load_vgg16(path, expected_sha256="0" * 64)
    monkeypatch.setenv(vgg.VGG16_SHA256_ENV, "1" * 64)
    with pytest.raises(InputError, match="sha256 is"):
        vgg.load_vgg16(path)


def test_bounded_before_loading(monkeypatch, standin):
    path, _ = standin
    monkeypatch.setattr(limits, "MAX_DETECTOR_BYTES", 100)  # the one limit of every detector file
    vgg._loaded.clear()
    with pytest.raises(LimitError, match="over the 100-byte limit for a detector file"):
        vgg.load_vgg16(path)


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")
def test_wrong_files_are_one_line(tmp_path):
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a zip at all")
    with pytest.raises(InputError, match=r"junk.pt is not a TorchScript file \(not a zip archive\); expected NVIDIA"):
        vgg.load_vgg16(junk)

    class Plain(torch.nn.Module):
        def forward(self, img: torch.Tensor) -> torch.Tensor:
            return img.flatten(1)

    other = tmp_path / "other.pt"
    torch.jit.script(Plain()).save(str(other))
    with pytest.raises(InputError, match="lacks resize_images, return_lpips"):
        vgg.load_vgg16(other)
