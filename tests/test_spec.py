"""Dataset specs: the repository's own specs load; every kind of mistake names the file and the key."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from stylegan_core.options import apply_overrides
from stylegan_core.presets import resolve_options
from stylegan_core.spec import SpecError, load_spec, load_specs

SPECS = Path(__file__).resolve().parents[1] / "datasets_spec"

MINIMAL = """
name: demo
source:
  kind: folder
  path: images
resolutions: [32]
"""


def _write(folder: Path, text: str, name: str = "demo") -> Path:
    path = folder / f"{name}.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def _error(tmp_path: Path, text: str, name: str = "demo") -> str:
    path = _write(tmp_path, text, name)
    with pytest.raises(SpecError) as caught:
        load_spec(path)
    message = str(caught.value)
    assert message.startswith(str(path)), message
    return message


def test_repository_specs_load() -> None:
    specs = load_specs(SPECS)
    assert [spec.name for spec in specs] == ["afhq", "cifar10", "ffhq", "metfaces", "shapes"]
    shapes = next(spec for spec in specs if spec.name == "shapes")
    assert shapes.source.kind == "generated" and shapes.source.labels == "subfolders"
    assert shapes.source.generator is not None and shapes.source.generator.size == 128
    assert shapes.resolutions == (16, 32) and "cpu-tiny" in shapes.configs
    tiny = shapes.configs["cpu-tiny"]
    options = resolve_options(tiny.preset, 32, 1, tiny.overrides)  # the spec holds overrides the lead's code applies
    assert (options.network.channel_base, options.network.channel_max, options.network.mapping_layers) == (512, 32, 2)
    assert (options.loop.batch, options.loop.total_kimg) == (16, 50)
    assert options.data.cond and options.network.num_fp16_res == 0
    # the demo's short-run tuning (benchmarks/RESULTS.md) reaches the options, not NVIDIA's auto gamma/EMA
    assert (options.loss.r1_gamma, options.loop.ema_kimg, options.loss.style_mixing_prob) == (0.05, 2.0, 0.0)
    ffhq = next(spec for spec in specs if spec.name == "ffhq")
    assert ffhq.schedule is not None and ffhq.schedule.cron == "0 3 * * 0" and ffhq.ingest.resize_filter == "box"
    assert ffhq.source.path == (SPECS.parent / "data" / "ffhq" / "images1024x1024")


def test_minimal_spec_gets_the_documented_defaults(tmp_path: Path) -> None:
    spec = load_spec(_write(tmp_path, MINIMAL))
    assert spec.source.path == (tmp_path / "images").resolve()
    assert (spec.ingest.transform, spec.ingest.channels, spec.ingest.labels, spec.ingest.on_error) == (
        "center-crop",
        "auto",
        "auto",
        "fail",
    )
    assert spec.configs == {} and spec.metrics == () and spec.schedule is None


def test_paths_expand_home_and_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEMO_DATA", str(tmp_path / "data"))
    spec = load_spec(_write(tmp_path, MINIMAL.replace("path: images", "path: ${DEMO_DATA}/faces")))
    assert spec.source.path == tmp_path / "data" / "faces"
    spec = load_spec(_write(tmp_path, MINIMAL.replace("path: images", "path: ~/faces")))
    assert spec.source.path == Path.home() / "faces"
    monkeypatch.delenv("DEMO_DATA")
    message = _error(tmp_path, MINIMAL.replace("path: images", "path: $DEMO_DATA/faces"))
    assert "source.path" in message and "DEMO_DATA is not set" in message


def test_full_spec_with_configs_metrics_and_schedule(tmp_path: Path) -> None:
    spec = load_spec(
        _write(
            tmp_path,
            MINIMAL
            + """
transform: center-crop-wide
wide_aspect: [16, 9]
channels: gray
background: "#102030"
on_error: skip
configs:
  small:
    preset: paper256
    kimg: 10
    batch-gpu: 4
  default: {}
metrics: [fid2k_full, kid200_full]
schedule:
  cron: "@weekly"
  configs: [small]
""",
        )
    )
    assert spec.ingest.wide_aspect == (16, 9) and spec.ingest.channels == "grey"
    assert spec.ingest.background == (16, 32, 48) and spec.ingest.on_error == "skip"
    assert spec.configs["small"].overrides == {"kimg": 10, "batch_gpu": 4}
    assert spec.configs["default"].preset == "auto"
    options = apply_overrides(resolve_options("paper256", 32), spec.configs["small"].overrides)
    assert options.loop.total_kimg == 10
    assert spec.metrics == ("fid2k_full", "kid200_full")
    assert spec.schedule is not None and spec.schedule.configs == ("small",) and spec.schedule.timezone == "UTC"


MISTAKES = {
    "unknown_top_key": (MINIMAL + "resolution: [64]\n", ["resolution", "unknown key", "did you mean 'resolutions'"]),
    "unknown_source_key": (MINIMAL.replace("kind: folder", "kind: folder\n  label: none"), ["source.label"]),
    "bad_kind": (MINIMAL.replace("kind: folder", "kind: lmdb"), ["source.kind", "folder, zip, generated"]),
    "missing_path": (MINIMAL.replace("  path: images\n", ""), ["source.path", "required"]),
    "not_power_of_two": (MINIMAL.replace("[32]", "[32, 48]"), ["resolutions", "powers of two"]),
    "bad_transform": (MINIMAL + "transform: crop\n", ["transform", "center-crop"]),
    "bad_background": (MINIMAL + "background: [1, 2]\n", ["background"]),
    "duplicate_key": (MINIMAL + "resolutions: [64]\n", ["duplicate key"]),
    "name_not_file": (MINIMAL.replace("name: demo", "name: other"), ["name", "file name"]),
    "bad_name": (MINIMAL.replace("name: demo", "name: Demo-1"), ["name", "must match"]),
    "unknown_override": (MINIMAL + "configs:\n  a:\n    kimgs: 5\n", ["configs.a", "kimgs", "did you mean 'kimg'"]),
    "bad_override_value": (MINIMAL + "configs:\n  a:\n    kimg: lots\n", ["configs.a", "kimg"]),
    "bad_preset": (MINIMAL + "configs:\n  a:\n    preset: huge\n", ["configs.a.preset", "paper256"]),
    "reserved_override": (MINIMAL + "configs:\n  a:\n    data: x.zip\n", ["configs.a.data", "cannot be set"]),
    "batch_geometry": (MINIMAL + "configs:\n  a:\n    batch: 6\n    batch_gpu: 4\n", ["configs.a", "batch"]),
    "cond_without_labels": (
        MINIMAL.replace("path: images", "path: images\n  labels: none") + "configs:\n  a:\n    cond: true\n",
        ["configs.a.cond", "needs labels"],
    ),
    "bad_metric": (MINIMAL + "metrics: [fid50k]\n", ["metrics", "fid50k"]),
    "bad_cron": (MINIMAL + "schedule: every sunday\n", ["schedule.cron", "cron"]),
    "schedule_unknown_config": (MINIMAL + "schedule: {cron: '0 1 * * *', configs: [x]}\n", ["schedule.configs"]),
    "generator_on_folder": (MINIMAL.replace("kind: folder", "kind: folder\n  generator: {count: 3}"), ["generator"]),
    "generator_key": (
        "name: demo\nsource: {kind: generated, generator: {count: 5, colour: red}}\nresolutions: [16]\n",
        ["source.generator.colour"],
    ),
    "not_a_mapping": ("- just\n- a list\n", ["top level", "mapping"]),
    # Issue 13: values a spec used to accept and a later step refused.
    "augpipe_typo": (MINIMAL + "configs:\n  a:\n    augpipe: bgcx\n", ["configs.a.augpipe", "bgcfnc", "'bgcx'"]),
    "batch_zero": (MINIMAL + "configs:\n  a:\n    batch: 0\n", ["configs.a.batch", "[1, 65536]"]),
    "nan_lr": (MINIMAL + "configs:\n  a:\n    glr: .nan\n", ["configs.a.glr", "finite"]),
    "inf_gamma": (MINIMAL + "configs:\n  a:\n    gamma: .inf\n", ["configs.a.gamma", "finite"]),
    "negative_lr": (MINIMAL + "configs:\n  a:\n    dlr: -0.1\n", ["configs.a.dlr", "(0, 1]"]),
    "huge_z_dim": (MINIMAL + "configs:\n  a:\n    z_dim: 1000000000\n", ["configs.a.z_dim", "8192"]),
    "generator_count": (
        "name: demo\nsource: {kind: generated, generator: {count: 1000000000}}\nresolutions: [16]\n",
        ["source.generator.count", "<= 1000000"],
    ),
    "huge_resolution": (MINIMAL.replace("[32]", "[1073741824]"), ["resolutions", "<= 8192"]),
    "fixed_without_p": (MINIMAL + "configs:\n  a:\n    aug: fixed\n", ["configs.a.aug", "aug=fixed requires p"]),
    "p_with_noaug": (MINIMAL + "configs:\n  a:\n    aug: noaug\n    p: 0.2\n", ["configs.a.p", "aug=noaug"]),
    "target_with_noaug": (MINIMAL + "configs:\n  a:\n    aug: noaug\n    target: 0.5\n", ["configs.a.target"]),
    "geometry_names_yaml_keys": (
        MINIMAL + "configs:\n  a:\n    batch: 6\n",
        ["configs.a.mbstd_group", "set mbstd_group to a divisor of 6 or change batch_gpu"],
    ),
    "cron_minute_61": (MINIMAL + "schedule: '61 * * * *'\n", ["schedule.cron", "minute field '61'"]),
    "cron_month_13": (MINIMAL + "schedule: '0 0 1 13 *'\n", ["schedule.cron", "month field"]),
    "cron_reversed_range": (MINIMAL + "schedule: '0 5-2 * * *'\n", ["schedule.cron", "hour field"]),
    "bad_timezone": (
        MINIMAL + "schedule: {cron: '0 1 * * *', timezone: Mars/Olympus}\n",
        ["schedule.timezone", "IANA"],
    ),
    "cfg_means_preset": (MINIMAL + "configs:\n  a:\n    cfg: paper256\n", ["configs.a.cfg", "did you mean 'preset'"]),
    "yaml_alias": ("name: demo\nx: &a [1, 2]\ny: *a\n", ["aliases", "not allowed"]),
    "invalid_yaml": ("name: [unclosed\n", ["invalid YAML"]),
}


@pytest.mark.parametrize("case", sorted(MISTAKES))
def test_mistakes_name_the_file_and_the_key(case: str, tmp_path: Path) -> None:
    text, words = MISTAKES[case]
    message = _error(tmp_path, text)
    for word in words:
        assert word in message, f"{case}: {word!r} not in {message!r}"


def test_unknown_config_key_lists_only_keys_a_spec_accepts(tmp_path: Path) -> None:
    message = _error(tmp_path, MINIMAL + "configs:\n  a:\n    zzzzzzzz: 1\n")
    known = message.split("known keys: ")[1].split(", ")
    assert "preset" in known and "kimg" in known and "z_dim" in known and "fp32" in known
    assert "data" not in known and "metrics" not in known


def test_binary_file_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "demo.yaml"
    path.write_bytes(b"name: d\xe9mo\n")
    with pytest.raises(SpecError, match=r"demo\.yaml: not UTF-8 text"):
        load_spec(path)


def test_alias_bomb_is_refused_quickly_with_a_short_message(tmp_path: Path) -> None:
    lines = ["name: demo", 'a0: &a0 ["xxxxxxxxxxxxxxxx"]']
    lines += [f"a{i}: &a{i} [*a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}]" for i in range(1, 12)]
    message = _error(tmp_path, "\n".join(lines) + "\n")
    assert "aliases" in message and len(message) < 400


def test_long_values_are_cut_in_messages(tmp_path: Path) -> None:
    message = _error(tmp_path, MINIMAL + "configs:\n  a:\n    augpipe: " + "b" * 100_000 + "\n")
    assert "configs.a.augpipe" in message and len(message) < 400


def test_specs_with_errors_do_not_hide_good_ones(tmp_path: Path) -> None:
    from stylegan_core.spec import check_specs

    good = _write(tmp_path, MINIMAL.replace("demo", "good"), "good")
    bad = _write(tmp_path, MINIMAL.replace("demo", "bad") + "configs:\n  a:\n    batch: 0\n", "bad")
    specs, errors = check_specs([bad, good])
    assert [spec.name for spec in specs] == ["good"]
    assert len(errors) == 1 and str(errors[0]).startswith(f"{bad}: configs.a.batch:")


def test_load_specs_sorts_and_rejects_duplicates(tmp_path: Path) -> None:
    _write(tmp_path, MINIMAL.replace("demo", "zeta"), "zeta")
    _write(tmp_path, MINIMAL.replace("demo", "alpha"), "alpha")
    assert [spec.name for spec in load_specs(tmp_path)] == ["alpha", "zeta"]
    (tmp_path / "alpha.yml").write_text(textwrap.dedent(MINIMAL.replace("demo", "alpha")))
    with pytest.raises(SpecError, match="already defined"):
        load_specs(tmp_path)
    with pytest.raises(SpecError, match="does not exist"):
        load_specs(tmp_path / "missing")
