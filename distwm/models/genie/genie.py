"""Genie (Bruce et al. 2024, arXiv:2402.15391): a playable world learned from video alone.

:class:`Genie` holds the three parts: the video tokenizer
(:class:`~distwm.vision.video_tokenizer.VideoTokenizer`, patch 4, 1024 codes of dim 32), the
latent action model (:class:`~distwm.models.genie.latent_action_model.LatentActionModel`, on
pixels, patch 16, 8 codes) and the MaskGIT dynamics model
(:class:`~distwm.models.genie.dynamics_model.DynamicsModel`). Training follows the paper: the
tokenizer first, then the LAM and the dynamics model together, the dynamics model reading the
tokenizer's tokens and the LAM's actions through a stop-gradient (:meth:`Genie.phase_losses`).

Generation runs frame by frame on temporal KV caches (:class:`GeniePlayer`): the prompt is
tokenized once, each new frame costs ``maskgit_steps`` dynamics passes over *one* frame (the
first also commits the previous frame: two frames in that pass) and one decoder pass over one
frame. Past ``num_frames`` frames (the learned temporal positions) the
player keeps a sliding window of the last ``num_frames - 1`` frames and refills its caches from
their tokens (one pass over the window). :meth:`Genie.play` is the seed's stateless form: it
tokenizes the history it is given and infers its latent actions with the LAM.

Mixed precision: ``autocast="bf16"`` runs the training losses (:meth:`Genie.phase_losses`) and
generation (:class:`GeniePlayer`, :meth:`Genie.generate`, :meth:`Genie.play`) under bf16
autocast (:mod:`distwm.utils.precision`) with float32 weights; the VQ's nearest-code search and
the losses are float32 (the parts cast their outputs before them) and MaskGIT draws from
float32 logits. ``use_bfloat16`` (the seed's) instead casts the whole model to bf16.

Deviation from the seed's signature: ``dynamics_num_heads`` defaults to 40, as 36 does not
divide ``dynamics_dim=5120`` (the paper's 36 heads have key size 128; 40 x 128 = 5120).
"""

from __future__ import annotations

import contextlib
from typing import Any, Literal

import torch
from torch import Tensor, nn

from distwm.models.genie.dynamics_model import DynamicsModel
from distwm.models.genie.latent_action_model import LatentActionModel
from distwm.models.genie.maskgit import MaskGITSampler
from distwm.utils.precision import AUTOCAST_DTYPES, CastWeights, autocast as autocast_context
from distwm.vision.video_tokenizer import VideoTokenizer

__all__ = ["Genie", "GeniePlayer", "TRAINING_PHASES"]

#: the seed's ``training_phase`` values and distwm's single-part phases
TRAINING_PHASES = ("all", "tokenizer", "lam_dynamics", "lam", "dynamics")


def _scalars(losses: dict[str, Any], prefix: str = "") -> dict[str, Tensor]:
    return {prefix + k: v for k, v in losses.items() if isinstance(v, Tensor) and v.dim() == 0}


class Genie(nn.Module):
    """Genie: video tokenizer, latent action model and dynamics model (see the module docstring)."""

    def __init__(self, num_frames: int = 16, image_size: int = 64, in_channels: int = 3,
                 tokenizer_vocab_size: int = 1024, tokenizer_embedding_dim: int = 32,
                 tokenizer_encoder_dim: int = 512, tokenizer_decoder_dim: int = 1024,
                 action_vocab_size: int = 8, action_embedding_dim: int = 32,
                 action_encoder_dim: int = 1024, action_decoder_dim: int = 1024,
                 dynamics_dim: int = 5120, dynamics_depth: int = 48, dynamics_num_heads: int = 40,
                 encoder_depth: int = 12, decoder_depth: int = 20, latent_action_depth: int = 20,
                 use_bfloat16: bool = False,
                 action_pooling: Literal["mean", "windowed_attention"] = "mean",
                 window_attention_heads: int = 1, *, tokenizer_num_heads: int = 16,
                 action_num_heads: int = 16, tokenizer_patch_size: int = 4,
                 action_patch_size: int = 16, action_decoder_depth: int | None = None,
                 tokenizer_commitment_weight: float = 0.25, action_commitment_weight: float = 1.0,
                 action_variance_weight: float = 1.0, maskgit_steps: int = 25, sample_temperature: float = 2.0,
                 autocast: str = "off"):
        super().__init__()
        if autocast not in AUTOCAST_DTYPES:
            raise ValueError(f"Genie autocast {autocast!r} is not one of {AUTOCAST_DTYPES}")
        if use_bfloat16 and autocast != "off":
            raise ValueError(f"Genie: use_bfloat16=True stores the model in bf16; autocast="
                             f"{autocast!r} needs float32 weights (choose one)")
        self.num_frames, self.image_size, self.in_channels = num_frames, image_size, in_channels
        self.use_bfloat16 = bool(use_bfloat16)
        self.autocast = autocast
        self.video_tokenizer = VideoTokenizer(
            num_frames, image_size, in_channels, tokenizer_encoder_dim, tokenizer_decoder_dim,
            encoder_depth, decoder_depth, tokenizer_num_heads, tokenizer_patch_size,
            tokenizer_vocab_size, tokenizer_embedding_dim, tokenizer_commitment_weight)
        self.latent_action_model = LatentActionModel(
            num_frames, image_size, in_channels, action_encoder_dim, action_decoder_dim,
            latent_action_depth, action_decoder_depth or latent_action_depth, action_num_heads,
            action_patch_size, action_vocab_size, action_embedding_dim, action_commitment_weight,
            action_pooling, window_attention_heads, action_variance_weight)
        self.dynamics_model = DynamicsModel(
            num_frames, image_size, tokenizer_vocab_size, tokenizer_embedding_dim,
            action_vocab_size, dynamics_dim, dynamics_depth, dynamics_num_heads,
            tokenizer_patch_size)
        self.sampler = MaskGITSampler(maskgit_steps, sample_temperature)
        if self.use_bfloat16:
            self.to(torch.bfloat16)

    @property
    def action_vocab_size(self) -> int:
        return self.latent_action_model.vocab_size

    def precision(self):
        """The autocast context of ``autocast`` on the parameters' device (a no-op for
        ``"off"``; a ``ValueError`` where bf16 is not native)."""
        device = next(self.parameters()).device.type
        return autocast_context(self.autocast, device, "GenieConfig.autocast")

    # -- training -------------------------------------------------------------------------------
    def phase_losses(self, video: Tensor, phase: str,
                     mask_prob_range: tuple[float, float] = (0.5, 1.0)) -> dict[str, Tensor]:
        """Scalar losses of ``phase`` on ``video`` ``(B, C, T, H, W)`` in [0, 1]; ``loss`` is
        what to minimise. Phases: :data:`TRAINING_PHASES`."""
        if phase not in TRAINING_PHASES:
            raise ValueError(f"unknown Genie training phase {phase!r}; choose one of "
                             f"{', '.join(TRAINING_PHASES)}")
        with self.precision():
            return self._phase_losses(video.to(next(self.parameters()).dtype), phase,
                                      mask_prob_range)

    def _phase_losses(self, video: Tensor, phase: str, mask_prob_range: tuple[float, float]
                      ) -> dict[str, Tensor]:
        out: dict[str, Tensor] = {}
        total = video.new_zeros(())
        tokens = None
        if phase in ("all", "tokenizer"):
            _, indices, losses = self.video_tokenizer(video)
            out.update(_scalars(losses, "tokenizer/"))
            total = total + losses["loss"]
            tokens = indices.flatten(2)  # what encode_video returns: no second encoder pass
        actions = None
        if phase in ("all", "lam_dynamics", "lam"):
            losses = self.latent_action_model.clip_loss(video)
            out.update(_scalars(losses, "lam/"))
            total = total + losses["loss"]
            actions = losses["latent_actions"].detach()  # the dynamics model's stop-gradient
        if phase in ("all", "lam_dynamics", "dynamics"):
            with torch.no_grad():
                if tokens is None:
                    tokens = self.encode_video(video)
                if actions is None:
                    actions = self.latent_action_model.infer_actions(video)
            losses = self.dynamics_model.loss(tokens, actions, mask_prob_range)
            out.update(_scalars(losses, "dynamics/"))
            total = total + losses["loss"]
        out["loss"] = total
        return out

    def forward(self, video: Tensor, mask_prob: float = 0.5, training_phase: str = "all"
                ) -> dict[str, Tensor]:
        """The losses of ``training_phase`` (dynamics masking at the fixed ``mask_prob``)."""
        return self.phase_losses(video, training_phase, (mask_prob, mask_prob))

    def training_step(self, video: Tensor, mask_prob: float = 0.5, training_phase: str = "all"
                      ) -> dict[str, Tensor]:
        """The seed's name for :meth:`forward` (the caller steps its optimizer on ``loss``)."""
        return self.forward(video, mask_prob, training_phase)

    # -- inference ------------------------------------------------------------------------------
    @torch.no_grad()
    def encode_video(self, video: Tensor) -> Tensor:
        """Tokens ``(B, T, H'*W')`` of ``video`` ``(B, C, T, H, W)``."""
        return self.video_tokenizer.encode(video)[1].flatten(2)

    @torch.no_grad()
    def infer_actions(self, frames: Tensor) -> Tensor:
        """Latent actions ``(B, T - 1)`` between the frames of ``frames`` ``(B, C, T, H, W)``."""
        return self.latent_action_model.infer_actions(frames)

    @torch.no_grad()
    def generate(self, prompt_frame: Tensor, num_frames: int = 16, actions: Tensor | None = None,
                 use_maskgit: bool = True, generator: torch.Generator | None = None) -> Tensor:
        """``(B, C, num_frames, H, W)``: the prompt frame ``(B, C, H, W)`` then frames generated
        under ``actions`` ``(B, num_frames - 1)`` latent action ids (None: uniformly random).
        ``use_maskgit=False`` decodes each frame in one pass (the most likely token each)."""
        if prompt_frame.dim() != 4:
            raise ValueError(f"prompt_frame must be (B, C, H, W), got {tuple(prompt_frame.shape)}")
        if num_frames < 1:
            raise ValueError(f"num_frames must be >= 1, got {num_frames}")
        B = prompt_frame.shape[0]
        if actions is None:
            actions = torch.randint(self.action_vocab_size, (B, num_frames - 1),
                                    generator=generator).to(prompt_frame.device)
        if actions.shape != (B, num_frames - 1):
            raise ValueError(f"actions must be (B, num_frames - 1) = {(B, num_frames - 1)}, "
                             f"got {tuple(actions.shape)}")
        sampler = self.sampler if use_maskgit else MaskGITSampler(1, self.sampler.temperature)
        player = GeniePlayer(self, prompt_frame, sampler, generator)
        frames = [prompt_frame] + [player.step(actions[:, t]) for t in range(num_frames - 1)]
        return torch.stack(frames, dim=2)

    @torch.no_grad()
    def play(self, current_frame: Tensor, action: Tensor, current_frames: Tensor | None = None
             ) -> Tensor:
        """The frame ``(B, C, H, W)`` that ``action`` ``(B,)`` leads to from ``current_frame``,
        after the history ``current_frames`` ``(B, C, T, H, W)`` (its last frame is
        ``current_frame``; None: no history). The history's latent actions are inferred with
        the LAM; for many steps :class:`GeniePlayer` keeps its caches instead."""
        history = current_frame[:, :, None] if current_frames is None else current_frames
        history = history[:, :, -(self.num_frames - 1):]
        with self.precision():
            tokens = self.encode_video(history)
            past = self.infer_actions(history) if history.shape[2] > 1 else tokens.new_zeros(
                tokens.shape[0], 0)
        return GeniePlayer.from_tokens(self, tokens, past, self.sampler).step(action)

    def get_num_parameters(self) -> int:
        """Total number of parameters."""
        return sum(p.numel() for p in self.parameters())


class GeniePlayer:
    """Interactive generation with temporal KV caches: ``GeniePlayer(genie, prompt_frame)``
    then ``step(action (B,)) -> next frame (B, C, H, W)``, as many steps as wanted."""

    def __init__(self, genie: Genie, prompt_frame: Tensor | None, sampler: MaskGITSampler | None = None,
                 generator: torch.Generator | None = None):
        self.genie, self.sampler, self.generator = genie, sampler or genie.sampler, generator
        # bf16 autocast: the tokenizer's and dynamics model's linear weights cast once for the
        # session, not again in every step's autocast region (the same products)
        self.weights = CastWeights(genie.autocast, genie.video_tokenizer, genie.dynamics_model)
        self.tokens: list[Tensor] = []  # (B, N) per frame of the window
        self.actions: list[Tensor] = []  # (B,) between consecutive window frames
        if prompt_frame is not None:
            if prompt_frame.dim() != 4:
                raise ValueError(f"prompt_frame must be (B, C, H, W), got {tuple(prompt_frame.shape)}")
            with torch.no_grad(), self._precision():
                tokens = genie.encode_video(prompt_frame[:, :, None].to(
                    next(genie.parameters()).dtype))
                self._fill(list(tokens.unbind(1)), [])

    @classmethod
    def from_tokens(cls, genie: Genie, tokens: Tensor, actions: Tensor,
                    sampler: MaskGITSampler | None = None) -> "GeniePlayer":
        """A player whose history is ``tokens`` ``(B, T, N)`` with ``actions`` ``(B, T - 1)``."""
        player = cls(genie, None, sampler)
        player._refill(list(tokens.unbind(1)), list(actions.unbind(1)))
        return player

    @contextlib.contextmanager
    def _precision(self):
        """The Genie's autocast, with the session's cast weights in place."""
        with self.genie.precision(), self.weights.applied():
            yield

    @torch.no_grad()
    def _refill(self, tokens: list[Tensor], actions: list[Tensor]) -> None:
        """Restart both caches from the window ``tokens`` (one pass over it)."""
        with self._precision():
            self._fill(tokens, actions)

    def _fill(self, tokens: list[Tensor], actions: list[Tensor]) -> None:
        """The dynamics cache gets all window frames but the last, which the next step's first
        pass commits; the decoder cache all of them."""
        g = self.genie
        self.tokens, self.actions = tokens, actions
        B = tokens[0].shape[0]
        self.dynamics_cache = g.dynamics_model.init_cache(B)
        window = torch.stack(tokens, 1)
        if len(tokens) > 1:
            g.dynamics_model.prefill(self.dynamics_cache, window[:, :-1],
                                     torch.stack(actions[:-1], 1) if len(actions) > 1
                                     else window.new_zeros(B, 0))
        _, self.decoder_cache = g.video_tokenizer.init_cache(B)
        g.video_tokenizer.fill_decoder_cache(g.video_tokenizer.decode_indices(window),
                                             self.decoder_cache)

    @torch.no_grad()
    def step(self, action: Tensor) -> Tensor:
        """The next frame ``(B, C, H, W)`` under latent ``action`` ``(B,)``."""
        g = self.genie
        if len(self.tokens) >= g.num_frames:  # the window's last frame is not cached yet
            keep = g.num_frames - 1
            self._refill(self.tokens[-keep:], self.actions[-(keep - 1):] if keep > 1 else [])
        action = action.to(self.tokens[0].device).long()
        with self._precision():
            last_action = self.actions[-1] if len(self.tokens) > 1 else None
            new = g.dynamics_model.next_frame(self.dynamics_cache, self.tokens[-1], action,
                                              self.sampler, self.generator, last_action,
                                              commit=False)
            self.tokens.append(new)
            self.actions.append(action)
            z_q = g.video_tokenizer.decode_indices(new[:, None])
            frame = g.video_tokenizer.decode(z_q, cache=self.decoder_cache)[:, :, 0]
        return frame.float()
