"""What users type for a network: a snapshot file, a run directory, an output folder of runs, or `latest`; and a
class by name.

`--network` / `--resume` accept:
* a file: itself (our snapshot or an NVIDIA pickle);
* a run directory (it has `snapshots/`): its snapshot with the most images shown;
* a folder of numbered run directories (`--outdir` of `stylegan train`, or a Dagster run root): the newest run that has
  a snapshot, and that run's latest snapshot;
* `latest`: the same, in `--outdir` for `train --resume`, in `./runs` for `generate` and `metrics`.

`--class` accepts an index or a class name; names come from the training dataset's manifest (`class_names`, written
for sub-folder labels), recorded in each snapshot.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from stylegan_core.io.snapshot import SNAPSHOT_DIR, find_latest_snapshot

LATEST = "latest"
DEFAULT_RUNS_DIR = Path("runs")
_RUN_ID = re.compile(r"^(\d+)-")


def resolve_network(text: str | Path, flag: str, runs_dir: Path = DEFAULT_RUNS_DIR) -> Path:
    """The snapshot file meant by `text` (see the module docstring); one-line errors name the flag."""
    if str(text) == LATEST:
        found = newest_snapshot(runs_dir)
        if found is None:
            raise FileNotFoundError(f"{flag} latest: no run under {runs_dir}/ has a snapshot yet")
        return found
    path = Path(text).expanduser()
    if path.is_file():
        return path
    if not path.exists():
        raise FileNotFoundError(f"{flag} {path}: no such file or directory")
    found = newest_snapshot(path)
    if found is None:
        raise FileNotFoundError(f"{flag} {path}: no snapshots/network-snapshot-*.pt in it or in a run directory in it")
    return found


def newest_snapshot(folder: Path) -> Path | None:
    """The latest snapshot of `folder` as a run directory, else of its newest numbered run directory having one."""
    if (folder / SNAPSHOT_DIR).is_dir():
        return find_latest_snapshot(folder)
    if not folder.is_dir():
        return None
    runs = sorted(
        ((int(match.group(1)), entry) for entry in folder.iterdir() if (match := _RUN_ID.match(entry.name))),
        reverse=True,
    )
    for _, run_dir in runs:
        found = find_latest_snapshot(run_dir)
        if found is not None:
            return found
    return None


def resolve_class(text: str | None, network: Path, c_dim: int) -> int | None:
    """`--class` as an index: digits are an index, anything else a class name of the network's training data; a
    conditional network without --class is refused with the choices."""
    if text is None:
        if c_dim > 0:  # said here, where the class names are known, rather than by the renderer
            names = class_names(network)
            named = f" or a name ({', '.join(names)})" if names else ""
            raise ValueError(
                f"the network is conditional ({c_dim} classes): choose a class with --class, an index 0..{c_dim - 1}"
                f"{named}"
            )
        return None
    if c_dim == 0:  # as NVIDIA's generate.py: a note, not the renderer's UserWarning with its source line
        print(f"note: --class {text} ignored: the network is unconditional", file=sys.stderr)
        return None
    if re.fullmatch(r"-?\d+", text.strip()):
        return int(text)
    names = class_names(network)
    if not names:
        raise ValueError(
            f"--class {text!r}: this network's class names are unknown (its training data has no manifest with "
            f"class names); give an index 0..{max(c_dim - 1, 0)}"
        )
    if text not in names:
        raise ValueError(f"--class {text!r} is not a class of this network; classes: {', '.join(names)}")
    return names.index(text)


def class_names(network: Path) -> list[str] | None:
    """Class names of the data the snapshot was trained on: recorded in the snapshot (`dataset.class_names`), else
    read from the manifest beside its training zip if that is still where the options say; None if unknown."""
    from stylegan_core.io.snapshot import is_snapshot_file, load_snapshot
    from stylegan_core.training.checkpoint import dataset_class_names

    if not is_snapshot_file(network):
        return None  # NVIDIA pickles carry no class names
    snapshot = load_snapshot(network)
    if snapshot.dataset is not None and snapshot.dataset.class_names:
        return list(snapshot.dataset.class_names)
    data = snapshot.options.get("data")
    data_path = data.get("path") if isinstance(data, dict) else None
    return dataset_class_names(data_path) if isinstance(data_path, str) and data_path else None
