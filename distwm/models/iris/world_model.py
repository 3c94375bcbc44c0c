"""IRIS's world model: the discrete autoencoder's encoder and decoder around the transformer.

Frames are ``[0, 1]`` floats (``(B, T, C, H, W)``); the tokenizer works in ``[-1, 1]`` as IRIS
does. Imagination keeps the transformer's key/value cache across steps and, as the IRIS code's
world-model environment does, re-primes it with the current frame's tokens when the next step
would not fit in the context.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor, nn

from distwm.blocks.layers import sample_categorical
from distwm.models.iris.transformer import IRISTransformer, KVCache

__all__ = ["IRISWorldModel"]


class IRISWorldModel(nn.Module):
    """``IRISWorldModel(encoder, decoder, transformer)``: an :class:`~distwm.vision.iris_encoder.IRISEncoder`,
    an :class:`~distwm.vision.iris_decoder.IRISDecoder` (sharing its codebook) and an
    :class:`IRISTransformer`."""

    def __init__(self, encoder: nn.Module, decoder: nn.Module, transformer: IRISTransformer):
        super().__init__()
        if encoder.tokens_per_frame != transformer.tokens_per_frame:
            raise ValueError(f"the encoder makes {encoder.tokens_per_frame} tokens per frame, the "
                             f"transformer expects {transformer.tokens_per_frame}")
        self.encoder, self.decoder, self.transformer = encoder, decoder, transformer

    @torch.no_grad()
    def tokenize(self, frames: Tensor) -> Tensor:
        """Tokens ``(B, T, K)`` of frames ``(B, T, C, H, W)`` in ``[0, 1]``."""
        b, t = frames.shape[:2]
        indices = self.encoder.encode_to_indices(frames.flatten(0, 1) * 2.0 - 1.0)
        return indices.reshape(b, t, -1)

    @torch.no_grad()
    def frames(self, tokens: Tensor) -> Tensor:
        """Frames in ``[0, 1]`` ``(B, C, H, W)`` decoded from tokens ``(B, K)``."""
        return ((self.decoder.decode_from_indices(tokens) + 1.0) / 2.0).clamp(0.0, 1.0)

    def forward(self, observations: Tensor, actions: Tensor, rewards: Tensor | None = None,
                ends: Tensor | None = None) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        """``observations`` ``(B, T + 1, C, H, W)`` and ``actions`` ``(B, T)`` (action ``t`` taken
        in frame ``t``) -> ``(predictions, losses)``. Every next-frame token has a label (frame
        ``T`` labels the last step); ``rewards`` / ``ends`` ``(B, T)`` (the reward and end of
        each step) add their losses."""
        if observations.dim() != 5 or actions.dim() != 2 or observations.shape[1] != actions.shape[1] + 1:
            raise ValueError(f"expected observations (B, T + 1, C, H, W) and actions (B, T), got "
                             f"{tuple(observations.shape)} and {tuple(actions.shape)}")
        tokens = self.tokenize(observations)
        steps = tokens[:, :-1]
        heads = self.transformer.heads(steps, actions.long())
        signs = torch.tensor([-1.0, 0.0, 1.0], device=tokens.device)
        predictions = {"token_logits": heads["obs"], "reward_logits": heads["rewards"],
                       "end_logits": heads["ends"], "rewards": heads["rewards"].softmax(-1) @ signs,
                       "tokens": tokens}
        k = tokens.shape[2]  # prediction j is of observation token j + 1 (frame T's included)
        labels = tokens.flatten(1)[:, 1:steps.shape[1] * k + 1]
        ce = nn.functional.cross_entropy
        losses = {"loss_obs": ce(heads["obs"].flatten(0, 2), labels.flatten())}
        if rewards is not None:
            losses["loss_rewards"] = ce(heads["rewards"].flatten(0, 1), (rewards.sign().long() + 1).flatten())
        if ends is not None:
            losses["loss_ends"] = ce(heads["ends"].flatten(0, 1), ends.long().flatten())
        return predictions, losses

    @torch.no_grad()
    def imagine(self, initial_tokens: Tensor, policy: Callable[[Tensor], Tensor], horizon: int = 20,
                temperature: float = 1.0) -> dict[str, Tensor]:
        """Roll ``policy`` out for ``horizon`` steps from ``initial_tokens`` ``(B, K)``.

        ``policy(frames (B, C, H, W) in [0, 1])`` returns actions ``(B,)`` (integers) or action
        logits ``(B, action_size)`` (sampled). Returns ``tokens`` ``(B, horizon + 1, K)``,
        ``frames`` ``(B, horizon + 1, C, H, W)``, ``actions``, ``rewards`` (the sign class's
        value, -1 / 0 / 1, sampled) and ``ends`` (sampled, 0 / 1), each ``(B, horizon)``.
        """
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0, got {temperature!r}")
        model = self.transformer
        tokens = initial_tokens
        all_tokens, all_frames, actions, rewards, ends = [tokens], [self.frames(tokens)], [], [], []
        cache = KVCache(len(model.blocks), model.max_tokens)
        x = model.run(model.obs_embedding(tokens), cache)
        for _ in range(horizon):
            action = self._act(policy, all_frames[-1])
            x = model.run(model.act_embedding(action).unsqueeze(1), cache)
            rewards.append(sample_categorical(model.head_rewards(x[:, -1])) - 1)
            ends.append(sample_categorical(model.head_ends(x[:, -1])))
            chosen = []
            for i in range(model.tokens_per_frame):
                chosen.append(sample_categorical(model.head_observations(x[:, -1]), temperature))
                if i + 1 < model.tokens_per_frame:
                    x = model.run(model.obs_embedding(chosen[-1]).unsqueeze(1), cache)
            tokens = torch.stack(chosen, 1)
            if cache.size + 1 + model.block_size > model.max_tokens:  # the next step would not fit
                cache = KVCache(len(model.blocks), model.max_tokens)
                x = model.run(model.obs_embedding(tokens), cache)
            else:
                x = model.run(model.obs_embedding(tokens[:, -1:]), cache)
            actions.append(action)
            all_tokens.append(tokens)
            all_frames.append(self.frames(tokens))
        stack = lambda xs: torch.stack(xs, 1)  # noqa: E731
        return {"tokens": stack(all_tokens), "frames": stack(all_frames), "actions": stack(actions),
                "rewards": stack(rewards).float(), "ends": stack(ends)}

    def _act(self, policy: Callable[[Tensor], Tensor], frames: Tensor) -> Tensor:
        out = policy(frames)
        n = self.transformer.action_size
        if out.is_floating_point():
            if out.shape != (frames.shape[0], n):
                raise ValueError(f"policy logits must be (B, {n}), got {tuple(out.shape)}")
            return sample_categorical(out)
        if out.shape != (frames.shape[0],) or int(out.min()) < 0 or int(out.max()) >= n:
            raise ValueError(f"policy actions must be (B,) integers in [0, {n}), got shape "
                             f"{tuple(out.shape)}")
        return out.long()
