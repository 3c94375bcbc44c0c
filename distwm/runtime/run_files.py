"""The run directory's files: resume state, the driver's counters, uploads, the replay audit.
A mixin of :class:`distwm.runtime.driver.Driver`, whose ``__init__`` creates every attribute
used here."""

from __future__ import annotations

import json
import logging
from typing import Any

from distwm.runtime.checkpoints import counters_file, latest_checkpoint, load_checkpoint
from distwm.utils import storage

__all__ = ["RunFilesMixin"]

_log = logging.getLogger("distwm.runtime.driver")


class RunFilesMixin:
    """Counters that survive the driver, logs that reach remote storage, the replay audit."""

    def _load_resume_state(self) -> None:
        """Counters of a resumed run: the newest of the last checkpoint's and the driver's own
        (``counters.json``, rewritten at every progress line); replay comes back by itself."""
        self.checkpoint = latest_checkpoint(self.run_dir)
        found: list[dict[str, Any]] = []
        if self.checkpoint is not None:
            saved = load_checkpoint(self.checkpoint)
            found.append({**saved.get("counters", {}), "updates": int(saved["updates"]),
                          "version": int(saved["version"])})
        try:
            found.append(json.loads(storage.read_text(counters_file(self.run_dir))))
        except FileNotFoundError:
            pass
        if not found:
            _log.warning("%s has no checkpoint or counters yet: its replay is kept, its "
                         "counters start at zero", self.run_dir)
        for counters in found:
            for key, value in counters.items():
                if isinstance(value, (int, float)) and not isinstance(value, bool):
                    self.counters[key] = max(self.counters.get(key, value), value)
                elif key == "restarts":
                    mine = self.counters["restarts"]
                    for role, n in value.items():
                        mine[role] = max(mine.get(role, 0), int(n))
        self.counters["epoch"] = int(self.counters.get("epoch", 0)) + 1

    def _audit_replay(self) -> None:
        """With ``runtime.audit_replay``: is every acknowledged chunk still in replay?"""
        import ray

        if self.acked_chunks is None:
            return
        held = set()
        for keys in ray.get([s.chunk_keys.remote() for s in self.shards]):
            held.update((str(k), int(v)) for k, v in keys)
        missing = self.acked_chunks - held
        self.audit = {"acked_chunks": len(self.acked_chunks), "missing": len(missing),
                      "missing_examples": sorted(missing)[:5]}

    def _save_counters(self) -> None:
        storage.write_text(counters_file(self.run_dir), json.dumps(self._counters_snapshot()))

    def _close_run(self, summary: dict[str, Any], write_report) -> str:
        """The end of every run: flush the metrics, write the report with
        ``write_report(local_dir, summary) -> (markdown path, ...)``, print it, save the
        counters, upload the logs; returns the report's text."""
        self.logger.flush()
        md = write_report(self.local_dir, summary)[0]
        with open(md, encoding="utf-8") as f:
            report = f.read()
        self._say(report)
        self._save_counters()
        self._upload_logs()
        return report

    def _upload_logs(self) -> None:
        """A run directory on an object store gets the local logs, metrics and report."""
        if not storage.is_local(self.run_dir):
            storage.upload_dir(self.local_dir, self.run_dir)
