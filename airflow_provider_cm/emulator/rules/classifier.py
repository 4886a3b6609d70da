"""The emulator's model: a small deterministic text classifier trained on a dataset's assigned labels.

Multinomial naive Bayes over lower-cased word tokens with add-one smoothing. Each assigned leaf
label is a class; a comment's probability for a label is its posterior, and a parent label's
probability is the sum of its children's (so ``"Card"`` is at least as likely as ``"Card > Lost"``).
It needs no dependency and trains on 10,000 comments in well under a second, which is all the
emulator needs for stream thresholds and predictions to behave like the real thing.

Where the assigned labels carry a sentiment, the model also learns each label's mean sentiment
(``positive`` as 1, ``negative`` as -1); a predicted label's sentiment is that mean (a parent's,
the mean of its children weighted by their probability), a number in [-1, 1] as the export gives it.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable
from typing import Any

_TOKEN = re.compile(r"[a-z0-9']+")

#: Auto-threshold levels the emulator reports, with the probability each requires (an assumption:
#: the real platform derives them per label from validation precision and recall).
AUTO_THRESHOLDS = (("high_recall", 0.2), ("balanced", 0.4), ("high_precision", 0.7))


def tokens(text: str) -> list[str]:
    """Lower-cased word tokens of a text."""
    return _TOKEN.findall(text.lower())


def comment_text(comment: dict[str, Any]) -> str:
    """Subjects and bodies of a comment's messages, as one text."""
    parts = []
    for message in comment.get("messages") or []:
        for part in ("subject", "body"):
            content = message.get(part)
            if isinstance(content, dict) and isinstance(content.get("text"), str):
                parts.append(content["text"])
    return "\n".join(parts)


class NaiveBayesModel:
    """A trained classifier: per-label log priors and token log likelihoods."""

    def __init__(
        self,
        label_counts: dict[str, int],
        token_counts: dict[str, dict[str, int]],
        sentiments: dict[str, float] | None = None,
    ) -> None:
        self.label_counts = label_counts
        self.token_counts = token_counts
        self.sentiments = sentiments or {}
        vocabulary = {token for counts in token_counts.values() for token in counts}
        self.vocabulary_size = max(len(vocabulary), 1)
        total = sum(label_counts.values()) or 1
        self.log_prior = {label: math.log(count / total) for label, count in label_counts.items()}
        self.totals = {label: sum(counts.values()) for label, counts in token_counts.items()}

    @classmethod
    def train(
        cls,
        examples: Iterable[tuple[str, list[str]]],
        sentiments: Iterable[tuple[str, float]] = (),
    ) -> NaiveBayesModel:
        """Train on ``(text, [leaf label names])`` pairs; a comment with several labels counts for each.

        :param sentiments: ``(label name, 1.0 or -1.0)`` pairs from the assigned labels that have a
            sentiment; each label's mean becomes its predicted sentiment.
        """
        label_counts: Counter[str] = Counter()
        token_counts: dict[str, Counter[str]] = {}
        for text, labels in examples:
            words = tokens(text)
            for label in labels:
                label_counts[label] += 1
                token_counts.setdefault(label, Counter()).update(words)
        totals: dict[str, list[float]] = {}
        for label, value in sentiments:
            total = totals.setdefault(label, [0.0, 0.0])
            total[0] += value
            total[1] += 1
        means = {label: round(total[0] / total[1], 6) for label, total in totals.items()}
        return cls(dict(label_counts), {label: dict(counts) for label, counts in token_counts.items()}, means)

    @property
    def labels(self) -> list[str]:
        """The leaf labels the model knows, sorted."""
        return sorted(self.label_counts)

    def predict(self, text: str) -> dict[str, float]:
        """Probability of every label (leaves and their parents) for a text."""
        if not self.label_counts:
            return {}
        words = tokens(text)
        scores = {}
        for label, prior in self.log_prior.items():
            counts = self.token_counts.get(label, {})
            denominator = math.log(self.totals.get(label, 0) + self.vocabulary_size)
            scores[label] = prior + sum(math.log(counts.get(word, 0) + 1) - denominator for word in words)
        top = max(scores.values())
        weights = {label: math.exp(score - top) for label, score in scores.items()}
        total = sum(weights.values())
        probabilities: dict[str, float] = {}
        for label, weight in weights.items():
            parts = label.split(" > ")
            for depth in range(1, len(parts) + 1):
                name = " > ".join(parts[:depth])
                probabilities[name] = probabilities.get(name, 0.0) + weight / total
        return probabilities

    def sentiment(self, name: str, probabilities: dict[str, float]) -> float | None:
        """The predicted sentiment of label ``name`` (leaf or parent) given a text's ``probabilities``;
        ``None`` if no label under it was assigned with a sentiment."""
        if name in self.sentiments:
            return self.sentiments[name]
        prefix = name + " > "
        weighted = [
            (probabilities.get(label, 0.0), value)
            for label, value in self.sentiments.items()
            if label.startswith(prefix)
        ]
        weight = sum(p for p, _ in weighted)
        if not weighted or weight <= 0:
            return None
        return round(sum(p * value for p, value in weighted) / weight, 6)

    def to_json(self) -> dict[str, Any]:
        """The stored form: label and token counts, and the labels' mean sentiments."""
        return {"label_counts": self.label_counts, "token_counts": self.token_counts, "sentiments": self.sentiments}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> NaiveBayesModel:
        """Rebuild a model from its stored form (one saved before sentiments were learnt has none)."""
        return cls(data["label_counts"], data["token_counts"], data.get("sentiments"))
