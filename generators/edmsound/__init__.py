"""EDMSound: EDM diffusion (Karras et al. 2022) on compressed complex spectrograms (Zhu et al. 2023).

Modules: ``spectrogram`` (representation), ``unet`` (network), ``edm`` (preconditioning,
loss, guidance), ``samplers`` (ODE solvers + schedules), ``analytic`` (closed-form
denoisers), ``config`` / ``checkpoint`` / ``trainer`` (training), ``generator``
(the Generator). Nothing is imported here, so importing a submodule stays cheap.
"""
