"""The verbs of `python -m loom_compute`, one module each, named after the verb it runs.

Each module defines ``VERB``; the table below is the command line's list, in the order `--help`
shows it. Verb modules import torch only inside ``run``, so the table loads without torch and
`doctor` can report a broken install.
"""

from loom_compute.verbs import chat, checkpoints, doctor, export, generate, import_checkpoint, read_packed, score, train, train_filter, validate_config
from loom_compute.verbs.dispatch import Verb, dispatch

VERBS: dict[str, Verb] = {
    verb.name: verb
    for verb in (
        doctor.VERB,
        validate_config.VERB,
        read_packed.VERB,
        train.VERB,
        score.VERB,
        train_filter.VERB,
        checkpoints.VERB,
        generate.VERB,
        chat.VERB,
        export.VERB,
        import_checkpoint.VERB,
    )
}

__all__ = ["VERBS", "Verb", "dispatch"]
