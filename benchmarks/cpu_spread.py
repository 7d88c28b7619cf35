"""How far do key computations move across CPU kernel families and thread counts? (issue 12)

Runs itself in a subprocess under every ``ATEN_CPU_CAPABILITY`` this CPU supports (default, avx2, avx512) x
``OMP_NUM_THREADS`` in {1, 4}, saves each family's outputs, and prints per family the largest
``max|a - b| / max|b|`` (a) against NVIDIA's reference vectors where they exist and (b) against the first setting.
These numbers justify the tolerances in tests/ (tests/numerics.py). Families:

  init      seeded Generator/Discriminator construction vs NVIDIA's fingerprints (sum and first values)
  ops       the 86 op cases of ops.npz: outputs and input gradients
  networks  G/D forward outputs of networks/*_io.npz
  loss      Gmain/Dmain/Dreg reports and parameter gradients of loss.npz
  metrics   a stand-in detector on 10 images in batches of 4 vs 10, and FID on those features
  inception the real FID detector (if installed) on 4 fixed 64 px images
  augment   the bgcfnc pipeline at p = 1 on 4 noise images, fixed seed
  training  first-tick loss means of the tiny conditional run pinned in tests/test_training_loop.py

    .venv/bin/python benchmarks/cpu_spread.py            # all settings (about a minute each on 2 busy cores)
    .venv/bin/python benchmarks/cpu_spread.py --threads 1
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
TESTS = ROOT / "tests"
CAPABILITIES = ("default", "avx2", "avx512")


def _child(out: Path) -> None:
    """Compute every family under the current environment and save {family/key: array} to `out`."""
    sys.path[:0] = [str(TESTS)]
    import torch

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    arrays: dict[str, np.ndarray] = {}
    for family in (_init, _ops, _networks, _loss, _metrics, _inception, _augment, _training):
        for key, value in family().items():
            arrays[f"{family.__name__[1:]}/{key}"] = np.asarray(value, dtype=np.float64)
    arrays["meta/capability"] = np.asarray([CAPABILITIES.index(torch.backends.cpu.get_cpu_capability().lower())])
    np.savez(out, **arrays)


def _init() -> dict[str, np.ndarray]:
    import torch
    from test_networks_parity import MODELS

    from stylegan_core.networks import Discriminator, Generator

    out = {}
    for tag, model in MODELS.items():
        torch.manual_seed(model["construct_seed"])
        network = (Generator if tag.startswith("G") else Discriminator)(**model["kwargs"])
        for name, value in network.state_dict().items():
            total, first3 = model["constructor_fingerprint_sum_first3"][name]
            value = value.double()
            out[f"{tag}/{name}"] = value.flatten().numpy()
            out[f"{tag}/{name}/ref_fingerprint"] = np.array([total, *first3])
            out[f"{tag}/{name}/fingerprint"] = np.array([value.sum().item(), *value.flatten()[:3].tolist()])
    return out


def _ops() -> dict[str, np.ndarray]:
    import torch
    from test_ops_parity import CASES, REFERENCE, RUNNERS

    from stylegan_core import ops

    out = {}
    with np.load(REFERENCE / "ops.npz", allow_pickle=False) as npz:
        vectors = {key: npz[key] for key in npz.files}
    for case, spec in sorted(CASES.items()):
        field = lambda name, case=case: vectors[f"{case}/{name}"]  # noqa: E731
        if spec["op"] == "setup_filter":
            out[f"{case}/y"] = ops.setup_filter(field("f_in"), **spec["kwargs"]).numpy()
            out[f"{case}/y/ref"] = field("y")
            continue
        grad_names = [g.removeprefix("grad_") for g in spec["grads"]]
        tensors = {name: torch.tensor(field(name), requires_grad=name in grad_names)
                   for name in [*spec["inputs"], "f"] if f"{case}/{name}" in vectors}  # fmt: skip
        y = RUNNERS[spec["op"]](tensors, spec["kwargs"])
        out[f"{case}/y"], out[f"{case}/y/ref"] = y.detach().numpy(), field("y")
        grads = torch.autograd.grad((y * torch.tensor(field("dy"))).sum(), [tensors[n] for n in grad_names])
        for name, grad in zip(grad_names, grads, strict=True):
            out[f"{case}/grad_{name}"], out[f"{case}/grad_{name}/ref"] = grad.numpy(), field(f"grad_{name}")
    return out


def _networks() -> dict[str, np.ndarray]:
    import torch
    from test_networks_parity import D_TAGS, G_TAGS, MODELS, load_io, load_state

    from stylegan_core.io.nvidia import discriminator_from_nvidia, generator_from_nvidia

    out = {}
    with torch.no_grad():
        for tag in G_TAGS:
            G, io = generator_from_nvidia(MODELS[tag]["kwargs"], load_state(tag)).eval(), load_io(tag)
            z, c, ws = (torch.from_numpy(io[key]) for key in ("z", "c", "ws_psi1"))
            out[f"{tag}/ws_psi1"], out[f"{tag}/ws_psi1/ref"] = G.mapping(z, c, truncation_psi=1).numpy(), io["ws_psi1"]
            out[f"{tag}/img_const"] = G.synthesis(ws, noise_mode="const").numpy()
            out[f"{tag}/img_const/ref"] = io["img_const"]
            out[f"{tag}/img_const_unfused"] = G.synthesis(ws, noise_mode="const", fused_modconv=False).numpy()
            out[f"{tag}/img_const_unfused/ref"] = io["img_const_unfused"]
        for tag in D_TAGS:
            D, io = discriminator_from_nvidia(MODELS[tag]["kwargs"], load_state(tag)), load_io(tag)
            img, c = torch.from_numpy(io["img"]), torch.from_numpy(io["c"])
            out[f"{tag}/logits"], out[f"{tag}/logits/ref"] = D(img, c).numpy(), io["logits"]
    return out


def _loss() -> dict[str, np.ndarray]:
    import json

    import test_training_loss as loss_tests

    ref = TESTS / "fixtures" / "reference"
    description = json.loads((ref / "loss.json").read_text())
    models = json.loads((ref / "networks" / "networks.json").read_text())["models"]
    arrays = dict(np.load(ref / "loss.npz", allow_pickle=False))
    states = {tag: dict(np.load(ref / "networks" / f"{tag}_state.npz", allow_pickle=False))
              for tag in (description["G"], description["D"])}  # fmt: skip
    reference = (description, models, arrays, states)
    out = {}
    for phase in ("Gmain", "Dmain", "Dreg"):
        _, module, _ = loss_tests._run_phase(reference, phase)
        for name, param in module.named_parameters():
            key = f"{phase}/grad/{name}"
            if key in arrays:
                out[key], out[f"{key}/ref"] = param.grad.numpy().reshape(arrays[key].shape), arrays[key]
    return out


def _metrics() -> dict[str, np.ndarray]:
    import torch
    from metrics_support import CountingDetector, random_images

    from stylegan_core.metrics import feature_statistics, frechet_distance, polynomial_mmd2

    images = torch.from_numpy(random_images(64, resolution=8).transpose(0, 3, 1, 2).copy())
    detector = CountingDetector(feature_dim=16)
    with torch.no_grad():  # the projection from numpy, not torch.randn: the same detector on every ISA
        detector.projection.copy_(torch.from_numpy(np.random.RandomState(1).randn(6, 16).astype(np.float32)))
        batched = torch.cat([detector(batch) for batch in images.split(4)]).double().numpy()
        whole = detector(images).double().numpy()
        fakes = detector(images.flip(3).roll(1, dims=2) // 2).double().numpy()
    whole, fakes = whole[:, :6], fakes[:, :6]  # six moments span the features: keep the covariance full-rank
    stats = [feature_statistics(x) for x in (whole, fakes)]
    return {"features_batch4": batched[:, :6], "features_batch4/ref": whole, "features": whole,
            "fid": np.array([frechet_distance(*stats[0], *stats[1])]),
            "kid": np.array([polynomial_mmd2(whole, fakes)])}  # fmt: skip


def _inception() -> dict[str, np.ndarray]:
    """The real FID detector (when its weights are installed) on 4 fixed 64 px images: what demo FID rests on."""
    import torch

    from stylegan_core.metrics.inception import load_detector

    try:
        detector = load_detector()
    except Exception as problem:  # noqa: BLE001 - weights not installed: the family is simply absent
        print(f"inception family skipped: {problem}", file=sys.stderr)
        return {}
    images = torch.from_numpy(np.random.RandomState(0).randint(0, 256, size=[4, 3, 64, 64]).astype(np.uint8))
    with torch.inference_mode():
        return {"features": detector(images).double().numpy()}


def _augment() -> dict[str, np.ndarray]:
    import torch

    from stylegan_core.augment import build_augment_pipe

    images = torch.randn([4, 3, 32, 32], generator=torch.Generator().manual_seed(0))
    torch.manual_seed(1)
    with torch.no_grad():
        return {"bgcfnc": build_augment_pipe("bgcfnc", 1.0)(images).numpy()}


def _training() -> dict[str, np.ndarray]:
    import json

    import test_training_loop as loop_tests
    from training_support import tiny_options, write_tiny_dataset

    from stylegan_core.training import train

    with tempfile.TemporaryDirectory() as folder:
        data = write_tiny_dataset(Path(folder) / "tiny.zip")
        options = tiny_options(data, cond=True, aug="noaug", kimg=0.004, tick=0.004, snap="none")
        train(options, Path(folder) / "run")
        first = json.loads((Path(folder) / "run" / "stats.jsonl").read_text().splitlines()[0])
    names = sorted(loop_tests.GOLDEN_FIRST_TICK)
    values = np.array([first[n]["mean"] for n in names])
    golden = np.array([loop_tests.GOLDEN_FIRST_TICK[n] for n in names])
    # Also each loss relative to its own golden value (the test's pytest.approx(rel=...)): ratio against ones.
    return {"first_tick": values, "first_tick/ref": golden,
            "first_tick_relative": values / golden, "first_tick_relative/ref": np.ones_like(golden)}  # fmt: skip


def _ratio(a: np.ndarray, b: np.ndarray) -> float:
    scale = float(np.abs(b).max(initial=0.0))
    error = float(np.abs(a - b).max(initial=0.0))
    return error / scale if scale else (0.0 if error == 0 else float("inf"))


def _family_spreads(run: dict[str, np.ndarray], base: dict[str, np.ndarray]) -> dict[str, tuple[float, float, str]]:
    """family -> (worst vs reference, worst vs the base setting, key of the worst vs base)."""
    spreads: dict[str, list] = {}
    for key, value in run.items():
        if key.startswith("meta/") or key.endswith("/ref") or key.endswith("/ref_fingerprint"):
            continue
        family = key.split("/", 1)[0]
        entry = spreads.setdefault(family, [0.0, 0.0, ""])
        if f"{key}/ref" in run:
            entry[0] = max(entry[0], _ratio(value, run[f"{key}/ref"]))
        if key.endswith("/fingerprint"):  # sum judged at sum|x|, first values at max|x| (tests/test_networks_parity)
            full = np.abs(run[key.removesuffix("/fingerprint")])
            ref = run[key.removesuffix("/fingerprint") + "/ref_fingerprint"]
            sums = abs(value[0] - ref[0]) / (full.sum() or 1.0)
            firsts = float(np.abs(value[1:] - ref[1:]).max()) / (full.max() or 1.0)
            entry[0] = max(entry[0], sums, firsts)
        if key.endswith("/fingerprint"):
            continue  # the full tensors are compared across settings instead
        spread = _ratio(value, base[key])
        if spread > entry[1]:
            entry[1], entry[2] = spread, key
    return {family: (a, b, key) for family, (a, b, key) in spreads.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--capabilities", nargs="+", default=list(CAPABILITIES))
    args = parser.parse_args()
    if args.child:
        _child(args.child)
        return
    runs: dict[str, dict[str, np.ndarray]] = {}
    with tempfile.TemporaryDirectory() as folder:
        for capability in args.capabilities:
            for threads in args.threads:
                setting = f"{capability}/{threads}t"
                out = Path(folder) / f"{capability}_{threads}.npz"
                env = {**os.environ, "ATEN_CPU_CAPABILITY": capability, "OMP_NUM_THREADS": str(threads),
                       "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}  # fmt: skip
                subprocess.run([sys.executable, __file__, "--child", str(out)], env=env, check=True, cwd=ROOT)
                with np.load(out) as data:
                    runs[setting] = {key: data[key] for key in data.files}
                got = CAPABILITIES[int(runs[setting]["meta/capability"][0])]
                print(f"ran {setting} (torch used {got})", flush=True)
    base_name = next(iter(runs))
    print(f"\nmax|a-b|/max|b| per family; 'vs NVIDIA' = against the reference vectors, 'vs {base_name}' = spread")
    families = None
    totals: dict[str, list[float]] = {}
    for setting, run in runs.items():
        spreads = _family_spreads(run, runs[base_name])
        families = families or list(spreads)
        row = "  ".join(f"{f} {spreads[f][0]:.1e}/{spreads[f][1]:.1e}" for f in families)
        print(f"{setting:>12}  {row}")
        for family, (ref, spread, key) in spreads.items():
            worst = totals.setdefault(family, [0.0, 0.0, ""])
            worst[0] = max(worst[0], ref)
            if spread >= worst[1]:
                worst[1], worst[2] = spread, key
    print("\nworst over all settings (vs NVIDIA / across settings, where):")
    for family, (ref, spread, key) in totals.items():
        print(f"  {family:9} {ref:.2e} / {spread:.2e}  {key}")


if __name__ == "__main__":
    main()
