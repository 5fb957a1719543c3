"""`python -m usvfs ARGS...` runs the bundled `usvfs` command, as the
installed `usvfs` script does."""

from ._cli import main

if __name__ == "__main__":
    main()
