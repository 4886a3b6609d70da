"""What an upload did, in counts that cover the same comments, and what it billed.

Billing (API reference, section 5): a comment is billed when ``sync`` creates it, or when it
updates it and its text changed. The ``sync`` answer gives only ``new``, ``updated`` and
``unchanged``, so billed comments are known exactly only when nothing was updated and no request
was retried after an attempt that may have reached the server. Otherwise they lie in a range:

- at least ``new``: every created comment is billed;
- at most ``new + updated``: an update may have changed only metadata (``timestamp``,
  ``user_properties``, ...), which is not billed, and the answer does not say which;
- plus ``unchanged`` of a request retried after an earlier attempt may have committed (a
  connection dropped after sending, a truncated answer, HTTP 500/502/504): comments that
  attempt created or changed come back as ``unchanged`` on the retry;
- plus the whole batch of a request that failed for good after it may have reached the server.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

#: Why billed comments are a range rather than one number (keys of :attr:`UploadTally.reasons`).
METADATA_UPDATES = "updated"
RETRIED_AFTER_COMMIT = "retried"
FAILED_AFTER_SEND = "failed"
_REASONS = {
    METADATA_UPDATES: "{n} updated comment(s) may have changed only metadata, which is not billed "
    "(the sync answer does not say whose text changed)",
    RETRIED_AFTER_COMMIT: "a sync request was retried after an attempt that may have reached the server; "
    "comments that attempt created come back as unchanged ({n} comment(s) in such requests)",
    FAILED_AFTER_SEND: "a sync request failed after it may have reached the server ({n} comment(s))",
}


#: XCom keys of 0.1, kept for one release with the same values: old name -> new name.
DEPRECATED_XCOM_KEYS = {
    "labelled": "annotated",
    "labels_unchanged": "annotations_unchanged",
    "labels_rejected": "annotations_rejected",
}


#: The task log's line, once per task run whose XCom carries :data:`DEPRECATED_XCOM_KEYS`. A warning cannot be
#: raised where they are read: XCom stores the value as JSON and hands a plain dict to the task or template
#: that pulls it, in code that is not the provider's, so the deprecation is said where the value is pushed.
DEPRECATED_XCOM_KEYS_LINE = (
    "This task's XCom return value also carries %s, 0.1's names of %s, with the same values: they are "
    "deprecated since airflow-provider-cm 0.2.0 and removed in 0.3; downstream tasks and templates should read "
    "the new keys"
)


def say_deprecated_xcom_keys(log: Any) -> None:
    """Say :data:`DEPRECATED_XCOM_KEYS_LINE` in ``log`` (a task's logger), naming the old and the new keys."""
    log.warning(DEPRECATED_XCOM_KEYS_LINE, ", ".join(DEPRECATED_XCOM_KEYS), ", ".join(DEPRECATED_XCOM_KEYS.values()))


_COUNTS = ("new", "updated", "unchanged", "rejected", "annotated", "annotations_unchanged", "annotations_rejected")


@dataclass
class UploadTally:
    """Counts of one batch or of a whole upload.

    :param new: comments ``sync`` created.
    :param updated: comments ``sync`` updated (text or metadata).
    :param unchanged: comments ``sync`` found identical.
    :param rejected: comments the API refused; not stored, not billed.
    :param annotated: stored comments whose annotations (labels and general fields) were written.
    :param annotations_unchanged: stored comments whose annotations the dataset already held as
        the file gives them (not written again).
    :param annotations_rejected: stored (and possibly billed) comments whose annotations the API refused.
    :param billed_at_least: comments certainly billed.
    :param billed_at_most: comments possibly billed.
    :param reasons: why the two differ: reason key -> comments concerned.
    """

    new: int = 0
    updated: int = 0
    unchanged: int = 0
    rejected: int = 0
    annotated: int = 0
    annotations_unchanged: int = 0
    annotations_rejected: int = 0
    billed_at_least: int = 0
    billed_at_most: int = 0
    reasons: dict[str, int] = field(default_factory=dict)

    @property
    def done(self) -> int:
        """Comments whose outcome is known: stored (new, updated, unchanged) or rejected."""
        return self.new + self.updated + self.unchanged + self.rejected

    @property
    def stored(self) -> int:
        return self.new + self.updated + self.unchanged

    def add_sync(self, answer: Mapping[str, Any]) -> None:
        """Count one ``sync`` answer: ``{"new", "updated", "unchanged", "maybe_committed_earlier"?}``."""
        new, updated, unchanged = int(answer["new"]), int(answer["updated"]), int(answer["unchanged"])
        self.new += new
        self.updated += updated
        self.unchanged += unchanged
        self.billed_at_least += new
        self.billed_at_most += new + updated
        if updated:
            self._because(METADATA_UPDATES, updated)
        if answer.get("maybe_committed_earlier", False) and unchanged:
            self.billed_at_most += unchanged
            self._because(RETRIED_AFTER_COMMIT, unchanged)

    def add_lost_sync(self, comments: int) -> None:
        """Count a ``sync`` request that failed after it may have reached the server."""
        self.billed_at_most += comments
        self._because(FAILED_AFTER_SEND, comments)

    def _because(self, reason: str, comments: int) -> None:
        self.reasons[reason] = self.reasons.get(reason, 0) + comments

    def add(self, other: UploadTally) -> None:
        """Add another tally (a finished batch) to this one."""
        for name in (
            "new",
            "updated",
            "unchanged",
            "rejected",
            "annotated",
            "annotations_unchanged",
            "annotations_rejected",
        ):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.billed_at_least += other.billed_at_least
        self.billed_at_most += other.billed_at_most
        for reason, comments in other.reasons.items():
            self._because(reason, comments)

    @property
    def why(self) -> list[str]:
        """Why billed comments are a range, one sentence per reason (empty when exact)."""
        if self.billed_at_least == self.billed_at_most:
            return []
        return [_REASONS[reason].format(n=n) for reason, n in sorted(self.reasons.items())]

    def billed_text(self) -> str:
        """``"25 billed"`` or ``"between 10 and 25 billed"``."""
        if self.billed_at_least == self.billed_at_most:
            return f"{self.billed_at_least} billed"
        return f"between {self.billed_at_least} and {self.billed_at_most} billed"

    def summary(self) -> str:
        """Every count on one line; all of them cover the same comments."""
        return (
            f"new={self.new} updated={self.updated} unchanged={self.unchanged} rejected={self.rejected} "
            f"annotated={self.annotated} annotations_unchanged={self.annotations_unchanged} "
            f"annotations_rejected={self.annotations_rejected}; {self.billed_text()}"
        )

    def as_xcom(self) -> dict[str, Any]:
        """The counts for XCom; ``billed`` is ``{"at_least", "at_most", "exact", "why"}``.

        ``labelled``, ``labels_unchanged`` and ``labels_rejected`` are the 0.1 names of
        ``annotated``, ``annotations_unchanged`` and ``annotations_rejected``: deprecated, with the
        same values, and removed in 0.3 (:data:`DEPRECATED_XCOM_KEYS`).
        """
        return {
            "new": self.new,
            "updated": self.updated,
            "unchanged": self.unchanged,
            "rejected": self.rejected,
            "annotated": self.annotated,
            "annotations_unchanged": self.annotations_unchanged,
            "annotations_rejected": self.annotations_rejected,
            **{old: getattr(self, new) for old, new in DEPRECATED_XCOM_KEYS.items()},
            "billed": {
                "at_least": self.billed_at_least,
                "at_most": self.billed_at_most,
                "exact": self.billed_at_least == self.billed_at_most,
                "why": self.why,
            },
        }
