"""`make ui-check`: start the Dagster webserver on 127.0.0.1, read the asset graph over GraphQL, screenshot the lineage.

When the demo's group has been materialised (`make demo`), it also reads what the `samples`, `metrics` and `network`
asset pages show: the images embedded in their metadata (sample grids with class labels, the style-mixing matrix and
frames of the interpolation video, FID/KID and loss charts) are decoded, size-checked and written to the output
folder to be looked at, the video link must name a file that exists, and those pages are screenshotted. A group with
a `projections` asset (a spec with `projection_targets`) has that page checked too: targets beside projections and
the LPIPS distances.
Examples whose source data is absent must not be offered as asset groups (unless $STYLEGAN_ALL_SPECS=1).

The screenshots need a Chromium-family browser; without one the script says so and skips that step (exit 0).
Outputs go to <artifacts>/ui/ (STYLEGAN_ARTIFACTS, default ./artifacts). Usage:
    python scripts/ui_check.py [--port 3333] [--timeout 120] [--out DIR]
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
ASSET_GRAPH_QUERY = """
{ assetNodes { assetKey { path } groupName opVersion isPartitioned pools kinds
    partitionKeysByDimension { name partitionKeys }
    dependencyKeys { path }
    assetChecksOrError { ... on AssetChecks { checks { name blocking } } } } }
"""
EXPECTED_ASSETS = ("raw_images", "dataset", "real_features", "network", "metrics", "samples")
MATERIALIZATION_QUERY = """
query ($path: [String!]!) { assetOrError(assetKey: {path: $path}) { ... on Asset {
    assetMaterializations(limit: 1) { partition runId metadataEntries { label __typename
        ... on MarkdownMetadataEntry { mdStr } ... on FloatMetadataEntry { floatValue }
        ... on UrlMetadataEntry { url } ... on PathMetadataEntry { path } } } } } }
"""
# What each demo asset page must show: images (metadata label -> minimum width in pixels) and floats.
PAGE_IMAGES = {
    "dataset": {"preview": 400},
    "samples": {"grid_psi1.00": 400, "grid_psi0.70": 400, "style_mixing": 380, "video_frames": 400},
    "metrics": {"fid_curve": 400, "kid_curve": 400},
    "network": {"loss_curves": 400},
}
PROJECTION_PAGE = {"projections": {"projections": 300}}
"""Checked when the group has the asset (its spec lists projection_targets)."""
PAGE_FLOATS = {"metrics": ("fid", "kid"), "projections": ("lpips_mean",)}
PAGE_LINKS = {"samples": ("video",)}
"""file:// links that must name an existing, non-empty file on this machine."""
DATA_URI = re.compile(r"data:image/png;base64,([A-Za-z0-9+/=]+)")


def _reset_signals() -> None:
    # Background shells here start children with SIGINT/SIGTERM ignored; the server must be stoppable by PID.
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, signal.SIG_DFL)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def dagster_home() -> Path:
    home = Path(os.environ.get("DAGSTER_HOME") or REPO / ".dagster_home")
    home.mkdir(parents=True, exist_ok=True)
    if not (home / "dagster.yaml").exists():
        shutil.copyfile(REPO / "dagster_project" / "dagster.yaml", home / "dagster.yaml")
    return home


def start_webserver(port: int, log_path: Path) -> subprocess.Popen:
    webserver = Path(sys.executable).with_name("dagster-webserver")
    command = [str(webserver), "-h", "127.0.0.1", "-p", str(port), "-w", str(REPO / "workspace.yaml")]
    env = {**os.environ, "DAGSTER_HOME": str(dagster_home()), "DAGSTER_DISABLE_TELEMETRY": "1"}
    log = log_path.open("w")
    return subprocess.Popen(
        command,
        cwd=REPO,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        preexec_fn=_reset_signals,
        start_new_session=True,
    )


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGINT)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def wait_until_ready(port: int, process: subprocess.Popen, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"webserver exited with code {process.returncode}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/server_info", timeout=5) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(1)
    raise TimeoutError(f"webserver not ready on port {port} after {timeout_s:.0f} s")


def graphql(port: int, query: str, variables: dict | None = None) -> dict:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/graphql",
        data=json.dumps({"query": query, "variables": variables or {}}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        payload = json.load(response)
    if "errors" in payload:
        raise RuntimeError(f"GraphQL errors: {payload['errors']}")
    return payload["data"]


def query_asset_graph(port: int) -> list[dict]:
    return graphql(port, ASSET_GRAPH_QUERY)["assetNodes"]


def absent_groups_offered(nodes: list[dict]) -> list[str]:
    """Problems: groups whose spec's source data is absent, offered although $STYLEGAN_ALL_SPECS is not set."""
    sys.path.insert(0, str(REPO))
    from dagster_project import specs as spec_utils

    if spec_utils.include_absent_default():
        return []
    groups = {n["groupName"] for n in nodes}
    absent = [s for s in spec_utils.load_all() if not spec_utils.source_present(s)]
    return [f"group {s.name} is offered but its source {s.source.path} is absent" for s in absent if s.name in groups]


def pages_to_check(nodes: list[dict], group: str) -> dict[str, dict[str, int]]:
    """The demo pages, plus `projections` when the group has that asset."""
    assets = {n["assetKey"]["path"][-1] for n in nodes if n["groupName"] == group}
    return {**PAGE_IMAGES, **{k: v for k, v in PROJECTION_PAGE.items() if k in assets}}


def check_asset_pages(port: int, group: str, out: Path, pages: dict[str, dict[str, int]] = PAGE_IMAGES) -> list[str]:
    """Decode the images of the latest materialisation of each asset page, save them, check their size; check the
    floats and file links those pages must show."""
    problems = []
    for asset, images in pages.items():
        found = graphql(port, MATERIALIZATION_QUERY, {"path": [group, asset]})["assetOrError"]
        events = (found or {}).get("assetMaterializations") or []
        if not events:
            problems.append(f"{group}/{asset}: never materialised (run `make demo` first)")
            continue
        entries = {entry["label"]: entry for entry in events[0]["metadataEntries"]}
        print(f"  {group}/{asset} [{events[0]['partition']}]: {', '.join(sorted(entries))}")
        problems += _check_images(group, asset, entries, images, out)
        for prefix in PAGE_FLOATS.get(asset, ()):
            floats = {k: e["floatValue"] for k, e in entries.items() if k.startswith(prefix) and "floatValue" in e}
            if not floats:
                problems.append(f"{group}/{asset}: no {prefix} value")
            for key, value in sorted(floats.items()):
                print(f"    {key} = {value}")
        for label in PAGE_LINKS.get(asset, ()):
            problems += _check_link(group, asset, label, entries.get(label) or {})
    return problems


def _check_images(group: str, asset: str, entries: dict, images: dict[str, int], out: Path) -> list[str]:
    from PIL import Image

    problems = []
    for label, min_width in images.items():
        match = DATA_URI.search((entries.get(label) or {}).get("mdStr") or "")
        if match is None:
            problems.append(f"{group}/{asset}: no embedded PNG under {label!r}")
            continue
        png = base64.b64decode(match.group(1))
        with Image.open(io.BytesIO(png)) as image:
            size = image.size
        saved = out / f"{asset}-{label}.png"
        saved.write_bytes(png)
        print(f"    {label}: {size[0]}x{size[1]} px, {len(png) // 1024} KB -> {saved}")
        if size[0] < min_width:
            problems.append(f"{group}/{asset}: {label} is {size[0]} px wide, less than {min_width}")
    return problems


def _check_link(group: str, asset: str, label: str, entry: dict) -> list[str]:
    url = entry.get("url") or ""
    if not url.startswith("file://"):
        return [f"{group}/{asset}: no file link under {label!r}"]
    path = Path(urllib.request.url2pathname(urllib.parse.urlparse(url).path))
    if not path.is_file() or path.stat().st_size == 0:
        return [f"{group}/{asset}: {label} links {path}, which is missing or empty"]
    print(f"    {label}: {url} ({path.stat().st_size // 1024} KB)")
    return []


def summarise(nodes: list[dict]) -> list[str]:
    """Print the graph and return problems: each group must hold the six assets, wired in order."""
    groups: dict[str, set[str]] = {}
    for node in sorted(nodes, key=lambda n: n["assetKey"]["path"]):
        key = "/".join(node["assetKey"]["path"])
        deps = ", ".join("/".join(d["path"]) for d in node["dependencyKeys"]) or "-"
        checks = node["assetChecksOrError"].get("checks", [])
        check_text = ", ".join(f"{c['name']}{' (blocking)' if c['blocking'] else ''}" for c in checks) or "-"
        dims = "; ".join(f"{d['name']}={len(d['partitionKeys'])}" for d in node["partitionKeysByDimension"]) or "-"
        print(f"  {key:34s} v={node['opVersion']} parts[{dims}] pools={node['pools']} <- {deps} | checks: {check_text}")
        groups.setdefault(node["groupName"], set()).add(node["assetKey"]["path"][-1])
    return [
        f"group {g} lacks {sorted(set(EXPECTED_ASSETS) - names)}"
        for g, names in groups.items()
        if not set(EXPECTED_ASSETS) <= names
    ]


def screenshot(url: str, path: Path) -> bool:
    browser = next((b for b in (shutil.which(name) for name in BROWSERS) if b), None)
    if browser is None:
        print(
            f"screenshot skipped: no Chromium found (looked for {', '.join(BROWSERS)}); "
            "install one, e.g. `apt-get install chromium`"
        )
        return False
    command = [
        browser,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--hide-scrollbars",
        "--window-size=1600,1000",
        "--virtual-time-budget=20000",
        f"--screenshot={path}",
        url,
    ]
    subprocess.run(command, check=True, timeout=120, capture_output=True)
    print(f"screenshot: {path} ({url})")
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0, help="webserver port (default: a free one)")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for the webserver")
    parser.add_argument("--out", type=Path, default=None, help="output folder (default <artifacts>/ui)")
    args = parser.parse_args(argv)
    out = args.out or Path(os.environ.get("STYLEGAN_ARTIFACTS") or REPO / "artifacts") / "ui"
    out.mkdir(parents=True, exist_ok=True)
    port = args.port or free_port()
    process = start_webserver(port, out / "webserver.log")
    try:
        wait_until_ready(port, process, args.timeout)
        nodes = query_asset_graph(port)
        print(f"webserver on http://127.0.0.1:{port}: {len(nodes)} assets")
        problems = summarise(nodes) + absent_groups_offered(nodes)
        groups = sorted({n["groupName"] for n in nodes})
        screenshot(f"http://127.0.0.1:{port}/asset-groups/", out / "lineage.png")
        if groups:
            group = "shapes" if "shapes" in groups else groups[0]  # the demo's group shows the most
            screenshot(f"http://127.0.0.1:{port}/locations/stylegan/asset-groups/{group}", out / f"{group}.png")
            pages = pages_to_check(nodes, group)
            problems += check_asset_pages(port, group, out, pages)
            for asset in pages:
                url = f"http://127.0.0.1:{port}/assets/{group}/{asset}?view=events"
                screenshot(url, out / f"{group}-{asset}-events.png")
    finally:
        stop(process)
    for problem in problems:
        print(f"problem: {problem}")
    return 1 if problems or not nodes else 0


if __name__ == "__main__":
    sys.exit(main())
