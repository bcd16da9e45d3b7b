"""``fathom ui``: serve the web page and its JSON API from one process (loopback only unless told otherwise)."""

from __future__ import annotations

from typing import Annotated

import typer

from fathom.errors import FathomInputError


def register(app: typer.Typer) -> None:
    @app.command("ui")
    def ui(
        host: Annotated[str, typer.Option(help="Interface to bind; 0.0.0.0 exposes it to the network.")] = "127.0.0.1",
        port: Annotated[int, typer.Option(min=0, max=65535, help="TCP port (0: any free port).")] = 8000,
        timeout: Annotated[float, typer.Option(min=0.1, help="Seconds a request may compute.")] = 30.0,
    ) -> None:
        """Serve the web app (training, serving, compare views) and the HTTP API at http://HOST:PORT."""
        try:
            import uvicorn

            from fathom.web import Limits, create_app
        except ImportError as exc:
            raise FathomInputError(
                f"fathom ui needs the web extra: pip install 'fathom[web]' ({exc.name} missing)"
            ) from None
        app_ = create_app(Limits(timeout_s=timeout))
        print(f"fathom ui: http://{host}:{port}/  (API docs at /docs; Ctrl+C stops)")
        try:
            uvicorn.run(app_, host=host, port=port, log_level="warning")
        except OSError as exc:
            raise FathomInputError(f"--port: cannot listen on {host}:{port}: {exc.strerror or exc}") from None
