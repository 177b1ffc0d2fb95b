"""Generate `docs/schema.md` from the migrations, and check the checked-in copy matches.

Run `python -m cra.db.schema_doc` to rewrite it, `python -m cra.db.schema_doc --check`
to fail when it is stale.
"""

from __future__ import annotations

import argparse
import sqlite3
import sys
from pathlib import Path

from cra.db.curated_schema import CURATED_MIGRATIONS
from cra.db.migrations import Migration, migrate
from cra.db.raw_schema import RAW_MIGRATIONS

DOC_PATH = Path(__file__).resolve().parents[2] / "docs" / "schema.md"


def _describe(name: str, migrations: tuple[Migration, ...]) -> list[str]:
    conn = sqlite3.connect(":memory:", isolation_level=None)
    migrate(conn, migrations, path=Path(name))
    out = [f"## `{name}` (schema version {len(migrations)})", ""]
    out.append("| version | migration |")
    out.append("| --- | --- |")
    out.extend(f"| {m.version} | {m.name} |" for m in migrations)
    out.append("")
    tables = [
        row[0]
        for row in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' "
            "AND name NOT LIKE 'sqlite_%' ORDER BY name"
        )
    ]
    for table in tables:
        out.append(f"### `{table}`")
        out.append("")
        out.append("| column | type | null | default | key |")
        out.append("| --- | --- | --- | --- | --- |")
        fks = {
            row[3]: f"→ `{row[2]}.{row[4]}`"
            for row in conn.execute(f"PRAGMA foreign_key_list({table})")
        }
        for _, col, ctype, notnull, default, pk in conn.execute(f"PRAGMA table_info({table})"):
            key = "PK" if pk else fks.get(col, "")
            out.append(
                f"| `{col}` | {ctype or ''} | {'' if notnull or pk else 'yes'} "
                f"| {'' if default is None else f'`{default}`'} | {key} |"
            )
        indexes = [
            (row[1], row[2], row[4])
            for row in conn.execute(f"PRAGMA index_list({table})")
            if not row[1].startswith("sqlite_autoindex")
        ]
        uniques = [row[1] for row in conn.execute(f"PRAGMA index_list({table})") if row[2]]
        if indexes or uniques:
            out.append("")
        for index, unique, partial in indexes:
            cols = ", ".join(r[2] for r in conn.execute(f"PRAGMA index_info({index})"))
            kind = ("unique " if unique else "") + ("partial " if partial else "")
            out.append(f"- {kind}index `{index}` on ({cols})")
        for index in uniques:
            if index.startswith("sqlite_autoindex"):
                cols = ", ".join(r[2] for r in conn.execute(f"PRAGMA index_info('{index}')"))
                out.append(f"- unique ({cols})")
        out.append("")
    conn.close()
    return out


def render() -> str:
    """The schema reference as Markdown."""
    out = [
        "# Database schema",
        "",
        "Generated from the migrations in `cra/db/` by `python -m cra.db.schema_doc`;",
        "a test fails when this file is stale. Times are ISO 8601 in UTC; `*_ts` columns",
        "are Unix seconds; JSON columns hold JSON text.",
        "",
    ]
    out += _describe("raw.db", RAW_MIGRATIONS)
    out += _describe("curated.db", CURATED_MIGRATIONS)
    return "\n".join(out).rstrip() + "\n"


def main(argv: list[str] | None = None) -> int:
    """Write the reference, or with --check exit 1 when the checked-in copy is stale."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="fail if docs/schema.md is stale")
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        current = DOC_PATH.read_text(encoding="utf-8") if DOC_PATH.exists() else ""
        if current != text:
            print(f"{DOC_PATH} is stale: run `python -m cra.db.schema_doc`", file=sys.stderr)
            return 1
        return 0
    DOC_PATH.parent.mkdir(parents=True, exist_ok=True)
    DOC_PATH.write_text(text, encoding="utf-8")
    print(f"wrote {DOC_PATH}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
