"""One option table: `stylegan train --help`, the spec docs and `stylegan spec check` are derived from it."""

from __future__ import annotations

import argparse
import logging
import re
import subprocess
import sys
from pathlib import Path

import pytest

from stylegan_core.cli import train as train_cli
from stylegan_core.options import OVERRIDE_KEYS
from stylegan_core.presets import resolve_options
from stylegan_core.spec import load_spec
from stylegan_core.spec.docs import DOC, render_table, splice
from stylegan_core.spec.fields import cron_expression

REPO = Path(__file__).resolve().parents[1]


def _train_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="stylegan")
    train_cli.register(parser.add_subparsers(dest="command"))
    return parser._subparsers._group_actions[0].choices["train"]  # type: ignore[union-attr]


def test_train_help_is_the_table() -> None:
    parser = _train_parser()
    flags = {flag for action in parser._actions for flag in action.option_strings if flag.startswith("--")}
    # Flags in an argument group of their own (a launcher's) are not training options; all others must be.
    grouped = {flag for group in parser._action_groups[2:] for action in group._group_actions
               for flag in action.option_strings}  # fmt: skip
    table = {row.flag for row in OVERRIDE_KEYS.values()}
    assert table <= flags and flags - grouped == table | {*train_cli.COMMAND_FLAGS, "--fp32", "--help"}
    text = " ".join(parser.format_help().split())
    for row in OVERRIDE_KEYS.values():
        assert f"{row.flag} {row.metavar}" in text or f"{row.flag} [{row.metavar}]" in text, row.flag
        assert " ".join(row.help.split()) in text, row.flag
        for choice in row.choices or ():
            assert choice in text


def test_spec_docs_table_is_the_table() -> None:
    document = DOC.read_text(encoding="utf-8")
    assert splice(document) == document, "run: python -m stylegan_core.spec.docs"
    table = render_table()
    documented = set(re.findall(r"^\| `([a-z0-9_]+)` \|", table, flags=re.M))
    assert documented == {*OVERRIDE_KEYS, "fp32", "preset"} - {"data", "metrics"}


def test_cpu_template_in_the_docs_loads(tmp_path: Path) -> None:
    document = DOC.read_text(encoding="utf-8")
    block = document.split("<!-- cpu-template")[1].split("```yaml\n")[1].split("```")[0]
    path = tmp_path / "my_photos.yaml"
    path.write_text(block)
    spec = load_spec(path)
    cpu = spec.configs["cpu"]
    options = resolve_options(cpu.preset, spec.resolutions[0], 1, cpu.overrides)
    assert options.network.channel_base == 1024 and options.loop.total_kimg == 2 and options.data.cond
    assert spec.metrics == ("fid1k_full",)


def _spec_check(*paths: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "stylegan_core.cli", "spec", "check", *map(str, paths)],
                          capture_output=True, text=True, timeout=120, cwd=REPO)  # fmt: skip


def test_spec_check_reports_every_bad_file_in_one_line(tmp_path: Path) -> None:
    minimal = "name: {name}\nsource: {{kind: folder, path: x}}\nresolutions: [32]\n"
    (tmp_path / "x").mkdir()  # a source that exists: groups whose data is absent are left out on purpose
    (tmp_path / "good.yaml").write_text(minimal.format(name="good"))
    (tmp_path / "typo.yaml").write_text(minimal.format(name="typo") + "configs:\n  a:\n    cfg: paper256\n")
    (tmp_path / "cron.yaml").write_text(minimal.format(name="cron") + "schedule: '61 * * * *'\n")
    result = _spec_check(tmp_path)
    assert result.returncode == 1
    errors = result.stderr.strip().splitlines()
    assert len(errors) == 2 and "Traceback" not in result.stderr
    assert any(line.startswith(f"{tmp_path / 'typo.yaml'}: configs.a.cfg:") and "did you mean 'preset'" in line
               for line in errors)  # fmt: skip
    assert any(line.startswith(f"{tmp_path / 'cron.yaml'}: schedule.cron:") for line in errors)
    assert result.stdout.count(": ok (") == 1
    result = _spec_check(REPO / "datasets_spec")
    assert result.returncode == 0 and result.stdout.count(": ok (") == 5, result.stderr


CRONS_BOTH_ACCEPT = ["0 3 * * 0", "*/15 * * * *", "0 0-5,7 1 jan-mar mon-fri", "59 23 31 12 7", "@daily", "5 4 * * sun"]
CRONS_DAGSTER_REFUSES = ["61 * * * *", "* 24 * * *", "0 0 32 * *", "0 0 * 13 *", "0 0 * * 8", "0 0 * *"]


@pytest.mark.parametrize("cron", CRONS_BOTH_ACCEPT + CRONS_DAGSTER_REFUSES)
def test_cron_check_is_never_looser_than_dagster(cron: str) -> None:
    from dagster._utils.schedules import is_valid_cron_string

    try:
        cron_expression(cron)
        ours = True
    except ValueError:
        ours = False
    assert ours == (cron in CRONS_BOTH_ACCEPT)
    if ours:
        assert is_valid_cron_string(cron), cron


def test_one_bad_spec_leaves_the_other_groups_loaded(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    import dagster as dg

    from dagster_project.definitions import build_definitions

    minimal = "name: {name}\nsource: {{kind: folder, path: x}}\nresolutions: [32]\n"
    (tmp_path / "x").mkdir()  # a source that exists: groups whose data is absent are left out on purpose
    (tmp_path / "good.yaml").write_text(minimal.format(name="good"))
    (tmp_path / "bad.yaml").write_text(minimal.format(name="bad") + "configs:\n  a:\n    mbstd_group: 3\n")
    with caplog.at_level(logging.ERROR):
        defs = build_definitions(tmp_path)
    keys = {key.to_user_string() for key in defs.resolve_asset_graph().get_all_asset_keys()}
    assert "good/dataset" in keys and not any(key.startswith("bad/") for key in keys)
    assert f"{tmp_path / 'bad.yaml'}: configs.a.mbstd_group:" in caplog.text
    (error_asset,) = [asset for asset in defs.assets if asset.key.path[0] == "spec_errors"]  # visible in the UI
    assert error_asset.descriptions_by_key[error_asset.key].startswith(f"{tmp_path / 'bad.yaml'}: configs.a.")
    assert isinstance(defs, dg.Definitions)


def test_a_config_that_fails_only_at_the_launch_world_size_names_the_yaml_key(tmp_path: Path) -> None:
    from dagster_project.training import DatasetFacts, plan_training

    facts = DatasetFacts(tmp_path / "d.zip", tmp_path / "d.parquet", "a" * 64, 3, 0)
    where = "datasets_spec/x.yaml: configs.small"
    with pytest.raises(
        ValueError, match=r"^datasets_spec/x\.yaml: configs\.small\.batch: .* change batch_gpu \(with 3 GPUs\)"
    ):
        plan_training(tmp_path / "runs", "auto", {"batch": 8, "batch_gpu": 4}, 16, 3, facts, where)


def test_train_bad_value_is_a_short_usage_error(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "stylegan_core.cli", "train", "--outdir", str(tmp_path), "--data", "x.zip",
         "--augpipe", "bgcx"],
        capture_output=True, text=True, timeout=120, cwd=REPO,
    )  # fmt: skip
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 2 and "Traceback" not in result.stderr
    assert lines[1].startswith("stylegan train: error: argument --augpipe:") and "'bgcx'" in lines[1]
    assert not any(tmp_path.iterdir())
