"""Entry point: `desktop-app` / `python -m desktop_app`.

With a sub-command (generate, info, samplers, models, gallery) it runs headless; otherwise it
starts the GUI. Nothing heavy is imported here.
"""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    from desktop_app import cli

    if cli.is_cli_invocation(args):
        return cli.main(args)
    from desktop_app import app

    return app.main(args)


if __name__ == "__main__":
    sys.exit(main())
