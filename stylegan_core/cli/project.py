"""`stylegan project`: find the w of an image (NVIDIA's projector.py), writing proj.png, target.png, projected_w.npz."""

from __future__ import annotations

import argparse
from pathlib import Path

from stylegan_core.cli.arguments import whole_number
from stylegan_core.cli.generate import add_class_argument, add_device_argument, add_network_argument
from stylegan_core.export.projector import DEFAULT_NUM_STEPS, DEFAULT_SEED, MAX_NUM_STEPS

MAX_SEED = 2**32 - 1  # NVIDIA's script seeds numpy too, whose seeds stop here


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "project",
        help="project an image into a network's W space (NVIDIA's projector)",
        description="Optimise w so that the network's image matches --target under VGG16 LPIPS, as NVIDIA's "
        "projector.py: writes target.png, proj.png, projected_w.npz (for `stylegan generate --projected-w`) and, "
        "with --save-video, proj.mp4. Needs NVIDIA's vgg16.pt (--vgg16 or $STYLEGAN_VGG16).",
    )
    add_network_argument(parser)
    parser.add_argument("--target", required=True, type=Path, help="image to project (centre-cropped, resized)")
    parser.add_argument("--outdir", required=True, type=Path, help="folder for the outputs")
    parser.add_argument("--num-steps", type=whole_number(1, MAX_NUM_STEPS), default=DEFAULT_NUM_STEPS,
                        help="optimisation steps (default %(default)s)")  # fmt: skip
    parser.add_argument("--seed", type=whole_number(0, MAX_SEED), default=DEFAULT_SEED,
                        help="random seed (default %(default)s)")  # fmt: skip
    parser.add_argument("--save-video", action="store_true",
                        help="also write proj.mp4, target | projection at every step (WebP/GIF without an MP4 "
                        "encoder)")  # fmt: skip
    parser.add_argument("--vgg16", type=Path, help="NVIDIA's vgg16.pt (default: $STYLEGAN_VGG16)")
    add_class_argument(parser)
    add_device_argument(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import time

    from stylegan_core.cli.generate import load_network, resolve_device
    from stylegan_core.cli.locate import resolve_class, resolve_network
    from stylegan_core.errors import InputError
    from stylegan_core.export.generate import class_label
    from stylegan_core.export.projector import project, write_projection
    from stylegan_core.export.projector_target import load_target_image
    from stylegan_core.metrics.vgg import load_vgg16

    if args.outdir.exists() and not args.outdir.is_dir():
        raise InputError(f"--outdir {args.outdir} exists and is not a folder")
    device = resolve_device(args.device)
    network = resolve_network(args.network, "--network")
    # Everything is checked before the (long) optimisation starts.
    G = load_network(network, device)
    class_idx = resolve_class(args.class_idx, network, G.c_dim)
    class_label(G, class_idx)  # a conditional network needs a class in range
    target = load_target_image(args.target, G.img_resolution, G.img_channels)
    vgg = load_vgg16(args.vgg16, device)

    start = time.perf_counter()
    every = max(1, args.num_steps // 20)

    def progress(step: int, num_steps: int, distance: float, loss: float) -> None:
        if step % every == 0 or step == num_steps:
            print(f"step {step:>5d}/{num_steps}: dist {distance:<6.4f} loss {loss:<8.2f}", flush=True)

    projection = project(G, target, vgg=vgg, num_steps=args.num_steps, seed=args.seed, class_idx=class_idx,
                         device=device, progress=progress)  # fmt: skip
    print(f"elapsed {time.perf_counter() - start:.1f} s; LPIPS distance {projection.start_distance:.4f} at the "
          f"mean w, {projection.final_distance:.4f} projected")  # fmt: skip
    paths = write_projection(args.outdir, G, target, projection, save_video=args.save_video)
    print(f"wrote {', '.join(path.name for path in paths.values())} to {args.outdir}")
    return 0
