"""Great Expectations suite on a dataset manifest: the gate before any GPU hour is spent.

GX 1.x runs in an ephemeral context (no project files), progress bars off, and is imported only inside
`validate_manifest` because importing it costs about 3 s. Each row of the report names our check (e.g.
`width_is_resolution`), the GX expectation behind it, the column, and up to five offending values.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from stylegan_core.data.manifest import manifest_from_archive, onehot_columns, read_manifest
from stylegan_core.data.options import is_power_of_two

POWERS_OF_TWO = [2**k for k in range(2, 17)]
# Python's int (labels go to GX as objects) plus numpy / pandas integer dtype names.
_INTEGER_TYPES = ["int", *(f"{prefix}{bits}" for prefix in ("int", "Int", "uint", "UInt") for bits in (8, 16, 32, 64))]
_EXAMPLES = 5
_NUMERIC_LABEL = "_label_numeric"


@dataclass(frozen=True)
class ValidationReport:
    """Pass/fail plus one row per expectation (dicts with expectation, gx_type, column, success, unexpected_count,
    examples, details)."""

    success: bool
    rows: list[dict[str, Any]]
    statistics: dict[str, Any] = field(default_factory=dict)

    @property
    def failed(self) -> list[str]:
        return [row["expectation"] for row in self.rows if not row["success"]]

    def to_frame(self) -> pd.DataFrame:
        return pd.DataFrame(self.rows)

    def summary(self) -> str:
        """One line: what passed or which checks failed."""
        if self.success:
            return f"all {len(self.rows)} expectations passed"
        return f"{len(self.failed)} of {len(self.rows)} expectations failed: {', '.join(self.failed)}"


def load_manifest_for(path: str | os.PathLike[str]) -> pd.DataFrame:
    """A manifest from a Parquet file, or built from a dataset zip/folder (ours or NVIDIA's)."""
    path = Path(path)
    if path.suffix == ".parquet":
        return read_manifest(path)
    return manifest_from_archive(path)


def validate_manifest(
    manifest: pd.DataFrame | str | os.PathLike[str],
    resolution: int,
    channels: int | None = None,
    label_dim: int | None = None,
) -> ValidationReport:
    """Run the suite: resolution (power of two, as expected, square), uniform channels (`channels`, else 1 or 3),
    labels integer in [0, label_dim) with one-hot rows summing to 1 (when labelled), unique paths, at least one row."""
    if not is_power_of_two(resolution) or resolution < 4:
        raise ValueError(f"expected resolution must be a power of two >= 4, got {resolution}")
    frame = manifest if isinstance(manifest, pd.DataFrame) else load_manifest_for(manifest)
    onehot = onehot_columns(frame)
    labelled = bool(onehot) or ("label" in frame and frame["label"].notna().any())
    if labelled and label_dim is None:
        label_dim = len(onehot) if onehot else int(pd.to_numeric(frame["label"], errors="coerce").max()) + 1
    checks = _checks(resolution, channels, label_dim if labelled else None, onehot)
    rows, statistics = _run_gx(_prepare_for_gx(frame, labelled), checks)
    if labelled:
        rows.append(_onehot_layout_row(onehot, label_dim))
    return ValidationReport(all(row["success"] for row in rows), rows, statistics)


def _checks(
    resolution: int, channels: int | None, label_dim: int | None, onehot: list[str]
) -> list[tuple[str, str, Any]]:
    """(our name, description, GX expectation) for each check; GX classes imported here, lazily."""
    import great_expectations.expectations as gxe

    allowed_channels = [channels] if channels is not None else [1, 3]
    checks = [
        ("row_count_positive", "the dataset has at least one image", gxe.ExpectTableRowCountToBeBetween(min_value=1)),
        ("paths_unique", "no archive path appears twice", gxe.ExpectColumnValuesToBeUnique(column="path")),
        (
            "width_power_of_two",
            "image width is a power of two",
            gxe.ExpectColumnValuesToBeInSet(column="width", value_set=POWERS_OF_TWO),
        ),
        (
            "width_is_resolution",
            f"image width equals {resolution}",
            gxe.ExpectColumnValuesToBeInSet(column="width", value_set=[resolution]),
        ),
        (
            "height_is_resolution",
            f"image height equals {resolution}",
            gxe.ExpectColumnValuesToBeInSet(column="height", value_set=[resolution]),
        ),
        ("square", "width equals height", gxe.ExpectColumnPairValuesToBeEqual(column_A="width", column_B="height")),
        (
            "channels_allowed",
            f"channels in {allowed_channels}",
            gxe.ExpectColumnValuesToBeInSet(column="channels", value_set=allowed_channels),
        ),
        (
            "channels_uniform",
            "every image has the same channel count",
            gxe.ExpectColumnUniqueValueCountToBeBetween(column="channels", min_value=1, max_value=1),
        ),
    ]
    if label_dim is not None:
        checks += [
            ("labels_present", "every image has a label", gxe.ExpectColumnValuesToNotBeNull(column="label")),
            (
                "labels_integer",
                "labels are integers",
                gxe.ExpectColumnValuesToBeInTypeList(column="label", type_list=_INTEGER_TYPES),
            ),
            (
                "labels_in_range",
                f"labels lie in [0, {label_dim - 1}]",
                gxe.ExpectColumnValuesToBeBetween(column=_NUMERIC_LABEL, min_value=0, max_value=label_dim - 1),
            ),
        ]
        if onehot:
            checks.append(
                (
                    "onehot_sums_to_one",
                    "each one-hot row sums to exactly 1",
                    gxe.ExpectMulticolumnSumToEqual(column_list=onehot, sum_total=1),
                )
            )
    return checks


def _run_gx(frame: pd.DataFrame, checks: list[tuple[str, str, Any]]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    context.enable_analytics(False)
    batch = (
        context.data_sources.add_pandas("manifest_source")
        .add_dataframe_asset("manifest")
        .add_batch_definition_whole_dataframe("all_rows")
        .get_batch(batch_parameters={"dataframe": frame})
    )
    for name, _description, expectation in checks:
        expectation.meta = {"check": name}
    suite = gx.ExpectationSuite(name="dataset_manifest", expectations=[expectation for _, _, expectation in checks])
    result = batch.validate(suite, result_format="SUMMARY")
    # GX reports results in its own order; the meta tag ties each back to our check.
    outcomes = {outcome.expectation_config.meta["check"]: outcome for outcome in result.results}
    rows = [_row(name, description, outcomes[name]) for name, description, _ in checks]
    return rows, dict(result.statistics)


def _prepare_for_gx(frame: pd.DataFrame, labelled: bool) -> pd.DataFrame:
    """GX 1.24 rejects pandas' nullable Int64 in type checks, so labels go in as Python objects (None for missing),
    which GX checks value by value; a numeric copy serves the range check."""
    if not labelled:
        return frame
    frame = frame.copy()
    values = [None if pd.isna(v) else _integral(_plain(v)) for v in frame["label"]]
    frame["label"] = pd.Series(values, index=frame.index, dtype=object)
    frame[_NUMERIC_LABEL] = pd.to_numeric(frame["label"], errors="coerce")
    return frame


def _row(name: str, description: str, outcome: Any) -> dict[str, Any]:
    config = outcome.expectation_config
    details = dict(outcome.result or {})
    examples = details.get("partial_unexpected_list") or []
    error = (outcome.exception_info or {}).get("exception_message") if outcome.exception_info else None
    kwargs = config.kwargs
    column = _column_of(kwargs)
    if not examples and details.get("observed_value") is not None and not outcome.success:
        examples = [details["observed_value"]]
    return {
        "expectation": name,
        "gx_type": config.type,
        "column": column,
        "success": bool(outcome.success),
        "unexpected_count": int(details.get("unexpected_count") or 0),
        "examples": [_plain(value) for value in examples[:_EXAMPLES]],
        "details": description if not error else f"{description} (error: {error})",
    }


def _column_of(kwargs: dict[str, Any]) -> str:
    if kwargs.get("column") == _NUMERIC_LABEL:
        return "label"
    if kwargs.get("column"):
        return str(kwargs["column"])
    if kwargs.get("column_A"):
        return f"{kwargs['column_A']},{kwargs['column_B']}"
    return "l0..lK" if kwargs.get("column_list") else ""


def _onehot_layout_row(onehot: list[str], label_dim: int) -> dict[str, Any]:
    expected = [f"l{k}" for k in range(label_dim)]
    return {
        "expectation": "onehot_columns",
        "gx_type": "(checked in Python)",
        "column": "l0..lK",
        "success": onehot == expected,
        "unexpected_count": 0 if onehot == expected else abs(len(onehot) - label_dim) or 1,
        "examples": [] if onehot == expected else [f"{len(onehot)} one-hot columns for label_dim {label_dim}"],
        "details": f"one-hot columns l0..l{label_dim - 1}",
    }


def _integral(value: Any) -> Any:
    """2.0 → 2: a float column is how pandas stores integers next to a missing value; 2.5 stays and fails."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


def _plain(value: Any) -> Any:
    """numpy scalars (also inside tuples, lists, dicts) → Python, so rows serialise to JSON and Dagster metadata."""
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    return value.item() if hasattr(value, "item") else value
