"""The optional `projection_targets` spec key: a small folder of readable images, checked when the spec loads."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import PIL.Image
import pytest

from stylegan_core.spec import SpecError, load_spec
from stylegan_core.spec.projection import MAX_PROJECTION_TARGETS

SPEC = """name: demo
source:
  kind: folder
  path: images
resolutions: [32]
"""


def _targets(folder: Path, count: int) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.RandomState(0)
    for index in range(count):
        PIL.Image.fromarray(rng.randint(0, 256, (40, 30, 3), dtype=np.uint8)).save(folder / f"t{index}.png")
    return folder


def _load(tmp_path: Path, value: str) -> object:
    path = tmp_path / "demo.yaml"
    path.write_text(SPEC + f"projection_targets: {value}\n")
    return load_spec(path)


def _error(tmp_path: Path, value: str) -> str:
    with pytest.raises(SpecError) as caught:
        _load(tmp_path, value)
    message = str(caught.value)
    assert message.startswith(f"{tmp_path / 'demo.yaml'}: projection_targets"), message
    assert "\n" not in message
    return message


def test_a_folder_of_images_relative_to_the_spec(tmp_path: Path) -> None:
    _targets(tmp_path / "targets", 2)
    spec = _load(tmp_path, "targets")
    assert spec.projection_targets.path == tmp_path / "targets"
    assert [p.name for p in spec.projection_targets.images] == ["t0.png", "t1.png"]
    assert spec.projection_targets.num_steps is None and spec.projection_targets.seed is None  # projector defaults
    spec = _load(tmp_path, "{path: targets, num_steps: 20, seed: 5}")
    assert (spec.projection_targets.num_steps, spec.projection_targets.seed) == (20, 5)
    plain = tmp_path / "plain.yaml"
    plain.write_text(SPEC.replace("name: demo", "name: plain"))
    assert load_spec(plain).projection_targets is None


def test_bad_targets_are_one_line_naming_the_key(tmp_path: Path) -> None:
    assert "is not a folder" in _error(tmp_path, "missing")
    (tmp_path / "empty").mkdir()
    assert "holds 0 images" in _error(tmp_path, "empty")
    _targets(tmp_path / "many", MAX_PROJECTION_TARGETS + 1)
    assert f"give 1 to {MAX_PROJECTION_TARGETS}" in _error(tmp_path, "many")
    broken = _targets(tmp_path / "broken", 1)
    (broken / "t1.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    assert "t1.jpg" in _error(tmp_path, "broken")
    other = _targets(tmp_path / "other", 1)
    (other / "notes.txt").write_text("hello")
    assert "'notes.txt', which is not an image" in _error(tmp_path, "other")
    _targets(tmp_path / "ok", 1)
    assert "num_steps" in _error(tmp_path, "{path: ok, num_steps: 0}")
    assert "unknown key" in _error(tmp_path, "{path: ok, steps: 3}")
