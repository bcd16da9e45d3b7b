"""Command-line interface (typer + rich). Thin: parse, call the Python API, render."""
