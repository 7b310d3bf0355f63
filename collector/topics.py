"""The project's Kafka topics and their names under a deployment's prefix."""

from __future__ import annotations

from dataclasses import dataclass

TOPICS = ("predictions", "feedback", "shadow", "drift-events", "dlq")


@dataclass(frozen=True)
class Topics:
    """Full topic names for one deployment: `Topics("prod.").feedback == "prod.feedback"`."""

    prefix: str = "driftloop."

    def name(self, topic: str) -> str:
        if topic not in TOPICS:
            raise ValueError(f"Invalid topic {topic!r}. Valid topics are: {list(TOPICS)}")
        return f"{self.prefix}{topic}"

    @property
    def predictions(self) -> str:
        return self.name("predictions")

    @property
    def feedback(self) -> str:
        return self.name("feedback")

    @property
    def shadow(self) -> str:
        return self.name("shadow")

    @property
    def dlq(self) -> str:
        return self.name("dlq")
