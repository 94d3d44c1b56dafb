"""Fine-tuning an audio encoder into a copy detector (``audioaudit finetune``).

Modules, one job each: :mod:`.recipes` (the settings of the ``triplet`` and ``infonce``
recipes, per-mode defaults), :mod:`.losses`, :mod:`.heads`, :mod:`.views` (the on-disk
cache of augmented views: frozen embeddings or waveforms), :mod:`.scratch` (small
encoders trained from scratch), :mod:`.unfreeze` (top encoder blocks trained with the
head), :mod:`.checkpoint` (safetensors + JSON, atomic), :mod:`.trainer` (the loop),
:mod:`.pipeline` (corpus -> cache -> training -> DIR) and :mod:`.encoder`
(``load_finetuned(DIR)``, behind the ``finetuned:DIR`` encoder spec).
Nothing heavy is imported here.
"""
