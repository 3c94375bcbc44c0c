"""Progress and reporting: the progress line and metrics every ``progress_seconds``, the run
summary, and the media (open-loop predictions) the report shows. A mixin of
:class:`distwm.runtime.driver.Driver`."""

from __future__ import annotations

import logging
import os
import sys
import time
from typing import Any

import numpy as np

from distwm.runtime.run_report import format_progress

__all__ = ["ProgressMixin", "count_achievements", "achievement_summary"]

_log = logging.getLogger("distwm.runtime.driver")
#: driver counters of the training episodes whose env reports ``info["achievements"]``
#: (Crafter): flat numbers, so that ``--resume`` keeps them like the other counters
ACHIEVEMENT_EPISODES = "achievement_episodes"
_UNLOCKED = "achievement_unlocked/"


def count_achievements(counters: dict[str, Any], episodes: list[dict[str, int]]) -> None:
    """Count episodes (``{achievement: count}`` at their end) and, per achievement, those that
    unlocked it (count >= 1) into ``counters``."""
    for achievements in episodes:
        counters[ACHIEVEMENT_EPISODES] = counters.get(ACHIEVEMENT_EPISODES, 0) + 1
        for name, count in achievements.items():
            key = _UNLOCKED + name
            counters[key] = counters.get(key, 0) + int(count >= 1)


def achievement_summary(counters: dict[str, Any]) -> dict[str, Any] | None:
    """``{"episodes", "unlocked": {name: episodes}, "success_rates": {name: percent}}`` of the
    counted training episodes, ``None`` when none reported achievements."""
    from distwm.benchmarks.crafter_score import success_rates_from_counts

    episodes = int(counters.get(ACHIEVEMENT_EPISODES, 0))
    if not episodes:
        return None
    unlocked = {k[len(_UNLOCKED):]: int(v) for k, v in counters.items() if k.startswith(_UNLOCKED)}
    return {"episodes": episodes, "unlocked": unlocked,
            "success_rates": success_rates_from_counts(unlocked, episodes, None)}


class ProgressMixin:
    """Progress records, the summary and report media."""

    def _new_window(self) -> dict[str, Any]:
        return {"t": time.monotonic(), "env_steps": self.counters["env_steps"], "updates": self.updates,
                "episodes": [], "train": {}, "wait": self.learner_time["wait"],
                "total": self.learner_time["total"]}

    def _tick(self) -> dict[str, Any]:
        stats = self._check_shards()
        win, now = self.window, time.monotonic()
        dt = max(now - win["t"], 1e-9)
        inserted = sum(s["inserted"] for s in stats)
        sampled = sum(s["sampled"] for s in stats)
        fps = (self.counters["env_steps"] - win["env_steps"]) / dt
        # chunks arrive in bursts, so a window's own rate jumps between 0 and a spike: the
        # progress line and the ETA use a smoothed rate
        self.fps_ema = fps if self.fps_ema is None else 0.7 * self.fps_ema + 0.3 * fps
        busy = self.learner_time["total"] - win["total"]
        versions = [self.worker_versions.get(i, -1) for i in range(len(self.workers))]
        left = self.runtime.total_steps - self.counters["env_steps"]
        rec: dict[str, Any] = {
            "env_steps": self.counters["env_steps"], "updates": self.updates,
            "env_steps_per_s": self.fps_ema, "updates_per_s": (self.updates - win["updates"]) / dt,
            "replay_ratio": self._budget(len(stats)).ratio(inserted, sampled),
            "target_ratio": self.spec.train_ratio,
            "replay_inserted": inserted, "replay_sampled": sampled,
            "replay_fill": sum(s["size"] for s in stats) / sum(s["capacity"] for s in stats),
            "weight_version": self.weights[0], "weight_lag": self.weights[0] - min(versions),
            "learner_idle": (self.learner_time["wait"] - win["wait"]) / busy if busy > 0 else 0.0,
            "episodes": self.counters["episodes"],
            "episode_return": (float(np.mean([r for r, _ in win["episodes"]]))
                               if win["episodes"] else None),
            "episode_length": (float(np.mean([n for _, n in win["episodes"]]))
                               if win["episodes"] else None),
            "eta_seconds": (0.0 if left <= 0 else left / self.fps_ema if self.fps_ema > 0 else None),
            "elapsed": now - self.start_time,
        }
        for key, (total, count) in win["train"].items():
            rec[f"train/{key}"] = total / count
        self.history.append(rec)
        self.logger.log_scalars({k: v for k, v in rec.items() if v is not None}, rec["env_steps"])
        self.gauges.set(rec)
        self._say(format_progress(rec, self.runtime.total_steps))
        self.window = self._new_window()
        self._save_counters()  # what `--resume` needs if the driver itself dies
        if len(self.history) % 30 == 0:
            self._upload_logs()
        if self.on_progress is not None:
            self.on_progress(rec, self)
        return rec

    def _say(self, line: str) -> None:
        if self.runtime.verbose:
            print(line, file=sys.stdout, flush=True)
        _log.info(line)
        with open(os.path.join(self.local_dir, "progress.log"), "a", encoding="utf-8") as f:
            f.write(line + "\n")

    def _summary(self, final_eval: dict | None) -> dict[str, Any]:
        seconds = time.monotonic() - self.start_time
        stats = self.shard_stats
        inserted = sum(s["inserted"] for s in stats)
        sampled = sum(s["sampled"] for s in stats)
        return {
            "model": self.run_config.model.rpartition(":")[2], "env": self.spec.env_name,
            "run_dir": self.run_dir, "total_steps": self.runtime.total_steps,
            "env_steps": self.counters["env_steps"], "updates": self.updates,
            "updates_lost": int(self.counters.get("updates_lost", 0)),
            "learners": self.plan.learners, "acked_steps": int(self.counters.get("acked_steps", 0)),
            "replay_audit": self.audit, "replay_restored": list(self.restored),
            "episodes": self.counters["episodes"], "epoch": self.counters["epoch"],
            "seconds": seconds, "total_seconds": self.counters["seconds"] + seconds,
            "env_steps_per_s": (self.counters["env_steps"] - self.start_steps) / seconds,
            "updates_per_s": (self.updates - self.start_updates) / seconds,
            "replay_ratio": self._budget(len(stats)).ratio(inserted, sampled),
            "target_ratio": self.spec.train_ratio,
            "ratio_tolerance_steps": self.layout.tolerance_band(len(stats)),
            "min_fill_steps": self.layout.min_size * len(stats),
            "batch_steps": self.spec.steps_per_update,
            "samples": [{"name": x.name, "batch_size": x.batch_size, "seq_len": x.seq_len}
                        for x in self.spec.data_spec.samples],
            "media": dict(self.media),
            "replay_inserted": inserted, "replay_sampled": sampled,
            "shard_stats": stats, "learner_idle": (self.learner_time["wait"] / self.learner_time["total"]
                                                   if self.learner_time["total"] else 0.0),
            "workers": self.plan.workers, "envs_per_worker": self.runtime.envs_per_worker,
            "shards": self.runtime.shards, "learner_device": self.plan.learner_device,
            "worker_steps": dict(self.worker_steps), "worker_versions": dict(self.worker_versions),
            "worker_incarnations": list(self.worker_incarnation),
            "weight_version": self.weights[0], "restarts": dict(self.counters["restarts"]),
            "events": list(self.events),
            "metric_max": dict(self.metric_max), "final_eval": final_eval, "evals": self.evals,
            "last_train_return": (float(np.mean(list(self.recent_returns)))
                                  if self.recent_returns else None),
            "checkpoint": self.checkpoint, "achievements": achievement_summary(self.counters),
        }

    def _log_media(self, report: dict[str, Any] | None) -> None:
        """Log what ``agent.report(batch)`` returned (scalars, images, videos) to the metrics,
        TensorBoard and ``media/`` files of the run directory, for the report."""
        if not report:
            return
        step = int(self.counters["env_steps"])
        scalars = {k: float(v) for k, v in (report.get("scalars") or {}).items()}
        if scalars:
            self.logger.log_scalars(scalars, step)
        images = dict(zip(report.get("images") or {},
                          self.logger.log_images(report.get("images") or {}, step)))
        videos = dict(zip(report.get("videos") or {},
                          self.logger.log_videos(report.get("videos") or {}, step)))
        self.media = {"env_steps": step, "scalars": scalars, "images": images, "videos": videos}
