"""``MessageQueueTrigger(scheme="communications-mining")``: found through the provider info, run as the event trigger.

Real discovery: Airflow's ``ProvidersManager`` reads the installed provider's ``queues`` (the
``messaging`` extra is a dev dependency), and common-messaging's trigger matches the scheme.
"""

from __future__ import annotations

import pytest

from airflow_provider_cm.common.compat import has_message_queue_trigger
from airflow_provider_cm.queues.communications_mining import SCHEME, CommunicationsMiningMessageQueueProvider
from airflow_provider_cm.triggers.streams import CommunicationsMiningStreamEventTrigger

QUEUE_CLASS = "airflow_provider_cm.queues.communications_mining.CommunicationsMiningMessageQueueProvider"


def test_the_provider_info_registers_the_scheme_and_airflow_finds_it():
    from airflow.providers_manager import ProvidersManager

    import airflow_provider_cm

    assert has_message_queue_trigger()
    assert airflow_provider_cm.get_provider_info()["queues"] == [QUEUE_CLASS]
    assert QUEUE_CLASS in ProvidersManager().queue_class_names


def test_the_scheme_is_dispatched_to_the_stream_event_trigger_with_its_arguments():
    from airflow.providers.common.messaging.triggers.msg_queue import MESSAGE_QUEUE_PROVIDERS, MessageQueueTrigger

    matching = [p for p in MESSAGE_QUEUE_PROVIDERS if p.scheme_matches(SCHEME)]
    assert [type(p) for p in matching] == [CommunicationsMiningMessageQueueProvider]
    arguments = {
        "dataset": "demo/support",
        "stream": "new-messages",
        "communications_mining_conn_id": "cm",
        "batch_size": 16,
        "poll_interval": 5.0,
        "redelivery_timeout": 120.0,
        "hook_params": {"retry_max_attempts": 2},
    }
    trigger = MessageQueueTrigger(scheme=SCHEME, **arguments)
    # What the triggerer runs is the provider's own trigger, as an AssetWatcher of it would.
    assert trigger.serialize() == CommunicationsMiningStreamEventTrigger(**arguments).serialize()
    assert isinstance(trigger.trigger, CommunicationsMiningStreamEventTrigger)


def test_bad_arguments_fail_when_the_dag_is_parsed():
    from airflow.providers.common.messaging.triggers.msg_queue import MessageQueueTrigger

    with pytest.raises(ValueError, match="batch_size"):
        MessageQueueTrigger(scheme=SCHEME, dataset="demo/support", stream="s", batch_size=0).serialize()
    with pytest.raises(TypeError):
        MessageQueueTrigger(scheme=SCHEME, dataset="demo/support", stream="s", queue_name="x").serialize()


def test_a_queue_uri_is_not_ours():
    """The deprecated ``queue=<uri>`` form: a stream has no URI, so the provider claims none."""
    provider = CommunicationsMiningMessageQueueProvider()
    assert not provider.queue_matches("communications-mining://demo/support/new-messages")
    assert not provider.scheme_matches("kafka")
