"""``python -m repinv`` (also what ``torchrun -m repinv`` runs)."""

from .cli import main

main()
