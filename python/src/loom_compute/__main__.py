"""`python -m loom_compute <verb> [--config FILE] [verb args]`: Loom's compute worker.

The loom CLI starts this (directly or under torchrun) and reads its JSON Lines events from
stdout; see loom_compute.protocol. Run it with --help for the verbs (loom_compute.verbs).
"""

from __future__ import annotations

import os
import sys

from loom_compute.verbs import VERBS, dispatch


def main() -> None:
    # The CLI draws the progress; transformers' and the hub's own tqdm bars (weight loading, saving)
    # would only clutter the worker's stderr. Read when transformers is first imported.
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    dispatch(sys.argv[1:], VERBS)


if __name__ == "__main__":
    main()
