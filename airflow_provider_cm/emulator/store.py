"""The store: every object of one emulated tenant, its lock, its reset and its persistence.

Routes never lock or save anything themselves: they hand a function to :meth:`Store.write` (or
:meth:`Store.read`), which runs it under the lock and, with a ``state_path``, appends what it
changed to the journal and returns only once that is on disk, so the route answers only then.
Functions mark what they change with :meth:`Store.touch`.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from airflow_provider_cm.emulator import persistence
from airflow_provider_cm.emulator.errors import bad_request, not_found
from airflow_provider_cm.emulator.journal import Journal
from airflow_provider_cm.emulator.oauth import OAuthServer
from airflow_provider_cm.emulator.records import Dataset, Source
from airflow_provider_cm.emulator.times import parse_time, time_key

log = logging.getLogger(__name__)

T = TypeVar("T")

#: Compact the journal into the snapshot once it is this large.
COMPACT_AFTER_BYTES = 64 * 1024 * 1024

#: One row of a sorted listing of a dataset's comments: (time key, uid, source id, comment id).
IndexRow = tuple[int, str, str, str]


def new_id() -> str:
    """A fresh 16-hex-digit id, the form the API's ids take."""
    return secrets.token_hex(8)


class Store:
    """All data of one emulated tenant, with the emulator's run-time settings beside it.

    :param state_path: JSON snapshot to load at start and keep up to date (with its journal
        ``<state_path>.journal``); ``None`` keeps everything in memory.
    """

    def __init__(self, state_path: str | None = None) -> None:
        self.state_path = state_path
        self.lock = threading.RLock()
        self._clear_data()
        self.requests_by_route: dict[str, int] = {}
        self.reject_comment_ids: dict[str, str] = {}
        self.fault_rules: list[Any] = []  # emulator.fault_rules.FaultRule
        self.faults_injected: dict[str, int] = {}
        self.rate_limit: Any = None  # emulator.fault_rules.TokenBucket
        self.latency = 0.0
        self.oauth = OAuthServer()
        self._version = 0
        self._index_cache: dict[tuple[Any, ...], tuple[int, list[IndexRow]]] = {}
        self._touched: dict[tuple[Any, ...], None] = {}
        self.journal = Journal(state_path + ".journal") if state_path else None
        if state_path:
            self._recover(state_path)

    def _clear_data(self) -> None:
        self.projects: dict[str, dict[str, Any]] = {}
        self.sources: dict[str, Source] = {}
        self.datasets: dict[str, Dataset] = {}
        self.billed_comments = 0
        self.billed_predictions = 0
        self.billed_by_source: dict[str, int] = {}

    # -- running reads and writes -----------------------------------------------------------------

    def read(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(store, *args)`` under the lock, journaling nothing: reads, and run-time settings."""
        with self.lock:
            return fn(self, *args)

    async def write(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(store, *args)`` under the lock, then return once what it touched is on disk."""
        with self.lock:
            try:
                result = fn(self, *args)
            finally:
                number = self._commit()
        if number and self.journal is not None:
            await self.journal.durable(number)
        return result

    def touch(self, *key: Any) -> None:
        """Mark the object at ``key`` (e.g. ``("comment", source_id, comment_id)``) as changed."""
        self._touched[key] = None
        self._version += 1

    def _commit(self) -> int:
        """Journal what the last write touched; the record's number (0 if nothing to journal)."""
        if not self._touched:
            return 0
        keys, self._touched = list(self._touched), {}
        if self.journal is None:
            return 0
        number = self.journal.append(persistence.journal_record(self, keys))
        if self.journal.size() > COMPACT_AFTER_BYTES:
            self.save()
        return number

    # -- persistence ------------------------------------------------------------------------------

    def _recover(self, path: str) -> None:
        if os.path.exists(path):
            with open(path, encoding="utf-8") as handle:
                persistence.load_snapshot(self, json.load(handle))
        assert self.journal is not None
        replayed = 0
        for record in self.journal.records():
            persistence.apply_record(self, record)
            replayed += 1
        if replayed:
            log.info("replayed %d journal record(s) from %s", replayed, self.journal.path)
        self._version += 1
        self.save()

    def save(self) -> None:
        """Write the snapshot and empty the journal (its records are in the snapshot now)."""
        if not self.state_path:
            return
        with self.lock:
            persistence.write_snapshot(self.state_path, persistence.snapshot(self))
            if self.journal is not None:
                self.journal.clear()

    def close(self) -> None:
        """Compact the journal into the snapshot and close it (at shutdown)."""
        self.save()
        if self.journal is not None:
            self.journal.close()

    def reset(self) -> None:
        """Forget every object, counter and comment rejection (fault rules stay)."""
        with self.lock:
            self._clear_data()
            self.requests_by_route.clear()
            self.reject_comment_ids.clear()
            self._touched = {}
            self._version += 1
            self.save()

    # -- lookups ----------------------------------------------------------------------------------

    def require_project(self, project: str) -> None:
        """:raises ApiError: 400 if the project does not exist."""
        if project not in self.projects:
            raise bad_request(f"project '{project}' does not exist")

    def find_source(self, project: str, name: str) -> Source | None:
        """The source ``project/name``, or ``None``."""
        return next((s for s in self.sources.values() if s.project == project and s.name == name), None)

    def source(self, project_or_id: str, name: str | None = None) -> Source:
        """A source by ``project, name`` or by ``"id:<id>"``; 404 if there is none."""
        if name is None:
            found = self.sources.get(project_or_id[3:]) if project_or_id.startswith("id:") else None
        else:
            found = self.find_source(project_or_id, name)
        if found is None:
            raise not_found()
        return found

    def find_dataset(self, project: str, name: str) -> Dataset | None:
        """The dataset ``project/name``, or ``None``."""
        return next((d for d in self.datasets.values() if d.project == project and d.name == name), None)

    def dataset(self, project_or_id: str, name: str | None = None) -> Dataset:
        """A dataset by ``project, name`` or by ``"id:<id>"``; 404 if there is none."""
        if name is None:
            found = self.datasets.get(project_or_id[3:]) if project_or_id.startswith("id:") else None
        else:
            found = self.find_dataset(project_or_id, name)
        if found is None:
            raise not_found()
        return found

    def comment_by_uid(self, dataset: Dataset, uid: str) -> dict[str, Any]:
        """A comment of one of the dataset's sources by ``<source_id>.<comment_id>``; 404 if none."""
        source_id, _, comment_id = uid.partition(".")
        source = self.sources.get(source_id) if source_id in dataset.source_ids else None
        comment = source.comments.get(comment_id) if source else None
        if comment is None:
            raise not_found()
        return comment

    @staticmethod
    def indexed_comment(comment: dict[str, Any]) -> dict[str, Any]:
        """A stored comment with its private sort keys (``_keys``) for listings."""
        comment = dict(comment)
        comment["_keys"] = {
            "timestamp": time_key(parse_time(comment["timestamp"], "timestamp")),
            "created_at": time_key(parse_time(comment["created_at"], "created_at")),
        }
        return comment

    def sorted_index(self, dataset: Dataset, order_by: str, source_ids: tuple[str, ...]) -> list[IndexRow]:
        """The comments of ``source_ids`` sorted by ``order_by`` then uid (cached until a write)."""
        cache_key = (dataset.id, order_by, source_ids)
        cached = self._index_cache.get(cache_key)
        if cached and cached[0] == self._version:
            return cached[1]
        rows: list[IndexRow] = []
        for source_id in source_ids:
            source = self.sources.get(source_id)
            if source is None:
                continue
            for comment_id, comment in source.comments.items():
                rows.append((comment["_keys"][order_by], comment["uid"], source_id, comment_id))
        rows.sort()
        self._index_cache = {k: v for k, v in self._index_cache.items() if v[0] == self._version}
        self._index_cache[cache_key] = (self._version, rows)
        return rows

    def stats(self) -> dict[str, Any]:
        """Counters for tests: billing, stored comments, requests per route, faults, throttling."""
        return {
            "billed_comments": self.billed_comments,
            "billed_predictions": self.billed_predictions,
            "billed_by_source": dict(self.billed_by_source),
            "comments": sum(len(s.comments) for s in self.sources.values()),
            "requests_by_route": dict(self.requests_by_route),
            "token_requests": self.oauth.requests,
            "faults_injected": dict(self.faults_injected),
            "throttled": self.rate_limit.throttled if self.rate_limit else 0,
        }
