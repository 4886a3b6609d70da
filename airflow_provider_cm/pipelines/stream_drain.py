"""The one stream-drain loop: fetch a batch, skip the batches the stream's filter emptied, hand each
batch to a writer, advance the stream past it, until caught up or a limit.

Used by the draining fetch operator
(:class:`~airflow_provider_cm.operators.streams.CommunicationsMiningStreamFetchOperator`, a file)
and the SQL transfer
(:class:`~airflow_provider_cm.transfers.communications_mining_to_sql.CommunicationsMiningStreamToSqlOperator`,
a table). It needs no Airflow: the client (the hook) is passed in, and calls
``POST /api/v1/datasets/<project>/<dataset>/streams/<stream>/fetch``
(https://docs.uipath.com/ixp/automation-cloud/latest/cm-user-guide/fetch-comments-from-a-stream-legacy.md)
and ``.../advance``
(https://docs.uipath.com/communications-mining/automation-cloud/latest/developer-guide/advance-a-stream).

Fetching never moves a stream; only an advance does. The loop advances past a batch of results
only after the writer's :meth:`~DrainWriter.write` returned (the batch is durable, or committed),
with :meth:`~DrainWriter.advancing` and :meth:`~DrainWriter.advanced` around the advance for a
writer that records what it acknowledged. So a failure anywhere leaves the stream at the last
batch written: the next run fetches the rest again, and a writer that upserts (or keeps what an
earlier try wrote) makes that redelivery harmless. A batch holding only comments the filter
dropped has nothing to lose: it is advanced past at once (and counted in ``filtered``).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

#: A fetched batch, as the client returns it: ``{"results": [{"comment", "labels", "entities",
#: "sequence_id"}], "filtered": int, "is_end_sequence": bool, "sequence_id": str}``.
StreamBatch = Mapping[str, Any]


class StreamClient(Protocol):
    """The two routes the loop calls (the hook,
    :class:`~airflow_provider_cm.hooks.communications_mining.CommunicationsMiningHook`, has them)."""

    def fetch_stream(self, dataset: str, stream: str, *, size: int) -> StreamBatch: ...

    def advance_stream(self, dataset: str, stream: str, sequence_id: str) -> None: ...


class DrainWriter:
    """Where a drain's batches go. :meth:`write` is required; the two others do nothing unless overridden."""

    def write(self, batch: StreamBatch) -> None:
        """Make the batch's results safe (durable, committed) before the stream moves past them.

        :raises Exception: anything; the stream is then not advanced past the batch.
        """
        raise NotImplementedError

    def advancing(self, batch: StreamBatch) -> None:
        """Called after :meth:`write`, just before the stream is advanced past ``batch``."""

    def advanced(self, batch: StreamBatch) -> None:
        """Called once the stream was advanced past ``batch``."""


@dataclass
class DrainResult:
    """What one drain did.

    :param results: results handed to the writer (and acknowledged).
    :param batches: batches with results written and advanced past.
    :param filtered: comments the stream's filter dropped, in batches advanced past without results.
    :param sequence_id: the last position the stream was advanced to (``None`` if it was not moved).
    :param caught_up: whether the stream ended (false when a limit stopped the drain first).
    """

    results: int = 0
    batches: int = 0
    filtered: int = 0
    sequence_id: str | None = None
    caught_up: bool = False


class StreamDrain:
    """Fetch and advance one stream.

    :param client: the routes (:class:`StreamClient`).
    :param dataset: ``"project/dataset"``.
    :param stream: the stream's name.
    :param batch_size: most comments per fetch (1 to 1,024; filtered ones count too).
    :param log: where the fetch and skip lines go.
    """

    def __init__(
        self, client: StreamClient, dataset: str, stream: str, *, batch_size: int, log: logging.Logger | Any
    ) -> None:
        self.client = client
        self.dataset = dataset
        self.stream = stream
        self.batch_size = batch_size
        self.log = log
        self.result = DrainResult()

    def next_batch(self, size: int) -> StreamBatch:
        """The next batch that holds results, or the empty batch that ends the stream.

        A batch whose comments the stream's filter all dropped is advanced past (no result is
        lost) and counted in ``result.filtered``.

        :param size: most comments to fetch (at least 1).
        """
        while True:
            batch = self.client.fetch_stream(self.dataset, self.stream, size=size)
            if batch["results"] or not batch["filtered"]:
                if batch["results"]:
                    self.log.info("Fetched %d results (%d filtered)", len(batch["results"]), batch["filtered"])
                return batch
            self.log.info("Skipping %d comments the stream filters out", batch["filtered"])
            self.client.advance_stream(self.dataset, self.stream, batch["sequence_id"])
            self.result.filtered += batch["filtered"]
            self.result.sequence_id = batch["sequence_id"]

    def drain(self, writer: DrainWriter, *, max_results: int, max_batches: int | None = None) -> DrainResult:
        """Write and advance past batch after batch until the stream ends, ``max_results`` results
        were written or ``max_batches`` batches; return what was done (also :attr:`result`).

        :param writer: where each batch goes (:class:`DrainWriter`).
        :param max_results: most results to write; each fetch asks for no more than are left.
        :param max_batches: most batches with results; ``None`` for no limit.
        :raises Exception: what the client or the writer raises; the stream stays at the last batch written.
        """
        result = self.result
        while result.results < max_results and (max_batches is None or result.batches < max_batches):
            batch = self.next_batch(min(self.batch_size, max_results - result.results))
            if not batch["results"]:
                result.caught_up = True
                break
            writer.write(batch)  # the batch is safe before the stream moves past it
            writer.advancing(batch)
            self.client.advance_stream(self.dataset, self.stream, batch["sequence_id"])
            result.results += len(batch["results"])
            result.batches += 1
            result.sequence_id = batch["sequence_id"]
            writer.advanced(batch)
            if batch["is_end_sequence"]:
                result.caught_up = True
                break
        return result
