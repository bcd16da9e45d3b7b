"""Checks every cited data table shares (validation rows, serving rows): imported by their tests."""

from __future__ import annotations


def assert_rows_cite_sources(rows) -> None:
    """Every row names its source and where in it, and cites the original, not the working copy under shared/."""
    for r in rows:
        assert r["source"].strip(), f"{r['id']}: source missing"
        assert r["source_detail"].strip(), f"{r['id']}: source_detail missing"
        for field in ("source", "source_detail", "note"):
            assert "/work/shared" not in r[field] and "shared/reference" not in r[field], (
                f"{r['id']}: cite the original source, not the working copy"
            )
