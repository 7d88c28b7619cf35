"""ADA augmentation: the 18-transform pipeline, NVIDIA's ``--augpipe`` presets and the adaptive-p controller."""

from stylegan_core.augment.ada import AdaController
from stylegan_core.augment.pipe import AugmentPipe
from stylegan_core.augment.presets import AUGPIPE_PRESETS, build_augment_pipe
from stylegan_core.augment.transforms import AugmentSettings

__all__ = ["AUGPIPE_PRESETS", "AdaController", "AugmentPipe", "AugmentSettings", "build_augment_pipe"]
