"""Genie's latent action model (LAM; Bruce et al. 2024, arXiv:2402.15391, section 2.1 and
appendix): discrete actions between frames, learnt from unlabelled video.

The paper's LAM is a VQ-VAE on raw pixels. For a clip ``x_1 .. x_T`` (``(B, C, T, H, W)`` in
[0, 1]) and its ``T-1`` transitions ``x_t -> x_{t+1}``:

* **encoder**: patch embedding (patch_size 16 by default, linear), learned spatial and temporal
  position embeddings, an :class:`~distwm.blocks.st_transformer.STTransformer` over all ``T``
  frames with causal temporal attention. The continuous action ``a_t`` is pooled from the
  patch features of the *later* frame ``x_{t+1}`` (which have seen ``x_1 .. x_{t+1}``):
  ``action_pooling='mean'`` averages the patches; ``'windowed_attention'`` lets a learned query
  attend over that frame's patches (``window_attention_heads`` heads), both after a linear
  projection to ``embedding_dim``;
* **VQ**: ``vocab_size = 8`` codes of ``embedding_dim = 32`` (the paper's), commitment weight 1.0
  (the seed's default), straight-through gradients (:mod:`distwm.vision.vq_layer`);
* **decoder**: patch embedding of the previous frames ``x_1 .. x_{T-1}``, position embeddings,
  the quantised action ``a_t`` projected to ``decoder_dim`` and **added** to every token of frame
  ``x_t``, a causal STTransformer, a linear patch un-embedding and a sigmoid (pixels in [0, 1]);
  position ``t`` predicts ``x_{t+1}`` from ``x_1 .. x_t`` and ``a_1 .. a_t`` only.

All transitions of a clip train at once (:meth:`LatentActionModel.clip_loss`):
``loss = recon_loss + vq_loss + action_variance_weight * action_variance_loss`` with
``recon_loss`` the MSE of the ``T-1`` predicted next frames. ``action_variance_loss`` is the
seed's "auxiliary variance loss to prevent action collapse" (named in its Genie docstring, form
not given; the paper has no such term): here a VICReg-style hinge ``mean_d relu(1 - std_d)`` on
the standard deviation of each dimension of the continuous actions over the batch and time. It
is always reported; ``action_variance_weight`` defaults to 0 (the paper's objective).

The seed's two-argument methods (``encode(x_prev, x_next)``, ``decode(x_prev, z_q)``,
``forward(x_prev, x_next)``) view the clip as ``T`` previous frames ``x_prev`` plus ``x_next``:
``encode`` returns ``T`` actions ``(B, T)`` and ``(B, T, embedding_dim)``. The seed's ``decode``
docstring asks for ``z_q`` ``(B, T-1, D)`` and masks all previous frames but the first, which
contradicts the ``T`` actions ``encode`` returns for the same ``x_prev`` and the paper's decoder
(which sees all previous frames and actions). Here ``decode`` takes the ``(B, T, D)`` that
``encode`` returns and no frames are masked; it returns the prediction of ``x_next``
``(B, C, H, W)``. The peer adds ``z_q[:, :T-1]`` to frames ``2..T`` instead, so its prediction of
``x_next`` never sees the action of that transition, and it trains on the last transition only.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from distwm.blocks.st_transformer import STTransformer
from distwm.vision.video_tokenizer import (SpaceTimePositions, check_patching, check_positive,
                                          check_video, patchify, unpatchify)
from distwm.vision.vq_layer import VectorQuantizer

__all__ = ["ACTION_POOLINGS", "LatentActionModel", "create_latent_action_model"]

ACTION_POOLINGS = ("mean", "windowed_attention")


class _QueryPooling(nn.Module):
    """A learned query attending over the patches of one frame: ``(M, N, D) -> (M, D)``."""

    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        self.query = nn.Parameter(torch.empty(1, 1, dim))
        nn.init.trunc_normal_(self.query, std=0.02)
        self.attention = nn.MultiheadAttention(dim, num_heads, batch_first=True)

    def forward(self, patches: Tensor) -> Tensor:
        query = self.query.expand(patches.shape[0], -1, -1)
        pooled, _ = self.attention(query, patches, patches, need_weights=False)
        return pooled[:, 0]


class LatentActionModel(nn.Module):
    """Genie's latent action model; see the module docstring. ``num_frames`` is the longest
    clip (previous frames plus the next one) it takes."""

    def __init__(self, num_frames: int = 16, image_size: int = 64, in_channels: int = 3,
                 encoder_dim: int = 256, decoder_dim: int = 512, encoder_depth: int = 4,
                 decoder_depth: int = 4, num_heads: int = 8, patch_size: int = 16,
                 vocab_size: int = 8, embedding_dim: int = 32, commitment_weight: float = 1.0,
                 action_pooling: Literal["mean", "windowed_attention"] = "mean",
                 window_attention_heads: int = 1, action_variance_weight: float = 0.0):
        super().__init__()
        if action_pooling not in ACTION_POOLINGS:
            raise ValueError(f"action_pooling must be one of {ACTION_POOLINGS}, got {action_pooling!r}")
        check_positive(num_frames=num_frames, in_channels=in_channels, encoder_dim=encoder_dim,
                       decoder_dim=decoder_dim, encoder_depth=encoder_depth,
                       decoder_depth=decoder_depth, num_heads=num_heads,
                       embedding_dim=embedding_dim, window_attention_heads=window_attention_heads)
        if num_frames < 2:
            raise ValueError(f"num_frames must be >= 2 (one transition), got {num_frames}")
        if action_pooling == "windowed_attention" and embedding_dim % window_attention_heads:
            raise ValueError(f"embedding_dim ({embedding_dim}) must be a multiple of "
                             f"window_attention_heads ({window_attention_heads})")
        if not action_variance_weight >= 0:
            raise ValueError(f"action_variance_weight must be >= 0, got {action_variance_weight!r}")
        self.grid = check_patching(image_size, patch_size)
        self.num_frames, self.image_size, self.in_channels = num_frames, image_size, in_channels
        self.patch_size, self.vocab_size, self.embedding_dim = patch_size, vocab_size, embedding_dim
        self.encoder_dim, self.decoder_dim = encoder_dim, decoder_dim
        self.action_pooling = action_pooling
        self.action_variance_weight = float(action_variance_weight)
        num_patches = self.grid ** 2
        patch_dim = in_channels * patch_size ** 2
        # encoder: all frames x_1 .. x_T
        self.patch_embed = nn.Linear(patch_dim, encoder_dim)
        self.encoder_pos = SpaceTimePositions(num_frames, num_patches, encoder_dim)
        self.encoder = STTransformer(num_frames, num_patches, encoder_dim, encoder_depth, num_heads)
        self.to_action = nn.Linear(encoder_dim, embedding_dim)
        self.pool = _QueryPooling(embedding_dim, window_attention_heads) \
            if action_pooling == "windowed_attention" else None
        self.vq = VectorQuantizer(vocab_size, embedding_dim, commitment_weight)
        # decoder: the previous frames x_1 .. x_{T-1}, each plus its action
        self.decoder_patch_embed = nn.Linear(patch_dim, decoder_dim)
        self.decoder_pos = SpaceTimePositions(num_frames - 1, num_patches, decoder_dim)
        self.action_proj = nn.Linear(embedding_dim, decoder_dim)
        self.decoder = STTransformer(num_frames - 1, num_patches, decoder_dim, decoder_depth,
                                     num_heads)
        self.to_pixels = nn.Linear(decoder_dim, patch_dim)

    # -- clip level: all T-1 transitions of (B, C, T, H, W) at once ------------------------

    def _check_clip(self, video: Tensor, what: str) -> tuple[int, int, int, int, int]:
        return check_video(video, in_channels=self.in_channels, image_size=self.image_size,
                           min_frames=2, max_frames=self.num_frames, what=what)

    def continuous_actions(self, video: Tensor) -> Tensor:
        """The encoder's actions before quantisation, ``(B, T-1, embedding_dim)``: action ``t``
        pooled from frame ``t+1``'s patch features; in the codebook's dtype (float32 under
        autocast: the VQ and the variance loss read them)."""
        B, _, T, _, _ = self._check_clip(video, "LatentActionModel")
        tokens = self.encoder_pos(self.patch_embed(patchify(video, self.patch_size)))
        later = self.to_action(self.encoder(tokens)[:, 1:])  # (B, T-1, N, D)
        if self.pool is None:
            actions = later.mean(dim=2)
        else:
            pooled = self.pool(later.reshape(B * (T - 1), -1, self.embedding_dim))
            actions = pooled.reshape(B, T - 1, self.embedding_dim)
        return actions.to(self.vq.codebook.dtype)

    def _quantize(self, actions: Tensor) -> tuple[Tensor, Tensor, dict[str, Tensor]]:
        B, T = actions.shape[:2]
        z_q, indices, losses = self.vq(actions.reshape(B * T, self.embedding_dim))
        return z_q.reshape(B, T, self.embedding_dim), indices.reshape(B, T), losses

    def infer_actions(self, video: Tensor) -> Tensor:
        """Latent action indices ``(B, T-1)`` in ``[0, vocab_size)`` of a clip."""
        return self._quantize(self.continuous_actions(video))[1]

    def action_embeddings(self, indices: Tensor) -> Tensor:
        """Codebook entries of action ``indices`` ``(B, T)``: ``(B, T, embedding_dim)``."""
        return self.vq.decode_indices(indices).movedim(1, -1)

    def predict_next_frames(self, frames: Tensor, z_q: Tensor) -> Tensor:
        """Decoder: the predictions ``(B, C, T, H, W)`` of frames ``2 .. T+1`` from ``frames``
        ``(B, C, T, H, W)`` (``x_1 .. x_T``) and actions ``z_q`` ``(B, T, embedding_dim)``."""
        B, _, T, _, _ = check_video(frames, in_channels=self.in_channels,
                                    image_size=self.image_size, min_frames=1,
                                    max_frames=self.num_frames - 1,
                                    what="LatentActionModel decoder")
        if tuple(z_q.shape) != (B, T, self.embedding_dim):
            raise ValueError(f"the decoder needs one action per previous frame: z_q "
                             f"({B}, {T}, {self.embedding_dim}), got {tuple(z_q.shape)}")
        tokens = self.decoder_patch_embed(patchify(frames, self.patch_size))
        tokens = self.decoder_pos(tokens) + self.action_proj(z_q)[:, :, None]
        pixels = torch.sigmoid(self.to_pixels(self.decoder(tokens)))
        return unpatchify(pixels, self.patch_size, self.in_channels, self.grid)

    @staticmethod
    def action_variance_loss(actions: Tensor) -> Tensor:
        """``mean_d relu(1 - std_d)`` over the ``(B, T, D)`` continuous actions (0 for one)."""
        rows = actions.reshape(-1, actions.shape[-1])
        if rows.shape[0] < 2:
            return rows.new_zeros(())
        return F.relu(1.0 - torch.sqrt(rows.var(dim=0) + 1e-4)).mean()

    def clip_loss(self, video: Tensor) -> dict[str, Tensor]:
        """The LAM objective over all ``T-1`` transitions of ``video`` ``(B, C, T, H, W)``:
        ``loss``, ``recon_loss``, ``vq_loss``, ``codebook_loss``, ``commitment_loss``,
        ``perplexity``, ``action_variance_loss`` and the outputs ``latent_actions`` ``(B, T-1)``,
        ``z_q`` ``(B, T-1, D)``, ``continuous_actions`` ``(B, T-1, D)`` and ``predictions``
        ``(B, C, T-1, H, W)`` (of frames ``2 .. T``)."""
        actions = self.continuous_actions(video)
        z_q, indices, vq_losses = self._quantize(actions)
        predictions = self.predict_next_frames(video[:, :, :-1], z_q)
        recon_loss = F.mse_loss(predictions.to(video.dtype), video[:, :, 1:])
        variance_loss = self.action_variance_loss(actions)
        loss = recon_loss + vq_losses["vq_loss"] + self.action_variance_weight * variance_loss
        return {"loss": loss, "recon_loss": recon_loss, **vq_losses,
                "action_variance_loss": variance_loss, "latent_actions": indices, "z_q": z_q,
                "continuous_actions": actions, "predictions": predictions}

    # -- the seed's (x_prev, x_next) interface --------------------------------------------

    def _join(self, x_prev: Tensor, x_next: Tensor) -> Tensor:
        B, C, T, H, W = check_video(x_prev, in_channels=self.in_channels,
                                    image_size=self.image_size, min_frames=1,
                                    max_frames=self.num_frames - 1, what="LatentActionModel x_prev")
        if tuple(x_next.shape) != (B, C, H, W):
            raise ValueError(f"x_next must be one frame (B, C, H, W) = {(B, C, H, W)} matching "
                             f"x_prev, got {tuple(x_next.shape)}")
        return torch.cat([x_prev, x_next.unsqueeze(2)], dim=2)

    def encode(self, x_prev: Tensor, x_next: Tensor) -> tuple[Tensor, Tensor]:
        """``(latent_actions (B, T), z_q (B, T, embedding_dim))`` of the ``T`` transitions in
        ``x_prev`` ``(B, C, T, H, W)`` followed by ``x_next`` ``(B, C, H, W)``."""
        z_q, indices, _ = self._quantize(self.continuous_actions(self._join(x_prev, x_next)))
        return indices, z_q

    def decode(self, x_prev: Tensor, z_q: Tensor) -> Tensor:
        """The predicted next frame ``(B, C, H, W)`` after ``x_prev`` ``(B, C, T, H, W)`` given
        the actions ``z_q`` ``(B, T, embedding_dim)`` that :meth:`encode` returns."""
        return self.predict_next_frames(x_prev, z_q)[:, :, -1]

    def forward(self, x_prev: Tensor, x_next: Tensor) -> dict[str, Tensor]:
        """:meth:`clip_loss` of ``x_prev`` followed by ``x_next`` (all ``T`` transitions), plus
        ``reconstructed`` ``(B, C, H, W)``: the prediction of ``x_next``."""
        out = self.clip_loss(self._join(x_prev, x_next))
        out["reconstructed"] = out["predictions"][:, :, -1]
        return out


def create_latent_action_model(num_frames: int = 16, image_size: int = 64, in_channels: int = 3,
                               encoder_dim: int = 256, decoder_dim: int = 512,
                               encoder_depth: int = 4, decoder_depth: int = 4, num_heads: int = 8,
                               patch_size: int = 16, vocab_size: int = 8, embedding_dim: int = 32,
                               action_pooling: Literal["mean", "windowed_attention"] = "mean",
                               window_attention_heads: int = 1,
                               action_variance_weight: float = 0.0) -> LatentActionModel:
    """A :class:`LatentActionModel` (the seed's factory; commitment weight 1.0)."""
    return LatentActionModel(num_frames=num_frames, image_size=image_size, in_channels=in_channels,
                             encoder_dim=encoder_dim, decoder_dim=decoder_dim,
                             encoder_depth=encoder_depth, decoder_depth=decoder_depth,
                             num_heads=num_heads, patch_size=patch_size, vocab_size=vocab_size,
                             embedding_dim=embedding_dim, action_pooling=action_pooling,
                             window_attention_heads=window_attention_heads,
                             action_variance_weight=action_variance_weight)
