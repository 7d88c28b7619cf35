"""Throughput of the fused ops, reference vs compiled CUDA, at StyleGAN2 layer shapes; both measured in this run.

Shapes (batch 32 at 256 px, batch 4 at 1024 px, channels of the paper configs; float16 where NVIDIA runs the four
highest resolutions in float16 with conv_clamp 256):
  bias_act  lrelu           [32,512,64,64]   fp32   256 px, 64x64 block
  bias_act  lrelu clamp256  [32,128,256,256] fp16   256 px, top block
  bias_act  lrelu clamp256  [4,32,1024,1024] fp16   1024 px, top block
  upsample2d [1,3,3,1]      [32,256,128,128] fp32   upfirdn2d up=2 (G upsampling, 128 -> 256)
  downsample2d [1,3,3,1]    [32,128,256,256] fp16   upfirdn2d down=2 (D downsampling)
  upsample2d [1,3,3,1]      [4,64,512,512]   fp16   1024 px (512 -> 1024)
Each op is timed forward alone and forward + backward (gradient w.r.t. x), with CUDA events around each call after
a warm-up, reporting the median. ops/s is 1 / median time; GB/s counts the bytes the forward must move (each input
read once, the output written once), to compare with the card's copy bandwidth. cuDNN runs as in training
(benchmark mode on, TF32 off, as NVIDIA's training loop sets it).

Usage: python benchmarks/ops_gpu.py [--reps 20] [--quick] [--markdown FILE]   (needs a CUDA GPU)
"""

from __future__ import annotations

import argparse
import datetime
import statistics
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from stylegan_core import ops


@dataclass(frozen=True)
class Case:
    name: str
    op: str  # "bias_act" | "upsample2d" | "downsample2d"
    shape: tuple[int, ...]
    dtype: torch.dtype
    kwargs: dict = field(default_factory=dict)


CASES = [
    Case("bias_act lrelu 256px 64x64", "bias_act", (32, 512, 64, 64), torch.float32, dict(act="lrelu")),
    Case(
        "bias_act lrelu clamp 256px top", "bias_act", (32, 128, 256, 256), torch.float16, dict(act="lrelu", clamp=256)
    ),
    Case(
        "bias_act lrelu clamp 1024px top", "bias_act", (4, 32, 1024, 1024), torch.float16, dict(act="lrelu", clamp=256)
    ),
    Case("upsample2d 128->256", "upsample2d", (32, 256, 128, 128), torch.float32),
    Case("downsample2d 256->128", "downsample2d", (32, 128, 256, 256), torch.float16),
    Case("upsample2d 512->1024", "upsample2d", (4, 64, 512, 512), torch.float16),
]


def make_op(case: Case, impl: str) -> tuple[Callable[[torch.Tensor], torch.Tensor], torch.Tensor]:
    """The op as a function of x (other arguments bound), and a fresh random x on the GPU."""
    x = torch.randn(case.shape, device="cuda", dtype=torch.float32).to(case.dtype)
    if case.op == "bias_act":
        b = torch.randn([case.shape[1]], device="cuda", dtype=case.dtype)
        return (lambda x: ops.bias_act(x, b, impl=impl, **case.kwargs)), x
    f = ops.setup_filter([1, 3, 3, 1], device=torch.device("cuda"))
    resample = ops.upsample2d if case.op == "upsample2d" else ops.downsample2d
    return (lambda x: resample(x, f, impl=impl)), x


def median_ms(step: Callable[[], object], warmup: int, reps: int) -> float:
    for _ in range(warmup):
        step()
    times = []
    for _ in range(reps):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        step()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times)


def forward_bytes(case: Case, fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> int:
    with torch.no_grad():
        out_numel = fn(x).numel()
    return (x.numel() + out_numel) * x.element_size()


def time_case(case: Case, impl: str, reps: int) -> dict[str, float]:
    fn, x = make_op(case, impl)
    with torch.no_grad():
        fwd = median_ms(lambda: fn(x), warmup=3, reps=reps)
    x.requires_grad_(True)
    dy = torch.randn_like(fn(x))

    def forward_backward() -> None:
        x.grad = None
        fn(x).backward(dy)

    both = median_ms(forward_backward, warmup=3, reps=reps)
    gbps = forward_bytes(case, fn, x.detach()) / (fwd * 1e-3) / 1e9
    return {"fwd_ms": fwd, "fwdbwd_ms": both, "fwd_gbps": gbps}


def check_same_result(case: Case) -> float:
    """Max |cuda - ref| / max |ref| of the forward, so a fast wrong kernel cannot pass unnoticed."""
    fn_ref, x = make_op(case, "ref")
    fn_cuda, _ = make_op(case, "cuda")
    with torch.no_grad():
        ref, ours = fn_ref(x).float(), fn_cuda(x).float()
    return float((ours - ref).abs().max() / ref.abs().max())


def run(cases: list[Case], reps: int) -> list[dict]:
    rows = []
    for case in cases:
        torch.cuda.empty_cache()
        ref, cuda = time_case(case, "ref", reps), time_case(case, "cuda", reps)
        rows.append(dict(case=case, ref=ref, cuda=cuda, rel_err=check_same_result(case)))
        print(
            f"{case.name:34s} fwd {ref['fwd_ms']:8.3f} -> {cuda['fwd_ms']:8.3f} ms "
            f"(x{ref['fwd_ms'] / cuda['fwd_ms']:.2f}, {cuda['fwd_gbps']:.0f} GB/s)  fwd+bwd "
            f"{ref['fwdbwd_ms']:8.3f} -> {cuda['fwdbwd_ms']:8.3f} ms (x{ref['fwdbwd_ms'] / cuda['fwdbwd_ms']:.2f})"
            f"  rel.err {rows[-1]['rel_err']:.1e}",
            flush=True,
        )
    return rows


def markdown(rows: list[dict], reps: int) -> str:
    props = torch.cuda.get_device_properties(0)
    lines = [
        f"### Fused ops, reference vs CUDA — {props.name} ({datetime.date.today().isoformat()})",
        "",
        f"`benchmarks/ops_gpu.py`, torch {torch.__version__} (CUDA {torch.version.cuda}), median of {reps} timed calls "
        "with CUDA events after warm-up; ops/s = 1/median; ratios measured in the same run; GB/s = forward bytes "
        "(input read + output written) / forward time.",
        "",
        "| op | shape | dtype | ref fwd ops/s | cuda fwd ops/s | fwd speed-up | ref fwd+bwd ops/s | cuda fwd+bwd ops/s "
        "| fwd+bwd speed-up | cuda fwd GB/s | max rel. err |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        c, ref, cuda = r["case"], r["ref"], r["cuda"]
        lines.append(
            f"| {c.name} | {list(c.shape)} | {str(c.dtype).removeprefix('torch.')} | {1e3 / ref['fwd_ms']:.1f} "
            f"| {1e3 / cuda['fwd_ms']:.1f} | {ref['fwd_ms'] / cuda['fwd_ms']:.2f}x | {1e3 / ref['fwdbwd_ms']:.1f} "
            f"| {1e3 / cuda['fwdbwd_ms']:.1f} | {ref['fwdbwd_ms'] / cuda['fwdbwd_ms']:.2f}x | {cuda['fwd_gbps']:.0f} "
            f"| {r['rel_err']:.1e} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reps", type=int, default=20, help="timed calls per measurement (median reported)")
    parser.add_argument("--quick", action="store_true", help="only the 256 px cases")
    parser.add_argument("--markdown", type=Path, help="append a results section to this file")
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print("ops_gpu.py: needs a CUDA GPU (torch.cuda.is_available() is False)", file=sys.stderr)
        return 2
    torch.backends.cudnn.benchmark = True
    torch.backends.cudnn.allow_tf32 = False
    cases = [c for c in CASES if "1024" not in c.name] if args.quick else CASES
    rows = run(cases, args.reps)
    if args.markdown:
        with open(args.markdown, "a") as handle:
            handle.write("\n" + markdown(rows, args.reps))
    return 0


if __name__ == "__main__":
    sys.exit(main())
