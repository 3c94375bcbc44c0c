"""Genie's video tokenizer (Bruce et al. 2024, arXiv:2402.15391, section 2.1 and appendix):
an ST-ViViT VQ-VAE that turns a clip into ``T x H' x W'`` discrete tokens.

Architecture (the paper's choices; sizes default to the seed's ``VideoTokenizer``)::

    video (B, C, T, H, W) in [0, 1]
      -> non-overlapping patch_size x patch_size patches, one linear embedding (ViT style)
      -> + learned spatial (per patch) and temporal (per frame) position embeddings
      -> encoder STTransformer (spatial attention in a frame, causal temporal attention)
      -> linear projection to embedding_dim -> VQ (vocab_size codes)       = tokens
      -> linear projection to decoder_dim + the decoder's position embeddings
      -> decoder STTransformer (causal) -> linear patch un-embedding -> sigmoid = pixels in [0, 1]

Loss: ``loss = recon_loss + vq_loss`` with ``recon_loss`` the MSE of the reconstruction and
``vq_loss = codebook_loss + commitment_weight * commitment_loss`` from
:mod:`distwm.vision.vq_layer` (``use_ema`` swaps in the EMA codebook, whose codebook loss is 0).
The paper's tokenizer is causal in time, so tokens of frame ``t`` depend on frames ``<= t`` only,
and so does the decoded frame ``t``. That lets Genie tokenize / decode one frame at a time:
:meth:`VideoTokenizer.init_cache` returns the temporal KV caches of encoder and decoder, and
``encode(x, cache=...)`` / ``decode(z_q, cache=...)`` then take only the *new* frames and
return exactly those frames' slice of a full call.

Where this deviates from the seed / the peer implementation:

* the peer embeds patches with a ``Conv2d`` and un-embeds with a ``ConvTranspose2d`` (the same
  linear maps) and has one joint ``T*N`` position table; here the position embeddings are
  factorised into spatial and temporal ones (so a cached frame gets its temporal position);
* the peer's decoder output is unbounded; here a sigmoid keeps pixels in [0, 1] like the input;
* under autocast (Genie's ``autocast="bf16"``) the encoder's output is cast to the codebook's
  dtype before the VQ, so the nearest-code search and the VQ losses are float32, and the
  reconstruction loss is float32 too;
* the loss dict adds ``loss`` (what to minimise), ``codebook_loss`` and ``commitment_loss`` to
  the peer's ``recon_loss``, ``vq_loss`` and ``perplexity`` (over the whole clip's tokens).

The module also holds the helpers that Genie's latent action model shares with it
(:func:`patchify`, :func:`unpatchify`, :class:`SpaceTimePositions`, :func:`check_video`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from distwm.blocks.st_transformer import STTransformer, TemporalKVCache
from distwm.vision.vq_layer import VectorQuantizer, VectorQuantizerEMA

__all__ = ["SpaceTimePositions", "VideoTokenizer", "check_patching", "check_positive", "check_video",
           "create_video_tokenizer", "patchify", "unpatchify"]


def check_positive(**values) -> None:
    """A ``ValueError`` naming the first of ``values`` that is not an int >= 1."""
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be an integer >= 1, got {value!r}")


def check_video(x: Tensor, *, in_channels: int, image_size: int, min_frames: int,
                max_frames: int, what: str) -> tuple[int, int, int, int, int]:
    """``x.shape`` if ``x`` is a float ``(B, in_channels, T, image_size, image_size)`` video
    with ``min_frames <= T <= max_frames``; else a ``ValueError`` naming ``what``."""
    expected = f"(B, {in_channels}, T, {image_size}, {image_size}) with {min_frames} <= T <= {max_frames}"
    if x.dim() != 5:
        raise ValueError(f"{what} expects a video {expected}, got shape {tuple(x.shape)}")
    B, C, T, H, W = x.shape
    if C != in_channels or H != image_size or W != image_size or not min_frames <= T <= max_frames:
        raise ValueError(f"{what} expects a video {expected}, got shape {tuple(x.shape)}")
    if not x.is_floating_point():
        raise ValueError(f"{what} expects float pixels in [0, 1], got dtype {x.dtype}")
    return B, C, T, H, W


def check_patching(image_size: int, patch_size: int) -> int:
    """The number of patches per side, or a ``ValueError`` if the sizes do not tile."""
    check_positive(image_size=image_size, patch_size=patch_size)
    if image_size % patch_size:
        raise ValueError(f"image_size ({image_size}) must be a multiple of patch_size ({patch_size})")
    return image_size // patch_size


def patchify(video: Tensor, patch_size: int) -> Tensor:
    """``(B, C, T, H, W)`` -> ``(B, T, N, C * patch_size**2)`` non-overlapping patches,
    row-major over the ``H/p x W/p`` grid, each flattened as ``(C, p, p)``."""
    B, C, T, H, W = video.shape
    p = patch_size
    x = video.reshape(B, C, T, H // p, p, W // p, p).permute(0, 2, 3, 5, 1, 4, 6)
    return x.reshape(B, T, (H // p) * (W // p), C * p * p)


def unpatchify(patches: Tensor, patch_size: int, channels: int, grid: int) -> Tensor:
    """Inverse of :func:`patchify`: ``(B, T, grid**2, C * p**2)`` -> ``(B, C, T, H, W)``."""
    B, T = patches.shape[:2]
    p = patch_size
    x = patches.reshape(B, T, grid, grid, channels, p, p).permute(0, 4, 1, 2, 5, 3, 6)
    return x.reshape(B, channels, T, grid * p, grid * p)


class SpaceTimePositions(nn.Module):
    """Learned position embeddings, factorised: one per patch position plus one per frame,
    added to ``(B, T, N, dim)`` tokens whose first frame sits at ``start_frame``."""

    def __init__(self, num_frames: int, num_patches: int, dim: int):
        super().__init__()
        self.num_frames = num_frames
        self.spatial = nn.Parameter(torch.empty(num_patches, dim))
        self.temporal = nn.Parameter(torch.empty(num_frames, dim))
        nn.init.trunc_normal_(self.spatial, std=0.02)
        nn.init.trunc_normal_(self.temporal, std=0.02)

    def forward(self, tokens: Tensor, start_frame: int = 0) -> Tensor:
        T = tokens.shape[1]
        if start_frame + T > self.num_frames:
            raise ValueError(f"frames {start_frame}..{start_frame + T - 1} exceed the "
                             f"{self.num_frames} learned temporal positions")
        temporal = self.temporal[start_frame:start_frame + T]
        return tokens + self.spatial[None, None] + temporal[None, :, None]


def _check_cache(cache: TemporalKVCache, transformer: STTransformer, batch_size: int,
                 new_frames: int, what: str) -> int:
    """The number of frames ``cache`` holds, after checking it fits ``transformer`` and
    ``batch_size`` and has room for ``new_frames`` within its ``num_frames`` positions."""
    if not isinstance(cache, TemporalKVCache):
        raise ValueError(f"{what}: cache must be a TemporalKVCache from init_cache, got "
                         f"{type(cache).__name__}")
    heads = transformer.num_heads
    expected = (batch_size * transformer.num_patches_per_frame, heads, transformer.dim // heads)
    got = cache.keys[0].shape if cache.keys else ()
    if len(cache.keys) != len(transformer.blocks) or (got[0], got[1], got[3]) != expected:
        raise ValueError(f"{what}: the cache does not belong to this transformer and a batch of "
                         f"{batch_size} (use the matching cache of init_cache({batch_size}))")
    limit = min(cache.capacity, transformer.num_frames)
    if cache.length + new_frames > limit:
        raise ValueError(f"{what}: the cache holds {cache.length} frames and room for {limit}; "
                         f"{new_frames} more do not fit (start a new cache)")
    return cache.length


class VideoTokenizer(nn.Module):
    """Genie's ST-ViViT VQ-VAE video tokenizer; see the module docstring."""

    def __init__(self, num_frames: int = 16, image_size: int = 64, in_channels: int = 3,
                 encoder_dim: int = 512, decoder_dim: int = 1024, encoder_depth: int = 12,
                 decoder_depth: int = 20, num_heads: int = 16, patch_size: int = 4,
                 vocab_size: int = 1024, embedding_dim: int = 32, commitment_weight: float = 0.25,
                 use_ema: bool = False, ema_decay: float = 0.99):
        super().__init__()
        check_positive(num_frames=num_frames, in_channels=in_channels, encoder_dim=encoder_dim,
                       decoder_dim=decoder_dim, encoder_depth=encoder_depth,
                       decoder_depth=decoder_depth, num_heads=num_heads)
        self.grid = check_patching(image_size, patch_size)
        self.num_frames, self.image_size, self.in_channels = num_frames, image_size, in_channels
        self.patch_size, self.vocab_size, self.embedding_dim = patch_size, vocab_size, embedding_dim
        self.encoder_dim, self.decoder_dim = encoder_dim, decoder_dim
        self.num_patches = self.grid ** 2
        patch_dim = in_channels * patch_size ** 2
        self.patch_embed = nn.Linear(patch_dim, encoder_dim)
        self.encoder_pos = SpaceTimePositions(num_frames, self.num_patches, encoder_dim)
        self.encoder = STTransformer(num_frames, self.num_patches, encoder_dim, encoder_depth,
                                     num_heads)
        self.to_vq_embedding = nn.Linear(encoder_dim, embedding_dim)
        self.vq: VectorQuantizer | VectorQuantizerEMA
        if use_ema:
            self.vq = VectorQuantizerEMA(vocab_size, embedding_dim, commitment_weight, ema_decay)
        else:
            self.vq = VectorQuantizer(vocab_size, embedding_dim, commitment_weight)
        self.from_vq_embedding = nn.Linear(embedding_dim, decoder_dim)
        self.decoder_pos = SpaceTimePositions(num_frames, self.num_patches, decoder_dim)
        self.decoder = STTransformer(num_frames, self.num_patches, decoder_dim, decoder_depth,
                                     num_heads)
        self.to_pixels = nn.Linear(decoder_dim, patch_dim)

    def init_cache(self, batch_size: int, capacity: int | None = None
                   ) -> tuple[TemporalKVCache, TemporalKVCache]:
        """Empty ``(encoder_cache, decoder_cache)`` for frame-by-frame :meth:`encode` /
        :meth:`decode` of ``batch_size`` clips of up to ``capacity`` (default num_frames)."""
        capacity = self.num_frames if capacity is None else capacity
        check_positive(batch_size=batch_size, capacity=capacity)
        if capacity > self.num_frames:
            raise ValueError(f"capacity ({capacity}) exceeds the tokenizer's num_frames "
                             f"({self.num_frames}) learned temporal positions")
        return (self.encoder.init_cache(batch_size, capacity),
                self.decoder.init_cache(batch_size, capacity))

    def encode(self, x: Tensor, cache: TemporalKVCache | None = None
               ) -> tuple[Tensor, Tensor, dict[str, Tensor]]:
        """Tokenize video ``x`` ``(B, C, T, H, W)``: ``z_q`` ``(B, T, H', W', embedding_dim)``
        (straight-through), ``indices`` ``(B, T, H', W')`` and the VQ losses (``vq_loss``,
        ``codebook_loss``, ``commitment_loss``, ``perplexity``). With the encoder ``cache`` of
        :meth:`init_cache`, ``x`` holds only the frames after the cached ones."""
        B, _, T, _, _ = check_video(x, in_channels=self.in_channels, image_size=self.image_size,
                                    min_frames=1, max_frames=self.num_frames,
                                    what="VideoTokenizer.encode")
        start = 0 if cache is None else _check_cache(cache, self.encoder, B, T,
                                                     "VideoTokenizer.encode")
        tokens = self.encoder_pos(self.patch_embed(patchify(x, self.patch_size)), start)
        z = self.to_vq_embedding(self.encoder(tokens, cache=cache))  # (B, T, N, D)
        z = z.to(self.vq.codebook.dtype)  # float32 under autocast: the VQ and its losses
        z_q, indices, losses = self.vq(z.reshape(-1, self.embedding_dim))
        shape = (B, T, self.grid, self.grid)
        return z_q.reshape(*shape, self.embedding_dim), indices.reshape(shape), losses

    def decode_indices(self, indices: Tensor) -> Tensor:
        """Codebook entries of ``indices`` ``(B, T, H', W')`` or ``(B, T, H'*W')``:
        ``(B, T, H', W', embedding_dim)``."""
        flat = indices.dim() == 3 and indices.shape[2] == self.num_patches
        grid = indices.dim() == 4 and tuple(indices.shape[2:]) == (self.grid, self.grid)
        if not (flat or grid):
            raise ValueError(f"decode_indices expects (B, T, {self.grid}, {self.grid}) or "
                             f"(B, T, {self.num_patches}) indices, got shape {tuple(indices.shape)}")
        B, T = indices.shape[:2]
        z_q = self.vq.decode_indices(indices.reshape(B, T, self.grid, self.grid))
        return z_q.movedim(1, -1)

    def _decoder_input(self, z_q: Tensor, cache: TemporalKVCache | None, what: str) -> Tensor:
        """The decoder's input tokens ``(B, T, N, decoder_dim)`` of ``z_q``, checked."""
        expected = (self.grid, self.grid, self.embedding_dim)
        if z_q.dim() != 5 or tuple(z_q.shape[2:]) != expected or not 1 <= z_q.shape[1] <= self.num_frames:
            raise ValueError(f"{what} expects z_q (B, T, {self.grid}, {self.grid}, "
                             f"{self.embedding_dim}) with 1 <= T <= {self.num_frames}, got shape "
                             f"{tuple(z_q.shape)}")
        B, T = z_q.shape[:2]
        start = 0 if cache is None else _check_cache(cache, self.decoder, B, T, what)
        tokens = self.from_vq_embedding(z_q.reshape(B, T, self.num_patches, self.embedding_dim))
        return self.decoder_pos(tokens, start)

    def decode(self, z_q: Tensor, cache: TemporalKVCache | None = None) -> Tensor:
        """Pixels ``(B, C, T, H, W)`` in [0, 1] of ``z_q`` ``(B, T, H', W', embedding_dim)``.
        With the decoder ``cache`` of :meth:`init_cache`, ``z_q`` holds only new frames."""
        tokens = self._decoder_input(z_q, cache, "VideoTokenizer.decode")
        pixels = torch.sigmoid(self.to_pixels(self.decoder(tokens, cache=cache)))
        return unpatchify(pixels, self.patch_size, self.in_channels, self.grid)

    def fill_decoder_cache(self, z_q: Tensor, cache: TemporalKVCache) -> None:
        """Append frames ``z_q`` to the decoder ``cache`` as :meth:`decode` would, without
        computing their pixels (:meth:`STTransformer.fill_cache`): for frames already shown,
        e.g. a prompt or a refilled window."""
        if cache is None:
            raise ValueError("fill_decoder_cache needs the decoder cache of init_cache")
        self.decoder.fill_cache(self._decoder_input(z_q, cache, "VideoTokenizer.fill_decoder_cache"),
                                cache)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, dict[str, Tensor]]:
        """``(reconstructed (B, C, T, H, W), indices (B, T, H', W'), loss_dict)``; ``loss_dict``
        holds ``loss = recon_loss + vq_loss`` and the VQ terms."""
        z_q, indices, vq_losses = self.encode(x)
        reconstructed = self.decode(z_q)
        recon_loss = F.mse_loss(reconstructed.to(x.dtype), x)  # float32 under autocast
        loss_dict = {"loss": recon_loss + vq_losses["vq_loss"], "recon_loss": recon_loss,
                     **vq_losses}
        return reconstructed, indices, loss_dict


def create_video_tokenizer(num_frames: int = 16, image_size: int = 64, in_channels: int = 3,
                           encoder_dim: int = 512, decoder_dim: int = 1024,
                           encoder_depth: int = 12, decoder_depth: int = 20, num_heads: int = 16,
                           patch_size: int = 4, vocab_size: int = 1024, embedding_dim: int = 32,
                           use_ema: bool = False) -> VideoTokenizer:
    """A :class:`VideoTokenizer` (the seed's factory; commitment weight 0.25)."""
    return VideoTokenizer(num_frames=num_frames, image_size=image_size, in_channels=in_channels,
                          encoder_dim=encoder_dim, decoder_dim=decoder_dim,
                          encoder_depth=encoder_depth, decoder_depth=decoder_depth,
                          num_heads=num_heads, patch_size=patch_size, vocab_size=vocab_size,
                          embedding_dim=embedding_dim, use_ema=use_ema)
