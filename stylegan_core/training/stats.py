"""Training statistics: `report(name, values)` from anywhere in a step, summarised once per tick.

Mirrors NVIDIA's `training_stats` (the same names end up in stats.jsonl), but as an explicit object passed to the
loss instead of a module-level global. Values stay on their device as running [count, sum, sum of squares] in
float64, so reporting never synchronises with the GPU; `summarize()` does one transfer (and one all-reduce across
ranks when training is distributed) per tick.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class StatSummary:
    """Mean, standard deviation and number of values reported under one name since the last summary."""

    num: int
    mean: float
    std: float

    def to_dict(self) -> dict[str, float]:
        return {"num": self.num, "mean": self.mean, "std": self.std}


class StatsCollector:
    """Accumulates reported values per name; `summarize()` returns and resets them (all-reduced when distributed)."""

    def __init__(self, device: torch.device | str = "cpu", distributed: bool = False) -> None:
        self.device = torch.device(device)
        self.distributed = distributed
        self._moments: dict[str, torch.Tensor] = {}

    def report(self, name: str, values: torch.Tensor | float) -> None:
        """Add every element of `values` to the statistic `name` (detached; the graph is never kept)."""
        flat = torch.as_tensor(values).detach().flatten().to(self.device, torch.float64)
        moments = torch.stack([torch.tensor(flat.numel(), dtype=torch.float64, device=self.device), flat.sum(),
                               flat.square().sum()])  # fmt: skip
        if name in self._moments:
            self._moments[name] += moments
        else:
            self._moments[name] = moments

    def summarize(self) -> dict[str, StatSummary]:
        """Summaries of everything reported since the last call, over all ranks; then start afresh."""
        names = sorted(self._moments)
        if self.distributed:
            names = _union_of_names(names)
        if not names:
            return {}
        zeros = torch.zeros(3, dtype=torch.float64, device=self.device)
        stacked = torch.stack([self._moments.get(name, zeros) for name in names])  # [names, 3]
        if self.distributed:
            dist.all_reduce(stacked)
        self._moments.clear()
        return {name: _summary(*row) for name, row in zip(names, stacked.cpu().tolist(), strict=True)}


def _union_of_names(names: list[str]) -> list[str]:
    # Every rank must all-reduce the same rows in the same order, even if one rank skipped a report.
    gathered: list[list[str] | None] = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, names)
    return sorted({name for rank_names in gathered for name in rank_names or []})


def _summary(count: float, total: float, total_sq: float) -> StatSummary:
    if count == 0:
        return StatSummary(num=0, mean=math.nan, std=math.nan)
    mean = total / count
    variance = max(total_sq / count - mean * mean, 0.0)
    return StatSummary(num=int(count), mean=mean, std=math.sqrt(variance))
