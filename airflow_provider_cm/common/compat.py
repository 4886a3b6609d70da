"""What differs between the Airflow minors the provider supports (3.2, 3.3, 3.4), in one place.

Everything else the provider takes from Airflow lives at the same public location in every
supported minor (``airflow.sdk``, ``airflow.sdk.exceptions``, ``airflow.triggers.base``) and is
imported directly. What moved or arrived later is reached only through this module, which finds
it by feature, not by version number, and says once in the log what it does instead:

* **secret masking from the triggerer's event loop**: ``airflow.sdk.log.amask_secret`` arrived in
  Airflow 3.3.0. On 3.2, :func:`amask_secret` registers the secret with the process's own masker
  (``mask_secret``) and sends the triggerer's supervisor the same ``MaskSecret`` message that
  3.3's ``amask_secret`` sends, on the trigger runner's asynchronous channel: every log line of the
  trigger and of its supervisor is masked, as on 3.3.
* **the asset state store of an event trigger**: Airflow injects ``asset_state_store`` into the
  trigger of an ``AssetWatcher`` from 3.3.0; on 3.2 there is none (:func:`asset_state_store`
  returns ``None``) and the caller keeps its state in memory. Its asynchronous accessors
  (``aget``/``aset``) arrived in 3.3.2; on 3.3.0 and 3.3.1 :func:`astore_get` and
  :func:`astore_set` call the synchronous ones in a worker thread, which the triggerer's
  channel serves without blocking its event loop.
* **a dict argument of an event trigger**: Airflow 3.2 stores the arguments of an ``AssetWatcher``'s
  trigger encoded twice (its ``BaseSerialization`` inside the task SDK's ``serde``) and the
  triggerer undoes only the outer layer, so a dict argument such as ``hook_params`` reaches the
  trigger as ``{"Encoding.VAR": {...}, "Encoding.TYPE": "dict"}``; 3.3 hands it back as given.
  :func:`trigger_dict_argument` undoes the inner layer where it is left.
* **reading an XCom from an operator link**: ``get_link`` runs in the task runner when a task
  ends; the task SDK's XCom class is not exported from ``airflow.sdk`` (3.2 to 3.4 keep it in
  ``airflow.sdk.execution_time.xcom``). :func:`xcom_value` takes it from
  ``airflow.providers.common.compat.sdk``, the public location official providers use, which finds
  it wherever the installed Airflow keeps it; :func:`mask_secret` likewise.
* **``MessageQueueTrigger``**: not part of Airflow but of the optional
  ``apache-airflow-providers-common-messaging`` (the ``messaging`` extra, 2.1+ on every supported
  minor). :func:`has_message_queue_trigger` says whether it is installed with scheme-based
  dispatch (``BaseMessageQueueProvider.scheme_matches``), which the provider's queue scheme needs.

Private Airflow internals the provider still reaches
----------------------------------------------------

Each is listed in :data:`PRIVATE_AIRFLOW_USES` with why no public API serves; a test on every
tier of the compatibility matrix (``tests/unit/test_airflow_apis.py``) fails when one moves or
goes, on the Airflow where the provider uses it:

* ``airflow.sdk.execution_time.task_runner.SUPERVISOR_COMMS`` and
  ``airflow.sdk.execution_time.comms.MaskSecret``: Airflow 3.2 only, :func:`amask_secret`'s
  fallback. 3.2 has no asynchronous masking API (``airflow.sdk.log.amask_secret`` is 3.3+), and
  common-compat exports none.
* ``airflow.sdk.execution_time.context.AssetStateStoreAccessors`` and ``TaskStateStoreAccessor``:
  imported only to find out whether this Airflow has asset and task state stores
  (:data:`HAS_ASSET_STATE_STORE`, :data:`HAS_TASK_STATE_STORE`); Airflow exposes no feature flag.
* ``airflow.serialization.serialized_objects.BaseSerialization``: Airflow 3.2 only, undoing the
  encoding its triggerer leaves on a dict argument (:func:`trigger_dict_argument`); the bug is
  Airflow's, so is the decoder.
* ``airflow.sdk.api.client.get_hostname`` (``airflow_provider_cm.common.workers.hostname``): the worker's
  name as Airflow records it on the task instance (``[core] hostname_callable``); the task SDK has
  no public accessor for it, and a failure falls back to ``socket.gethostname()``.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from airflow import __version__ as AIRFLOW_VERSION

__all__ = [
    "AIRFLOW_VERSION",
    "HAS_ASSET_STATE_STORE",
    "HAS_TASK_STATE_STORE",
    "PRIVATE_AIRFLOW_USES",
    "PrivateAirflowUse",
    "amask_secret",
    "asset_state_store",
    "astore_get",
    "astore_set",
    "has_message_queue_trigger",
    "mask_secret",
    "private_use_resolves",
    "trigger_dict_argument",
    "xcom_value",
]

log = logging.getLogger(__name__)

#: What this process has already said it does differently (each said once per process).
_announced: set[str] = set()


def _announce(feature: str, message: str, *args: Any) -> None:
    if feature not in _announced:
        _announced.add(feature)
        log.info(message, *args)


def mask_secret(secret: str | None) -> None:
    """Mask ``secret`` in every log line of this process and of its supervisor.

    Airflow's ``mask_secret``, from ``airflow.providers.common.compat.sdk`` where it exports it
    (common-compat 1.23+), else from the Task SDK's public ``airflow.sdk.log`` (Airflow 3.2 to 3.4; the
    newest common-compat for Python 3.10, 1.20, does not export it).
    """
    try:
        from airflow.providers.common.compat.sdk import mask_secret as _mask_secret
    except ImportError:
        from airflow.sdk.log import mask_secret as _mask_secret

    _mask_secret(secret)


async def amask_secret(secret: str | None) -> None:
    """:func:`mask_secret` from an event loop (the triggerer's): never blocks the loop.

    Airflow 3.3+: ``airflow.sdk.log.amask_secret``. Airflow 3.2: ``mask_secret`` in this process, then a
    ``MaskSecret`` message to the supervisor on the runner's asynchronous channel (what 3.3 does).
    """
    try:
        from airflow.sdk.log import amask_secret as _amask_secret
    except ImportError:
        pass
    else:
        await _amask_secret(secret)
        return
    _announce(
        "amask_secret",
        "Airflow %s has no airflow.sdk.log.amask_secret (3.3+): secrets are masked through mask_secret and the "
        "trigger runner's asynchronous channel to its supervisor",
        AIRFLOW_VERSION,
    )
    # Masks in this process; its own message to the supervisor cannot be sent synchronously from the
    # event loop (3.2's trigger runner refuses that, and mask_secret ignores the refusal), so it is sent here.
    mask_secret(secret)
    from airflow.sdk.execution_time import task_runner
    from airflow.sdk.execution_time.comms import MaskSecret

    comms = getattr(task_runner, "SUPERVISOR_COMMS", None)
    asend = getattr(comms, "asend", None)
    if asend is not None:
        with contextlib.suppress(Exception):  # as 3.3's amask_secret: masking never fails the caller
            await asend(MaskSecret(value=secret, name=None))


def _has_asset_state_store() -> bool:
    try:
        from airflow.sdk.execution_time.context import AssetStateStoreAccessors  # noqa: F401
    except ImportError:
        return False
    return True


#: Whether this Airflow has asset state stores (3.3.0+): without them an event trigger remembers in memory only.
HAS_ASSET_STATE_STORE = _has_asset_state_store()


def _has_task_state_store() -> bool:
    try:
        from airflow.sdk.execution_time.context import TaskStateStoreAccessor  # noqa: F401
    except ImportError:
        return False
    return True


#: Whether tasks get ``context["task_state_store"]`` (3.3.0+), kept across a task instance's tries.
HAS_TASK_STATE_STORE = _has_task_state_store()


def asset_state_store(trigger: Any) -> Any | None:
    """The asset state store accessor Airflow injected into an event trigger, or ``None``.

    ``None`` outside an ``AssetWatcher``, and always on Airflow 3.2, which has no asset state store
    (the caller says so in its own words; see :data:`HAS_ASSET_STATE_STORE`).
    """
    return getattr(trigger, "asset_state_store", None)


async def astore_get(store: Any, key: str) -> Any:
    """``store.aget(key)``; on Airflow 3.3.0/3.3.1, whose store has no ``aget``, ``store.get`` in a thread."""
    aget = getattr(store, "aget", None)
    if aget is not None:
        return await aget(key)
    _announce_sync_store()
    return await asyncio.to_thread(store.get, key)


async def astore_set(store: Any, key: str, value: Any) -> None:
    """``store.aset(key, value)``; on Airflow 3.3.0/3.3.1, ``store.set`` in a thread."""
    aset = getattr(store, "aset", None)
    if aset is not None:
        await aset(key, value)
        return
    _announce_sync_store()
    await asyncio.to_thread(store.set, key, value)


def _announce_sync_store() -> None:
    _announce(
        "sync_store",
        "Airflow %s's asset state store has no aget/aset (3.3.2+): its get/set are called in a worker thread",
        AIRFLOW_VERSION,
    )


def xcom_value(*, ti_key: Any, key: str) -> Any:
    """The value of XCom ``key`` of the task instance ``ti_key`` (``XCom.get_value``), ``None`` if there is none."""
    from airflow.providers.common.compat.sdk import XCom

    return XCom.get_value(ti_key=ti_key, key=key)


def has_message_queue_trigger() -> bool:
    """Whether ``MessageQueueTrigger(scheme=...)`` can reach the provider's queue scheme.

    True when the optional common-messaging provider is installed with scheme-based dispatch
    (``BaseMessageQueueProvider.scheme_matches``, 2.1+). A function, not a constant, so that
    importing this module never imports common-messaging.
    """
    try:
        from airflow.providers.common.messaging.providers.base_provider import BaseMessageQueueProvider
    except ImportError:
        return False
    return hasattr(BaseMessageQueueProvider, "scheme_matches")


#: The keys of a value Airflow's ``BaseSerialization`` encoded: as it writes them, and as Airflow
#: 3.2's triggerer hands them back (the ``str()`` of its ``Encoding`` members).
_ENCODED_KEYS = ({"__var", "__type"}, {"Encoding.VAR", "Encoding.TYPE"})


def trigger_dict_argument(value: Any) -> Any:
    """A dict argument of a trigger as the DAG gave it, whichever way the triggerer handed it back.

    On Airflow 3.2, a dict argument of an ``AssetWatcher``'s trigger arrives still encoded by
    Airflow's ``BaseSerialization`` (``{"Encoding.VAR": {...}, "Encoding.TYPE": "dict"}``): this
    decodes it, and says so once in the log. Any other value (a plain dict, ``None``) is returned as is.
    """
    if not isinstance(value, dict) or {str(key) for key in value} not in _ENCODED_KEYS:
        return value
    from airflow.serialization.serialized_objects import BaseSerialization

    names = {"Encoding.VAR": "__var", "Encoding.TYPE": "__type"}
    plain = {names.get(str(key), str(key)): item for key, item in value.items()}
    _announce(
        "trigger_dict_argument",
        "Airflow %s handed a trigger argument back still encoded (%s); it is decoded here",
        AIRFLOW_VERSION,
        plain["__type"],
    )
    return BaseSerialization.deserialize(plain)


@dataclass(frozen=True)
class PrivateAirflowUse:
    """One private Airflow name the provider reaches, where it looks for it, and why no public API serves."""

    module: str
    name: str
    why: str
    #: Whether the provider uses it on the installed Airflow (a fallback for an older minor is not used on newer ones).
    used: Callable[[], bool] = lambda: True


def _has_public_amask_secret() -> bool:
    try:
        from airflow.sdk.log import amask_secret  # noqa: F401
    except ImportError:
        return False
    return True


def _airflow_before(release: str) -> bool:
    """Whether the installed Airflow is older than ``release`` (its pre-releases count as ``release``)."""
    from packaging.version import Version

    return Version(AIRFLOW_VERSION).release < Version(release).release


def _encodes_trigger_dicts_twice() -> bool:
    """Airflow 3.2's triggerer leaves a trigger's dict argument encoded (see :func:`trigger_dict_argument`)."""
    return _airflow_before("3.3")


#: Every private Airflow name the provider reaches (module docstring: why each).
PRIVATE_AIRFLOW_USES: tuple[PrivateAirflowUse, ...] = (
    PrivateAirflowUse(
        "airflow.sdk.execution_time.task_runner",
        "SUPERVISOR_COMMS",
        "amask_secret on Airflow 3.2: no public asynchronous masking before airflow.sdk.log.amask_secret (3.3)",
        lambda: not _has_public_amask_secret(),
    ),
    PrivateAirflowUse(
        "airflow.sdk.execution_time.comms",
        "MaskSecret",
        "amask_secret on Airflow 3.2: the message 3.3's amask_secret sends to the supervisor",
        lambda: not _has_public_amask_secret(),
    ),
    PrivateAirflowUse(
        "airflow.sdk.execution_time.context",
        "AssetStateStoreAccessors",
        "HAS_ASSET_STATE_STORE: Airflow has no public feature flag for asset state stores (3.3+)",
        lambda: not _airflow_before("3.3"),
    ),
    PrivateAirflowUse(
        "airflow.sdk.execution_time.context",
        "TaskStateStoreAccessor",
        "HAS_TASK_STATE_STORE: Airflow has no public feature flag for task state stores (3.3+)",
        lambda: not _airflow_before("3.3"),
    ),
    PrivateAirflowUse(
        "airflow.serialization.serialized_objects",
        "BaseSerialization",
        "trigger_dict_argument on Airflow 3.2: undoes the encoding its triggerer leaves on a dict argument",
        _encodes_trigger_dicts_twice,
    ),
    PrivateAirflowUse(
        "airflow.sdk.api.client",
        "get_hostname",
        "workers.hostname: the worker's name as Airflow records it ([core] hostname_callable); no public accessor",
    ),
)


def private_use_resolves(use: PrivateAirflowUse) -> bool:
    """Whether ``use.module`` still has ``use.name`` on the installed Airflow.

    A module-level name that is only declared (``SUPERVISOR_COMMS: CommsDecoder``, assigned when a task
    starts) counts as there.
    """
    try:
        module = importlib.import_module(use.module)
    except ImportError:
        return False
    return hasattr(module, use.name) or use.name in getattr(module, "__annotations__", {})
