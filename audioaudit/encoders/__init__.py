"""Encoder backends behind one spec string: ``mel``, ``laion:PATH.pt``, ``hf:DIR_OR_ID``,
``tiny-laion[:SEED]``, ``tiny-hf[:SEED]``, ``finetuned:DIR``. See :func:`audioaudit.encoders.registry.load_encoder`."""
from audioaudit.encoders.base import Encoder, EncoderError, identity_key, same_identity

__all__ = ["Encoder", "EncoderError", "identity_key", "same_identity", "load_encoder"]


def load_encoder(spec: str, **kw) -> Encoder:  # lazy: importing the package stays fast
    from audioaudit.encoders.registry import load_encoder as _load

    return _load(spec, **kw)
