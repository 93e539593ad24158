"""`dreem`'s entry point (the console script and `python -m dreem_trainer`).

As a container's first process, `dreem` hands the command to a supervised child before importing anything
beyond the standard library: until a handler is installed, the kernel drops every signal sent to PID 1, so a
pod deleted while the CLI was still importing (about 0.3 s) waited out its whole grace period.
"""

from __future__ import annotations

from dreem_trainer.supervisor import main as supervised
from dreem_trainer.supervisor import needs_supervisor


def main() -> None:
    if needs_supervisor():
        supervised()
    from dreem_trainer.cli import entry_point  # only now: see the docstring

    entry_point()


if __name__ == "__main__":
    main()
