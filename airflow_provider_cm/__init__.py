"""Apache Airflow provider for UiPath Communications Mining (formerly Re:infer).

Importing this package does no network access and no heavy work: hooks, operators and the
emulator are imported only when used.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.2.0"

__all__ = ["__version__", "get_provider_info"]


def get_provider_info() -> dict[str, Any]:
    """Describe the provider to Airflow's ProvidersManager (entry point ``apache_airflow_provider``)."""
    from airflow_provider_cm.common.connection_form import connection_type

    return {
        "package-name": "airflow-provider-cm",
        "name": "UiPath Communications Mining",
        "description": "Upload comments to, export datasets from and drain streams of UiPath "
        "Communications Mining (formerly Re:infer).",
        "versions": [__version__],
        "integrations": [
            {
                "integration-name": "UiPath Communications Mining",
                "external-doc-url": "https://docs.uipath.com/communications-mining/automation-cloud/latest/"
                "developer-guide/using-the-api",
                "tags": ["service"],
            }
        ],
        "hooks": [
            {
                "integration-name": "UiPath Communications Mining",
                "python-modules": ["airflow_provider_cm.hooks.communications_mining"],
            }
        ],
        "operators": [
            {
                "integration-name": "UiPath Communications Mining",
                "python-modules": [
                    "airflow_provider_cm.operators.comments",
                    "airflow_provider_cm.operators.emails",
                    "airflow_provider_cm.operators.datasets",
                    "airflow_provider_cm.operators.streams",
                    "airflow_provider_cm.operators.models",
                    "airflow_provider_cm.operators.resources",
                ],
            }
        ],
        "transfers": [
            {
                "source-integration-name": "UiPath Communications Mining",
                "target-integration-name": "Common SQL",
                "python-module": "airflow_provider_cm.transfers.communications_mining_to_sql",
            }
        ],
        "sensors": [
            {
                "integration-name": "UiPath Communications Mining",
                "python-modules": ["airflow_provider_cm.sensors.streams"],
            }
        ],
        "triggers": [
            {
                "integration-name": "UiPath Communications Mining",
                "python-modules": ["airflow_provider_cm.triggers.streams"],
            }
        ],
        "connection-types": [connection_type()],
        # The "Communications Mining" link of every task (see airflow_provider_cm.common.links).
        "extra-links": ["airflow_provider_cm.common.links.CommunicationsMiningTenantLink"],
        # MessageQueueTrigger(scheme="communications-mining"); needs the `messaging` extra, skipped without it.
        "queues": ["airflow_provider_cm.queues.communications_mining.CommunicationsMiningMessageQueueProvider"],
    }
