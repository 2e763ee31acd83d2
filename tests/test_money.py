"""One type for money (spark_nb._money): every cost is a decimal.Decimal of US dollars read from the service's
string without going through float, and shown by format_usd everywhere: $0.004 is never "$0.00"."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

import spark_nb
from spark_nb import avatar
from spark_nb._config import resolve
from spark_nb._journal import journal_at
from spark_nb._money import format_usd, usd
from spark_nb.local import LocalServer

from .conftest import TEST_KEY, cloud_config

MakeServer = Callable[..., LocalServer]


@pytest.mark.parametrize("amount,shown", [
    ("0.004", "$0.004"), ("0.30", "$0.30"), ("0", "$0.00"), ("12.5", "$12.50"), ("0.000125", "$0.000125"),
    ("1.23456789", "$1.234568"), ("0.0000001", "<$0.000001"), (0.004, "$0.004"), (3, "$3.00"),
    (Decimal("0.1") + Decimal("0.2"), "$0.30"), (None, "?"), ("abc", "?"), ("-1", "?"), ("NaN", "?"), (True, "?"),
])
def test_format_usd_shows_every_amount_with_its_places(amount: Any, shown: str) -> None:
    """At least cents, as many more places as the amount has (up to six), "?" when unknown or unreadable."""
    assert format_usd(amount) == shown


def test_usd_reads_strings_as_spelled_and_numbers_by_their_shortest_spelling() -> None:
    assert usd("0.30") == Decimal("0.30") and usd(" 0.004 ") == Decimal("0.004")
    assert usd(0.1) == Decimal("0.1")  # not 0.1000000000000000055511151231257827...
    assert usd("1e13") is None and usd("-0.01") is None and usd("inf") is None and usd([1]) is None
    assert usd(-0.0) == 0 and str(usd(-0.0)) == "0.0"


@pytest.mark.parametrize("cost", ["0.004", "0.1", "0.30", "123456.789012", "0.000001", "9999999.99999999"])
def test_a_cost_reads_back_from_the_journal_exactly(cost: str) -> None:
    """The journal keeps costs in its REAL column: any cost of at most 15 significant digits reads back as the same
    Decimal (its shortest spelling), so the history, spend and the budget see what the service billed."""
    journal = journal_at(resolve(backend="local").home)
    claim, _ = journal.reserve(fingerprint=f"fp-{cost}", model="spark_avatar_picture_omni_v2", backend="cloud",
                               base_url=None, inputs=[], input_seconds=None, source="test", follow=lambda e: False)
    assert claim is not None
    journal.sending(claim)
    journal.created(claim, f"t-{cost}")
    journal.finished(f"t-{cost}", completed=True, cost=Decimal(cost))
    entry = journal.by_task(f"t-{cost}")
    assert entry is not None and entry.cost == Decimal(cost) and isinstance(entry.cost, Decimal)
    assert spark_nb.spend() == Decimal(cost) and isinstance(spark_nb.spend(), Decimal)


def test_an_older_journals_float_costs_read_as_decimals(tmp_path: Path) -> None:
    """A journal written by an older version (a float bound to the REAL column) reads as the decimals it meant."""
    journal = journal_at(resolve(backend="local").home)
    for i in range(3):
        claim, _ = journal.reserve(fingerprint=f"old-{i}", model="spark_avatar_picture_omni_v2", backend="cloud",
                                   base_url=None, inputs=[], input_seconds=None, source="test",
                                   follow=lambda e: False)
        assert claim is not None
        journal.sending(claim)
        journal.created(claim, f"old-{i}")
    with sqlite3.connect(journal.path) as db:  # as an older spark_nb wrote them: floats
        for i, cost in enumerate((0.3, 0.004, 0.1)):
            db.execute("UPDATE tasks SET state = 'completed', cost = ? WHERE task_id = ?", (cost, f"old-{i}"))
    assert [t.cost for t in spark_nb.history()] == [Decimal("0.1"), Decimal("0.004"), Decimal("0.3")]
    assert spark_nb.history().total == Decimal("0.404")  # a float sum would be 0.40400000000000003


def test_a_cost_of_four_tenths_of_a_cent_is_shown_as_such_everywhere(make_server: MakeServer,
                                                                     media: dict[str, Path], tmp_path: Path,
                                                                     capsys: pytest.CaptureFixture) -> None:
    """A service that bills $0.00408 (usage.cost as a string): Result.cost, history, spend, the CLI's history and
    JSON, the table in Jupyter and a budget's error all say 0.00408, exactly (before: Result.cost the string
    '0.00408', history a float, and every display '$0.00')."""
    server = make_server(api_key=TEST_KEY, cost_per_second=0.002, answer_style="usage,strings")
    result = avatar.generate(media["portrait"], media["speech"], progress=False, **cloud_config(server))
    cost = result.cost
    assert isinstance(cost, Decimal) and cost == Decimal(result.raw["usage"]["cost"]) and cost < Decimal("0.01")
    shown = format_usd(cost)
    assert shown != "$0.00" and shown == f"${result.raw['usage']['cost']}"
    assert shown in result._repr_html_()

    tasks = spark_nb.history()
    assert tasks[0].cost == cost and tasks.total == cost and spark_nb.spend() == cost
    assert shown in tasks._repr_html_()
    env = {**os.environ, "PYTHONPATH": str(Path(spark_nb.__file__).parent.parent)}
    table = subprocess.run([sys.executable, "-m", "spark_nb", "history"], capture_output=True, text=True, timeout=60,
                           env=env, cwd=tmp_path).stdout
    assert f"known cost {shown}" in table
    printed = json.loads(subprocess.run([sys.executable, "-m", "spark_nb", "history", "--json"], capture_output=True,
                                        text=True, timeout=60, env=env, cwd=tmp_path).stdout)
    assert printed["tasks"][0]["cost"] == str(cost) and Decimal(printed["total_usd"]) == cost

    reused = avatar.generate(media["portrait"], media["speech"], progress=False, **cloud_config(server))
    assert reused.origin == "reused" and reused.cost == cost  # read back from the journal, not rounded to cents
    assert f"(cost {shown})" in capsys.readouterr().err  # "reusing task … (cost $0.00408)"

    with pytest.raises(spark_nb.BudgetExceeded) as info:
        avatar.generate(media["portrait"], media["speech"], progress=False, reuse=False, budget_usd=0.005,
                        **cloud_config(server))
    error = info.value
    assert error.spend == cost and error.budget == Decimal("0.005") and isinstance(error.estimate, Decimal)
    assert f"budget of $0.005: spent {shown}" in str(error)
