"""IRIS's world model transformer (Micheli et al. 2023, and its reference code): a GPT over
interleaved frame and action tokens, with key/value caching for imagination.

A step is a block of ``K + 1`` tokens: the ``K`` tokens of a frame, then its action. The
reference configuration (the defaults): 10 layers, 4 heads, width 256, dropout 0.1 on the
embeddings, attention and residuals, 20 blocks of context (``max_blocks``), pre-LayerNorm
blocks with a 4x GELU MLP, weights N(0, 0.02) with zero biases. Three heads (Linear - ReLU -
Linear) read the transformer's output:

* next observation token: at every position but a frame's last token; the token it predicts
  is the next frame token of the sequence (after a frame's action: the next frame's first);
* reward sign (3 classes: -1, 0, +1) and episode end (2 classes): at the action positions.

All three are trained by cross-entropy (:meth:`IRISTransformer.loss`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from distwm.blocks.layers import sample_categorical

__all__ = ["IRISTransformer", "KVCache"]


class KVCache:
    """Keys and values of every layer for the tokens seen so far, in buffers allocated once for
    ``capacity`` tokens (the first :meth:`extend` sizes them) and written in place: a step of
    imagination appends one token without copying the context. Without ``capacity`` the
    buffers double when full."""

    def __init__(self, num_layers: int, capacity: int | None = None):
        self.num_layers, self.capacity = num_layers, capacity
        self.keys: list[Tensor | None] = [None] * num_layers
        self.values: list[Tensor | None] = [None] * num_layers
        self.lengths = [0] * num_layers

    @property
    def size(self) -> int:
        return self.lengths[0]

    def extend(self, layer: int, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        """Append ``k``, ``v`` ``(B, heads, T, D)``; the layer's keys and values so far."""
        start, end = self.lengths[layer], self.lengths[layer] + k.shape[2]
        if self.keys[layer] is None:
            capacity = max(self.capacity or end, end)
            self.keys[layer] = k.new_empty(*k.shape[:2], capacity, k.shape[3])
            self.values[layer] = v.new_empty(*v.shape[:2], capacity, v.shape[3])
        elif end > self.keys[layer].shape[2]:
            if self.capacity is not None:
                raise ValueError(f"the cache holds {self.capacity} tokens; got {start} + {k.shape[2]}")
            grow = lambda buf: torch.cat([buf, buf.new_empty(*buf.shape[:2], max(end, 2 * start) - buf.shape[2],  # noqa: E731
                                                            buf.shape[3])], 2)
            self.keys[layer], self.values[layer] = grow(self.keys[layer]), grow(self.values[layer])
        self.keys[layer][:, :, start:end] = k
        self.values[layer][:, :, start:end] = v
        self.lengths[layer] = end
        return self.keys[layer][:, :, :end], self.values[layer][:, :, :end]


class _Block(nn.Module):
    def __init__(self, embed_dim: int, num_heads: int, dropout: float):
        super().__init__()
        self.num_heads, self.dropout = num_heads, dropout
        self.ln1, self.ln2 = nn.LayerNorm(embed_dim), nn.LayerNorm(embed_dim)
        self.qkv = nn.Linear(embed_dim, 3 * embed_dim)
        self.proj = nn.Linear(embed_dim, embed_dim)
        self.mlp = nn.Sequential(nn.Linear(embed_dim, 4 * embed_dim), nn.GELU(),
                                 nn.Linear(4 * embed_dim, embed_dim), nn.Dropout(dropout))
        self.resid_drop = nn.Dropout(dropout)

    def forward(self, x: Tensor, layer: int, cache: KVCache | None, mask: Tensor | None) -> Tensor:
        b, t, c = x.shape
        q, k, v = (part.reshape(b, t, self.num_heads, c // self.num_heads).transpose(1, 2)
                   for part in self.qkv(self.ln1(x)).split(c, dim=2))
        if cache is not None:
            k, v = cache.extend(layer, k, v)
        past = k.shape[2] - t  # query i is token past + i: it sees keys 0 .. past + i
        dropout = self.dropout if self.training else 0.0
        if mask is None and (t == 1 or past == 0):  # one new token sees everything; or plain causal
            y = F.scaled_dot_product_attention(q, k, v, dropout_p=dropout, is_causal=t > 1)
        else:
            allowed = torch.ones(t, k.shape[2], dtype=torch.bool, device=x.device).tril(diagonal=past)
            if mask is not None:
                allowed = allowed & mask
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed, dropout_p=dropout)
        x = x + self.resid_drop(self.proj(y.transpose(1, 2).reshape(b, t, c)))
        return x + self.mlp(self.ln2(x))


def _head(embed_dim: int, out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(embed_dim, embed_dim), nn.ReLU(), nn.Linear(embed_dim, out))


class IRISTransformer(nn.Module):
    """The transformer world model (module docstring). ``max_blocks`` (beyond the seed's
    parameters) is the context in steps, 20 as IRIS."""

    def __init__(self, vocab_size: int = 512, tokens_per_frame: int = 16, action_size: int = 18,
                 embed_dim: int = 256, num_layers: int = 10, num_heads: int = 4, dropout: float = 0.1,
                 *, max_blocks: int = 20):
        super().__init__()
        if embed_dim % num_heads:
            raise ValueError(f"embed_dim ({embed_dim}) must be divisible by num_heads ({num_heads})")
        self.vocab_size, self.tokens_per_frame, self.action_size = vocab_size, tokens_per_frame, action_size
        self.block_size = tokens_per_frame + 1
        self.max_tokens = max_blocks * self.block_size
        self.obs_embedding = nn.Embedding(vocab_size, embed_dim)
        self.act_embedding = nn.Embedding(action_size, embed_dim)
        self.pos_embedding = nn.Embedding(self.max_tokens, embed_dim)
        self.drop = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(_Block(embed_dim, num_heads, dropout) for _ in range(num_layers))
        self.ln_f = nn.LayerNorm(embed_dim)
        self.head_observations = _head(embed_dim, vocab_size)
        self.head_rewards = _head(embed_dim, 3)
        self.head_ends = _head(embed_dim, 2)
        self.apply(self._init)

    @staticmethod
    def _init(module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, 0.0, 0.02)
            if getattr(module, "bias", None) is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)

    # -- the sequence --------------------------------------------------------------------------
    def embed(self, tokens: Tensor, actions: Tensor) -> Tensor:
        """Interleaved embeddings ``(B, T * (K + 1), E)`` of frames ``(B, T, K)`` and actions ``(B, T)``."""
        if tokens.dim() != 3 or tokens.shape[2] != self.tokens_per_frame or actions.shape != tokens.shape[:2]:
            raise ValueError(f"expected tokens (B, T, {self.tokens_per_frame}) and actions (B, T), got "
                             f"{tuple(tokens.shape)} and {tuple(actions.shape)}")
        for name, x, n in (("tokens", tokens, self.vocab_size), ("actions", actions, self.action_size)):
            if x.numel() and (int(x.min()) < 0 or int(x.max()) >= n):
                raise ValueError(f"{name} must lie in [0, {n}), got values from {int(x.min())} to {int(x.max())}")
        block = torch.cat([self.obs_embedding(tokens), self.act_embedding(actions).unsqueeze(2)], 2)
        return block.flatten(1, 2)

    def run(self, embeddings: Tensor, cache: KVCache | None = None, mask: Tensor | None = None) -> Tensor:
        """Transformer outputs of ``embeddings`` ``(B, L, E)`` that follow ``cache``'s tokens."""
        start = 0 if cache is None else cache.size
        if start + embeddings.shape[1] > self.max_tokens:
            raise ValueError(f"the context holds {self.max_tokens} tokens ({self.max_tokens // self.block_size} "
                             f"steps); got {start} cached + {embeddings.shape[1]} new")
        positions = torch.arange(start, start + embeddings.shape[1], device=embeddings.device)
        x = self.drop(embeddings + self.pos_embedding(positions))
        for layer, block in enumerate(self.blocks):
            x = block(x, layer, cache, mask)
        return self.ln_f(x)

    def heads(self, tokens: Tensor, actions: Tensor, mask: Tensor | None = None) -> dict[str, Tensor]:
        """Logits of a teacher-forced sequence: ``obs`` ``(B, T, K, vocab)`` (entry ``[t, k]``
        predicts frame ``t``'s token ``k + 1``, and for ``k = K - 1`` frame ``t + 1``'s first),
        ``rewards`` ``(B, T, 3)`` and ``ends`` ``(B, T, 2)``."""
        b, t, k = tokens.shape
        x = self.run(self.embed(tokens, actions), mask=mask).reshape(b, t, k + 1, -1)
        predicting = [*range(k - 1), k]  # every position but a frame's last token
        return {"obs": self.head_observations(x[:, :, predicting]),
                "rewards": self.head_rewards(x[:, :, k]), "ends": self.head_ends(x[:, :, k])}

    def forward(self, tokens: Tensor, actions: Tensor, mask: Tensor | None = None):
        """``(token_logits (B, T, K, vocab), rewards (B, T), terminations (B, T, 2))``: the
        rewards are the expected sign under the reward head, the terminations its end logits."""
        out = self.heads(tokens, actions, mask)
        signs = torch.tensor([-1.0, 0.0, 1.0], device=tokens.device)
        return out["obs"], out["rewards"].softmax(-1) @ signs, out["ends"]

    def loss(self, tokens: Tensor, actions: Tensor, rewards: Tensor, ends: Tensor,
             valid: Tensor | None = None) -> dict[str, Tensor]:
        """IRIS's cross-entropies (``loss_obs``, ``loss_rewards``, ``loss_ends``); steps where
        ``valid`` ``(B, T)`` is false (padding) are left out."""
        out = self.heads(tokens, actions)
        b, t, k = tokens.shape
        valid = torch.ones(b, t, dtype=torch.bool, device=tokens.device) if valid is None else valid.bool()
        labels = tokens.masked_fill(~valid.unsqueeze(-1), -100).flatten(1)[:, 1:]  # the next obs token
        obs_logits = out["obs"].flatten(1, 2)[:, :-1]  # the last predicts beyond the sequence
        reward_labels = (rewards.sign().long() + 1).masked_fill(~valid, -100)
        end_labels = ends.long().masked_fill(~valid, -100)
        return {"loss_obs": F.cross_entropy(obs_logits.flatten(0, 1), labels.flatten()),
                "loss_rewards": F.cross_entropy(out["rewards"].flatten(0, 1), reward_labels.flatten()),
                "loss_ends": F.cross_entropy(out["ends"].flatten(0, 1), end_labels.flatten())}

    # -- imagination ---------------------------------------------------------------------------
    @torch.no_grad()
    def _decode_next(self, tokens: Tensor, actions: Tensor, temperature: float | None):
        """Frame + action in a fresh cache, then the next frame token by token."""
        if tokens.dim() != 2 or actions.dim() != 1:
            raise ValueError(f"expected tokens (B, K) and actions (B,), got {tuple(tokens.shape)} "
                             f"and {tuple(actions.shape)}")
        cache = KVCache(len(self.blocks), self.block_size + self.tokens_per_frame)
        x = self.run(self.embed(tokens.unsqueeze(1), actions.unsqueeze(1)), cache)
        hidden = x[:, -1]
        logits, chosen = [], []
        for i in range(self.tokens_per_frame):
            step_logits = self.head_observations(x[:, -1])
            if temperature is None:
                token = step_logits.argmax(-1)
            else:
                token = sample_categorical(step_logits, temperature)
            logits.append(step_logits)
            chosen.append(token)
            if i + 1 < self.tokens_per_frame:
                x = self.run(self.obs_embedding(token).unsqueeze(1), cache)
        return torch.stack(logits, 1), torch.stack(chosen, 1), hidden

    def predict_next_tokens(self, tokens: Tensor, actions: Tensor) -> tuple[Tensor, Tensor]:
        """Greedy next frame after ``tokens`` ``(B, K)`` and ``actions`` ``(B,)``: the logits of
        each of its tokens ``(B, K, vocab)`` (each given the earlier ones) and the hidden state
        at the action ``(B, E)`` (what the reward and end heads read)."""
        logits, _, hidden = self._decode_next(tokens, actions, None)
        return logits, hidden

    def sample_next_tokens(self, tokens: Tensor, actions: Tensor, temperature: float = 1.0) -> tuple[Tensor, Tensor]:
        """A sampled next frame ``(B, K)`` and the log-probabilities of its tokens ``(B, K)``."""
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0, got {temperature!r}")
        logits, sampled, _ = self._decode_next(tokens, actions, float(temperature))
        log_probs = torch.log_softmax(logits / temperature, -1).gather(-1, sampled.unsqueeze(-1)).squeeze(-1)
        return sampled, log_probs
