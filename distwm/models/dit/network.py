"""The Diffusion Transformer (Peebles & Xie 2023, arXiv:2212.09748): the seed's
``world_models.models.diffusion.DiT`` (:func:`sinusoidal_time_embedding`, :class:`PatchEmbed`,
:class:`PatchUnEmbed`, :class:`TransformerBlock`, :class:`DiT`), built as facebookresearch/DiT
``models.py``:

* patchify (a ``p x p`` strided convolution) plus fixed 2-D sin-cos position embeddings
  (MAE's ``get_2d_sincos_pos_embed``);
* the conditioning ``c = t_emb + y_emb``: a 256-wide sinusoidal embedding of t through a
  two-layer SiLU MLP, plus a class embedding whose table has one extra row, the null class,
  that labels are dropped to (probability ``class_dropout_prob`` in training) for
  classifier-free guidance;
* adaLN-Zero blocks: ``SiLU -> Linear(c)`` gives shift / scale / gate for attention and for
  the MLP; LayerNorms without affine parameters; the modulation is zero-initialised, so every
  block starts as the identity;
* the final layer: adaptive LayerNorm and a linear decode of every token to ``p x p x C_out``
  (:class:`PatchUnEmbed`), both zero-initialised (the network starts by predicting 0);
  ``learn_sigma``: ``C_out = 2C``, the noise then the variance interpolation ``v``
  (:mod:`distwm.models.dit.diffusion`);
* initialisation: xavier-uniform linears, the patch projection as a linear layer, N(0, 0.02)
  for the class table and the timestep MLP.

Deviations from the seed's documentation, which follow the paper: :class:`PatchEmbed`'s
position embeddings are the fixed sin-cos ones (the seed: learnable); :class:`PatchUnEmbed`
is a per-token linear layer then unpatchify, which is exactly a transposed convolution with
kernel = stride = patch size (the seed's wording) in the reference's form. The seed's
constructor ``DiT(img_size, patch_size, in_channels, d_model, depth, heads, drop=0.0,
t_dim=256)`` builds, as the seed, an unconditional noise predictor (``num_classes=0``,
``learn_sigma=False``); the paper's class-conditional learned-sigma model takes
``num_classes=K, learn_sigma=True`` (what :class:`~distwm.models.dit.trainable.DiTTrainable`
builds from a :class:`~distwm.configs.dit_config.DiTConfig`). ``DiT.train(epochs, dataset,
...)`` on the class is the seed's training entry point (:func:`distwm.models.dit.fit.train_dit`);
``model.train(mode)`` on an instance is ``nn.Module.train``. ``autocast="bf16"`` runs
:meth:`DiT.forward` under bf16 autocast (:mod:`distwm.utils.precision`) and returns float32, so
the diffusion's loss terms and the sampling arithmetic stay float32.
"""

from __future__ import annotations

import functools
import math
from typing import Optional

import torch
from torch import Tensor, nn

from distwm.blocks.mhsa import MultiHeadSelfAttention
from distwm.utils.precision import AUTOCAST_DTYPES, autocast as autocast_context

__all__ = ["DiT", "FinalLayer", "LabelEmbedder", "PatchEmbed", "PatchUnEmbed",
           "TimestepEmbedder", "TransformerBlock", "get_2d_sincos_pos_embed", "modulate",
           "sinusoidal_time_embedding"]


def sinusoidal_time_embedding(timesteps: Tensor, dim: int, max_period: float = 10000.0) -> Tensor:
    """``(B, dim)`` embeddings ``[sin(t * f_i), cos(t * f_i)]`` with ``f_i =
    max_period ** (-i / (dim / 2))``, ``i < dim / 2``, of timesteps ``(B,)`` or ``(B, 1)``
    (any real values); ``dim`` must be even."""
    if isinstance(dim, bool) or not isinstance(dim, int) or dim < 2 or dim % 2:
        raise ValueError(f"sinusoidal_time_embedding: dim must be an even int >= 2, got {dim!r}")
    t = torch.as_tensor(timesteps)
    if t.dim() == 2 and t.shape[1] == 1:
        t = t[:, 0]
    if t.dim() != 1:
        raise ValueError(f"sinusoidal_time_embedding: timesteps must be (B,) or (B, 1), got "
                         f"shape {tuple(t.shape)}")
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32,
                                                           device=t.device) / half)
    args = t.float()[:, None] * freqs[None]
    return torch.cat([torch.sin(args), torch.cos(args)], dim=-1)


def get_2d_sincos_pos_embed(embed_dim: int, grid_size: int) -> Tensor:
    """MAE's fixed 2-D sin-cos position embeddings ``(grid_size ** 2, embed_dim)``, row-major
    over the patch grid: the first half embeds a token's column, the second its row."""
    if embed_dim % 4:
        raise ValueError(f"2-D sin-cos position embeddings need embed_dim divisible by 4, got "
                         f"{embed_dim}")
    coords = torch.arange(grid_size, dtype=torch.float32)
    rows, cols = torch.meshgrid(coords, coords, indexing="ij")
    return torch.cat([sinusoidal_time_embedding(cols.reshape(-1), embed_dim // 2),
                      sinusoidal_time_embedding(rows.reshape(-1), embed_dim // 2)], dim=1)


def modulate(x: Tensor, shift: Tensor, scale: Tensor) -> Tensor:
    """adaLN: ``x * (1 + scale) + shift`` with per-sample ``(B, D)`` shift / scale."""
    return x * (1 + scale.unsqueeze(1)) + shift.unsqueeze(1)


def _check_grid(owner: str, img_size: int, patch_size: int) -> int:
    if not (img_size > 0 and patch_size > 0) or img_size % patch_size:
        raise ValueError(f"{owner}: img_size ({img_size}) must be a positive multiple of "
                         f"patch_size ({patch_size})")
    return img_size // patch_size


class PatchEmbed(nn.Module):
    """``(B, C, H, W)`` images -> ``(B, N, embed_dim)`` patch tokens, ``N = (H / p) ** 2``:
    a ``p x p`` stride-``p`` convolution plus fixed 2-D sin-cos position embeddings."""

    def __init__(self, img_size: int, patch_size: int, in_channels: int, embed_dim: int):
        super().__init__()
        self.img_size, self.patch_size = img_size, patch_size
        self.grid_size = _check_grid("PatchEmbed", img_size, patch_size)
        self.n_patches = self.grid_size ** 2
        self.proj = nn.Conv2d(in_channels, embed_dim, kernel_size=patch_size, stride=patch_size)
        nn.init.xavier_uniform_(self.proj.weight.view(embed_dim, -1))
        nn.init.zeros_(self.proj.bias)
        # fixed, a function of the shapes: not part of the state dict
        self.register_buffer("pos_embed", get_2d_sincos_pos_embed(embed_dim, self.grid_size)[None],
                             persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        if x.shape[-2:] != (self.img_size, self.img_size):
            raise ValueError(f"PatchEmbed expects {self.img_size}x{self.img_size} images, got "
                             f"shape {tuple(x.shape)}")
        return self.proj(x).flatten(2).transpose(1, 2) + self.pos_embed


class PatchUnEmbed(nn.Module):
    """``(B, N, embed_dim)`` tokens -> ``(B, out_channels, H, W)``: each token linearly decoded
    to a ``p x p x out_channels`` patch (a transposed convolution with kernel = stride = p)."""

    def __init__(self, img_size: int, patch_size: int, embed_dim: int, out_channels: int):
        super().__init__()
        self.img_size, self.patch_size, self.out_channels = img_size, patch_size, out_channels
        self.grid_size = _check_grid("PatchUnEmbed", img_size, patch_size)
        self.proj = nn.Linear(embed_dim, patch_size * patch_size * out_channels)

    def forward(self, x: Tensor) -> Tensor:
        b, n, _ = x.shape
        g, p, c = self.grid_size, self.patch_size, self.out_channels
        if n != g * g:
            raise ValueError(f"PatchUnEmbed expects {g * g} tokens, got {n}")
        x = self.proj(x).reshape(b, g, g, p, p, c)
        return torch.einsum("nhwpqc->nchpwq", x).reshape(b, c, g * p, g * p)


class TimestepEmbedder(nn.Module):
    """t -> ``Linear(SiLU(Linear(sinusoidal_time_embedding(t, frequency_dim))))`` of width
    ``hidden``."""

    def __init__(self, hidden: int, frequency_dim: int = 256):
        super().__init__()
        self.frequency_dim = frequency_dim
        self.mlp = nn.Sequential(nn.Linear(frequency_dim, hidden), nn.SiLU(),
                                 nn.Linear(hidden, hidden))

    def forward(self, t: Tensor) -> Tensor:
        freq = sinusoidal_time_embedding(t, self.frequency_dim).to(self.mlp[0].weight.dtype)
        return self.mlp(freq)


class LabelEmbedder(nn.Module):
    """Class labels -> embeddings; with ``dropout_prob > 0`` the table has a null class
    (index ``num_classes``) that labels are dropped to in training (classifier-free
    guidance)."""

    def __init__(self, num_classes: int, hidden: int, dropout_prob: float):
        super().__init__()
        self.num_classes, self.dropout_prob = num_classes, float(dropout_prob)
        self.embedding_table = nn.Embedding(num_classes + int(dropout_prob > 0), hidden)

    @property
    def has_null_class(self) -> bool:
        return self.dropout_prob > 0

    def null_labels(self, n: int, device) -> Tensor:
        if not self.has_null_class:
            raise ValueError("this DiT has no null class (class_dropout_prob=0): it cannot "
                             "sample unconditionally or with classifier-free guidance")
        return torch.full((n,), self.num_classes, dtype=torch.long, device=device)

    def forward(self, labels: Tensor, train: bool) -> Tensor:
        if train and self.dropout_prob > 0:
            drop = torch.rand(labels.shape[0], device=labels.device) < self.dropout_prob
            labels = torch.where(drop, torch.full_like(labels, self.num_classes), labels)
        return self.embedding_table(labels)


class TransformerBlock(nn.Module):
    """A DiT block with adaLN-Zero conditioning on ``c`` ``(B, t_dim)``: ``x + gate_msa *
    attn(modulate(norm1(x)))`` then ``x + gate_mlp * mlp(modulate(norm2(x)))``; the
    modulation ``Linear(t_dim, 6 * d_model)`` starts at zero (the block is the identity)."""

    def __init__(self, d_model: int, n_heads: int, mlp_ratio: float = 4.0, drop: float = 0.0,
                 t_dim: Optional[int] = None):
        super().__init__()
        hidden = int(d_model * mlp_ratio)
        self.norm1 = nn.LayerNorm(d_model, elementwise_affine=False, eps=1e-6)
        self.attn = MultiHeadSelfAttention(d_model, n_heads)
        self.norm2 = nn.LayerNorm(d_model, elementwise_affine=False, eps=1e-6)
        self.mlp = nn.Sequential(nn.Linear(d_model, hidden), nn.GELU(approximate="tanh"),
                                 nn.Dropout(drop), nn.Linear(hidden, d_model), nn.Dropout(drop))
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(t_dim or d_model, 6 * d_model))
        _zero(self.adaLN_modulation[-1])

    def forward(self, x: Tensor, t_emb: Tensor) -> Tensor:
        shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp = \
            self.adaLN_modulation(t_emb).chunk(6, dim=1)
        x = x + gate_msa.unsqueeze(1) * self.attn(modulate(self.norm1(x), shift_msa, scale_msa))
        return x + gate_mlp.unsqueeze(1) * self.mlp(modulate(self.norm2(x), shift_mlp, scale_mlp))


class FinalLayer(nn.Module):
    """Adaptive LayerNorm then :class:`PatchUnEmbed`, both zero-initialised."""

    def __init__(self, img_size: int, patch_size: int, d_model: int, out_channels: int):
        super().__init__()
        self.norm = nn.LayerNorm(d_model, elementwise_affine=False, eps=1e-6)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(d_model, 2 * d_model))
        self.unembed = PatchUnEmbed(img_size, patch_size, d_model, out_channels)

    def zero_init(self) -> None:
        _zero(self.adaLN_modulation[-1])
        _zero(self.unembed.proj)

    def forward(self, x: Tensor, c: Tensor) -> Tensor:
        shift, scale = self.adaLN_modulation(c).chunk(2, dim=1)
        return self.unembed(modulate(self.norm(x), shift, scale))


def _zero(layer: nn.Linear) -> None:
    nn.init.zeros_(layer.weight)
    nn.init.zeros_(layer.bias)


class _TrainEntryPoint:
    """``DiT.train(epochs, dataset, ...)`` on the class: the seed's training entry point;
    ``model.train(mode=True)`` on an instance: ``nn.Module.train``."""

    def __get__(self, obj, objtype=None):
        if obj is None:
            from distwm.models.dit.fit import train_dit

            return train_dit
        return functools.partial(nn.Module.train, obj)


class DiT(nn.Module):
    """Diffusion Transformer: noisy images ``(B, C, H, W)``, timesteps ``(B,)`` and labels
    ``(B,)`` -> predicted noise ``(B, C, H, W)`` (with ``learn_sigma``: ``(B, 2C, H, W)``,
    the noise then the variance interpolation).

    ``num_classes`` 0: unconditional (``y`` must be None); K: class-conditional, ``y=None``
    means the null class (unconditional, needs ``class_dropout_prob > 0``). ``autocast``
    ``"bf16"``: the forward pass under bf16 autocast, its output float32.
    """

    train = _TrainEntryPoint()

    def __init__(self, img_size: int, patch_size: int, in_channels: int, d_model: int, depth: int,
                 heads: int, drop: float = 0.0, t_dim: int = 256, *, num_classes: int = 0,
                 class_dropout_prob: float = 0.1, learn_sigma: bool = False,
                 mlp_ratio: float = 4.0, autocast: str = "off"):
        super().__init__()
        if autocast not in AUTOCAST_DTYPES:
            raise ValueError(f"DiT autocast {autocast!r} is not one of {AUTOCAST_DTYPES}")
        self.autocast = autocast
        if d_model % heads:
            raise ValueError(f"DiT: d_model ({d_model}) must be divisible by heads ({heads})")
        if depth < 1 or num_classes < 0:
            raise ValueError(f"DiT: need depth >= 1 and num_classes >= 0, got depth={depth}, "
                             f"num_classes={num_classes}")
        self.img_size, self.patch_size, self.in_channels = img_size, patch_size, in_channels
        self.d_model, self.t_dim, self.num_classes = d_model, t_dim, num_classes
        self.learn_sigma = bool(learn_sigma)
        self.out_channels = in_channels * (2 if learn_sigma else 1)
        self.patchify = PatchEmbed(img_size, patch_size, in_channels, d_model)
        self.t_embedder = TimestepEmbedder(d_model, t_dim)
        self.y_embedder = (LabelEmbedder(num_classes, d_model, class_dropout_prob)
                           if num_classes > 0 else None)
        self.blocks = nn.ModuleList(TransformerBlock(d_model, heads, mlp_ratio, drop, d_model)
                                    for _ in range(depth))
        self.final_layer = FinalLayer(img_size, patch_size, d_model, self.out_channels)
        self._initialize_weights()

    def _initialize_weights(self) -> None:
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
        if self.y_embedder is not None:
            nn.init.normal_(self.y_embedder.embedding_table.weight, std=0.02)
        nn.init.normal_(self.t_embedder.mlp[0].weight, std=0.02)
        nn.init.normal_(self.t_embedder.mlp[2].weight, std=0.02)
        for block in self.blocks:
            _zero(block.adaLN_modulation[-1])
        self.final_layer.zero_init()

    @property
    def conditional(self) -> bool:
        return self.y_embedder is not None

    def condition(self, t: Tensor, y: Optional[Tensor]) -> Tensor:
        """The conditioning ``c = t_emb + y_emb`` ``(B, d_model)``."""
        c = self.t_embedder(t)
        if self.y_embedder is None:
            if y is not None:
                raise ValueError("this DiT is unconditional (num_classes=0) but labels y were given")
            return c
        if y is None:
            y = self.y_embedder.null_labels(t.shape[0], t.device)
        return c + self.y_embedder(y, self.training)

    def forward(self, x: Tensor, t: Tensor, y: Optional[Tensor] = None) -> Tensor:
        t = torch.as_tensor(t, device=x.device).reshape(-1)
        if t.shape[0] == 1 and x.shape[0] > 1:
            t = t.expand(x.shape[0])
        with autocast_context(self.autocast, x.device.type, "DiTConfig.autocast"):
            c = self.condition(t, y)
            h = self.patchify(x)
            for block in self.blocks:
                h = block(h, c)
            out = self.final_layer(h, c)
        return out if self.autocast == "off" else out.float()

    def forward_with_cfg(self, x: Tensor, t: Tensor, y: Tensor, cfg_scale: float) -> Tensor:
        """Classifier-free guidance: ``eps_null + cfg_scale * (eps_y - eps_null)`` from one
        forward pass of the doubled batch (labels ``y`` and the null class); the variance
        channels are the conditional branch's. ``cfg_scale`` 1: the conditional output, 0: the
        unconditional one. Unlike the reference (which guides 3 of the 4 latent channels) every
        noise channel is guided."""
        if self.y_embedder is None:
            raise ValueError("classifier-free guidance needs a class-conditional DiT (num_classes > 0)")
        n = x.shape[0]
        null = self.y_embedder.null_labels(n, x.device)
        t = torch.as_tensor(t, device=x.device).reshape(-1).expand(n)
        out = self.forward(torch.cat([x, x]), torch.cat([t, t]), torch.cat([y.reshape(-1), null]))
        cond, uncond = out[:n], out[n:]
        c = self.in_channels
        eps = uncond[:, :c] + cfg_scale * (cond[:, :c] - uncond[:, :c])
        return torch.cat([eps, cond[:, c:]], dim=1)
