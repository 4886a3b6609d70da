"""Generate the demo's sample corpus: synthetic customer-support comments with labels, as JSONL.

Deterministic (seeded), so every demo run uploads the same comments.
"""

from __future__ import annotations

import argparse
import json
import random
from datetime import datetime, timedelta, timezone
from pathlib import Path

TOPICS = {
    "Billing > Refund": [
        "I was charged twice for my order {n}, please refund the second payment",
        "Can I get my money back for order {n}? The item never arrived",
        "Still waiting for the refund you promised on ticket {n}",
    ],
    "Billing > Invoice": [
        "Please send me a copy of the invoice for order {n}",
        "The VAT number on invoice {n} is wrong, can you reissue it?",
    ],
    "Account > Password reset": [
        "I cannot log in, the password reset link for account {n} has expired",
        "How do I change my password? I forgot it again",
    ],
    "Account > Close account": [
        "Please close my account {n} and delete my data",
        "I want to cancel my subscription and close the account",
    ],
    "Delivery > Late delivery": [
        "My parcel {n} is a week late, where is it?",
        "The tracking for order {n} has not moved for five days",
    ],
}
CHANNELS = ["email", "chat", "web form"]


def generate(path: Path, count: int = 600, days: int = 3, start: datetime | None = None, seed: int = 7) -> Path:
    """Write ``count`` comments spread evenly over ``days`` days from ``start`` (default 2026-10-01 UTC)."""
    rng = random.Random(seed)
    start = start or datetime(2026, 10, 1, tzinfo=timezone.utc)
    step = timedelta(days=days) / count
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as handle:
        for i in range(count):
            label = rng.choice(sorted(TOPICS))
            text = rng.choice(TOPICS[label]).format(n=rng.randint(10000, 99999))
            record = {
                "comment": {
                    "id": f"demo-{i:05d}",
                    "timestamp": (start + i * step).strftime("%Y-%m-%dT%H:%M:%SZ"),
                    "messages": [{"body": {"text": text}, "from": f"customer{rng.randint(1, 400)}@example.com"}],
                    "user_properties": {"string:Channel": rng.choice(CHANNELS)},
                },
                "labelling": [
                    {
                        "group": "default",
                        "assigned": [{"name": label, "sentiment": "negative" if "late" in text else "positive"}],
                    }
                ],
            }
            handle.write(json.dumps(record) + "\n")
    return path


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("output", type=Path)
    parser.add_argument("--count", type=int, default=600)
    args = parser.parse_args()
    print(generate(args.output, args.count))
