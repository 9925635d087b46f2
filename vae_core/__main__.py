"""`python -m vae_core`: the command-line interface."""

from vae_core.cli import main

raise SystemExit(main())
