"""What every Communications Mining operator and the sensor share: the connection, the retry settings, the hook.

:class:`CommunicationsMiningHookMixin` is the one place that owns the hook's parameters and builds
the hook; its :attr:`~CommunicationsMiningHookMixin.hook_params` are also what the sensor hands to
its trigger, so a task and its trigger talk to the API with the same settings. It also gives every
task the "Communications Mining" extra link to its tenant's web UI
(:class:`~airflow_provider_cm.common.links.CommunicationsMiningTenantLink`), stored before the task runs.
"""

from __future__ import annotations

from collections.abc import Collection
from functools import cached_property
from typing import Any

from airflow.sdk import BaseOperator, BaseOperatorLink

from airflow_provider_cm.common.links import CommunicationsMiningTenantLink
from airflow_provider_cm.hooks.communications_mining import CommunicationsMiningHook


class CommunicationsMiningHookMixin:
    """The connection id and retry overrides of a task, and the hook built from them.

    :param communications_mining_conn_id: the Airflow connection.
    :param retry_max_attempts: attempts per API request, overriding the connection's setting (default 5).
    :param retry_max_elapsed: seconds per API request across attempts, overriding the connection's
        setting (default 300).
    """

    #: HTTP connections the hook keeps open (operators that send concurrently raise it).
    hook_pool_size: int = 16
    #: The task's extra links (Airflow's ``BaseOperator.operator_extra_links``).
    operator_extra_links: Collection[BaseOperatorLink] = (CommunicationsMiningTenantLink(),)

    def __init__(
        self,
        *,
        communications_mining_conn_id: str = CommunicationsMiningHook.default_conn_name,
        retry_max_attempts: int | None = None,
        retry_max_elapsed: float | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.communications_mining_conn_id = communications_mining_conn_id
        self.retry_max_attempts = retry_max_attempts
        self.retry_max_elapsed = retry_max_elapsed

    @property
    def hook_params(self) -> dict[str, Any]:
        """The keyword arguments of :class:`CommunicationsMiningHook` (JSON-serialisable, for triggers)."""
        return {
            "communications_mining_conn_id": self.communications_mining_conn_id,
            "retry_max_attempts": self.retry_max_attempts,
            "retry_max_elapsed": self.retry_max_elapsed,
            "pool_size": self.hook_pool_size,
        }

    @cached_property
    def hook(self) -> CommunicationsMiningHook:
        """The task's hook, built once."""
        return CommunicationsMiningHook(**self.hook_params)

    def pre_execute(self, context: Any) -> None:
        """Before ``execute`` (and before a deferred task resumes): store what the extra links need.

        Airflow calls it (it is ``BaseOperator.pre_execute``); a connection that cannot be read is
        logged here as a warning, without the link, and fails the task in ``execute`` as it would
        without links.
        """
        super().pre_execute(context)  # type: ignore[misc]
        try:
            CommunicationsMiningTenantLink.persist(context, endpoint=self.hook.endpoint)
        except Exception as exc:
            self.log.warning(  # type: ignore[attr-defined]
                "No Communications Mining link for this task: %s: %s", type(exc).__name__, exc
            )


class CommunicationsMiningBaseOperator(CommunicationsMiningHookMixin, BaseOperator):
    """Base of the provider's operators (parameters of :class:`CommunicationsMiningHookMixin`).

    An operator whose result is a dict (:attr:`returns_mapping`) pushes each key as an XCom of its
    own besides the whole dict (Airflow's ``multiple_outputs``), so ``task.output["sequence_id"]``
    and ``ti.xcom_pull(task_ids=..., key="path")`` both work.
    """

    ui_color = "#fa4616"
    ui_fgcolor = "#ffffff"
    #: Whether ``execute`` returns a dict whose keys are pushed one by one.
    returns_mapping: bool = False

    def __init__(self, **kwargs: Any) -> None:
        if self.returns_mapping:
            kwargs.setdefault("multiple_outputs", True)
        super().__init__(**kwargs)
