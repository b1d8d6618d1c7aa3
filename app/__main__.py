"""`python -m app` runs the opsgate command line (what the demo uses for its children)."""

from app.cli import main

main()
