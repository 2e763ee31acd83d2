"""One type for money (spark_nb._money): every cost is a decimal.Decimal of US dollars read from the service's
string without going through float, and shown by format_usd everywhere: $0.004 is never "$0.00"."""

from __future__ import annotations

import json
import os
import re
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


def test_the_doctor_shows_a_spend_of_four_tenths_of_a_cent_as_such() -> None:
    """The doctor's budget check shows the spend, the budget and what is left by format_usd (before: "${:.2f}",
    so a spend of $0.004 read "$0.00" and the $0.006 left "$0.01")."""
    from spark_nb._doctor._context import Context
    from spark_nb._doctor._machine_checks import budget

    journal = journal_at(resolve(backend="local").home)
    claim, _ = journal.reserve(fingerprint="fp-doctor", model="spark_avatar_picture_omni_v2", backend="cloud",
                               base_url=None, inputs=[], input_seconds=None, source="test", follow=lambda e: False)
    assert claim is not None
    journal.sending(claim)
    journal.created(claim, "t-doctor")
    journal.finished("t-doctor", completed=True, cost=Decimal("0.004"))
    assert "known spend on this machine $0.004" in budget(Context.make({"backend": "local"})).detail
    said = budget(Context.make({"backend": "local", "budget_usd": 0.01})).detail
    assert said == "budget $0.01: known spend $0.004, $0.006 left"


HAND_FORMATTED = re.compile(r"\$\{[^{}]*:[^{}]*f\}")  # "${cost:.2f}": a float format after a dollar sign


def test_no_cost_is_formatted_by_hand() -> None:
    """Every cost shown goes through spark_nb._money.format_usd: no "${amount:.2f}" in the package or the
    notebooks (the doctor and two notebooks had one each, showing $0.004 as $0.00)."""
    root = Path(spark_nb.__file__).resolve().parent
    sources = [*root.rglob("*.py"), *(root.parent / "notebooks").glob("*.ipynb")]
    assert len(sources) > 50
    found = [f"{path.name}: {match}" for path in sources
             for match in HAND_FORMATTED.findall(path.read_text(encoding="utf-8"))]
    assert found == []


def test_an_amount_is_bounded_in_size_and_spelled_with_ascii_digits_only() -> None:
    """A cost of "1e-999" (or quantity × unit_price of 1e-999 each) is unreadable, as "1e13" is: its exact text was
    1,000 (2,000) characters in result.json, rows.json and results.csv; digits of other scripts ("١٢", "１２") are
    no amount (before: read as 12). What is read is written in a few dozen characters at most."""
    from spark_nb._money import usd_text
    from spark_nb._task_state import cost_of, usage_of

    assert usd("1e-999") is None and usd(1e-300) is None and usd("0.0000000000001") is None
    assert cost_of({"quantity": "1e-999", "unit_price": "1e-999"}) is None and "cost" not in usage_of(
        {"cost": "1e-999"})
    assert usd("\u0661\u0662") is None and usd("\uff11\uff12") is None and usd("12") == 12
    assert usd("0.000000000001") == Decimal("1e-12") and usd("0") == 0 and usd("0e-999") == 0
    widest = [usd("1e-12"), usd("999999999999.999999999999999999999999999999999999999999999999999"),
              cost_of({"quantity": "0.000001", "unit_price": "0.000001"})]
    assert all(amount is not None and len(usd_text(amount) or "") <= 70 for amount in widest), widest


def test_a_budget_is_a_decimal_read_as_a_cost_and_one_beyond_any_amount_is_refused(
        make_server: MakeServer, media: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    """configure(budget_usd=1e13), meaning "no real limit", is refused by name before anything is sent (before: read
    as a budget of $0.00, every task of a model whose cost is known refused); SPARK_NB_BUDGET_USD likewise; a budget
    is the Decimal it spells ("0.1" is 0.1, not 0.1000000000000000055...), and $1,000,000,000,000 still pays."""
    server = make_server(cost_per_second=0.05)
    for budget in (1e13, "1e13", 10 ** 13):
        with pytest.raises(spark_nb.SparkError, match=r"over \$1,000,000,000,000") as info:
            avatar.generate(media["portrait"], media["speech"], progress=False, budget_usd=budget,
                            **cloud_config(server))
        assert "unset" in (info.value.hint or "")
    monkeypatch.setenv("SPARK_NB_BUDGET_USD", "1e13")
    with pytest.raises(spark_nb.SparkError, match="over"):
        resolve()
    monkeypatch.setenv("SPARK_NB_BUDGET_USD", "0.1")
    assert resolve().budget_usd == Decimal("0.1")
    with pytest.raises(spark_nb.SparkError, match="must be an amount"):
        resolve(budget_usd="\u0661\u0662")
    assert server.stats()["created"] == 0
    monkeypatch.delenv("SPARK_NB_BUDGET_USD")
    for _ in range(2):  # the second run knows the model's cost: the budget is then compared, and not $0
        result = avatar.generate(media["portrait"], media["speech"], progress=False, reuse=False, budget_usd=1e12,
                                 **cloud_config(server))
        assert result.cost is not None and result.cost > 0
