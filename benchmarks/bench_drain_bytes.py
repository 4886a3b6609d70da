"""Bytes an object-store drain sends: the operator's parts against rewriting the object per batch.

A drain into object storage cannot append. The operator stores each batch once as a part and
assembles the parts at the end; the baseline, measured in the same run on a copy of the same
stream, is what a drain that keeps the object complete after every batch must do (and what the
operator did before): rewrite the whole object, earlier batches included, after each batch. Both
write to an in-memory object store that counts the bytes written through it (what a client
would send); a copy or rename inside the store sends nothing. Both final objects are compared.
"""

from __future__ import annotations

import json
from typing import Any

import fsspec
from fsspec.implementations.memory import MemoryFileSystem

from benchmarks.harness import Emulator, banking77_records

PROTOCOL = "countmem"


class CountingMemoryFileSystem(MemoryFileSystem):
    """An in-memory object store that counts the bytes clients write to it."""

    protocol = PROTOCOL
    root_marker = "/"
    sent = 0

    def _open(self, path: str, mode: str = "rb", **kwargs: Any) -> Any:
        handle = super()._open(path, mode, **kwargs)
        if "w" in mode or "a" in mode:
            write = handle.write

            def counted(data: bytes) -> int:
                CountingMemoryFileSystem.sent += len(data)
                return write(data)

            handle.write = counted
        return handle


def seed(comments: int) -> tuple[str, list[dict[str, Any]]]:
    from airflow_provider_cm.hooks.communications_mining import CommunicationsMiningHook

    hook = CommunicationsMiningHook()
    hook.create_project("drainbytes")
    hook.create_source("drainbytes/inbox")
    source_id = hook.get_source("drainbytes/inbox")["id"]
    hook.create_dataset("drainbytes/support", source_ids=[source_id])
    return "drainbytes/support", [r["comment"] for r in banking77_records()[:comments]]


def fill(dataset: str, stream: str, comments: list[dict[str, Any]]) -> None:
    from airflow_provider_cm.hooks.communications_mining import CommunicationsMiningHook

    hook = CommunicationsMiningHook()
    hook.put_stream(dataset, stream)
    hook.sync_comments("drainbytes/inbox", [dict(c, id=f"{c['id']}-{stream}") for c in comments])


def operator_drain(dataset: str, stream: str, target: str, batch_size: int) -> int:
    from airflow_provider_cm.operators.streams import CommunicationsMiningStreamFetchOperator

    operator = CommunicationsMiningStreamFetchOperator(
        task_id="bench", dataset=dataset, stream=stream, output_path=target, batch_size=batch_size, advance=True
    )
    return operator.execute({})["count"]


def rewrite_drain(dataset: str, stream: str, target: str, batch_size: int) -> int:
    """The baseline: after each batch the whole object is written again, earlier batches included."""
    from airflow.sdk import ObjectStoragePath

    from airflow_provider_cm.hooks.communications_mining import CommunicationsMiningHook
    from airflow_provider_cm.operators.streams import stream_result_row

    hook = CommunicationsMiningHook()
    path = ObjectStoragePath(target)
    written = b""
    count = 0
    while True:
        batch = hook.fetch_stream(dataset, stream, size=batch_size)
        if not batch["results"]:
            return count
        lines = "".join(json.dumps(stream_result_row(r, None), ensure_ascii=False) + "\n" for r in batch["results"])
        written += lines.encode("utf-8")
        with path.open("wb") as handle:
            handle.write(written)
        count += len(batch["results"])
        hook.advance_stream(dataset, stream, batch["sequence_id"])


def run(emulator: Emulator, batches: int = 100, batch_size: int = 10) -> list[dict]:
    from airflow.sdk import ObjectStoragePath
    from airflow.sdk.io import attach

    fsspec.register_implementation(PROTOCOL, CountingMemoryFileSystem, clobber=True)
    attach(PROTOCOL, fs=CountingMemoryFileSystem())
    dataset, comments = seed(batches * batch_size)
    sent: dict[str, int] = {}
    finals: dict[str, list[str]] = {}
    for name, drain in (("rewrite", rewrite_drain), ("operator", operator_drain)):
        fill(dataset, name, comments)
        target = f"{PROTOCOL}://bench/{name}/drain.jsonl"
        CountingMemoryFileSystem.sent = 0
        assert drain(dataset, name, target, batch_size) == len(comments)
        sent[name] = CountingMemoryFileSystem.sent
        lines = ObjectStoragePath(target).read_text().splitlines()
        finals[name] = [json.loads(line)["comment"]["id"].removesuffix(f"-{name}") for line in lines]
    assert finals["operator"] == finals["rewrite"], "the two drains wrote different objects"
    final_bytes = len(ObjectStoragePath(f"{PROTOCOL}://bench/operator/drain.jsonl").read_bytes())
    return [
        {
            "benchmark": f"stream drain into object storage, {batches} batches of {batch_size}: bytes sent",
            "latency": "0 ms",
            "bare": "",
            "cli": f"rewrite per batch: {sent['rewrite']:,} B ({sent['rewrite'] / final_bytes:.1f}× the object)",
            "operator": f"{sent['operator']:,} B ({sent['operator'] / final_bytes:.1f}× the {final_bytes:,} B object)",
            "vs_bare": None,
            "vs_cli": sent["rewrite"] / sent["operator"],
            "goal": "linear: 2× the object",
        }
    ]
