"""`stylegan video`: a looping latent-interpolation video through seeds, as StyleGAN3's gen_video.py."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from stylegan_core.cli.arguments import whole_number
from stylegan_core.cli.generate import (
    add_network_argument,
    add_rendering_arguments,
    load_network,
    parse_grid_size,
    resolve_device,
    seeds_argument,
)
from stylegan_core.export.interpolation import InterpolationConfig, frame_count, interpolation_frames
from stylegan_core.export.video_writer import check_animation_size, resolve_output, write_video

DEFAULT_FPS = 60  # gen_video.py's frame rate


def register(subparsers: argparse._SubParsersAction) -> None:
    defaults = InterpolationConfig()
    parser = subparsers.add_parser(
        "video",
        help="latent interpolation video through seeds (MP4, else animated WebP/GIF)",
        description="A closed loop through the seeds' w (cubic spline, as StyleGAN3's gen_video.py), one "
        "interpolation per grid cell. MP4 needs the optional imageio-ffmpeg package; without it an .mp4 request "
        "is written as animated WebP (or GIF).",
    )
    add_network_argument(parser)
    parser.add_argument("--seeds", required=True, type=seeds_argument, help="keyframe seeds, e.g. 0-31")
    parser.add_argument("--grid", type=parse_grid_size, default=defaults.grid, help="COLUMNSxROWS (default 1x1)")
    parser.add_argument("--frames-per-seed", "--w-frames", dest="frames_per_seed", type=whole_number(1, 1_000_000),
                        default=defaults.frames_per_seed,
                        help="frames between keyframes (default %(default)s)")  # fmt: skip
    parser.add_argument("--num-keyframes", type=whole_number(1, 1_000_000),
                        help="keyframes per cell (default: number of seeds / grid cells)")  # fmt: skip
    parser.add_argument("--shuffle-seed", type=int, help="shuffle the keyframe seeds with this seed")
    parser.add_argument(
        "--fps", type=whole_number(1, 1000), default=DEFAULT_FPS, help="frames per second (default %(default)s)"
    )
    parser.add_argument("--output", required=True, type=Path, help="video file: .mp4, .webp or .gif")
    add_rendering_arguments(parser, defaults.noise_mode)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from stylegan_core.cli.locate import resolve_class, resolve_network

    config = InterpolationConfig(
        grid=args.grid, frames_per_seed=args.frames_per_seed, num_keyframes=args.num_keyframes,
        shuffle_seed=args.shuffle_seed, truncation_psi=args.truncation_psi, noise_mode=args.noise_mode,
    )  # fmt: skip
    frames = frame_count(args.seeds, config)  # checks seeds against the grid before the network loads
    output, note = resolve_output(args.output)
    network = resolve_network(args.network, "--network")
    G = load_network(network, resolve_device(args.device))
    config = dataclasses.replace(config, class_idx=resolve_class(args.class_idx, network, G.c_dim))
    columns, rows = config.grid
    check_animation_size(output, frames, rows * G.img_resolution, columns * G.img_resolution)
    if note:
        print(f"note: {note}")
    path = write_video(interpolation_frames(G, args.seeds, config), output, args.fps)
    print(f"wrote {path} ({frames} frames, {args.fps} fps)")
    return 0
