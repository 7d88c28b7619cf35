"""Image exports: NVIDIA-layout grids (reals/fakes/sample grids) and per-seed images as NVIDIA's generate.py."""

from stylegan_core.export.generate import generate_images, write_seed_grid, write_seed_images
from stylegan_core.export.grid import (
    class_row_labels,
    default_grid_size,
    sample_grid,
    save_image_grid,
    setup_snapshot_image_grid,
    write_sample_grids,
)
from stylegan_core.export.seeds import parse_seeds, seed_to_z, seeds_to_z

__all__ = [
    "class_row_labels",
    "default_grid_size",
    "generate_images",
    "parse_seeds",
    "sample_grid",
    "save_image_grid",
    "seed_to_z",
    "seeds_to_z",
    "setup_snapshot_image_grid",
    "write_sample_grids",
    "write_seed_grid",
    "write_seed_images",
]
