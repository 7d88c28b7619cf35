"""Adaptive discriminator augmentation: the controller that moves the augmentation strength p (ADA section 3).

The overfitting heuristic is r_t = E[sign(D(real))]: 0 when D cannot tell training images from generated ones,
1 when it is always sure of them. Every ``interval`` iterations p moves one fixed step towards r_t = ``target``; the
step is sized so p could go from 0 to 1 in ``kimg`` thousand real images (NVIDIA: 500, or 100 when resuming).

Difference from NVIDIA (deliberate): p is clamped to [0, 1]. NVIDIA clamps only at 0, so on a dataset where D
overfits regardless, p grows without bound (stylegan2-ada-pytorch#175 reports p = 21.8); every transform
probability is already saturated at p = 1, so the excess only delays the way back down.

Usage from the training loop: call ``accumulate(sign(D(real_logits)))`` wherever NVIDIA reports
``Loss/signs/real`` (the Dmain and Dreg phases), and after each iteration ``if ada.is_due(batch_idx): ada.update(pipe)``
with ``batch_idx`` already incremented. Under ``torch.distributed`` every rank must call ``update`` together.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
import torch.distributed as dist

from stylegan_core.augment.pipe import AugmentPipe


class AdaController:
    """Accumulates sign(D(real)) and adjusts ``pipe.p`` every ``interval`` iterations.

    ``batch_size`` is the global batch (all ranks and accumulation rounds), as NVIDIA's step size uses it.
    """

    def __init__(self, *, target: float, interval: int, kimg: float, batch_size: int) -> None:
        if not (math.isfinite(target) and -1 <= target <= 1):
            raise ValueError(f"AdaController: target must be in [-1, 1] (a mean of signs), got {target!r}")
        if not (isinstance(interval, int) and interval >= 1):
            raise ValueError(f"AdaController: interval must be an int >= 1, got {interval!r}")
        if not (math.isfinite(kimg) and kimg > 0):
            raise ValueError(f"AdaController: kimg must be > 0, got {kimg!r}")
        if not (isinstance(batch_size, int) and batch_size >= 1):
            raise ValueError(f"AdaController: batch_size must be an int >= 1, got {batch_size!r}")
        self.target = float(target)
        self.interval = interval
        self.kimg = float(kimg)
        self.batch_size = batch_size
        # Kept on the device of the signs so accumulating never waits for the GPU; float64 keeps the sum of +-1
        # values exact, which exact resume relies on.
        self._sign_sum: torch.Tensor | float = 0.0
        self._sign_count: torch.Tensor | float = 0.0

    @property
    def step_size(self) -> float:
        """How far p moves per update: batch_size * interval / (kimg * 1000)."""
        return self.batch_size * self.interval / (self.kimg * 1000)

    def accumulate(self, signs: torch.Tensor) -> None:
        """Add sign(D(real)) values (logits are accepted too: only their sign is used)."""
        signs = signs.detach().sign().to(torch.float64)
        self._sign_sum = self._sign_sum + signs.sum()
        self._sign_count = self._sign_count + signs.numel()

    def is_due(self, batch_idx: int) -> bool:
        """Whether the iteration that just finished (``batch_idx`` counts finished iterations) ends an interval."""
        return batch_idx % self.interval == 0

    def update(self, pipe: AugmentPipe) -> float:
        """Adjust ``pipe.p`` from the signs gathered since the last update (over all ranks) and return r_t.

        With no signs gathered (count 0) p is left alone and NaN is returned.
        """
        totals = torch.tensor([float(self._sign_sum), float(self._sign_count)], dtype=torch.float64)
        if dist.is_available() and dist.is_initialized():
            device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else "cpu"
            totals = totals.to(device)
            dist.all_reduce(totals, op=dist.ReduceOp.SUM)
        sign_sum, sign_count = totals.tolist()
        self._sign_sum, self._sign_count = 0.0, 0.0
        if sign_count == 0:
            return math.nan
        r_t = sign_sum / sign_count
        direction = (r_t > self.target) - (r_t < self.target)
        with torch.no_grad():
            pipe.p.copy_((pipe.p + direction * self.step_size).clamp(0, 1))
        return r_t

    def state_dict(self) -> dict[str, float]:
        """The signs gathered since the last update, so a resumed run updates p exactly as an unbroken one."""
        return {"sign_sum": float(self._sign_sum), "sign_count": float(self._sign_count)}

    def load_state_dict(self, state: Mapping[str, float]) -> None:
        missing = {"sign_sum", "sign_count"} - set(state)
        if missing:
            raise KeyError(f"AdaController.load_state_dict: missing {sorted(missing)} (got {sorted(state)})")
        self._sign_sum = float(state["sign_sum"])
        self._sign_count = float(state["sign_count"])
