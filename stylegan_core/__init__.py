"""stylegan_core: a from-scratch PyTorch reimplementation of NVIDIA's StyleGAN2-ADA.

The library never imports Dagster; orchestration lives in ``dagster_project``.
"""

__version__ = "0.1.0"
