"""Adapters for models we did not train, behind the :class:`generators.base.Generator` protocol.

- ``tango:DIR``      TANGO-style latent diffusion (FLAN-T5 → UNet → AudioLDM VAE → HiFi-GAN),
                     declare-lab or diffusers directory layout (``tango.py``, ``tango_layout.py``)
- ``audioldm2:DIR``  diffusers ``AudioLDM2Pipeline`` saved in a local directory (``audioldm2.py``)
- ``folder:DIR``     clips produced elsewhere, with an optional ``metadata.csv`` (``folder.py``)
- ``denoiser.py``    an ε/v-prediction DDPM UNet seen as an EDM denoiser ``D(x, σ)``, so the
                     samplers of ``generators.edmsound.samplers`` drive it

Nothing is imported here: each adapter module imports its heavy dependencies itself.
"""
