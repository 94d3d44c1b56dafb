"""Fine-tuning an audio encoder into a copy detector (``audioaudit finetune``).

Modules, one job each: :mod:`.recipes` (the settings of the ``triplet`` and ``infonce``
recipes, per-mode defaults), :mod:`.losses`, :mod:`.views` (the on-disk cache of augmented
views: frozen embeddings or waveforms), :mod:`.unfreeze` (top encoder blocks trained with
the head), :mod:`.trainer` (the loop), :mod:`.pipeline` (corpus -> cache -> training -> DIR) and
:mod:`.status` (what happened to each step after the settings, in ``DIR/run.json``).
What a detector *is* at inference lives with the encoders: :mod:`audioaudit.encoders.heads`,
:mod:`audioaudit.encoders.scratch`, :mod:`audioaudit.encoders.checkpoint` and
:mod:`audioaudit.encoders.finetuned` (``load_finetuned(DIR)``, the ``finetuned:DIR`` spec).
Nothing heavy is imported here."""
