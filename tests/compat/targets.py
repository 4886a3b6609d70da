"""The Airflow and Python targets of the compatibility tier: what ``pyproject.toml`` and ``docs/index.md`` claim.

Every Airflow minor released in the last 12 months (the official providers' policy), on Python
3.11, and the newest supported minor's patch on the oldest and newest Python. The oldest patch of
a minor is taken where it lacks something a newer patch has (3.3.0: the asset state store without
``aget``/``aset``), so that the fallback runs here. A minor new on the package index is added here
(its pre-release until the final is out); the lower bounds of ``apache-airflow`` and
``requires-python`` in ``pyproject.toml`` are the oldest target's (a test checks it).

``pins`` are what Airflow's constraints file would fix and a plain resolve gets wrong: users
install Airflow with its constraints file (the docs' install section says so); the tier, which cannot
reach it, pins those few packages instead.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Target:
    """One Airflow release on one Python minor, in a virtual environment of its own."""

    airflow: str
    python: str
    #: Packages pinned beside Airflow, as its constraints file would pin them.
    pins: tuple[str, ...] = ()
    #: Cases of the deployment tier (``tests/deployment``) also run on this target: what differs in a real triggerer.
    deployment: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        return f"airflow-{self.airflow}-py{self.python}"


#: Airflow 3.2's own requirements admit FastAPI, Cadwyn and svcs releases that break it
#: (``PydanticUserError ... TITerminalStatePayload needs a discriminator``); its constraints pin these.
AIRFLOW_3_2_PINS = ("fastapi<0.137", "cadwyn<7", "svcs==25.1.0")

#: The deferrable sensor in a real triggerer, and no log of the deployment holding the token.
TRIGGERER_CASES = (
    "tests/deployment/test_stream_sensor.py::test_deferred_sensor_holds_no_worker_slot_and_resumes_when_comments_arrive",
    "tests/deployment/test_secrets.py",
)

#: The extra link read back through the REST API, and MessageQueueTrigger in a real triggerer (on the
#: oldest target, whose event trigger has no asset state store).
LINK_AND_QUEUE_CASES = (
    "tests/deployment/test_extra_links.py",
    "tests/deployment/test_message_queue_trigger.py",
)

TARGETS: tuple[Target, ...] = (
    Target("3.2.0", "3.11", pins=AIRFLOW_3_2_PINS, deployment=TRIGGERER_CASES + LINK_AND_QUEUE_CASES),
    Target("3.3.0", "3.11"),
    Target("3.4.0b2", "3.11"),
    Target("3.3.2", "3.10"),
    Target("3.3.2", "3.13"),
)

#: Test files whose subject differs between Airflow minors, run on every target beside ``tests/compat``.
VERSION_SENSITIVE = (
    "tests/integration/test_stream_events.py",
    "tests/integration/test_streams.py",
    "tests/integration/test_lineage.py",
    "tests/integration/test_connection_form.py",
    "tests/integration/test_transfers.py",
    # Private Airflow names where the provider looks for them, and no Airflow deprecation triggered.
    "tests/unit/test_airflow_apis.py",
)
