"""What every Communications Mining operator shares: the connection, the retry settings, the hook."""

from __future__ import annotations

from functools import cached_property
from typing import Any

from airflow.sdk import BaseOperator

from airflow_provider_cm.hooks.communications_mining import CommunicationsMiningHook


class CommunicationsMiningBaseOperator(BaseOperator):
    """Base of the provider's operators.

    :param communications_mining_conn_id: the Airflow connection.
    :param retry_max_attempts: attempts per API request, overriding the connection's setting.
    :param retry_max_elapsed: seconds per API request across attempts, overriding the connection's.
    """

    ui_color = "#fa4616"
    ui_fgcolor = "#ffffff"
    #: HTTP connections the hook keeps open (operators that send concurrently raise it).
    hook_pool_size = 16

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

    @cached_property
    def hook(self) -> CommunicationsMiningHook:
        return CommunicationsMiningHook(
            self.communications_mining_conn_id,
            retry_max_attempts=self.retry_max_attempts,
            retry_max_elapsed=self.retry_max_elapsed,
            pool_size=self.hook_pool_size,
        )
