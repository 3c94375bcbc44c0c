"""Genie's dynamics model (Bruce et al. 2024, arXiv:2402.15391, section 2.1): a decoder-only
MaskGIT transformer over video tokens, conditioned on latent actions.

The paper's choices, as built here:

* **Network.** An :class:`~distwm.blocks.st_transformer.STTransformer` (spatial attention in a
  frame, causal temporal attention, one FFN a block) over the tokenizer's tokens, ``N =
  (image_size / patch_size)^2`` per frame, ``vocab_size`` ids (1024) plus one ``[MASK]`` id
  (``mask_token_id = vocab_size``). Token ids embed into ``embedding_dim`` (the tokenizer's
  code size, 32) and project to ``dim``; learned spatial (``N``) and temporal (``num_frames``)
  position embeddings are added; a linear head gives ``vocab_size`` logits per token.
* **Actions are additive embeddings** (``action_vocab_size`` = 8 latent actions). ``a_t`` is
  the action from frame ``t`` to frame ``t + 1`` (0-indexed, as the LAM infers it) and is added
  to every token of frame ``t + 1``: frame ``t + 1`` is predicted *in place* from frames
  ``<= t + 1`` with its own tokens masked, so it sees the action that leads to it. Frame 0 (the
  prompt) gets no action. Everywhere in this module ``actions[:, t]`` is ``a_t``: ``forward``
  takes ``(B, T)`` (the last column leads past the clip and is unused) or ``(B, T - 1)``.
* **Training** (:meth:`DynamicsModel.loss`): per sample a masking rate ``r ~ U(0.5, 1)``; every
  token of frames ``1..T-1`` is replaced by ``[MASK]`` with probability ``r`` (frame 0 is the
  prompt and stays); cross-entropy on the masked tokens only (:func:`masked_token_loss`). The
  paper writes the masked inputs as ``z_{2:T-1}`` and the targets as ``z_{2:T}``; with in-place
  MaskGIT prediction (the brief's, and what iterative decoding needs) every frame after the
  first is both masked and a target.
* **Sampling** (:meth:`DynamicsModel.sample`): each new frame starts fully masked and is decoded
  by MaskGIT (:class:`~distwm.models.genie.maskgit.MaskGITSampler`: 25 steps, temperature 2,
  cosine schedule). Causal temporal attention lets a temporal KV cache hold the history: the
  prompt runs once, each refinement pass runs only the new frame (``commit=False``), and a
  finished frame is committed in the next frame's first pass (the two frames in one pass; the
  finished one cannot see the candidate), so a frame costs ``num_steps`` passes, the first over
  two frames. :meth:`DynamicsModel.next_frame` is that step for interactive play.

Where the seed and the peer (simulusion 1.1.0) deviate:

* The seed's default ``num_heads=36`` does not divide ``dim=5120`` (the paper pairs 36 heads with
  a key/query size of 128, which the shared ST block cannot express); the default here is 40
  heads of 128 (the peer does the same).
* The seed's ``sample`` has only ``prompt_actions`` "for prompt frames"; here ``prompt_actions``
  holds ``a_0 ..`` and may run past the prompt; actions it does not give are drawn uniformly (as
  the seed's ``Genie.generate(actions=None)``), from ``generator``.
* The peer adds ``actions[:, t]`` to frame ``t`` and samples the next frame from the *last prompt
  frame's* output position (a next-frame shift) although it masks in place; its ``sample`` never
  calls MaskGIT (one draw per token from the full-history forward, with random actions), its
  cosine schedule reveals the whole frame at step 0, it masks with one rate per batch and only
  frames ``1..T-2`` in training mode, has no masked-token loss and ignores ``embedding_dim``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from distwm.blocks.st_transformer import STTransformer, TemporalKVCache
from distwm.models.genie.maskgit import MaskGITSampler, check_temperature

__all__ = ["DynamicsModel", "MaskGITSampler", "create_dynamics_model", "masked_token_loss"]


def masked_token_loss(logits: Tensor, targets: Tensor, mask: Tensor) -> dict[str, Tensor]:
    """Cross-entropy and accuracy over the masked tokens only.

    ``logits (..., V)``, ``targets`` and ``mask`` (bool, True = masked = scored) of shape
    ``(...)``. Returns ``loss`` (mean over masked tokens; 0 with a zero gradient when none is
    masked), ``accuracy`` (argmax hits among them) and ``num_masked``.
    """
    if logits.shape[:-1] != targets.shape or targets.shape != mask.shape:
        raise ValueError(f"masked_token_loss: logits (..., V) {tuple(logits.shape)}, targets "
                         f"{tuple(targets.shape)} and mask {tuple(mask.shape)} do not match")
    mask = mask.bool()
    count = mask.sum()
    picked = logits[mask].float()
    if picked.shape[0] == 0:
        zero = logits.float().sum() * 0.0
        return {"loss": zero, "accuracy": zero.detach(), "num_masked": count}
    truth = targets[mask]
    return {"loss": F.cross_entropy(picked, truth),
            "accuracy": (picked.argmax(-1) == truth).float().mean().detach(),
            "num_masked": count}


class _RasterOrder:
    """A sampler-shaped decoder that reveals one position a pass, in raster order, at
    ``temperature`` (``autoregressive_sample``'s token-by-token decoding)."""

    def __init__(self, num_positions: int, temperature: float):
        self.num_steps = num_positions
        self.temperature = check_temperature(temperature)

    def sample(self, logits: Tensor, mask: Tensor, step: int, tokens: Tensor,
               generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        probs = F.softmax(logits[:, step].float() / self.temperature, dim=-1)
        tokens = tokens.clone()
        tokens[:, step] = torch.multinomial(probs, 1, generator=generator).squeeze(-1)
        mask = mask.clone()
        mask[:, step] = False
        return tokens, mask


class DynamicsModel(nn.Module):
    """Action-conditioned MaskGIT dynamics model over ``(B, T, N)`` video tokens (module doc)."""

    def __init__(self, num_frames: int = 16, image_size: int = 64, vocab_size: int = 1024,
                 embedding_dim: int = 32, action_vocab_size: int = 8, dim: int = 5120,
                 depth: int = 48, num_heads: int = 40, patch_size: int = 4,
                 mlp_ratio: float = 4.0, qkv_bias: bool = True, drop_rate: float = 0.0,
                 attn_drop_rate: float = 0.0, drop_path_rate: float = 0.0):
        super().__init__()
        for name, value in (("vocab_size", vocab_size), ("embedding_dim", embedding_dim),
                            ("action_vocab_size", action_vocab_size), ("patch_size", patch_size)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"DynamicsModel: {name} must be an int >= 1, got {value!r}")
        if image_size < patch_size or image_size % patch_size:
            raise ValueError(f"DynamicsModel: image_size ({image_size}) must be a multiple of "
                             f"patch_size ({patch_size})")
        self.num_frames = num_frames
        self.vocab_size = vocab_size
        self.mask_token_id = vocab_size
        self.action_vocab_size = action_vocab_size
        self.num_patches = (image_size // patch_size) ** 2
        self.dim = dim
        self.token_embedding = nn.Embedding(vocab_size + 1, embedding_dim)
        self.token_proj = nn.Linear(embedding_dim, dim)
        self.action_embedding = nn.Embedding(action_vocab_size, embedding_dim)
        self.action_proj = nn.Linear(embedding_dim, dim)
        self.spatial_pos = nn.Parameter(torch.zeros(self.num_patches, dim))
        self.temporal_pos = nn.Parameter(torch.zeros(num_frames, dim))
        nn.init.trunc_normal_(self.spatial_pos, std=0.02)
        nn.init.trunc_normal_(self.temporal_pos, std=0.02)
        self.transformer = STTransformer(num_frames, self.num_patches, dim, depth, num_heads,
                                         mlp_ratio, qkv_bias, None, drop_rate, attn_drop_rate,
                                         drop_path_rate)
        self.head = nn.Linear(dim, vocab_size)

    # -- checks --------------------------------------------------------------------------------

    def _check_tokens(self, tokens: Tensor, what: str, allow_mask: bool = False) -> None:
        if tokens.dim() != 3 or tokens.shape[2] != self.num_patches:
            raise ValueError(f"{what} must be (B, T, {self.num_patches}) token ids, "
                             f"got shape {tuple(tokens.shape)}")
        if tokens.dtype not in (torch.int64, torch.int32):
            raise ValueError(f"{what} must be integer token ids, got dtype {tokens.dtype}")
        if not 1 <= tokens.shape[1] <= self.num_frames:
            raise ValueError(f"{what} has {tokens.shape[1]} frames; this model holds 1.."
                             f"{self.num_frames} (num_frames)")
        top = self.vocab_size + (1 if allow_mask else 0)
        if tokens.numel() and (tokens.min() < 0 or tokens.max() >= top):
            valid = (f"[0, {self.vocab_size}) (vocab_size)" +
                     (f" or the [MASK] id {self.mask_token_id}" if allow_mask else ""))
            raise ValueError(f"{what} ids must lie in {valid}, got "
                             f"[{int(tokens.min())}, {int(tokens.max())}]")

    def _check_actions(self, actions: Tensor, batch: int, what: str) -> None:
        if actions.dim() != 2 or actions.shape[0] != batch:
            raise ValueError(f"{what} must be (B={batch}, T) action ids, got shape "
                             f"{tuple(actions.shape)}")
        if actions.numel() and (actions.min() < 0 or actions.max() >= self.action_vocab_size):
            raise ValueError(f"{what} must lie in [0, {self.action_vocab_size}) "
                             f"(action_vocab_size), got [{int(actions.min())}, {int(actions.max())}]")

    def _leading_actions(self, actions: Tensor, batch: int, frames: int) -> Tensor:
        """``a_0 .. a_{T-2}`` from ``(B, T)`` or ``(B, T - 1)`` actions."""
        self._check_actions(actions, batch, "actions")
        if actions.shape[1] not in (frames, frames - 1):
            raise ValueError(f"actions must be (B, T) or (B, T - 1) for T={frames} frames "
                             f"(actions[:, t] leads from frame t to t + 1), got "
                             f"{tuple(actions.shape)}")
        return actions[:, :frames - 1].long()

    # -- the network ---------------------------------------------------------------------------

    def _inputs(self, tokens: Tensor, incoming: Tensor, start: int) -> Tensor:
        """The transformer's input ``(B, T, N, dim)`` for frames ``start .. start+T-1``.
        ``incoming[:, i]`` is the action leading into the i-th of the frames that have one:
        all of them, or all but the first when ``start`` is 0."""
        T = tokens.shape[1]
        x = self.token_proj(self.token_embedding(tokens.long()))
        x = x + self.spatial_pos + self.temporal_pos[start:start + T, None]
        if incoming.shape[1]:
            act = self.action_proj(self.action_embedding(incoming.long()))[:, :, None]
            skip = T - incoming.shape[1]
            x = torch.cat([x[:, :skip], x[:, skip:] + act], dim=1)
        return x

    def _logits(self, tokens: Tensor, incoming: Tensor, cache: TemporalKVCache | None = None,
                commit: bool | int = True, first: int = 0) -> Tensor:
        """Logits ``(B, T - first, N, V)`` of frames ``start + first .. start+T-1`` (``start`` =
        frames in the cache; ``incoming`` as :meth:`_inputs`; ``commit`` as
        :meth:`STTransformer.forward`)."""
        x = self._inputs(tokens, incoming, cache.length if cache is not None else 0)
        return self.head(self.transformer(x, cache=cache, commit=commit)[:, first:])

    def _commit(self, tokens: Tensor, incoming: Tensor, cache: TemporalKVCache) -> None:
        """Append frames ``tokens`` to ``cache`` as :meth:`_logits` would, without computing
        logits nobody reads (:meth:`STTransformer.fill_cache`)."""
        self.transformer.fill_cache(self._inputs(tokens, incoming, cache.length), cache)

    def forward(self, video_tokens: Tensor, actions: Tensor, mask_prob: float = 0.0,
                generator: torch.Generator | None = None) -> Tensor:
        """Logits ``(B, T, N, vocab_size)``. ``video_tokens (B, T, N)`` (``[MASK]`` ids
        allowed), ``actions (B, T)`` or ``(B, T - 1)`` with ``actions[:, t] = a_t`` (frame t to
        t + 1, added to frame t + 1). ``mask_prob > 0`` first masks each token of frames 1..T-1
        with that probability (the first frame never)."""
        self._check_tokens(video_tokens, "video_tokens", allow_mask=True)
        B, T, _ = video_tokens.shape
        incoming = self._leading_actions(actions, B, T)
        if mask_prob:
            video_tokens = self.apply_mask(video_tokens,
                                           self.draw_mask(video_tokens, mask_prob, generator))
        return self._logits(video_tokens, incoming)

    def draw_mask(self, video_tokens: Tensor, mask_prob, generator: torch.Generator | None = None
                  ) -> Tensor:
        """Bool ``(B, T, N)``: each token of frames ``1..T-1`` masked with probability
        ``mask_prob`` (a float, or ``(B,)`` rates per sample); frame 0 never."""
        rate = torch.as_tensor(mask_prob, dtype=torch.float32, device=video_tokens.device)
        if rate.numel() and (not torch.isfinite(rate).all() or rate.min() < 0 or rate.max() > 1):
            raise ValueError(f"mask_prob must lie in [0, 1], got {mask_prob!r}")
        rate = rate.reshape(-1, 1, 1) if rate.dim() else rate
        draw = torch.rand(video_tokens.shape, generator=generator, device=video_tokens.device)
        mask = draw < rate
        mask[:, 0] = False
        return mask

    def apply_mask(self, video_tokens: Tensor, mask: Tensor) -> Tensor:
        """``video_tokens`` with the ``mask`` positions set to the ``[MASK]`` id."""
        return video_tokens.masked_fill(mask, self.mask_token_id)

    def loss(self, video_tokens: Tensor, actions: Tensor, mask_prob_range=(0.5, 1.0),
             generator: torch.Generator | None = None) -> dict[str, Tensor]:
        """The paper's training objective: per sample a rate ``r ~ U(mask_prob_range)``,
        Bernoulli(``r``) masking of frames 1..T-1, cross-entropy on the masked tokens.
        Returns ``loss``, ``accuracy``, ``num_masked`` and ``mask_rate`` (the mean ``r``)."""
        low, high = (float(v) for v in mask_prob_range)
        if not 0.0 <= low <= high <= 1.0:
            raise ValueError(f"mask_prob_range must be (low, high) with 0 <= low <= high <= 1, "
                             f"got {tuple(mask_prob_range)!r}")
        self._check_tokens(video_tokens, "video_tokens")
        B, T, _ = video_tokens.shape
        if T < 2:
            raise ValueError("loss needs T >= 2 frames: frame 0 is the unmasked prompt")
        incoming = self._leading_actions(actions, B, T)
        rates = low + (high - low) * torch.rand(B, generator=generator, device=video_tokens.device)
        mask = self.draw_mask(video_tokens, rates, generator)
        logits = self._logits(self.apply_mask(video_tokens, mask), incoming)
        return {**masked_token_loss(logits, video_tokens, mask), "mask_rate": rates.mean()}

    # -- generation ----------------------------------------------------------------------------

    def init_cache(self, batch_size: int, capacity: int | None = None) -> TemporalKVCache:
        """An empty temporal KV cache for ``capacity`` frames (default and at most num_frames)."""
        capacity = self.num_frames if capacity is None else capacity
        if not 1 <= capacity <= self.num_frames:
            raise ValueError(f"capacity must lie in [1, {self.num_frames}] (num_frames: the "
                             f"temporal position embeddings), got {capacity!r}")
        return self.transformer.init_cache(batch_size, capacity)

    def _decode_frame(self, cache: TemporalKVCache, action: Tensor, sampler,
                      generator: torch.Generator | None,
                      pending: tuple[Tensor, Tensor] | None = None) -> Tensor:
        """Decode the frame after the cached ones under ``action (B,)`` and return its tokens
        ``(B, N)``, not committed. ``pending``: ``(tokens (B, N), incoming (B, 0 or 1))`` of the
        frame before it when that frame is not in the cache yet: the first pass runs it and
        the new frame's first candidate together and commits it (its keys and values are
        those a pass of its own would store: causal attention keeps the candidate out)."""
        B, N = action.shape[0], self.num_patches
        tokens = torch.full((B, N), self.mask_token_id, dtype=torch.long, device=action.device)
        mask = torch.ones(B, N, dtype=torch.bool, device=action.device)
        incoming = action.long()[:, None]
        for step in range(sampler.num_steps):
            if pending is not None:
                frames = torch.stack([pending[0].long(), tokens], 1)
                logits = self._logits(frames, torch.cat([pending[1].long(), incoming], 1),
                                      cache, commit=1, first=1)[:, 0]
                pending = None
            else:
                logits = self._logits(tokens[:, None], incoming, cache, commit=False)[:, 0]
            drawn, mask = sampler.sample(logits, mask, step, tokens, generator=generator)
            tokens = drawn.masked_fill(mask, self.mask_token_id)
        return tokens

    @torch.no_grad()
    def next_frame(self, cache: TemporalKVCache, last_tokens: Tensor | None, action: Tensor,
                   sampler: MaskGITSampler | None = None,
                   generator: torch.Generator | None = None, last_action: Tensor | None = None,
                   commit: bool = True) -> Tensor:
        """One step of play: the tokens ``(B, N)`` of the frame that ``action (B,)`` leads to,
        committed to ``cache`` (``commit=False``: not). ``last_tokens (B, N)``: the frame
        before it when the cache does not hold it yet: the prompt frame on an empty cache, or
        the frame of the last ``commit=False`` step, with ``last_action`` the action that led
        to it; it is committed in the new frame's first pass (one pass a frame less than a
        separate commit). None: the cache already ends with the last frame."""
        batch = cache.keys[0].shape[0] // self.num_patches
        pending = None
        if last_tokens is not None:
            if cache.length and last_action is None:
                raise ValueError(f"last_tokens without last_action starts play on an empty "
                                 f"cache; this one holds {cache.length} frames (pass None to "
                                 f"continue, or last_action with a frame not committed yet)")
            if not cache.length and last_action is not None:
                raise ValueError("the first frame of a cache has no incoming action: "
                                 "last_action must be None on an empty cache")
            if last_tokens.dim() != 2:
                raise ValueError(f"last_tokens must be one frame (B, N), got shape "
                                 f"{tuple(last_tokens.shape)}")
            self._check_tokens(last_tokens[:, None], "last_tokens")
            incoming = last_tokens.new_zeros(last_tokens.shape[0], 0) if last_action is None \
                else last_action.reshape(-1, 1)
            if last_action is not None:
                self._check_actions(incoming, batch, "last_action")
            pending = (last_tokens, incoming)
        elif not cache.length:
            raise ValueError("the cache is empty: pass the first frame as last_tokens")
        if action.dim() != 1:
            raise ValueError(f"action must be (B,) action ids, got shape {tuple(action.shape)}")
        self._check_actions(action[:, None], batch, "action")
        if cache.length + (pending is not None) >= cache.capacity:
            raise ValueError(f"the cache is full ({cache.capacity} frames); start a new one")
        tokens = self._decode_frame(cache, action, sampler or MaskGITSampler(), generator,
                                    pending)
        if commit:
            self._commit(tokens[:, None], action.long()[:, None], cache)
        return tokens

    @torch.no_grad()
    def prefill(self, cache: TemporalKVCache, tokens: Tensor, actions: Tensor) -> None:
        """Commit known frames ``tokens (B, T, N)`` to an empty ``cache``: ``actions (B, T - 1)``
        are ``a_0 .. a_{T-2}`` between them (play's sliding window restarts a cache so)."""
        if cache.length:
            raise ValueError(f"prefill starts an empty cache; this one holds {cache.length} frames")
        self._check_tokens(tokens, "tokens")
        B, T, _ = tokens.shape
        if T > cache.capacity:
            raise ValueError(f"{T} frames do not fit a cache of {cache.capacity}")
        self._commit(tokens, self._leading_actions(actions, B, T) if T > 1 else
                     tokens.new_zeros(B, 0), cache)

    def _all_actions(self, prompt_actions: Tensor, batch: int, prompt_frames: int,
                     num_frames: int, generator: torch.Generator | None) -> Tensor:
        """``a_0 .. a_{num_frames-2}``: the given ones (any beyond are unused), then uniform
        draws."""
        self._check_actions(prompt_actions, batch, "prompt_actions")
        given = prompt_actions.shape[1]
        if given < prompt_frames - 1:
            raise ValueError(f"prompt_actions must hold a_0, a_1, .. (actions[:, t] leads from "
                             f"frame t to t + 1): at least T_prompt - 1 = {prompt_frames - 1} "
                             f"of them, got {given}")
        need = num_frames - 1
        actions = prompt_actions[:, :need].long()
        if given < need:
            drawn = torch.randint(self.action_vocab_size, (batch, need - given),
                                  generator=generator, device=prompt_actions.device)
            actions = torch.cat([actions, drawn], dim=1)
        return actions

    def _generate(self, prompt_tokens: Tensor, prompt_actions: Tensor, num_frames: int, sampler,
                  generator: torch.Generator | None) -> Tensor:
        self._check_tokens(prompt_tokens, "prompt_tokens")
        B, prompt_frames, _ = prompt_tokens.shape
        if not prompt_frames <= num_frames <= self.num_frames:
            raise ValueError(f"num_frames (total, prompt included) must lie in "
                             f"[{prompt_frames}, {self.num_frames}], got {num_frames!r}")
        actions = self._all_actions(prompt_actions, B, prompt_frames, num_frames, generator)
        cache = self.init_cache(B, num_frames)
        if prompt_frames > 1:  # the last prompt frame is committed with the first new one
            self._commit(prompt_tokens[:, :-1], actions[:, :prompt_frames - 2], cache)
        pending = (prompt_tokens[:, -1], actions[:, max(0, prompt_frames - 2):prompt_frames - 1])
        frames = [prompt_tokens.long()]
        for t in range(prompt_frames, num_frames):
            new = self._decode_frame(cache, actions[:, t - 1], sampler, generator, pending)
            pending = (new, actions[:, t - 1:t])
            frames.append(new[:, None])
        return torch.cat(frames, dim=1)

    @torch.no_grad()
    def sample(self, prompt_tokens: Tensor, prompt_actions: Tensor, num_frames: int,
               sampler: MaskGITSampler | None = None,
               generator: torch.Generator | None = None) -> Tensor:
        """``(B, num_frames, N)``: the prompt ``(B, T_prompt, N)`` then MaskGIT-decoded frames.
        ``prompt_actions (B, K)`` are ``a_0 .. a_{K-1}`` with ``K >= T_prompt - 1``; the action
        into generated frame ``t`` is ``a_{t-1}``, drawn uniformly (from ``generator``) when
        ``K < t``. Runs the
        model as it is: call ``eval()`` first if it has dropout."""
        return self._generate(prompt_tokens, prompt_actions, num_frames,
                              sampler or MaskGITSampler(), generator)

    @torch.no_grad()
    def autoregressive_sample(self, prompt_tokens: Tensor, prompt_actions: Tensor,
                              num_frames: int, temperature: float = 1.0,
                              generator: torch.Generator | None = None) -> Tensor:
        """As :meth:`sample`, but token by token: each frame reveals one token a pass in raster
        order, drawn at ``temperature`` (``N + 1`` passes a frame, with the KV cache)."""
        return self._generate(prompt_tokens, prompt_actions, num_frames,
                              _RasterOrder(self.num_patches, temperature), generator)


def create_dynamics_model(num_frames: int = 16, image_size: int = 64, vocab_size: int = 1024,
                          embedding_dim: int = 32, action_vocab_size: int = 8, dim: int = 5120,
                          depth: int = 48, num_heads: int = 40, patch_size: int = 4
                          ) -> DynamicsModel:
    """A :class:`DynamicsModel` (the paper's 10.1B-parameter sizes by default)."""
    return DynamicsModel(num_frames=num_frames, image_size=image_size, vocab_size=vocab_size,
                         embedding_dim=embedding_dim, action_vocab_size=action_vocab_size,
                         dim=dim, depth=depth, num_heads=num_heads, patch_size=patch_size)
