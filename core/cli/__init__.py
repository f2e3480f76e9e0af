"""Command line: the app's operations from a shell.

    python -m core.cli score  --csv pairs.csv --images DIR --out scored.csv     # saved as a run: `run: <id>` last
    python -m core.cli runs list [--json FILE] | show RUN | rename RUN NAME | delete RUN | export RUN --out FILE | add PATH
    python -m core.cli analyse RUN [--by COL] [--over COL --freq D|W|M] [--drivers] [--themes] [--search TERM] [--json FILE]
    python -m core.cli compare RUN --versions A B [--search TERM] [--json FILE]   # two head versions on a run's posts
    python -m core.cli eval   --csv test.csv  --images DIR --json metrics.json [--head VERSION_OR_PATH]
    python -m core.cli train  --train train.csv --dev dev.csv --images DIR --out DIR [--test test.csv]
    python -m core.cli correct --csv labelled.csv [--images DIR] [--save]   # adapt to your own posts
    python -m core.cli finetune-text --train train.csv --dev dev.csv --out DIR
    python -m core.cli explain --text "..." --image photo.jpg
    python -m core.cli encoders
    python -m core.cli resplit --seeds 1 2 3 4 5 [--frozen] --out DIR [--json FILE]
    python -m core.cli versions | activate VERSION | rollback | delete VERSION | import ZIP | export VERSION --out ZIP
    python -m core.cli hash-password          # the operator password's hash for the app (read from a prompt or stdin)

The command line acts as the operator of its own MMSA_HOME: whoever runs it is the machine's user.
One module per command group (``scoring``, ``ray``, ``runs``, ``analyse``, ``compare``, ``training``, ``correct``, ``encoders``,
``versions``, ``access``);
``main`` builds the parser from their ``register`` functions and runs the chosen command.
"""
from core.cli.main import build_parser, main

__all__ = ["build_parser", "main"]
