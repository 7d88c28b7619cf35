"""Dataset specs (`datasets_spec/<name>.yaml`): strict loading into frozen dataclasses, errors naming file and key.

`load_spec(path)` / `load_specs(folder)` parse; `check_specs(paths)` reports every bad file without stopping at the
first (`stylegan spec check`, the Dagster code location). The training keys of a spec are the one option table of
`stylegan_core.options`; `stylegan_core.spec.docs` renders that table into docs/datasets.md.
"""

from stylegan_core.spec.fields import SpecError
from stylegan_core.spec.loader import (
    DatasetSpec,
    ScheduleSpec,
    SourceSpec,
    TrainingConfigSpec,
    check_specs,
    load_spec,
    load_specs,
)
from stylegan_core.spec.projection import ProjectionTargetsSpec

__all__ = [
    "DatasetSpec",
    "ProjectionTargetsSpec",
    "ScheduleSpec",
    "SourceSpec",
    "SpecError",
    "TrainingConfigSpec",
    "check_specs",
    "load_spec",
    "load_specs",
]
