"""The records of graded results: one typed test record, and one module result made of them."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields

OUTCOMES = ("passed", "failed", "error", "skipped")
JSON_KEYS = ("name", "points", "max_points", "outcome", "message", "measured", "bar")   # `tito test --json`


@dataclass
class TestRecord:
    module: str
    name: str
    exercise: str | None
    points: float
    max_points: float
    outcome: str = "error"          # passed | failed | error | skipped
    message: str = ""
    measured: float | None = None
    bar: float | None = None
    floor: float | None = None
    unit: str = ""                  # what the measured ratio is against, e.g. "x numpy FP32"
    lower_is_better: bool = False
    needs_gpu: bool = False
    needs: str = ""                 # an optional package the test needs and did not find
    kind: str = "test"              # test | collection | integrity

    __test__ = False                # not a pytest test class, despite its name

    @classmethod
    def from_dict(cls, data: dict) -> "TestRecord":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    def as_dict(self) -> dict:
        return asdict(self)

    @property
    def not_counted(self) -> bool:
        """Skipped for want of a GPU or an optional package: out of the maximum, not lost."""
        return self.outcome == "skipped" and (self.needs_gpu or bool(self.needs))

    def as_json(self) -> dict:
        row = {k: getattr(self, k) for k in JSON_KEYS}
        if self.measured is None:
            row.pop("measured"), row.pop("bar")
        return row


@dataclass
class ModuleResult:
    module: str
    score: float
    max_score: float
    tests: list[TestRecord] = field(default_factory=list)
    not_counted: float = 0.0        # points of tests that need a GPU or a missing package (not in max_score)
    note: str = ""
    graded_file: str = ""           # `tito grade`: which of the learner's files was graded

    def as_json(self) -> dict:
        return {"module": self.module, "score": self.score, "max_score": self.max_score,
                "tests": [t.as_json() for t in self.tests]}
