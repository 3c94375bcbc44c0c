"""DIAMOND configuration (Alonso et al. 2024, "Diffusion for World Modeling: Visual Details
Matter in Atari", and its reference code's ``config/``): the defaults are the paper's Atari 100k
setup (``config/agent/default.yaml``, ``config/env/atari.yaml``, ``config/trainer.yaml``).

* denoiser: EDM (sigma_data 0.5, offset noise 0.3), U-Net with channels 64/64/64/64, 2 residual
  blocks per level, conditioning width 256, 4 conditioning frames + actions; training noise
  log-normal(-0.4, 1.2) clipped to [2e-3, 20]; sampling with 3 Euler steps, sigma 2e-3 .. 5,
  rho 7;
* reward/termination model: CNN 32/32/32/32 (2 blocks per level, conditioning 128) + LSTM 512
  on sequences of 4 conditioning + 15 steps;
* actor-critic: CNN 32/32/64/64 (1 block + max-pool per level) + LSTMCell 512, burn-in 4,
  imagination horizon 15, gamma 0.985, lambda 0.95, entropy 0.001, value loss weight 1;
* all three: AdamW lr 1e-4, eps 1e-8, weight decay 0.01 / 0.01 / 0, 100 warm-up steps,
  gradient clip 1 / 100 / 100, batches of 32, episodes drawn with recency weights
  0.1/0.1/0.1/0.7 over the dataset's quarters;
* schedule: 5,000 initial env steps (kept up to 10,000 until the rarer reward signs occur 10
  times), then epochs of 100 env steps + 400 updates of each component (the first epoch
  10,000 / 10,000 / 5,000), 1,000 epochs in all (950 collecting up to 100k steps, 50 more
  training only), epsilon-greedy 0.01 when collecting;
* Atari: frame skip 4 with a max-pool, no sticky actions, 30 no-op starts, 64x64 RGB; life loss
  ends an episode in training only; the env gives raw rewards, which the agent clips to their
  sign (``reward_clip``) for its reward model and returns; evaluation is greedy
  (``eval_epsilon`` 0) and scores raw rewards.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar, Literal

from distwm.configs.diamond_presets import PRESETS, ModelPreset, get_default_device
from distwm.configs.diamond_schedule import COMPONENTS, DiamondSchedule
from distwm.configs.rl_config import RLConfig

__all__ = ["COMPONENTS", "PRESETS", "DiamondConfig", "ModelPreset", "get_default_device"]


_PRESET_FIELDS = tuple(f.name for f in fields(ModelPreset))

_DEFAULT_GAME = "Breakout-v5"
_ENV_KWARG_FIELDS = ("frameskip", "max_noop", "terminate_on_life_loss")
_GAME_ID = re.compile(r"^(?:ALE/)?(?P<name>[A-Za-z0-9_]+?)(?:-ram)?(?:NoFrameskip|Deterministic)?(?:-v\d+)?$")
_DEVICE = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")


def _atari100k_train() -> dict[str, Any]:
    return {"preprocessing": "atari100k", "frameskip": 4, "max_noop": 30, "terminate_on_life_loss": True}


def _game_key(name: Any) -> str | None:
    """``Breakout-v5``, ``ALE/Breakout-v5``, ``BreakoutNoFrameskip-v4``, ``breakout`` -> ``breakout``."""
    match = _GAME_ID.match(name.strip()) if isinstance(name, str) else None
    return match.group("name").replace("_", "").lower() if match else None


def _env_from_game(game: str) -> str:
    """``Breakout-v5`` -> ``ALE/Breakout-v5``; ids with a namespace or of another form unchanged."""
    return f"ALE/{game}" if re.fullmatch(r"[A-Za-z0-9]+-v\d+", game) else game


def _game_from_env(env: str) -> str:
    return env.removeprefix("ALE/")


@dataclass
class DiamondConfig(DiamondSchedule, RLConfig):
    """Configuration of a DIAMOND agent (module docstring for the paper's values).

    Seed names and RLConfig names of one setting are kept consistent; a value left at its
    default follows the other one, and two different non-default values raise ``ValueError``:

    * ``game`` (the seed's, ``Breakout-v5``) and ``env`` (``ALE/Breakout-v5``, what the
      ``atari`` backend builds): ``env`` is ``ALE/<game>`` unless given; given alone, ``game``
      becomes its name without ``ALE/``;
    * ``obs_size`` and ``image_size``;
    * ``frameskip`` / ``max_noop`` / ``terminate_on_life_loss`` and the same keys of
      ``env_kwargs`` (``{"preprocessing": "atari100k", ...}``, the DIAMOND preprocessing of
      :func:`~distwm.envs.ale_atari_env.make_atari_env`); ``eval_env_kwargs`` turns life-loss
      ends off (the reference's test env keeps the 30 no-op starts).

    :meth:`replace` changes the partner of a changed setting too. ``preset`` (``None`` or a key
    of :data:`PRESETS`) sets the architecture fields that are left at their defaults.

    Units: ``log_interval``, ``eval_interval`` and ``checkpoint_interval`` (the seed's
    ``save_interval``, accepted as its old name) count env steps like every distwm config
    (docs/architecture.md); their defaults are the seed's 10 / 50 / 100 epochs of 100 steps.
    ``num_epochs`` counts DIAMOND epochs. ``device='auto'`` (the seed: the best device here)
    means :func:`get_default_device` on the machine that builds the model.
    """

    AGENT_CLASS: ClassVar[str] = "distwm.models.diamond.core:DiamondCore"
    ALIASES: ClassVar[dict[str, str]] = {"save_interval": "checkpoint_interval"}

    # -- RLConfig settings with DIAMOND values ---------------------------------------------
    env: str = "ALE/Breakout-v5"
    env_backend: str = "atari"
    env_kwargs: dict[str, Any] = field(default_factory=_atari100k_train)
    eval_env_kwargs: dict[str, Any] = field(default_factory=lambda: {"terminate_on_life_loss": False})
    obs_type: Literal["auto", "state", "pixels", "both"] = "pixels"
    action_repeat: int = 1  # the Atari wrapper skips 4 frames per agent step
    time_limit: int = 27_000  # agent steps (108,000 frames, ALE v5's own cap)
    eval_episodes: int = 4  # trainer.yaml collection.test.num_episodes
    checkpoint_interval: int = 10_000  # env steps: the seed's save_interval, 100 epochs
    exp_name: str = "diamond"

    # -- the seed's fields -------------------------------------------------------------------
    preset: str | None = None
    game: str = _DEFAULT_GAME
    seed: int = 0
    obs_size: int = 64
    frameskip: int = 4
    max_noop: int = 30
    terminate_on_life_loss: bool = True
    reward_clip: list[int] = field(default_factory=lambda: [-1, 1])
    num_conditioning_frames: int = 4
    diffusion_channels: list[int] = field(default_factory=lambda: [64, 64, 64, 64])
    diffusion_res_blocks: int = 2
    diffusion_cond_dim: int = 256
    sigma_data: float = 0.5
    sigma_min: float = 0.002  # sampling
    sigma_max: float = 5.0  # sampling (trainer.yaml; the seed's 80.0 is EDM's image default)
    rho: int = 7
    p_mean: float = -0.4
    p_std: float = 1.2
    sampling_method: Literal["euler", "heun"] = "euler"
    num_sampling_steps: int = 3
    reward_channels: list[int] = field(default_factory=lambda: [32, 32, 32, 32])
    reward_res_blocks: int = 2
    reward_cond_dim: int = 128
    reward_lstm_dim: int = 512
    burn_in_length: int = 4
    actor_channels: list[int] = field(default_factory=lambda: [32, 32, 64, 64])
    actor_res_blocks: int = 1
    actor_lstm_dim: int = 512
    num_epochs: int = 1000
    training_steps_per_epoch: int = 400
    batch_size: int = 32
    environment_steps_per_epoch: int = 100
    epsilon_greedy: float = 0.01
    imagination_horizon: int = 15
    discount_factor: float = 0.985
    entropy_weight: float = 0.001
    lambda_returns: float = 0.95
    learning_rate: float = 1e-4
    adam_epsilon: float = 1e-8
    weight_decay_diffusion: float = 0.01
    weight_decay_reward: float = 0.01
    weight_decay_actor: float = 0.0
    device: str = "auto"
    log_interval: int = 1_000  # env steps: the seed's 10 epochs
    eval_interval: int = 5_000  # env steps: the seed's 50 epochs
    operator_state_dim: int = 32
    operator_action_dim: int = 4

    # -- the reference's further settings ----------------------------------------------------
    sigma_offset_noise: float = 0.3
    train_sigma_min: float = 2e-3
    train_sigma_max: float = 20.0
    weight_value_loss: float = 1.0
    lr_warmup_steps: int = 100
    diffusion_max_grad_norm: float = 1.0
    reward_max_grad_norm: float = 100.0
    actor_max_grad_norm: float = 100.0
    diffusion_steps_first_epoch: int = 10_000
    reward_steps_first_epoch: int = 10_000
    actor_steps_first_epoch: int = 5_000
    sample_weights: list[float] = field(default_factory=lambda: [0.1, 0.1, 0.1, 0.7])
    total_steps: int = 100_000
    initial_collection_steps: int = 5_000
    initial_collection_max_steps: int = 10_000
    initial_collection_min_reward_count: int = 10
    eval_epsilon: float = 0.0
    final_eval_episodes: int = 100
    buffer_size: int = 100_000
    #: consecutive updates skipped for a non-finite input, loss or gradient before the run stops
    max_nonfinite_updates: int = 10
    #: ``bf16``: every update and the rollouts under bf16 autocast (a CUDA device or a CPU with
    #: native bf16; losses stay float32)
    autocast: str = "off"

    def __post_init__(self) -> None:
        self.env_kwargs, self.eval_env_kwargs = dict(self.env_kwargs or {}), dict(self.eval_env_kwargs or {})
        self._apply_preset()
        self._reconcile()
        super().__post_init__()
        self._validate()

    # -- consistency of the paired settings ---------------------------------------------------
    def _apply_preset(self) -> None:
        if self.preset is None:
            return
        if self.preset not in PRESETS:
            raise ValueError(f"DiamondConfig.preset {self.preset!r} is not one of None, "
                             f"{', '.join(map(repr, PRESETS))}")
        paper, chosen = PRESETS["paper"].to_dict(), PRESETS[self.preset].to_dict()
        for name in _PRESET_FIELDS:
            if getattr(self, name) == paper[name]:
                setattr(self, name, chosen[name])

    @staticmethod
    def _follower(a: str, a_value: Any, a_default: Any, b: str, b_value: Any, b_default: Any) -> str:
        """Which of two disagreeing settings takes the other's value: the one at its default."""
        if b_value == b_default:
            return b
        if a_value == a_default:
            return a
        raise ValueError(f"DiamondConfig.{a} {a_value!r} and {b} {b_value!r} disagree; give one of them "
                         f"(the other follows) or both alike")

    def _reconcile_size(self) -> None:
        if self._follower("obs_size", self.obs_size, 64, "image_size", self.image_size, 64) == "image_size":
            self.image_size = self.obs_size
        else:
            self.obs_size = self.image_size

    def _reconcile(self) -> None:
        if self.env_backend not in ("atari", "ale", "auto"):  # another backend: env names the task
            self.game = self.env or self.game
            self.env = self.game
            if self.image_size != self.obs_size:
                self._reconcile_size()
            return
        if _game_key(self.game) is None:
            raise ValueError(f"DiamondConfig.game must be an Atari id such as 'Breakout-v5', got {self.game!r}")
        if not self.env:
            self.env = _env_from_game(self.game)
        elif _game_key(self.env) != _game_key(self.game):
            if self._follower("game", self.game, _DEFAULT_GAME, "env", self.env,
                              _env_from_game(_DEFAULT_GAME)) == "env":
                self.env = _env_from_game(self.game)
            else:
                self.game = _game_from_env(self.env)
                if _game_key(self.game) is None:
                    raise ValueError(f"DiamondConfig.env must be an Atari id such as 'ALE/Breakout-v5', "
                                     f"got {self.env!r}")
        if self.image_size != self.obs_size:
            self._reconcile_size()
        defaults = _atari100k_train()
        for name in _ENV_KWARG_FIELDS:
            mine = getattr(self, name)
            if name not in self.env_kwargs:
                self.env_kwargs[name] = mine
            elif self.env_kwargs[name] != mine:
                if self._follower(name, mine, defaults[name], f"env_kwargs[{name!r}]", self.env_kwargs[name],
                                  defaults[name]) == name:
                    setattr(self, name, self.env_kwargs[name])
                else:
                    self.env_kwargs[name] = mine

    def replace(self, **overrides: Any) -> DiamondConfig:
        """A copy with ``overrides`` applied (checked like ``from_dict``); a changed ``game``,
        ``obs_size``, ``frameskip``, ``max_noop``, ``terminate_on_life_loss`` or ``preset``
        carries its partner along unless that is overridden too, and the reverse."""
        given = self.canonical_names(overrides)
        extra: dict[str, Any] = {}
        for a, b, to_b, to_a in (("game", "env", _env_from_game, _game_from_env),
                                 ("obs_size", "image_size", None, None)):
            if a in given and b not in given and isinstance(given[a], (str, int)):
                extra[b] = to_b(given[a]) if to_b and isinstance(given[a], str) else given[a]
            elif b in given and a not in given and isinstance(given[b], (str, int)):
                extra[a] = to_a(given[b]) if to_a and isinstance(given[b], str) else given[b]
        kwargs = given.get("env_kwargs")
        for name in _ENV_KWARG_FIELDS:
            if name in given and kwargs is None:
                extra.setdefault("env_kwargs", dict(self.env_kwargs))[name] = given[name]
            elif isinstance(kwargs, Mapping) and name not in given and name in kwargs:
                extra[name] = kwargs[name]
        if "preset" in given and (given["preset"] is None or given["preset"] in PRESETS):
            chosen = PRESETS[given["preset"] or "paper"].to_dict()
            extra.update({name: chosen[name] for name in _PRESET_FIELDS if name not in given})
        return super().replace(**given, **extra)

    # -- validation ---------------------------------------------------------------------------
    def _validate(self) -> None:
        def bad(name: str, what: str) -> ValueError:
            return ValueError(f"DiamondConfig.{name} must be {what}, got {getattr(self, name)!r}")

        def is_int(value: Any) -> bool:
            return isinstance(value, int) and not isinstance(value, bool)

        def number(value: Any) -> float:
            return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else float("nan")

        if self.autocast not in ("off", "bf16"):
            raise ValueError(f"DiamondConfig.autocast {self.autocast!r} is not one of ('off', 'bf16')")
        checks = (
            ("a positive integer", lambda v: is_int(v) and v >= 1,
             ("obs_size frameskip num_conditioning_frames diffusion_res_blocks diffusion_cond_dim rho "
              "num_sampling_steps reward_res_blocks reward_cond_dim reward_lstm_dim actor_res_blocks actor_lstm_dim "
              "num_epochs training_steps_per_epoch batch_size environment_steps_per_epoch imagination_horizon "
              "total_steps buffer_size operator_state_dim operator_action_dim diffusion_steps_first_epoch "
              "reward_steps_first_epoch actor_steps_first_epoch initial_collection_steps")),
            ("an integer >= 0", lambda v: is_int(v) and v >= 0,
             ("max_noop burn_in_length lr_warmup_steps final_eval_episodes initial_collection_max_steps "
              "initial_collection_min_reward_count")),
            ("True or False", lambda v: isinstance(v, bool), "terminate_on_life_loss"),
            ("a non-empty list of positive integers (one per resolution level)",
             lambda v: isinstance(v, list) and bool(v) and all(is_int(c) and c > 0 for c in v),
             "diffusion_channels reward_channels actor_channels"),
            ("[low, high] integers with low <= 0 <= high, low < high (the paper: [-1, 1])",
             lambda v: isinstance(v, list) and len(v) == 2 and all(map(is_int, v)) and v[0] <= 0 <= v[1] > v[0],
             "reward_clip"),
            ("a non-empty list of weights in [0, 1] that sum to 1",
             lambda v: isinstance(v, list) and bool(v) and all(0 <= number(w) <= 1 for w in v)
             and abs(sum(map(number, v)) - 1) < 1e-6, "sample_weights"),
            ("in [0.0, 1.0]", lambda v: 0 <= number(v) <= 1,
             "epsilon_greedy eval_epsilon lambda_returns discount_factor"),
            ("> 0", lambda v: number(v) > 0, ("sigma_data sigma_min train_sigma_min p_std learning_rate adam_epsilon "
                                               "diffusion_max_grad_norm reward_max_grad_norm actor_max_grad_norm")),
            (">= 0", lambda v: number(v) >= 0, ("entropy_weight weight_decay_diffusion weight_decay_reward "
                                                "weight_decay_actor sigma_offset_noise weight_value_loss")),
            ("one of 'auto', 'cpu', 'mps', 'cuda', 'cuda:N'", lambda v: isinstance(v, str) and bool(_DEVICE.match(v)),
             "device"),
        )
        for what, ok, names in checks:
            for name in names.split():
                if not ok(getattr(self, name)):
                    raise bad(name, what)
        if not self.sigma_min < self.sigma_max:
            raise bad("sigma_max", f"> sigma_min ({self.sigma_min})")
        if not self.train_sigma_min < self.train_sigma_max:
            raise bad("train_sigma_max", f"> train_sigma_min ({self.train_sigma_min})")
        counts = (self.initial_collection_steps, self.initial_collection_max_steps, self.total_steps)
        if not counts[0] <= counts[1] <= counts[2]:
            raise ValueError("DiamondConfig: initial_collection_steps <= initial_collection_max_steps <= "
                             f"total_steps, got {counts}")
        for name in ("initial_collection_steps", "initial_collection_max_steps", "total_steps"):
            if getattr(self, name) % self.environment_steps_per_epoch:
                raise bad(name, f"a multiple of environment_steps_per_epoch ({self.environment_steps_per_epoch})")

    @property
    def diffusion_sequence_length(self) -> int:
        """Frames per denoiser sample: the conditioning frames and the predicted one (5)."""
        return self.num_conditioning_frames + 1

    @property
    def reward_sequence_length(self) -> int:
        """Steps per reward/termination sample: conditioning frames + horizon (19)."""
        return self.num_conditioning_frames + self.imagination_horizon

    def clip_reward(self, reward: Any) -> Any:
        """``sign(reward)`` clipped to ``reward_clip`` (scalars, numpy arrays and tensors)."""
        import numpy as np

        low, high = self.reward_clip
        if hasattr(reward, "sign") and hasattr(reward, "clamp"):
            return reward.sign().clamp(low, high)
        return np.clip(np.sign(reward), low, high)

    @property
    def resolved_device(self) -> str:
        """``device``, with ``auto`` resolved by :func:`get_default_device`."""
        return get_default_device() if self.device == "auto" else self.device

    # -- accessors (the IRIS config's pattern) ------------------------------------------------
    def get_frame_shape(self) -> tuple[int, int, int]:
        return (3, int(self.obs_size), int(self.obs_size))

    def get_diffusion_config(self) -> dict[str, Any]:
        return {"channels": list(self.diffusion_channels), "res_blocks": self.diffusion_res_blocks,
                "cond_dim": self.diffusion_cond_dim, "num_conditioning_frames": self.num_conditioning_frames,
                "frame_shape": self.get_frame_shape(), "sigma_data": self.sigma_data,
                "sigma_offset_noise": self.sigma_offset_noise, "p_mean": self.p_mean, "p_std": self.p_std,
                "train_sigma_min": self.train_sigma_min, "train_sigma_max": self.train_sigma_max,
                "sigma_min": self.sigma_min, "sigma_max": self.sigma_max, "rho": self.rho,
                "sampling_method": self.sampling_method, "num_sampling_steps": self.num_sampling_steps}

    def get_reward_config(self) -> dict[str, Any]:
        return {"channels": list(self.reward_channels), "res_blocks": self.reward_res_blocks,
                "cond_dim": self.reward_cond_dim, "lstm_dim": self.reward_lstm_dim,
                "frame_shape": self.get_frame_shape(), "reward_clip": list(self.reward_clip),
                "sequence_length": self.reward_sequence_length}

    def get_rl_config(self) -> dict[str, Any]:
        return {"channels": list(self.actor_channels), "res_blocks": self.actor_res_blocks,
                "lstm_dim": self.actor_lstm_dim, "burn_in": self.burn_in_length,
                "imagination_horizon": self.imagination_horizon, "gamma": self.discount_factor,
                "lambda_": self.lambda_returns, "entropy_weight": self.entropy_weight,
                "weight_value_loss": self.weight_value_loss, "epsilon": self.epsilon_greedy,
                "eval_epsilon": self.eval_epsilon}
