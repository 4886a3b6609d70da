"""Baselines doing what the official ``re`` CLI does, over real HTTP with ``requests`` directly.

They are baselines, not the provider's code: they only reproduce the official client's request
pattern (batch sizes, what waits for what, threads, retries) against the same emulator, so a
ratio says what a user gains by moving from ``re`` to the operators. Sources, in the
``reinfer/cli`` repository:

- Upload (``re create comments --overwrite --dataset D``), ``cli/src/commands/create/comments.rs``:
  without ``--allow-duplicates`` the whole file is read once first for repeated ids
  (``check_no_duplicate_ids``); ``upload_comments_from_reader`` then collects comments and, for a
  dataset, each annotated line's annotations; when ``batch_size`` comments are pending
  (``--batch-size``, default 128) ``upload_batch_of_comments`` sends them in one request and waits
  for it (``--overwrite`` sends everything to ``sync``, the upsert a rerun needs; without it new
  ids go to the private create-only ``PUT``); when ``batch_size`` annotations are pending, pending
  comments are sent first, then ``upload_batch_of_annotations``
  (``cli/src/commands/create/annotations.rs``) sends one
  ``POST /api/_private/datasets/<p>/<d>/labellings/<uid>`` per comment on the scoped thread pool
  (``--num-threads``, default 32, ``cli/src/args.rs``) and waits for all of them. What is left is
  sent after the last line. Nothing is compared with what the dataset already holds, so a rerun
  of an unchanged file rewrites every comment and every labelling.
- Retries (``api/src/retry.rs`` ``with_retries``/``should_retry``, configured in
  ``cli/src/main.rs``): HTTP 5xx, 429 and 409 and transport errors are retried after 5, 10 and 20
  seconds (4 attempts), ``Retry-After`` is not read; stream ``fetch`` and ``advance`` are not retried.
- Export (``re get comments --dataset D``), ``cli/src/commands/get/comments.rs``
  ``get_comments_from_uids``: one serial chain of pages (``DEFAULT_QUERY_PAGE_SIZE`` = 512 on the
  private query route), each page written before the next is asked for. The emulator serves the
  documented export route, at most 256 comments a page, and not the private query route: the
  chain here pages that route at 256.
- Stream (``re get stream-comments --listen``), ``cli/src/commands/get/streams.rs``
  ``fetch_stream_comments_continuously``: ``fetch`` with ``--size`` (default 16), print each
  result, ``advance`` to the batch's ``sequence_id``; an empty batch with ``filtered > 0`` is
  advanced over, an empty batch with ``filtered == 0`` means caught up (the CLI sleeps and polls
  again; this baseline stops there).
"""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import requests

from benchmarks.harness import TOKEN

BATCH_SIZE = 128
THREADS = 32
STREAM_SIZE = 16
EXPORT_PAGE = 256
#: Waits before the 2nd, 3rd and 4th attempt (base 5 s, factor 2, 3 retries).
RETRY_WAITS = (5.0, 10.0, 20.0)
RETRIED = frozenset({409, 429}) | frozenset(range(500, 600))


class CliClient:
    """A ``requests`` session with the CLI's retry policy."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.session = requests.Session()
        self.session.mount("http://", requests.adapters.HTTPAdapter(pool_maxsize=THREADS + 4))
        self.session.headers["Authorization"] = f"Bearer {TOKEN}"

    def call(self, method: str, path: str, body: Any = None, *, retry: bool = True) -> dict:
        for wait in (*RETRY_WAITS, None) if retry else (None,):
            try:
                response = self.session.request(method, self.url + path, json=body, timeout=240)
            except (requests.ConnectionError, requests.Timeout):
                if wait is None:
                    raise
            else:
                if response.status_code not in RETRIED or wait is None:
                    response.raise_for_status()
                    return response.json()
            time.sleep(wait)
        raise AssertionError("unreachable")


def _has_annotations(record: dict) -> bool:
    labelling = record.get("labelling")
    groups = [labelling] if isinstance(labelling, dict) else labelling or []
    return any(g.get("assigned") or g.get("dismissed") for g in groups) or bool(record.get("entities"))


def check_no_duplicate_ids(path: Path) -> None:
    """The CLI's first pass over the file (without ``--allow-duplicates``)."""
    seen: set[str] = set()
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            comment_id = json.loads(line)["comment"]["id"]
            if comment_id in seen:
                raise ValueError(f"Duplicate comments with id {comment_id}")
            seen.add(comment_id)


def upload(url: str, path: Path, source: str, dataset: str | None) -> None:
    """``re create comments --file path --source source [--dataset dataset] --overwrite``."""
    client = CliClient(url)
    source_id = client.call("GET", f"/api/v1/sources/{source}")["source"]["id"]
    if dataset:
        client.call("GET", f"/api/v1/datasets/{dataset}")
    check_no_duplicate_ids(path)
    comments: list[dict] = []
    annotations: list[dict] = []

    def send_comments() -> None:
        if comments:
            client.call("POST", f"/api/v1/sources/{source}/sync", {"comments": comments})
            comments.clear()

    def label(record: dict) -> None:
        uid = f"{source_id}.{record['comment']['id']}"
        body = {k: record[k] for k in ("labelling", "entities", "moon_forms") if record.get(k) is not None}
        client.call("POST", f"/api/_private/datasets/{dataset}/labellings/{uid}", body)

    def send_annotations() -> None:
        list(pool.map(label, annotations))
        annotations.clear()

    with open(path, encoding="utf-8") as handle, ThreadPoolExecutor(THREADS) as pool:
        for line in handle:
            record = json.loads(line)
            if dataset and _has_annotations(record):
                annotations.append(record)
            comments.append(record["comment"])
            if len(comments) >= BATCH_SIZE:
                send_comments()
            if dataset and len(annotations) >= BATCH_SIZE:
                send_comments()
                send_annotations()
        send_comments()
        if annotations:
            send_annotations()


def export(url: str, dataset: str, path: Path, start: str, end: str) -> int:
    """``re get comments --dataset dataset --from-timestamp start --to-timestamp end --file path``."""
    client = CliClient(url)
    client.call("GET", f"/api/v1/datasets/{dataset}")
    body: dict[str, Any] = {"limit": EXPORT_PAGE, "order_by": "timestamp", "from": start, "to": end}
    count = 0
    with open(path, "w", encoding="utf-8") as handle:
        while True:
            page = client.call("POST", f"/api/v1/datasets/{dataset}/export", body)
            for comment in page["comments"]:
                handle.write(json.dumps(comment) + "\n")
            count += len(page["comments"])
            if "continuation" not in page:
                return count
            body["continuation"] = page["continuation"]


def drain_stream(url: str, dataset: str, stream: str, path: Path) -> int:
    """``re get stream-comments --stream dataset/stream --listen N``, stopped once caught up."""
    client = CliClient(url)
    base = f"/api/v1/datasets/{dataset}/streams/{stream}"
    count = 0
    with open(path, "w", encoding="utf-8") as handle:
        while True:
            batch = client.call("POST", f"{base}/fetch", {"size": STREAM_SIZE}, retry=False)
            if not batch["results"] and not batch["filtered"]:
                return count
            for result in batch["results"]:
                handle.write(json.dumps(result) + "\n")
            count += len(batch["results"])
            client.call("POST", f"{base}/advance", {"sequence_id": batch["sequence_id"]}, retry=False)
