"""``python -m repinv`` (also what ``torchrun -m repinv`` runs)."""

from repinv.cli import main

main()
