"""Collect episodes with a policy (or at random) into :class:`~distwm.memory.planet_memory.Episode`s.

The env follows the torch interface of PlaNet's env wrappers (``reset``, ``step``,
``sample_random_action``, ``max_episode_steps``; observations are preprocessed tensors), as
:class:`distwm.models.planet.env.PlanetEnv` provides. ``reset`` may return ``obs`` or
``(obs, info)``; ``step`` may return Gymnasium's 5-tuple or the older 4-tuple.
"""

from __future__ import annotations

import os
from typing import Any, Callable

import numpy as np
import torch
from tqdm.auto import trange

from distwm.memory.planet_memory import Episode

__all__ = ["RolloutGenerator"]


def _reset(env) -> Any:
    out = env.reset()
    return out[0] if isinstance(out, tuple) else out


def _step(env, action) -> tuple[Any, float, bool, bool]:
    out = env.step(action)
    if len(out) == 5:
        obs, reward, terminated, truncated, _ = out
    else:
        obs, reward, terminated, _ = out
        truncated = False
    return obs, float(reward), bool(terminated), bool(truncated)


def _hwc_uint8(image: torch.Tensor) -> np.ndarray:
    """A preprocessed CHW image in [-0.5, 0.5] as an HWC uint8 frame."""
    array = image.detach().cpu().float().numpy()
    return np.clip(np.round((array + 0.5) * 255.0), 0, 255).astype(np.uint8).transpose(1, 2, 0)


class RolloutGenerator:
    """Rollout generator class.

    Args:
        env: the environment (see the module docstring).
        device: torch device of the policy.
        policy: an :class:`~distwm.controller.rssm_policy.RSSMPolicy` (``reset``, ``poll``,
            and for evaluation ``h``, ``s`` and ``rssm``); not needed for random rollouts.
        max_episode_steps: step cap per episode (default: ``env.max_episode_steps``, else 1000).
        episode_gen: episode factory (default :class:`Episode`), e.g. one that stores images
            as uint8 through ``postprocess_fn``.
        name: prefix of streamed video files.
        enable_streaming_video: write every rollout to a video file while it runs.
        streaming_video_path: directory of the streamed videos (default ``videos``).
        streaming_video_fps, streaming_video_format: video frame rate and format (mp4, avi, gif).
    """

    def __init__(
        self,
        env,
        device,
        policy=None,
        max_episode_steps: int | None = None,
        episode_gen: Callable[[], Episode] | None = None,
        name: str | None = None,
        enable_streaming_video: bool = False,
        streaming_video_path: str | None = None,
        streaming_video_fps: int = 20,
        streaming_video_format: str = "mp4",
    ):
        self.env = env
        self.device = device
        self.policy = policy
        self.max_episode_steps = max_episode_steps or getattr(env, "max_episode_steps", None) or 1000
        self.episode_gen = episode_gen if episode_gen is not None else Episode
        self.name = name or "rollout"
        self.enable_streaming_video = enable_streaming_video
        self.streaming_video_path = streaming_video_path or "videos"
        self.streaming_video_fps = streaming_video_fps
        self.streaming_video_format = streaming_video_format
        self.videos_written = 0

    # -- video --------------------------------------------------------------------------------
    def _video_writer(self):
        if not self.enable_streaming_video:
            return None
        from distwm.utils.utils import StreamingVideoWriter

        path = os.path.join(self.streaming_video_path,
                            f"{self.name}_{self.videos_written:04d}.{self.streaming_video_format}")
        self.videos_written += 1
        return StreamingVideoWriter(path, fps=self.streaming_video_fps, format=self.streaming_video_format)

    def _frame(self, obs) -> np.ndarray | None:
        """An RGB frame of the current step: the image observation, else ``env.render()``."""
        if torch.is_tensor(obs) and obs.dim() == 3:
            return _hwc_uint8(obs)
        if getattr(self.env, "render_mode", "rgb_array") != "rgb_array":
            return None
        try:
            frame = self.env.render()
        except Exception:  # an env without rgb rendering: no frames
            return None
        return None if frame is None else np.asarray(frame)

    def _require_policy(self) -> None:
        if self.policy is None:
            raise ValueError("RolloutGenerator: this rollout needs a policy (pass policy=...) or random_policy=True")

    # -- rollouts -----------------------------------------------------------------------------
    def rollout_once(self, random_policy: bool = False, explore: bool = False) -> Episode:
        """Performs a single rollout of an environment given a policy and returns an episode instance."""
        if not random_policy:
            self._require_policy()
            self.policy.reset()
        writer = self._video_writer()
        episode = self.episode_gen()
        obs = _reset(self.env)
        try:
            for _ in trange(self.max_episode_steps, desc=f"{self.name} episode", leave=False, disable=None):
                if random_policy:
                    action = self.env.sample_random_action()
                else:
                    action = self.policy.poll(obs, explore)
                next_obs, reward, terminated, truncated = _step(self.env, action)
                episode.append(obs, action, reward, terminated)
                if writer is not None and (frame := self._frame(obs)) is not None:
                    writer.write_frame(frame)
                obs = next_obs
                if terminated or truncated:
                    break
        finally:
            if writer is not None:
                writer.close()
        episode.terminate(obs)
        episode.info["return"] = float(np.sum(episode.r))
        return episode

    def rollout_n(self, n: int = 1, random_policy: bool = False) -> list[Episode]:
        """Performs n rollouts."""
        if not isinstance(n, int) or n <= 0:
            raise ValueError(f"rollout_n: n must be a positive int, got {n!r}")
        return [self.rollout_once(random_policy=random_policy) for _ in range(n)]

    @torch.no_grad()
    def rollout_eval(self, collect_latents: bool = False):
        """One episode with the planner's mean actions (no exploration noise).

        Returns ``(episode, frames, metrics)``. For image observations ``frames`` is
        ``(T, C, H, 2W)`` in ``[-0.5, 0.5]``: each observation beside the model's
        reconstruction of it; otherwise the env's rendered RGB frames ``(T, H, W, 3)`` (empty
        when the env does not render). ``metrics``: ``return``, ``length``,
        ``predicted_return`` (the reward head's sum over the episode), ``reward_mse`` and,
        for images, ``reconstruction_mse``; with ``collect_latents`` also ``latents``
        ``(T, state_size + latent_size)``.
        """
        self._require_policy()
        self.policy.reset()
        model = self.policy.rssm
        writer = self._video_writer()
        episode = self.episode_gen()
        obs = _reset(self.env)
        frames, latents, predicted, recon_errors = [], [], [], []
        try:
            for _ in trange(self.max_episode_steps, desc=f"{self.name} eval", leave=False, disable=None):
                action = self.policy.poll(obs, explore=False)
                h, s = self.policy.h, self.policy.s
                predicted.append(float(model.pred_reward(h, s).reshape(-1)[0]))
                is_image = torch.is_tensor(obs) and obs.dim() == 3
                if is_image:
                    recon = model.decode(h, s)[0].clamp(-0.5, 0.5).cpu()
                    target = obs.detach().cpu().float()
                    recon_errors.append(float((recon - target).pow(2).mean()))
                    frames.append(torch.cat([target, recon], dim=-1).numpy())
                elif (frame := self._frame(obs)) is not None:
                    frames.append(frame)
                if writer is not None and frames:
                    writer.write_frame(_hwc_uint8(torch.as_tensor(frames[-1])) if is_image else frames[-1])
                if collect_latents:
                    latents.append(torch.cat([h, s], dim=-1)[0].cpu().numpy())
                next_obs, reward, terminated, truncated = _step(self.env, action)
                episode.append(obs, action, reward, terminated)
                obs = next_obs
                if terminated or truncated:
                    break
        finally:
            if writer is not None:
                writer.close()
        episode.terminate(obs)
        rewards = np.asarray(episode.r, dtype=np.float64)
        # the reward head at observation t predicts the reward that came with it, r[t - 1]
        paired = np.asarray(predicted[1:], dtype=np.float64)
        metrics: dict[str, Any] = {
            "return": float(rewards.sum()),
            "length": int(episode.size),
            "predicted_return": float(np.sum(predicted[1:])),
            "reward_mse": float(np.mean((paired - rewards[: len(paired)]) ** 2)) if len(paired) else 0.0,
        }
        if recon_errors:
            metrics["reconstruction_mse"] = float(np.mean(recon_errors))
        if collect_latents:
            metrics["latents"] = np.stack(latents)
        episode.info["return"] = metrics["return"]
        return episode, (np.stack(frames) if frames else np.zeros((0,), np.float32)), metrics

    def rollout_eval_n(self, n: int):
        """``n`` evaluation episodes: ``(episodes, frames, metrics)`` with the frames of all
        episodes concatenated in time and the metrics averaged (``returns`` lists each)."""
        if not isinstance(n, int) or n <= 0:
            raise ValueError(f"rollout_eval_n: n must be a positive int, got {n!r}")
        episodes, frames, all_metrics = [], [], []
        for _ in range(n):
            episode, episode_frames, metrics = self.rollout_eval()
            episodes.append(episode)
            if len(episode_frames):
                frames.append(episode_frames)
            all_metrics.append(metrics)
        keys = [k for k in all_metrics[0] if np.isscalar(all_metrics[0][k])]
        summary: dict[str, Any] = {k: float(np.mean([m[k] for m in all_metrics])) for k in keys}
        summary["returns"] = [m.get("return") for m in all_metrics]
        return episodes, (np.concatenate(frames) if frames else np.zeros((0,), np.float32)), summary
