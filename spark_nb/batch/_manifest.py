"""The batch manifest: a CSV of rows (name, model, then one column per media input), every row checked up front.

The input columns are the media fields of the registered models (image, audio, driving_video for the two
Spark models); a row fills those its model takes.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import hashlib
import re
from collections.abc import Callable, Sequence
from pathlib import Path

from .._boundary import path_argument
from .._inputs import check
from .._urls import is_http_url, url_scheme
from ..errors import ValidationError
from ..models import MODELS, MediaField, ModelSpec, get_model, input_fields
from ._outcome import RowOutcome, RowStatus
from ._report import OWN_NAMES

_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,80}$")
_FIX = "fix the rows above (row numbers count the header as row 1) and run again"


class ManifestError(ValidationError):
    """The manifest has problems, all found before anything ran (a ValidationError, reason "manifest").

    Args:
        manifest: the manifest's file.
        problems: each problem as 'row N: ...' (`.problems`).
        hint: what to do (fix the rows, or run with skip_invalid).
    """

    def __init__(self, manifest: Path, problems: list[str], *, hint: str | None = None) -> None:
        listing = "\n".join(f"  {p}" for p in problems)
        super().__init__(f"{manifest.name}: {len(problems)} problem(s), nothing was run:\n{listing}",
                         reason="manifest",
                         hint=hint or _FIX)
        self.problems = problems


@dataclasses.dataclass(frozen=True)
class Row:
    """One manifest row, resolved: its inputs as URLs or absolute paths, and its content key.

    Attributes:
        number: its CSV line, the header being row 1.
        name: its name (its folder in the batch's output folder).
        spec: its model.
        inputs: field name -> URL or absolute path.
    """

    number: int
    name: str
    spec: ModelSpec
    inputs: dict[str, str]

    @property
    def key(self) -> str:
        """Model + input content (file bytes, or the URL as written): equal keys are the same job."""
        digest = hashlib.sha256(self.spec.id.encode())
        for field in self.spec.fields:
            value = self.inputs[field.name]
            digest.update(f"\0{field.name}\0".encode())
            if is_http_url(value):
                digest.update(value.encode())
            else:
                with open(value, "rb") as f:
                    for block in iter(lambda: f.read(1 << 20), b""):
                        digest.update(block)
        return digest.hexdigest()


@dataclasses.dataclass(frozen=True)
class InvalidRow:
    """A manifest row that cannot run: its CSV line, its name and model as written, and what is wrong with it.

    Attributes:
        number: its CSV line, the header being row 1.
        name: its name as written ("" when it has none).
        model: the model's id when the row names a known one, else the cell as written.
        problems: each as the ManifestError line says it, without the "row N: ".
    """

    number: int
    name: str
    model: str
    problems: tuple[str, ...]

    @property
    def label(self) -> str:
        """The row's name as written, or row<N> when it has none: its line in results.csv and the gallery."""
        return self.name or f"row{self.number}"

    @property
    def lines(self) -> list[str]:
        """Its problems as ManifestError lists them: 'row N: ...' each."""
        return [f"row {self.number}: {p}" for p in self.problems]

    @property
    def error(self) -> str:
        """Its problems on one line, the row number first: the error text of its `skipped` outcome."""
        return f"row {self.number}: " + "; ".join(self.problems)

    def outcome(self) -> RowOutcome:
        """Its `skipped` outcome in the reports.

        Returns:
            A RowOutcome named as written (row<N> if unnamed), status skipped, its problems as the error.
        """
        return RowOutcome(self.label, self.model, RowStatus.SKIPPED, error=self.error)


def in_manifest_order(ran: Sequence[RowOutcome], rows: Sequence[Row],
                      invalid: Sequence[InvalidRow]) -> list[RowOutcome]:
    """The outcomes of the rows that ran (ran[i] is rows[i]'s) and a `skipped` one per invalid row, by CSV line."""
    lines = [*((row.number, outcome) for row, outcome in zip(rows, ran, strict=True)),
             *((row.number, row.outcome()) for row in invalid)]
    return [outcome for _, outcome in sorted(lines, key=lambda line: line[0])]


def _check_all_at_once(manifest: Path, records: list[tuple[int, dict[str, str]]]) -> None:
    """Check every distinct local input of the manifest in parallel (ffmpeg probes, sound, motion); the row loop
    then finds every answer remembered, so a large manifest costs a fraction of its inputs' checks."""
    from concurrent.futures import ThreadPoolExecutor

    fields = {f.name: f for spec in MODELS.values() for f in spec.fields}

    def target(value: str) -> str:  # a local file by its path; URLs are asked for later, only for rows that pay
        return str(manifest.parent / value) if url_scheme(value) is None else ""

    jobs = {(target(value.strip()), column.strip()) for _, record in records
            for column, value in record.items() if column and column.strip() in fields
            and value and value.strip() and target(value.strip())}

    def warm(job: tuple[str, str]) -> None:
        value, column = job
        with contextlib.suppress(ValidationError, OSError):  # reported, with its row, by the loop
            check(value, fields[column], advise=False)

    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(warm, sorted(jobs)))


def columns() -> tuple[str, ...]:
    """A manifest's columns: name, model, and every registered model's media inputs.

    Returns:
        ("name", "model", "image", "audio", "driving_video") for the two Spark models.
    """
    return ("name", "model", *input_fields())


def check_manifest(path: str | Path, *, pays: Callable[[Row], bool] | None = None
                   ) -> tuple[list[Row], list[InvalidRow]]:
    """Every row of the manifest, checked: those that can run, and those that cannot with their problems.

    Args:
        path: the manifest, a UTF-8 CSV (see columns()); relative input paths are read from its folder.
        pays: whether a row will pay for a new task (None: every row); only such a row's URL inputs are asked for
            (see _inputs_url.check_url), so a row the journal answers is resumed or reused however its URLs have
            expired since.

    Returns:
        (rows that can run, InvalidRow for each that cannot); each input checked as generate() checks it.

    Raises:
        ManifestError: the whole manifest is unreadable, without a name or model column, or without any row.
    """
    path = path_argument(path, "the manifest")
    known = columns()
    try:
        with path.open(newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            header = [h.strip() for h in reader.fieldnames or []]
            records = [(reader.line_num, record) for record in reader]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise ManifestError(path, [f"cannot read the manifest {path}: {exc}"],
                            hint="give a UTF-8 CSV file with columns " + ", ".join(known)) from exc
    missing = [c for c in ("name", "model") if c not in header]  # a missing input column is named per row
    if missing:
        raise ManifestError(path, [(f"row 1: missing column(s) {', '.join(missing)}; "
                                    f"the columns are {', '.join(known)}")])
    _check_all_at_once(path, records)
    rows: list[Row] = []
    invalid: list[InvalidRow] = []
    seen: dict[str, int] = {}
    for number, record in records:
        cells = {k.strip(): (v or "").strip() for k, v in record.items() if k is not None}
        if not any(cells.values()):
            continue  # blank line
        checked = _check_row(path, number, cells, seen)
        if isinstance(checked, Row):
            rows.append(checked)
        else:
            invalid.append(checked)
    if not rows and not invalid:
        raise ManifestError(path, ["the manifest has no rows"])
    unreachable = _ask_urls([row for row in rows if pays is None or pays(row)])
    invalid += [InvalidRow(row.number, row.name, row.spec.id, tuple(unreachable[row.number]))
                for row in rows if row.number in unreachable]
    return [row for row in rows if row.number not in unreachable], sorted(invalid, key=lambda row: row.number)


def _check_row(path: Path, number: int, cells: dict[str, str], seen: dict[str, int]) -> Row | InvalidRow:
    """One manifest row, checked (its name against seen, the names of the rows before it): a Row, or an InvalidRow
    with its problems. Its URLs are not asked for here (see check_manifest)."""
    row_problems: list[str] = []
    name = cells.get("name", "")
    if not _SAFE_NAME.match(name):
        row_problems.append(f"name {name!r} must be letters, digits, '.', '_' or '-' (it becomes a folder name)")
    elif name.lower() in OWN_NAMES:
        row_problems.append(f"name {name!r} is taken by the batch's own files and folders "
                            f"({', '.join(OWN_NAMES)}, in any case); give the row another name")
    elif name.lower() in seen:
        row_problems.append(f"name {name!r} is already used by row {seen[name.lower()]}")
    else:
        seen[name.lower()] = number
    try:
        spec = get_model(cells.get("model", ""))
    except ValidationError as exc:
        return InvalidRow(number, name, cells.get("model", ""), (*row_problems, str(exc)))
    inputs = {}
    for field in spec.fields:
        value = cells.get(field.name, "")
        resolved = value if url_scheme(value) or not value else str(path.parent / value)
        try:
            item = check(resolved or None, field, advise=False)  # advice is given as each row is submitted
        except ValidationError as exc:
            row_problems.append(f"{field.name}: {str(exc).splitlines()[0]}")
            continue
        where = item.url if item.path is None else str(item.path.resolve())
        assert where is not None  # a Media is a file or a URL
        inputs[field.name] = where
    takes = {f.name for f in spec.fields}
    row_problems += [f"{f} is set but {spec.id} does not take it" for f in input_fields() if cells.get(f)
                     and f not in takes]
    if row_problems:
        return InvalidRow(number, name, spec.id, tuple(row_problems))
    return Row(number=number, name=name, spec=spec, inputs=inputs)


def _ask_urls(rows: list[Row]) -> dict[int, list[str]]:
    """The problems of these rows' URL inputs by row number: every distinct URL asked for once, 4 at a time."""
    from concurrent.futures import ThreadPoolExecutor

    asked = {(row.inputs[f.name], f) for row in rows for f in row.spec.fields if is_http_url(row.inputs[f.name])}

    def ask(job: tuple[str, MediaField]) -> None:
        with contextlib.suppress(ValidationError):  # kept by the check (_inputs_url): said with its rows below
            check(job[0], job[1], advise=False, urls=True)

    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(ask, sorted(asked, key=lambda job: (job[0], job[1].name))))
    problems: dict[int, list[str]] = {}
    for row in rows:
        for field in row.spec.fields:
            try:
                if is_http_url(row.inputs[field.name]):
                    check(row.inputs[field.name], field, advise=False, urls=True)
            except ValidationError as exc:
                problems.setdefault(row.number, []).append(f"{field.name}: {str(exc).splitlines()[0]}")
    return problems


def rows_to_run(path: str | Path, *, skip_invalid: bool = False, pays: Callable[[Row], bool] | None = None
                ) -> tuple[list[Row], list[InvalidRow]]:
    """The rows a batch runs and the invalid ones it skips; raises ManifestError listing every problem when a
    row is invalid, unless skip_invalid (then only when no valid row is left). pays: see check_manifest."""
    rows, invalid = check_manifest(path, pays=pays)
    if invalid and not (skip_invalid and rows):
        hint = (f"no row is valid, so nothing is left to run: {_FIX}" if skip_invalid
                else f"{_FIX}, or pass --skip-invalid (skip_invalid=True) to run only the valid rows")
        if any("the URL does not give the file" in line for row in invalid for line in row.problems):
            hint += ("; a URL only the service's network can reach is sent unchecked with SPARK_NB_CHECK_URLS=0 "
                     "(check_urls=False)")
        raise ManifestError(Path(path), [line for row in invalid for line in row.lines], hint=hint)
    return rows, invalid


def read_manifest(path: str | Path) -> list[Row]:
    """All rows of the manifest, checked.

    Args:
        path: the manifest, a UTF-8 CSV file (see columns()).

    Returns:
        Every row, each ready to run.

    Raises:
        ManifestError: a row is invalid, or the manifest is (every problem listed with its row number).
    """
    return rows_to_run(path)[0]
