"""``python -m phalanx`` runs the command line."""

from phalanx.cli.main import run

run()
