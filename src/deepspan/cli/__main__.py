"""``python -m deepspan.cli``: the ``deepspan`` command line."""

from deepspan.cli import main

if __name__ == "__main__":  # pragma: no cover
    main()
