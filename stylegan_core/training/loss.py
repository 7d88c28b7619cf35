"""StyleGAN2 loss with lazy regularisation (Karras et al. 2020, "Analyzing and Improving ...", appendix B).

Six phases with NVIDIA's semantics: `Gmain` (non-saturating logistic loss), `Greg` (path-length penalty), `Gboth`,
`Dmain` (logistic loss on fakes and reals), `Dreg` (R1 on reals), `Dboth`. The penalties are small pure functions;
the phases compose them, report NVIDIA's statistic names and call `backward()` on `loss.mean() * gain` (the caller
passes gain = the phase's interval, which compensates lazy regularisation).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F

from stylegan_core.config import LossConfig

Reporter = Callable[[str, torch.Tensor], None]
PHASES = ("Gmain", "Greg", "Gboth", "Dmain", "Dreg", "Dboth")


def _ignore_report(name: str, values: torch.Tensor) -> None:
    pass


def r1_penalty(real_logits: torch.Tensor, real_img: torch.Tensor) -> torch.Tensor:
    """Per-sample R1 penalty ||d sum(D(x)) / d x||^2 (Mescheder et al. 2018, eq. 9); differentiable again.

    `real_img` must be the leaf that required grad before any augmentation, so the gradient is taken through the
    augment pipe (ADA paper, section 2).
    """
    (gradient,) = torch.autograd.grad(outputs=[real_logits.sum()], inputs=[real_img], create_graph=True)
    return gradient.square().sum(dim=[1, 2, 3])


def path_lengths(img: torch.Tensor, ws: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """Per-sample ||J_w^T y|| with y = noise (StyleGAN2 eq. 4), averaged over the ws as NVIDIA's: [N]."""
    (gradient,) = torch.autograd.grad(outputs=[(img * noise).sum()], inputs=[ws], create_graph=True)
    return gradient.square().sum(dim=2).mean(dim=1).sqrt()


def path_length_penalty(
    lengths: torch.Tensor, pl_mean: torch.Tensor, pl_decay: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Return ((lengths - a)^2, a) where a = lerp(pl_mean, mean(lengths), pl_decay) is the new running mean.

    As in NVIDIA's code, `a` is not detached inside the penalty; the caller stores `a.detach()` as the new pl_mean.
    """
    new_mean = pl_mean.lerp(lengths.mean(), pl_decay)
    return (lengths - new_mean).square(), new_mean


def path_length_noise(img: torch.Tensor) -> torch.Tensor:
    """y ~ N(0, I) / sqrt(H W): image-space noise whose scale does not depend on the resolution."""
    return torch.randn_like(img) / math.sqrt(img.shape[2] * img.shape[3])


class StyleGAN2Loss:
    """Accumulates gradients of one phase into G or D; `pl_mean` is the path-length running mean (state)."""

    def __init__(
        self,
        G: torch.nn.Module,
        D: torch.nn.Module,
        config: LossConfig,
        augment_pipe: torch.nn.Module | None = None,
        report: Reporter | None = None,
        noise_mode: str = "random",
    ) -> None:
        self.G = G
        self.D = D
        self.config = config
        self.augment_pipe = augment_pipe
        self.report = report or _ignore_report
        self.noise_mode = noise_mode  # 'const' only for the parity tests with NVIDIA's vectors
        device = next(G.parameters()).device
        self.pl_mean = torch.zeros([], device=device)

    def run_G(self, z: torch.Tensor, c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Generate images and return them with the ws used (style mixing applied)."""
        ws = self.G.mapping(z, c)
        if self.config.style_mixing_prob > 0:
            ws = self._mix_styles(ws, z, c)
        img = self.G.synthesis(ws, noise_mode=self.noise_mode)
        return img, ws

    def _mix_styles(self, ws: torch.Tensor, z: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        # One cutoff for the whole batch, ~U[1, num_ws); with prob 1 - p it is num_ws (no mixing). The second
        # latent must not move w_avg, so the average keeps describing the distribution of single latents.
        num_ws = ws.shape[1]
        cutoff = torch.empty([], dtype=torch.int64, device=ws.device).random_(1, num_ws)
        mix = torch.rand([], device=ws.device) < self.config.style_mixing_prob
        cutoff = torch.where(mix, cutoff, torch.full_like(cutoff, num_ws))
        ws_mixed = self.G.mapping(torch.randn_like(z), c, skip_w_avg_update=True)
        layer = torch.arange(num_ws, device=ws.device).view(1, num_ws, 1)
        return torch.where(layer < cutoff, ws, ws_mixed)

    def run_D(self, img: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """D's logits on augmented images (every image D sees is augmented: ADA's non-leaking requirement)."""
        if self.augment_pipe is not None:
            img = self.augment_pipe(img)
        return self.D(img, c)

    def accumulate_gradients(
        self,
        phase: str,
        real_img: torch.Tensor,
        real_c: torch.Tensor,
        gen_z: torch.Tensor,
        gen_c: torch.Tensor,
        gain: float,
    ) -> None:
        """Add d(loss * gain)/d(params) of `phase` to the `.grad` of whichever parameters require grad."""
        if phase not in PHASES:
            raise ValueError(f"unknown loss phase {phase!r}; expected one of {', '.join(PHASES)}")
        do_Gmain = phase in ("Gmain", "Gboth")
        do_Gpl = phase in ("Greg", "Gboth") and self.config.pl_weight != 0
        do_Dmain = phase in ("Dmain", "Dboth")
        do_Dr1 = phase in ("Dreg", "Dboth") and self.config.r1_gamma != 0
        if do_Gmain:
            self._generator_main(gen_z, gen_c, gain)
        if do_Gpl:
            self._generator_path_length(gen_z, gen_c, gain)
        loss_Dgen = self._discriminator_fake(gen_z, gen_c, gain) if do_Dmain else None
        if do_Dmain or do_Dr1:
            self._discriminator_real(real_img, real_c, loss_Dgen, do_Dmain, do_Dr1, gain)

    def _generator_main(self, gen_z: torch.Tensor, gen_c: torch.Tensor, gain: float) -> None:
        gen_img, _ = self.run_G(gen_z, gen_c)
        gen_logits = self.run_D(gen_img, gen_c)
        self.report("Loss/scores/fake", gen_logits)
        self.report("Loss/signs/fake", gen_logits.sign())
        loss_Gmain = F.softplus(-gen_logits)  # -log(sigmoid(D(G(z))))
        self.report("Loss/G/loss", loss_Gmain)
        loss_Gmain.mean().mul(gain).backward()

    def _generator_path_length(self, gen_z: torch.Tensor, gen_c: torch.Tensor, gain: float) -> None:
        batch_size = max(gen_z.shape[0] // self.config.pl_batch_shrink, 1)
        gen_img, gen_ws = self.run_G(gen_z[:batch_size], gen_c[:batch_size])
        lengths = path_lengths(gen_img, gen_ws, path_length_noise(gen_img))
        pl_penalty, new_mean = path_length_penalty(lengths, self.pl_mean, self.config.pl_decay)
        self.pl_mean.copy_(new_mean.detach())
        self.report("Loss/pl_penalty", pl_penalty)
        loss_Gpl = pl_penalty * self.config.pl_weight
        self.report("Loss/G/reg", loss_Gpl)
        # The `* 0` term puts every synthesis parameter into the graph (the toRGB of the last block is otherwise
        # unused by the penalty), so gradient all-reduce sees the same set of gradients on every rank.
        (gen_img[:, 0, 0, 0] * 0 + loss_Gpl).mean().mul(gain).backward()

    def _discriminator_fake(self, gen_z: torch.Tensor, gen_c: torch.Tensor, gain: float) -> torch.Tensor:
        gen_img, _ = self.run_G(gen_z, gen_c)
        gen_logits = self.run_D(gen_img, gen_c)
        self.report("Loss/scores/fake", gen_logits)
        self.report("Loss/signs/fake", gen_logits.sign())
        loss_Dgen = F.softplus(gen_logits)  # -log(1 - sigmoid(D(G(z))))
        loss_Dgen.mean().mul(gain).backward()
        return loss_Dgen.detach()

    def _discriminator_real(
        self,
        real_img: torch.Tensor,
        real_c: torch.Tensor,
        loss_Dgen: torch.Tensor | None,
        do_Dmain: bool,
        do_Dr1: bool,
        gain: float,
    ) -> None:
        # requires_grad is set on the un-augmented image so that R1 differentiates through the augment pipe.
        real_img_tmp = real_img.detach().requires_grad_(do_Dr1)
        real_logits = self.run_D(real_img_tmp, real_c)
        self.report("Loss/scores/real", real_logits)
        self.report("Loss/signs/real", real_logits.sign())
        loss = real_logits * 0
        if do_Dmain:
            loss_Dreal = F.softplus(-real_logits)  # -log(sigmoid(D(x)))
            self.report("Loss/D/loss", loss_Dreal if loss_Dgen is None else loss_Dgen + loss_Dreal)
            loss = loss + loss_Dreal
        if do_Dr1:
            penalty = r1_penalty(real_logits, real_img_tmp)
            loss_Dr1 = penalty * (self.config.r1_gamma / 2)
            self.report("Loss/r1_penalty", penalty)
            self.report("Loss/D/reg", loss_Dr1)
            loss = loss + loss_Dr1.unsqueeze(1)  # [N] -> [N, 1] to match the logits
        loss.mean().mul(gain).backward()
