"""The ``communications-mining`` scheme of Airflow's ``MessageQueueTrigger``: a stream as a message queue.

With the optional common-messaging provider installed (``pip install "airflow-provider-cm[messaging]"``),
``MessageQueueTrigger(scheme="communications-mining", ...)`` watches a stream through the
provider's :class:`~airflow_provider_cm.triggers.streams.CommunicationsMiningStreamEventTrigger`:
every keyword argument beside ``scheme`` is that trigger's (``dataset``, ``stream``,
``communications_mining_conn_id``, ``batch_size``, ``poll_interval``, ``redelivery_timeout``,
``hook_params``), and the trigger that runs in the triggerer is the provider's own (the
``MessageQueueTrigger`` serialises as it), with the same once-per-batch firing, asset state store
and error handling as in an ``AssetWatcher`` of it::

    from airflow.providers.common.messaging.triggers.msg_queue import MessageQueueTrigger

    trigger = MessageQueueTrigger(scheme="communications-mining", dataset="demo/support", stream="new-messages")
    asset = Asset("cm_stream_batches", watchers=[AssetWatcher(name="batches", trigger=trigger)])

The class is listed in the provider info's ``queues``, which Airflow's ``ProvidersManager`` reads
and common-messaging's ``MessageQueueTrigger`` matches on :attr:`scheme`. Without common-messaging
the module cannot be imported, and Airflow skips the entry (its providers manager logs that an
optional feature is disabled, at debug level).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from airflow.providers.common.messaging.providers.base_provider import BaseMessageQueueProvider

if TYPE_CHECKING:
    from airflow.triggers.base import BaseEventTrigger

__all__ = ["SCHEME", "CommunicationsMiningMessageQueueProvider"]

#: The scheme of ``MessageQueueTrigger(scheme=...)`` that watches a Communications Mining stream.
SCHEME = "communications-mining"


class CommunicationsMiningMessageQueueProvider(BaseMessageQueueProvider):
    """Dispatch ``MessageQueueTrigger(scheme="communications-mining", **kwargs)`` to the stream event trigger.

    Scheme-based dispatch only: the deprecated ``MessageQueueTrigger(queue=<uri>)`` form matches
    nothing here (``queue_matches`` keeps the base class's ``False``), since a stream is named by
    its dataset and name, not by a URI.
    """

    scheme = SCHEME

    def trigger_class(self) -> type[BaseEventTrigger]:
        """:class:`~airflow_provider_cm.triggers.streams.CommunicationsMiningStreamEventTrigger`."""
        from airflow_provider_cm.triggers.streams import CommunicationsMiningStreamEventTrigger

        return CommunicationsMiningStreamEventTrigger
