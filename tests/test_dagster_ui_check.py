"""`scripts/ui_check.py` against a real webserver: the pages of `samples` (style-mixing matrix, video frames, video
link) and `projections` (targets beside projections, LPIPS) read back over GraphQL, and a headless-browser
screenshot of the projections page when Chromium is installed.

The instance is a real DAGSTER_HOME on disk, materialised in process on a saved snapshot of a tiny generator (no
training), then served by `dagster-webserver` as `make ui-check` does. Takes about a minute on 2 busy cores.
"""

from __future__ import annotations

import importlib.util
import shutil
import sys
from pathlib import Path

import dagster as dg
import pytest
from dagster_support import add_projection_targets, cpu_resource, materialize, write_snapshot_run, write_test_specs
from vgg_standin import save_standin_vgg16

from dagster_project.definitions import build_definitions

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="stops the webserver by process group")


def _ui_check():
    spec = importlib.util.spec_from_file_location("ui_check", REPO / "scripts" / "ui_check.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_ui_check_reads_the_samples_and_projections_pages(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ui_check = _ui_check()
    specs = write_test_specs(tmp_path / "specs")
    add_projection_targets(specs, num_steps=3)
    artifacts, home, out = tmp_path / "artifacts", tmp_path / "home", tmp_path / "ui"
    snapshot = write_snapshot_run(artifacts)
    vgg16 = save_standin_vgg16(tmp_path / "vgg16-standin.pt", seed=0)
    for name, value in {"DAGSTER_HOME": home, "STYLEGAN_SPECS": specs, "STYLEGAN_ARTIFACTS": artifacts,
                        "STYLEGAN_VGG16": vgg16, "STYLEGAN_DEVICE": "cpu"}.items():  # fmt: skip
        monkeypatch.setenv(name, str(value))
    ui_check.dagster_home()  # the instance settings `make` would copy
    out.mkdir()
    defs = build_definitions(specs, cpu_resource(artifacts, vgg16=vgg16))
    with dg.DagsterInstance.get() as instance:
        materialize(defs, ["shapes/samples", "shapes/projections"], "ci-tiny|16", instance)

    process = ui_check.start_webserver(ui_check.free_port(), out / "webserver.log")
    port = int(process.args[process.args.index("-p") + 1])
    try:
        ui_check.wait_until_ready(port, process, 240)
        nodes = ui_check.query_asset_graph(port)
        pages = ui_check.pages_to_check(nodes, "shapes")
        assert "projections" in pages
        wanted = {asset: pages[asset] for asset in ("samples", "projections")}
        assert ui_check.check_asset_pages(port, "shapes", out, wanted) == []
        for name in ("samples-style_mixing.png", "samples-video_frames.png", "projections-projections.png"):
            assert (out / name).stat().st_size > 1000, name
        # A video link to a file that went away is reported, not passed.
        video = next((snapshot.parents[1] / "samples" / snapshot.stem).glob("interpolation.*"))
        video.unlink()
        problems = ui_check.check_asset_pages(port, "shapes", out, {"samples": {}})
        assert problems == [f"shapes/samples: video links {video}, which is missing or empty"]
        if shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome"):
            shot = out / "projections.png"
            assert ui_check.screenshot(f"http://127.0.0.1:{port}/assets/shapes/projections?view=events", shot)
            assert shot.stat().st_size > 10_000
    finally:
        ui_check.stop(process)
    assert process.poll() is not None
