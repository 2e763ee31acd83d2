"""The docs name real tests: every `tests/…::test_name` they cite exists, and the adversarial list is complete."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CITATION = re.compile(r"`(tests/test_[a-z_]+\.py|…)::([A-Za-z_0-9]+)`")


def test_every_test_the_docs_cite_exists() -> None:
    """A citation `…::name` means the file of the citation before it; each function is defined there."""
    missing, cited = [], 0
    for doc in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        last = None
        for match in CITATION.finditer(doc.read_text(encoding="utf-8")):
            path, name = match.groups()
            last = path if path != "…" else last
            assert last is not None, f"{doc.name}: a … citation with no file before it"
            cited += 1
            if not re.search(rf"^(async )?def {name}\b", (ROOT / last).read_text(encoding="utf-8"), re.M):
                missing.append(f"{doc.name}: {last}::{name}")
    assert cited > 60 and missing == []


def test_the_adversarial_list_has_at_least_sixty_numbered_cases() -> None:
    """docs/reliability.md numbers its adversarial cases 1..N without gaps, N >= 60, each row citing a test."""
    text = (ROOT / "docs" / "reliability.md").read_text(encoding="utf-8").split("## Adversarial cases", 1)[1]
    numbers: list[int] = []
    for row in re.findall(r"^\| (\d+(?:–\d+)?) \|.*\|$", text, re.M):
        first, _, last = row.partition("–")
        numbers += range(int(first), int(last or first) + 1)
    assert numbers == list(range(1, len(numbers) + 1)) and len(numbers) >= 60
    assert all(CITATION.search(line) for line in text.splitlines() if re.match(r"^\| \d", line))
