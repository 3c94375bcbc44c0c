"""Step many environments in parallel subprocesses (``multiprocessing``, no Ray).

Each :class:`SimWorker` process owns ``envs_per_worker`` envs built by ``env_factory()`` (a
picklable zero-argument callable, e.g. ``functools.partial(make_gym_env, "CartPole-v1")``).
Envs reset themselves when an episode ends: the returned observation is then the new
episode's first one and ``info["final_observation"]`` the last one.

A worker whose env raises reports the traceback and the parent raises :class:`EnvWorkerError`;
a worker process that dies (segfault, ``os._exit``, OOM kill) is noticed by a liveness check
within ``poll_interval`` seconds; a worker that does not answer within ``timeout`` seconds
raises ``TimeoutError``. In every case all workers are shut down: nothing hangs.
"""

from __future__ import annotations

import multiprocessing as mp
import queue as queue_module
import time
import traceback
from abc import ABC, abstractmethod
from typing import Any, Callable, Dict, List, Optional

import numpy as np

__all__ = ["EnvWorkerError", "NumpyVectorizedEnv", "SimWorker", "TorchVectorizedEnv", "VectorizedEnv"]


class EnvWorkerError(RuntimeError):
    """An environment worker process failed (its env raised, or the process died)."""


def _stack(items: list) -> Any:
    if isinstance(items[0], dict):
        return {key: np.stack([np.asarray(item[key]) for item in items]) for key in items[0]}
    return np.stack([np.asarray(item) for item in items])


class SimWorker(mp.Process):
    """A process that owns ``num_envs`` environments and serves batched commands.

    Commands on ``command_queue``: ``("spaces", None)``, ``("reset", None)``,
    ``("step", actions)`` with ``actions`` shaped ``(num_envs, ...)``, ``("render", None)``,
    ``("close", None)``. Each answer on ``result_queue`` is ``("ok", payload)`` or
    ``("error", traceback_text)``; after an error the worker exits.
    """

    def __init__(self, worker_id: int, env_factory: Callable[[], Any], num_envs: int,
                 command_queue: "mp.Queue", result_queue: "mp.Queue", seed: Optional[int] = None):
        super().__init__(name=f"distwm-sim-worker-{worker_id}", daemon=True)
        self.worker_id = worker_id
        self.env_factory = env_factory
        self.num_envs = num_envs
        self.command_queue = command_queue
        self.result_queue = result_queue
        self.seed = seed
        self.start_method: Optional[str] = None  # None: multiprocessing's default

    @staticmethod
    def _Popen(process_obj: "SimWorker"):
        # start with the chosen method (spawn/forkserver/fork) rather than the global default
        return mp.get_context(process_obj.start_method).Process._Popen(process_obj)

    def _env_seed(self, index: int) -> Optional[int]:
        if self.seed is None:
            return None
        return int(self.seed) + self.worker_id * self.num_envs + index

    def run(self) -> None:
        """Main worker loop."""
        envs: list = []
        try:
            envs = [self.env_factory() for _ in range(self.num_envs)]
            first_reset = True
            while True:
                command, data = self.command_queue.get()
                if command == "close":
                    self.result_queue.put(("ok", None))
                    break
                if command == "spaces":
                    payload: Any = (envs[0].observation_space, envs[0].action_space)
                elif command == "reset":
                    payload = [env.reset(seed=self._env_seed(i) if first_reset else None)
                               for i, env in enumerate(envs)]
                    first_reset = False
                elif command == "step":
                    payload = [self._step(env, action) for env, action in zip(envs, data)]
                elif command == "render":
                    payload = [env.render() for env in envs]
                else:
                    raise ValueError(f"Unknown SimWorker command {command!r}")
                self.result_queue.put(("ok", payload))
        except BaseException:  # report everything, including KeyboardInterrupt in the child
            self.result_queue.put(("error", traceback.format_exc()))
        finally:
            for env in envs:
                try:
                    env.close()
                except Exception:
                    pass

    @staticmethod
    def _step(env: Any, action: Any) -> tuple:
        obs, reward, terminated, truncated, info = env.step(action)
        if terminated or truncated:
            info = {**info, "final_observation": obs}
            obs, _ = env.reset()
        return obs, float(reward), bool(terminated), bool(truncated), info


class VectorizedEnv(ABC):
    """Parallel environments in ``num_workers`` processes of ``envs_per_worker`` envs each.

    Workers start on first use (``reset_batch``, ``step_batch``, the spaces or ``start()``),
    not in the constructor. ``seed``: env ``k`` is seeded ``seed + k`` at its first reset.
    ``start_method``: ``spawn`` (default, safe with threads/torch), ``forkserver`` or ``fork``.
    Use as a context manager or call ``close()``.
    """

    def __init__(self, env_factory: Callable[[], Any], num_workers: int = 2, envs_per_worker: int = 4,
                 seed: Optional[int] = None, timeout: float = 300.0, poll_interval: float = 0.1,
                 start_method: str = "spawn"):
        if not callable(env_factory):
            raise ValueError(f"env_factory must be a callable returning an env, got {env_factory!r}")
        for name, value in (("num_workers", num_workers), ("envs_per_worker", envs_per_worker)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an int >= 1, got {value!r}")
        if start_method not in mp.get_all_start_methods():
            raise ValueError(f"Unknown start_method {start_method!r}; valid: {', '.join(mp.get_all_start_methods())}")
        if timeout <= 0 or poll_interval <= 0:
            raise ValueError(f"timeout and poll_interval must be positive, got {timeout!r}, {poll_interval!r}")
        self.env_factory = env_factory
        self.num_workers = num_workers
        self.envs_per_worker = envs_per_worker
        self.seed = seed
        self.timeout = float(timeout)
        self.poll_interval = float(poll_interval)
        self.start_method = start_method
        self._workers: List[SimWorker] = []
        self._commands: list = []
        self._results: list = []
        self._spaces: Optional[tuple] = None
        self._closed = False

    # -- process management ---------------------------------------------------------------
    @property
    def num_envs(self) -> int:
        return self.num_workers * self.envs_per_worker

    def start(self) -> None:
        """Start the worker processes (idempotent)."""
        if self._closed:
            raise RuntimeError("This VectorizedEnv was closed")
        if self._workers:
            return
        ctx = mp.get_context(self.start_method)
        for worker_id in range(self.num_workers):
            commands, results = ctx.Queue(), ctx.Queue()
            worker = SimWorker(worker_id, self.env_factory, self.envs_per_worker, commands, results, self.seed)
            worker.start_method = self.start_method
            self._commands.append(commands)
            self._results.append(results)
            self._workers.append(worker)
        for worker in self._workers:
            worker.start()

    def _send(self, worker_index: int, command: str, data: Any = None) -> None:
        self._commands[worker_index].put((command, data))

    def _recv(self, worker_index: int) -> Any:
        worker, results = self._workers[worker_index], self._results[worker_index]
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                status, payload = results.get(timeout=self.poll_interval)
                break
            except queue_module.Empty:
                pass
            if not worker.is_alive():
                try:  # it may have reported its error just before exiting (already flushed)
                    status, payload = results.get(timeout=0.25)
                    break
                except queue_module.Empty:
                    code = worker.exitcode
                    self._shutdown(graceful=False)
                    raise EnvWorkerError(
                        f"Env worker {worker_index} died unexpectedly (exit code {code}) without "
                        "reporting an error (crash in native code, out of memory or killed)"
                    ) from None
            if time.monotonic() > deadline:
                self._shutdown(graceful=False)
                raise TimeoutError(f"Env worker {worker_index} did not answer within {self.timeout:.0f} s")
        if status == "error":
            self._shutdown(graceful=False)
            raise EnvWorkerError(f"Env worker {worker_index} failed:\n{payload}")
        return payload

    def _broadcast(self, command: str, per_worker_data: Optional[list] = None) -> list:
        self.start()
        for index in range(self.num_workers):
            self._send(index, command, None if per_worker_data is None else per_worker_data[index])
        return [self._recv(index) for index in range(self.num_workers)]

    # -- spaces ---------------------------------------------------------------------------
    def _get_spaces(self) -> tuple:
        if self._spaces is None:
            self.start()
            self._send(0, "spaces")
            self._spaces = self._recv(0)
        return self._spaces

    @property
    def observation_space(self):
        """The observation space of one env."""
        return self._get_spaces()[0]

    @property
    def action_space(self):
        """The action space of one env."""
        return self._get_spaces()[1]

    # -- numpy batches --------------------------------------------------------------------
    def _reset_arrays(self) -> Dict[str, Any]:
        results = [item for chunk in self._broadcast("reset") for item in chunk]
        return {"obs": _stack([obs for obs, _ in results]), "info": [info for _, info in results]}

    def _step_arrays(self, actions: Any) -> Dict[str, Any]:
        actions = np.asarray(actions)
        if actions.shape[:1] != (self.num_envs,):
            raise ValueError(f"Expected actions for {self.num_envs} envs (leading axis), got shape {actions.shape}")
        chunks = np.split(actions, self.num_workers)
        results = [item for chunk in self._broadcast("step", chunks) for item in chunk]
        obs, reward, terminated, truncated, info = zip(*results)
        terminated = np.array(terminated, dtype=bool)
        truncated = np.array(truncated, dtype=bool)
        return {
            "obs": _stack(list(obs)),
            "reward": np.array(reward, dtype=np.float32),
            "terminated": terminated,
            "truncated": truncated,
            "done": terminated | truncated,
            "info": list(info),
        }

    @abstractmethod
    def step_batch(self, actions: Any) -> Dict[str, Any]:
        """Step all environments with batched actions ``(num_envs, ...)``."""

    @abstractmethod
    def reset_batch(self) -> Dict[str, Any]:
        """Reset all environments."""

    def render_batch(self) -> List[np.ndarray]:
        """Render all environments (each env's ``render()``)."""
        return [frame for chunk in self._broadcast("render") for frame in chunk]

    def close(self) -> None:
        """Shut down all workers (politely, then by force)."""
        self._shutdown(graceful=True)

    def _shutdown(self, graceful: bool) -> None:
        """Stop every worker; after a failure (``graceful=False``) without waiting for them."""
        if self._closed:
            return
        self._closed = True
        for index, worker in enumerate(self._workers):
            if graceful and worker.is_alive():
                try:
                    self._send(index, "close")
                except Exception:
                    pass
        deadline = time.monotonic() + (2.0 if graceful else 0.0)
        for worker in self._workers:
            worker.join(timeout=max(0.0, deadline - time.monotonic()))
            if worker.is_alive():
                worker.terminate()
                worker.join(timeout=1.0)
            if worker.is_alive():
                worker.kill()
                worker.join(timeout=1.0)
        for q in self._commands + self._results:
            q.cancel_join_thread()
            q.close()

    def __enter__(self) -> "VectorizedEnv":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass


class NumpyVectorizedEnv(VectorizedEnv):
    """Vectorized env returning numpy batches: ``obs`` (dict of ``(N, ...)`` arrays),
    ``reward`` float32 ``(N,)``, ``terminated``/``truncated``/``done`` bool ``(N,)``, ``info``."""

    def step_batch(self, actions: Any) -> Dict[str, Any]:
        return self._step_arrays(actions)

    def reset_batch(self) -> Dict[str, Any]:
        return self._reset_arrays()


class TorchVectorizedEnv(VectorizedEnv):
    """Vectorized env returning torch tensors (on ``device``) for PyTorch training loops.

    ``step_batch(actions)`` takes a tensor or array ``(num_envs, action_dim)`` and returns
    ``obs`` (dict of tensors), ``reward``, ``terminated``, ``truncated``, ``done`` tensors and
    ``info`` (a list of dicts).
    """

    def __init__(self, *args: Any, device: str = "cpu", **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.device = device

    def _to_torch(self, batch: Dict[str, Any]) -> Dict[str, Any]:
        import torch

        def convert(value):
            if isinstance(value, dict):
                return {k: convert(v) for k, v in value.items()}
            return torch.as_tensor(value, device=self.device)

        return {key: (value if key == "info" else convert(value)) for key, value in batch.items()}

    def step_batch(self, actions: Any) -> Dict[str, Any]:
        if hasattr(actions, "detach"):
            actions = actions.detach().cpu().numpy()
        return self._to_torch(self._step_arrays(actions))

    def reset_batch(self) -> Dict[str, Any]:
        return self._to_torch(self._reset_arrays())
