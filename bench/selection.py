"""Completion selection at scale: the SQL path (storage.selection) vs a straightforward Python
implementation of the same rules, on a generated project of 1,000,000 completions over
200,000 tasks and 20 members. Prints a table; checks that both choose the same completions.

    .venv/bin/python bench/selection.py [--tasks 200000] [--per-task 5] [--repeats 5]
"""

from __future__ import annotations

import argparse
import resource
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from storage.catalog import Catalog, Member  # noqa: E402
from storage.selection import SelectionParams, label_counts, select_completions, write_snapshots  # noqa: E402

CONFIG = """<View><Labels name="label" toName="text"><Label value="PER"/><Label value="LOC"/></Labels>
<Text name="text" value="$text"/></View>"""
RESULT = (
    '[{"id":"a","from_name":"label","to_name":"text","type":"labels","value":{"start":0,"end":4,'
    '"text":"Rita","labels":["PER"]}},{"id":"b","from_name":"label","to_name":"text","type":"labels",'
    '"value":{"start":14,"end":19,"text":"Paris","labels":["LOC"]}}]'
)


def build_project(catalog: Catalog, n_tasks: int, per_task: int) -> int:
    """Fill the catalog with SQL (the bench measures selection, not import)."""
    catalog.create_project("bench", CONFIG, "en", "owner")
    pid = catalog.project_id("bench")
    catalog.set_members("bench", [Member(f"user{i}", "annotator", i % 7) for i in range(20)])
    con = catalog.con
    con.execute(
        "INSERT INTO tasks SELECT ?, t, '{\"text\": \"Rita lives in Paris\"}', ['batch' || (t % 10)], "
        "NULL, 'genai_lab' FROM range(?) r(t)",
        [pid, n_tasks],
    )
    con.execute(
        f"""
        INSERT INTO completions
        SELECT ?, c // {per_task}, c, 'user' || (hash(c) % 22),  -- user20, user21 are not members
               hash(c * 7) % 20 <> 0,
               TIMESTAMP '2024-01-01' + to_seconds((hash(c * 3) % 10000000)::BIGINT),
               NULL, false,
               CASE WHEN hash(c * 11) % 100 < 3 THEN 'rejected' WHEN hash(c * 11) % 100 < 6 THEN 'accepted' END,
               'rev',
               CASE WHEN hash(c * 11) % 100 BETWEEN 3 AND 5
                    THEN TIMESTAMP '2024-06-01' + to_seconds((hash(c * 13) % 1000000)::BIGINT) END,
               ?, 'x'
        FROM range(?) r(c)""",
        [pid, RESULT, n_tasks * per_task],
    )
    con.execute(
        "INSERT INTO completion_labels SELECT project_id, task_id, completion_id, 'label', 'labels', l "
        "FROM completions, (VALUES ('PER'), ('LOC')) v(l) WHERE project_id = ?",
        [pid],
    )
    return pid


def select_python(con, pid: int, tags: set[str] | None, reviewed_only: bool) -> tuple[dict, float, float]:
    """The same rules as plain Python over rows fetched from DuckDB; returns (choice, fetch s, rules s)."""
    start = time.perf_counter()
    task_tags = dict(con.execute("SELECT task_id, tags FROM tasks WHERE project_id = ?", [pid]).fetchall())
    priority = dict(con.execute("SELECT username, priority FROM members WHERE project_id = ?", [pid]).fetchall())
    rows = con.execute(
        "SELECT task_id, completion_id, author, submitted, submitted_at, review, reviewed_at "
        "FROM completions WHERE project_id = ?",
        [pid],
    ).fetchall()
    fetched = time.perf_counter()
    by_task = defaultdict(list)
    for row in rows:
        by_task[row[0]].append(row)
    oldest = datetime.min
    chosen = {}
    for task_id, completions in by_task.items():
        if tags and not tags.intersection(task_tags[task_id]):
            continue
        usable = [c for c in completions if c[3] and c[5] != "rejected"]
        if not usable:
            continue
        accepted = [c for c in usable if c[5] == "accepted"]
        if accepted:
            best = max(
                accepted,
                key=lambda c: (c[6] is not None, c[6] or oldest, priority.get(c[2], -(10**9)), c[4] or oldest, c[1]),
            )
        elif reviewed_only:
            continue
        else:
            best = max(usable, key=lambda c: (c[2] in priority, priority.get(c[2], 0), c[4] or oldest, c[1]))
        chosen[task_id] = best[1]
    return chosen, fetched - start, time.perf_counter() - fetched


def timed(fn, repeats: int) -> tuple[float, object]:
    times, value = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        value = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tasks", type=int, default=200_000)
    parser.add_argument("--per-task", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        catalog = Catalog(Path(tmp) / "home")
        start = time.perf_counter()
        pid = build_project(catalog, args.tasks, args.per_task)
        print(
            f"generated {args.tasks:,} tasks, {args.tasks * args.per_task:,} completions, 20 members "
            f"in {time.perf_counter() - start:.1f} s"
        )
        con, config = catalog.con, catalog.config("bench")
        rows = []
        for label, tags, reviewed_only in [
            ("all tasks", None, False),
            ("tags batch1,batch2", ["batch1", "batch2"], False),
            ("reviewed only", None, True),
        ]:
            params = SelectionParams(tags=tags, reviewed_only=reviewed_only, validation_split=0.2, split_seed=1)
            sql_s, n = timed(lambda params=params: select_completions(con, pid, params), args.repeats)
            sql_choice = dict(con.execute("SELECT task_id, completion_id FROM selection").fetchall())
            counts_s, _ = timed(lambda: label_counts(con, pid, config), args.repeats)
            py_runs = [
                select_python(con, pid, set(tags) if tags else None, reviewed_only)
                for _ in range(max(1, args.repeats // 2))
            ]
            py_choice = py_runs[-1][0]
            py_fetch = statistics.median(r[1] for r in py_runs)
            py_rules = statistics.median(r[2] for r in py_runs)
            same = (
                "yes"
                if py_choice == sql_choice
                else f"NO ({len(set(py_choice.items()) ^ set(sql_choice.items()))} differ)"
            )
            rows.append((label, n, sql_s, counts_s, py_rules, py_fetch + py_rules, same))
        snap_s, manifest = timed(
            lambda: write_snapshots(con, pid, config, SelectionParams(split_seed=1), Path(tmp) / "snap"),
            max(1, args.repeats // 2),
        )
        snap_rows = manifest["files"]["ner"]["rows"]
        snap_mb = Path(manifest["files"]["ner"]["path"]).stat().st_size / 1e6

    header = (
        "selection",
        "tasks used",
        "SQL select s",
        "SQL label counts s",
        "Python rules s",
        "Python fetch+rules s",
        "SQL x faster (rules)",
        "(fetch+rules)",
        "same choice",
    )
    widths = [20, 10, 12, 18, 14, 20, 20, 13, 11]
    print("\n" + "  ".join(h.ljust(w) for h, w in zip(header, widths)))
    for label, n, sql_s, counts_s, py_rules, py_all, same in rows:
        cells = (
            label,
            f"{n:,}",
            f"{sql_s:.3f}",
            f"{counts_s:.3f}",
            f"{py_rules:.3f}",
            f"{py_all:.3f}",
            f"{py_rules / sql_s:.1f}",
            f"{py_all / sql_s:.1f}",
            same,
        )
        print("  ".join(c.ljust(w) for c, w in zip(cells, widths)))
    print(f"\nParquet snapshot (select + ner file, {snap_rows:,} rows, {snap_mb:.1f} MB): {snap_s:.3f} s")
    print(
        f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB; "
        f"medians of {args.repeats} (Python: {max(1, args.repeats // 2)}) runs"
    )


if __name__ == "__main__":
    main()
