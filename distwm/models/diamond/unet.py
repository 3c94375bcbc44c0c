"""DIAMOND's U-Net (the EDM "inner model" ``F``) and its blocks.

Follows eloialonso/diamond ``src/models/blocks.py`` (``AdaGroupNorm``, ``ResBlock``,
``SelfAttention2d``, ``FourierFeatures``, ``Downsample``, ``Upsample``, ``UNet``) and
``src/models/diffusion/inner_model.py`` (``InnerModel``): group norms of 32-channel groups
(eps 1e-5), zero-initialised last convolutions, attention heads of 8 channels, one skip per
residual block plus one per level input, the noisy frame concatenated after the
conditioning frames, the actions embedded (``cond_dim // num_conditioning_frames`` each,
flattened) and added to the Fourier noise embedding before a SiLU MLP, and attention in the
two middle blocks (the Atari config's ``attn_depths`` are all 0).
"""

from __future__ import annotations

import math
from typing import List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["AdaptiveGroupNorm", "AttentionBlock", "DiffusionUNet", "DownBlock", "ResBlock",
           "TimestepEmbedding", "UpBlock", "reference_num_groups"]

GROUP_NORM_GROUP_SIZE = 32
GROUP_NORM_EPS = 1e-5
ATTENTION_HEAD_DIM = 8


def reference_num_groups(channels: int) -> int:
    """The reference's group count: one group per 32 channels, at least one."""
    return max(1, channels // GROUP_NORM_GROUP_SIZE)


def _conv3x3(in_channels: int, out_channels: int) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, kernel_size=3, stride=1, padding=1)


def _conv1x1(in_channels: int, out_channels: int) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, kernel_size=1)


def _group_norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(reference_num_groups(channels), channels, eps=GROUP_NORM_EPS)


class AdaptiveGroupNorm(nn.Module):
    """Group norm without own affine, then ``x · (1 + scale) + shift`` with ``(scale, shift)`` a
    linear map of the conditioning vector (reference ``AdaGroupNorm``)."""

    def __init__(self, num_groups: int, num_channels: int, cond_dim: int):
        super().__init__()
        if num_groups < 1 or num_channels % num_groups:
            raise ValueError(f"AdaptiveGroupNorm: num_channels ({num_channels}) must be a multiple of "
                             f"num_groups ({num_groups}), with num_groups >= 1")
        self.num_groups, self.num_channels = num_groups, num_channels
        self.linear = nn.Linear(cond_dim, 2 * num_channels)

    def forward(self, x: Tensor, cond: Tensor) -> Tensor:
        x = F.group_norm(x, self.num_groups, eps=GROUP_NORM_EPS)
        scale, shift = self.linear(cond)[:, :, None, None].chunk(2, dim=1)
        return x * (1 + scale) + shift


class ResBlock(nn.Module):
    """``skip(x) + conv2(drop(silu(norm2(conv1(silu(norm1(x)))))))`` with adaptive group norms
    and ``conv2`` zero-initialised (reference ``ResBlock`` without its ``attn``, which is
    :class:`AttentionBlock` here). ``dropout`` is the seed's; the reference has none (0)."""

    def __init__(self, in_channels: int, out_channels: int, cond_dim: int, dropout: float = 0.0):
        super().__init__()
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"ResBlock: dropout must be in [0, 1), got {dropout!r}")
        self.skip = nn.Identity() if in_channels == out_channels else _conv1x1(in_channels, out_channels)
        self.norm1 = AdaptiveGroupNorm(reference_num_groups(in_channels), in_channels, cond_dim)
        self.conv1 = _conv3x3(in_channels, out_channels)
        self.norm2 = AdaptiveGroupNorm(reference_num_groups(out_channels), out_channels, cond_dim)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = _conv3x3(out_channels, out_channels)
        nn.init.zeros_(self.conv2.weight)

    def forward(self, x: Tensor, cond: Tensor) -> Tensor:
        h = self.conv1(F.silu(self.norm1(x, cond)))
        h = self.conv2(self.dropout(F.silu(self.norm2(h, cond))))
        return self.skip(x) + h


class AttentionBlock(nn.Module):
    """Multi-head self-attention over the pixels (heads of 8 channels, zero-initialised output
    projection; reference ``SelfAttention2d``).

    As in the reference, the norm is a plain group norm (``cond`` is accepted for the blocks'
    common ``(x, cond)`` call and unused, ``cond_dim`` is the seed's) and the residual is added
    to the *normalised* input: ``norm(x) + out(attn(norm(x)))``.
    """

    def __init__(self, channels: int, cond_dim: int):
        super().__init__()
        self.num_heads = max(1, channels // ATTENTION_HEAD_DIM)
        if channels % self.num_heads:
            raise ValueError(f"AttentionBlock: channels ({channels}) must be divisible by the head count "
                             f"max(1, channels // {ATTENTION_HEAD_DIM}) = {self.num_heads}")
        self.cond_dim = cond_dim
        self.norm = _group_norm(channels)
        self.qkv_proj = _conv1x1(channels, 3 * channels)
        self.out_proj = _conv1x1(channels, channels)
        nn.init.zeros_(self.out_proj.weight)
        nn.init.zeros_(self.out_proj.bias)

    def forward(self, x: Tensor, cond: Optional[Tensor] = None) -> Tensor:
        n, c, h, w = x.shape
        x = self.norm(x)
        qkv = self.qkv_proj(x).view(n, 3 * self.num_heads, c // self.num_heads, h * w).transpose(2, 3)
        q, k, v = qkv.chunk(3, dim=1)  # each (n, heads, h*w, head_dim)
        y = F.scaled_dot_product_attention(q, k, v)
        return x + self.out_proj(y.transpose(2, 3).reshape(n, c, h, w))


class TimestepEmbedding(nn.Module):
    """Random Fourier features of a scalar per sample: ``[cos(2π t w), sin(2π t w)]`` with
    ``freq_dim // 2`` fixed frequencies ``w ~ N(0, 1)`` (a buffer; reference ``FourierFeatures``),
    then a linear map to ``dim`` when ``dim != freq_dim`` (DIAMOND uses ``dim == freq_dim``).
    The seed calls these "sinusoidal"; they are sinusoids of random, not geometric, frequencies."""

    def __init__(self, dim: int, freq_dim: int = 256):
        super().__init__()
        if freq_dim < 2 or freq_dim % 2:
            raise ValueError(f"TimestepEmbedding: freq_dim must be an even integer >= 2, got {freq_dim!r}")
        self.dim, self.freq_dim = dim, freq_dim
        self.register_buffer("weight", torch.randn(1, freq_dim // 2))
        self.proj = nn.Identity() if dim == freq_dim else nn.Linear(freq_dim, dim)

    def forward(self, t: Tensor) -> Tensor:
        if t.ndim != 1:
            raise ValueError(f"TimestepEmbedding: t must have shape (B,), got {tuple(t.shape)}")
        f = 2 * math.pi * t.to(self.weight.dtype).unsqueeze(1) @ self.weight
        return self.proj(torch.cat([f.cos(), f.sin()], dim=-1))


class _Downsample(nn.Module):
    """3x3 stride-2 convolution, orthogonal init (reference ``Downsample``)."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, kernel_size=3, stride=2, padding=1)
        nn.init.orthogonal_(self.conv.weight)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(x)


class _Upsample(nn.Module):
    """Nearest x2 then a 3x3 convolution (reference ``Upsample``)."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = _conv3x3(channels, channels)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class DownBlock(nn.Module):
    """One encoder level: optional stride-2 downsampling of the ``in_channels`` input, then
    ``num_res_blocks`` res blocks (``in -> out -> ... -> out``), each optionally followed by
    attention. :meth:`forward_with_skips` also returns the U-Net skips: the (downsampled) input
    and every res block's output. ``downsample=False`` is the reference's first level (and the
    middle blocks)."""

    def __init__(self, in_channels: int, out_channels: int, cond_dim: int, num_res_blocks: int = 2,
                 attention: bool = False, *, downsample: bool = True, dropout: float = 0.0):
        super().__init__()
        if num_res_blocks < 1:
            raise ValueError(f"DownBlock: num_res_blocks must be >= 1, got {num_res_blocks!r}")
        self.in_channels, self.out_channels = in_channels, out_channels
        self.downsample = _Downsample(in_channels) if downsample else None
        self.res_blocks = nn.ModuleList([ResBlock(in_channels if i == 0 else out_channels, out_channels,
                                                  cond_dim, dropout) for i in range(num_res_blocks)])
        self.attentions = nn.ModuleList([AttentionBlock(out_channels, cond_dim)
                                         for _ in range(num_res_blocks)]) if attention else None

    def forward_with_skips(self, x: Tensor, cond: Tensor) -> Tuple[Tensor, List[Tensor]]:
        if self.downsample is not None:
            x = self.downsample(x)
        skips = [x]
        for i, block in enumerate(self.res_blocks):
            x = block(x, cond)
            if self.attentions is not None:
                x = self.attentions[i](x, cond)
            skips.append(x)
        return x, skips

    def forward(self, x: Tensor, cond: Tensor) -> Tensor:
        return self.forward_with_skips(x, cond)[0]


class UpBlock(nn.Module):
    """One decoder level, mirroring ``DownBlock(out_channels, in_channels, ...)``: optional
    nearest-x2 upsampling, then ``num_res_blocks + 1`` res blocks, each fed the running tensor
    concatenated with one skip of that DownBlock (last first), ending at ``out_channels``.

    Unlike the seed's ``forward(x, cond)``, ``forward`` takes the skips: the reference's
    per-res-block skip connections cannot be carried by ``x`` alone."""

    def __init__(self, in_channels: int, out_channels: int, cond_dim: int, num_res_blocks: int = 2,
                 attention: bool = False, *, upsample: bool = True, dropout: float = 0.0):
        super().__init__()
        if num_res_blocks < 1:
            raise ValueError(f"UpBlock: num_res_blocks must be >= 1, got {num_res_blocks!r}")
        self.in_channels, self.out_channels = in_channels, out_channels
        self.upsample = _Upsample(in_channels) if upsample else None
        ins = [2 * in_channels] * num_res_blocks + [in_channels + out_channels]
        outs = [in_channels] * num_res_blocks + [out_channels]
        self.res_blocks = nn.ModuleList([ResBlock(i, o, cond_dim, dropout) for i, o in zip(ins, outs)])
        self.attentions = nn.ModuleList([AttentionBlock(o, cond_dim) for o in outs]) if attention else None

    def forward(self, x: Tensor, cond: Tensor, skips: Sequence[Tensor]) -> Tensor:
        if len(skips) != len(self.res_blocks):
            raise ValueError(f"UpBlock: expected {len(self.res_blocks)} skips (num_res_blocks + 1), "
                             f"got {len(skips)}")
        if self.upsample is not None:
            x = self.upsample(x)
        for i, block in enumerate(self.res_blocks):
            x = block(torch.cat((x, skips[-1 - i]), dim=1), cond)
            if self.attentions is not None:
                x = self.attentions[i](x, cond)
        return x


class DiffusionUNet(nn.Module):
    """DIAMOND's inner model ``F(c_in · x, c_noise, obs_history, actions)``.

    ``forward(x, t, obs_history, actions, history_noise=None)``: ``x`` ``(B, C, H, W)`` the
    (already ``c_in``-scaled) noisy next frame, ``t`` ``(B,)`` the noise embedding input
    ``c_noise = ln(sigma) / 4``, ``obs_history`` ``(B, L, C, H, W)`` the last ``L`` frames in
    ``[-1, 1]`` (divided by ``sigma_data`` here, as the reference ``Denoiser`` does),
    ``actions`` ``(B, L)`` integer (or ``(B, L, action_dim)`` one/multi-hot). Returns the raw
    output ``(B, C, H, W)``: the seed calls it the clean frame; it is the EDM ``F``, which
    :meth:`EDMPreconditioner.denoise` turns into one (``c_skip · x + c_out · F``).

    Levels have ``base_channels * channel_multipliers[i]`` channels (reference Atari:
    ``[64, 64, 64, 64]``, 2 res blocks, ``cond_dim`` 256). ``attention_levels`` (default: none,
    the Atari ``attn_depths``) adds attention per level; the middle always has it.
    ``embed_history_noise`` adds the reference's CS:GO-branch embedding of the conditioning
    frames' noise level (``history_noise = ln(sigma_cond) / 4``, 0 when absent).
    Inputs whose size is not a multiple of ``2 ** (levels - 1)`` are padded, then cropped.
    """

    def __init__(self, obs_channels: int = 3, num_conditioning_frames: int = 4, base_channels: int = 64,
                 channel_multipliers: Tuple[int, ...] = (1, 1, 1, 1), num_res_blocks: int = 2,
                 cond_dim: int = 256, action_dim: int = 18, *,
                 attention_levels: Optional[Sequence[bool]] = None, sigma_data: float = 0.5,
                 embed_history_noise: bool = False, dropout: float = 0.0):
        super().__init__()
        owner = "DiffusionUNet"
        for name, value in (("obs_channels", obs_channels), ("num_conditioning_frames", num_conditioning_frames),
                            ("base_channels", base_channels), ("num_res_blocks", num_res_blocks),
                            ("cond_dim", cond_dim), ("action_dim", action_dim)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{owner}: {name} must be an integer >= 1, got {value!r}")
        if cond_dim % num_conditioning_frames or cond_dim % 2:
            raise ValueError(f"{owner}: cond_dim ({cond_dim}) must be even and a multiple of "
                             f"num_conditioning_frames ({num_conditioning_frames})")
        multipliers = tuple(channel_multipliers)
        if not multipliers or any(not isinstance(m, int) or m < 1 for m in multipliers):
            raise ValueError(f"{owner}: channel_multipliers must be a non-empty sequence of integers >= 1, "
                             f"got {channel_multipliers!r}")
        levels = len(multipliers)
        attention = (False,) * levels if attention_levels is None else tuple(bool(a) for a in attention_levels)
        if len(attention) != levels:
            raise ValueError(f"{owner}: attention_levels needs one flag per level ({levels}), "
                             f"got {attention_levels!r}")
        if not sigma_data > 0:
            raise ValueError(f"{owner}: sigma_data must be > 0, got {sigma_data!r}")
        channels = [base_channels * m for m in multipliers]
        self.obs_channels, self.num_conditioning_frames, self.action_dim = obs_channels, num_conditioning_frames, action_dim
        self.channels, self.sigma_data = channels, float(sigma_data)

        self.noise_embedding = TimestepEmbedding(cond_dim, freq_dim=cond_dim)
        self.history_noise_embedding = TimestepEmbedding(cond_dim, freq_dim=cond_dim) if embed_history_noise else None
        self.action_embedding = nn.Embedding(action_dim, cond_dim // num_conditioning_frames)
        self.cond_proj = nn.Sequential(nn.Linear(cond_dim, cond_dim), nn.SiLU(), nn.Linear(cond_dim, cond_dim))
        self.conv_in = _conv3x3((num_conditioning_frames + 1) * obs_channels, channels[0])

        previous = [channels[max(0, i - 1)] for i in range(levels)]
        self.down_blocks = nn.ModuleList([
            DownBlock(previous[i], channels[i], cond_dim, num_res_blocks, attention[i], downsample=i > 0,
                      dropout=dropout) for i in range(levels)])
        self.mid_block = DownBlock(channels[-1], channels[-1], cond_dim, 2, attention=True, downsample=False,
                                   dropout=dropout)
        self.up_blocks = nn.ModuleList([
            UpBlock(channels[i], previous[i], cond_dim, num_res_blocks, attention[i], upsample=i < levels - 1,
                    dropout=dropout) for i in reversed(range(levels))])

        self.norm_out = _group_norm(channels[0])
        self.conv_out = _conv3x3(channels[0], obs_channels)
        nn.init.zeros_(self.conv_out.weight)

    def embed_actions(self, actions: Tensor) -> Tensor:
        """``(B, L)`` indices or ``(B, L, action_dim)`` one/multi-hot -> ``(B, cond_dim)``."""
        b, length = actions.shape[:2]
        if length != self.num_conditioning_frames or actions.ndim not in (2, 3) or (
                actions.ndim == 3 and actions.shape[2] != self.action_dim):
            raise ValueError(f"DiffusionUNet: actions must be (B, {self.num_conditioning_frames}) indices or "
                             f"(B, {self.num_conditioning_frames}, {self.action_dim}) one-hot, "
                             f"got {tuple(actions.shape)}")
        if actions.ndim == 2:
            return self.action_embedding(actions.long()).reshape(b, -1)
        weight = self.action_embedding.weight
        return (actions.to(weight.dtype) @ weight).reshape(b, -1)

    def forward(self, x: Tensor, t: Tensor, obs_history: Tensor, actions: Tensor,
                history_noise: Optional[Tensor] = None) -> Tensor:
        b, c, h, w = x.shape
        if c != self.obs_channels:
            raise ValueError(f"DiffusionUNet: x must have {self.obs_channels} channels (B, C, H, W), "
                             f"got shape {tuple(x.shape)}")
        expected = (b, self.num_conditioning_frames, self.obs_channels, h, w)
        if tuple(obs_history.shape) != expected:
            raise ValueError(f"DiffusionUNet: obs_history must have shape {expected} (B, L, C, H, W), "
                             f"got {tuple(obs_history.shape)}")
        t = torch.as_tensor(t, device=x.device, dtype=x.dtype)
        t = t.expand(b) if t.ndim == 0 else t
        cond = self.noise_embedding(t) + self.embed_actions(actions)
        if self.history_noise_embedding is not None:
            hist = torch.zeros_like(t) if history_noise is None else torch.as_tensor(history_noise, device=x.device,
                                                                                     dtype=x.dtype).expand(b)
            cond = cond + self.history_noise_embedding(hist)
        elif history_noise is not None:
            raise ValueError("DiffusionUNet: history_noise given but the model was built with "
                             "embed_history_noise=False")
        cond = self.cond_proj(cond)

        frames = obs_history.reshape(b, -1, h, w) / self.sigma_data
        hidden = self.conv_in(torch.cat((frames, x), dim=1))
        multiple = 2 ** (len(self.channels) - 1)
        hidden = F.pad(hidden, (0, -w % multiple, 0, -h % multiple))

        all_skips = []
        for block in self.down_blocks:
            hidden, skips = block.forward_with_skips(hidden, cond)
            all_skips.append(skips)
        hidden = self.mid_block(hidden, cond)
        for block, skips in zip(self.up_blocks, reversed(all_skips)):
            hidden = block(hidden, cond, skips)

        hidden = hidden[..., :h, :w]
        return self.conv_out(F.silu(self.norm_out(hidden)))
