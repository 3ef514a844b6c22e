"""The gallery's vocabulary: a finding (claim, source, rule, and the ``analyse`` function that
reads its runs), what an analysis returns, and the verdicts a rule may give."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

REPRODUCED, PARTLY, NOT_REPRODUCED = "reproduced", "partly", "not reproduced"
INCONCLUSIVE = "inconclusive"                   # too few seeds for an interval


@dataclass
class Outcome:
    """What an analysis found: the verdict, why (with numbers), a table and figures."""

    verdict: str
    reason: str
    header: list[str] = field(default_factory=list)
    rows: list[list[str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    figures: list[tuple[str, Path]] = field(default_factory=list)   # caption, png in results


@dataclass
class Finding:
    key: str                                    # config stem: gallery/configs/<key>.yaml
    title: str
    claim: str
    source: str                                 # paper, table or figure
    rule: str                                   # the check, in words, printed on the page
    analyse: Callable[[Any], Outcome]           # regbench.gallery.stats.Results -> Outcome
    metric: Optional[str] = None                # metric of the comparison table on the page


FINDINGS: dict[str, Finding] = {}


def finding(**fields):
    """Register ``analyse(results) -> Outcome`` as the check of one gallery finding."""
    def decorator(analyse):
        entry = Finding(analyse=analyse, **fields)
        if entry.key in FINDINGS:
            raise ValueError(f"gallery finding {entry.key!r} registered twice")
        FINDINGS[entry.key] = entry
        return analyse
    return decorator
