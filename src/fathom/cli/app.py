"""The ``fathom`` command. Bad input ends in one line on stderr and exit code 2, never a traceback."""

from __future__ import annotations

import re
import sys

import typer
from typer.exceptions import Abort, Exit, TyperException

from fathom.cli.budget_cmd import register as register_budget
from fathom.cli.catalog_cmds import register as register_catalog
from fathom.cli.export_cmds import register as register_export
from fathom.cli.plan_cmd import plan_app
from fathom.cli.profile_cmds import register as register_profile
from fathom.cli.serve_cmd import register as register_serve
from fathom.cli.sweep_cmd import register as register_sweep
from fathom.cli.train_cmd import register as register_train
from fathom.cli.ui_cmd import register as register_ui
from fathom.cli.validate_cmds import validate_app
from fathom.errors import FathomInputError, close_matches

app = typer.Typer(
    name="fathom",
    help="Predict LLM training and serving behaviour on real clusters before spending GPU hours.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
register_train(app)
register_serve(app)
register_catalog(app)
register_budget(app)
register_export(app)
app.add_typer(validate_app, name="validate")
app.add_typer(plan_app, name="plan")
register_sweep(app)
register_profile(app)
register_ui(app)


def _fail(message: str) -> int:
    line = " ".join(str(message).split())
    print(f"error: {line}", file=sys.stderr)
    return 2


def run(argv: list[str] | None = None) -> int:
    """Run the CLI and return its exit code (used by tests and by ``main``)."""
    command = typer.main.get_command(app)
    try:
        result = command.main(args=argv, prog_name="fathom", standalone_mode=False)
        return result if isinstance(result, int) else 0
    except FathomInputError as exc:
        return _fail(str(exc))
    except Exit as exc:
        return exc.exit_code
    except Abort:
        return _fail("aborted")
    except TyperException as exc:
        code = getattr(exc, "exit_code", 2)
        if code == 0:
            return 0
        return _fail(_suggest_choice(exc.format_message())) if code == 2 else code


_NOT_A_CHOICE = re.compile(r"'([^']*)' is not one of ((?:'[^']*'(?:, )?)+)")


def _suggest_choice(message: str) -> str:
    """A bad choice's message with the valid spellings closest to what was typed (``adamw8bit`` -> ``adam-8bit``)."""
    found = _NOT_A_CHOICE.search(message)
    if found is None:
        return message
    close = close_matches(found.group(1), re.findall(r"'([^']*)'", found.group(2)), n=2)
    return f"{message.rstrip('.')}; did you mean {' or '.join(repr(c) for c in close)}?" if close else message


def main() -> None:
    sys.exit(run(sys.argv[1:]))
