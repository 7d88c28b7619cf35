"""`stylegan import-nvidia IN.pkl OUT.pt`: an NVIDIA network pickle -> our snapshot format, without running its code.

The output loads with `torch.load(weights_only=True)` and works wherever a snapshot does: `stylegan generate
--network OUT.pt`, `stylegan train --resume OUT.pt` (a fine-tune: weights only, fresh optimisers and progress).
Commands that take a network also read the .pkl directly; converting once avoids re-reading the pickle.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from stylegan_core.io.snapshot import Snapshot


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "import-nvidia",
        help="convert an NVIDIA StyleGAN2-ADA / StyleGAN3-stylegan2 network pickle to a snapshot",
        description="Read G, D, G_ema and the augment probability from an NVIDIA .pkl with a restricted unpickler "
        "(the Python source embedded in the pickle is never executed) and write them as a stylegan_core snapshot.",
    )
    parser.add_argument("source", type=Path, metavar="IN.pkl", help="NVIDIA network pickle")
    parser.add_argument("output", type=Path, metavar="OUT.pt", help="snapshot to write")
    parser.add_argument("--overwrite", action="store_true", help="replace OUT.pt if it exists")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from stylegan_core.io.nvidia_pickle import load_nvidia_pickle, snapshot_state_from_nvidia
    from stylegan_core.io.snapshot import save_snapshot

    if args.output.exists() and not args.overwrite:
        raise ValueError(f"{args.output} exists; pass --overwrite to replace it")
    networks = load_nvidia_pickle(args.source)
    state = snapshot_state_from_nvidia(networks)
    save_snapshot(args.output, state)
    print(describe(state, args.source, args.output))
    return 0


def describe(snapshot: Snapshot, source: Path, output: Path) -> str:
    """A short human summary of an imported snapshot."""
    G, D, p = snapshot.G_kwargs, snapshot.D_kwargs, snapshot.augment_p
    lines = [
        f"imported {source} -> {output}",
        f"  G: {G['img_resolution']} px, {G['img_channels']} channels, z_dim {G['z_dim']}, w_dim {G['w_dim']}, "
        f"c_dim {G['c_dim']}, {len(snapshot.G)} tensors",
        f"  D: architecture {D.get('architecture', 'resnet')}, {len(snapshot.D)} tensors",
        f"  augment p: {'none' if p is None else f'{p:.4f}'}",
    ]
    lines += [f"  note: {note}" for note in (snapshot.imported_from or {}).get("notes", [])]
    return "\n".join(lines)
