"""The export window: which comments of a dataset a run covers, half-open ``[start, end)``.

The window is the operator's ``start``/``end`` when given, else the run's data interval. The
export route's ``to`` is inclusive, so :func:`before_end` drops the comments exactly at ``end``:
consecutive windows then cover every comment once and none twice
(:class:`~airflow_provider_cm.client.window_export.WindowExport` applies it to every page).
Every operator that reads a dataset by time (the file export, the transfer into SQL) takes its
window from here, so they agree on the rules and on the error messages.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from airflow_provider_cm.api.times import api_time, at_or_after
from airflow_provider_cm.client.user_times import to_utc

#: The times an export window can apply to: the comment's own time, or its upload time.
ORDER_BY_CHOICES = ("timestamp", "created_at")


def check_order_by(order_by: str) -> str:
    """``order_by`` itself if it is a time the export route orders and filters by.

    :raises ValueError: for anything else.
    """
    if order_by not in ORDER_BY_CHOICES:
        raise ValueError(f"order_by must be 'timestamp' or 'created_at', got {order_by!r}")
    return order_by


def export_window(
    start: datetime | str | None, end: datetime | str | None, context: Mapping[str, Any]
) -> tuple[datetime, datetime]:
    """``(start, end)`` in UTC: the arguments given, else the run's data interval.

    :param start: window start (inclusive), or ``None``/``""`` for the data interval's start.
    :param end: window end (exclusive), or ``None``/``""`` for the data interval's end.
    :param context: the task's context (its data interval and DAG).
    :raises ValueError: if neither gives a window, or the window is empty or reversed; the message
        names the DAG's timetable and the schedules that work.
    """
    start = start if start not in (None, "") else context.get("data_interval_start")
    end = end if end not in (None, "") else context.get("data_interval_end")
    if start is None or end is None:
        raise ValueError(f"no export window: this run has no data interval. {schedule_advice(context)}")
    start_utc, end_utc = to_utc(start, "start"), to_utc(end, "end")
    if start_utc >= end_utc:
        raise ValueError(
            f"the export window is empty: start {api_time(start_utc)} is not before end {api_time(end_utc)}. "
            f"{schedule_advice(context)}"
        )
    return start_utc, end_utc


def schedule_advice(context: Mapping[str, Any]) -> str:
    """What to schedule the DAG with instead, naming its current timetable."""
    dag = context.get("dag")
    timetable = type(dag.timetable).__name__ if dag is not None and hasattr(dag, "timetable") else None
    used = f"This DAG's schedule ({timetable}) gives" if timetable else "Trigger-style schedules give"
    return (
        f"{used} runs without a data interval: in Airflow 3 a cron string such as '@daily' and a "
        "timedelta schedule do, as do manual runs. Schedule the DAG with "
        "CronDataIntervalTimetable('0 0 * * *', timezone='UTC') or "
        "DeltaDataIntervalTimetable(timedelta(days=1)) from airflow.sdk, or pass start and end."
    )


def comment_time(exported: Mapping[str, Any], order_by: str) -> str:
    """An exported comment's ``order_by`` time as the API wrote it (``""`` if it has none)."""
    return (exported.get("comment") or {}).get(order_by) or ""


def before_end(
    page: Sequence[Mapping[str, Any]], end: datetime, order_by: str, end_key: str | None = None
) -> list[Any]:
    """The comments of an export page whose ``order_by`` time is before ``end``, in page order.

    The export route's ``to`` is inclusive: this drops the comments exactly at ``end`` (and any
    after it), so a window ``[start, end)`` holds each comment once across consecutive windows.

    :param end_key: ``api_time(end)``, when the caller has it (saves formatting it per page).
    """
    end_key = end_key or api_time(end)
    return [exported for exported in page if not at_or_after(comment_time(exported, order_by), end, end_key)]


def window_key(moment: str) -> str:
    """An API time in the API's fixed-width UTC form (``2026-10-01T12:00:00.000000Z``), ``""`` kept.

    In that form string order is time order, so a table can select a window's rows by comparing
    text in any SQL database.
    """
    if not moment or (len(moment) == 27 and moment.endswith("Z") and moment[10] == "T"):
        return moment
    return api_time(to_utc(moment, "comment time"))
