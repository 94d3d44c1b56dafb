"""Producing the clips to audit: ``run`` (the resumable ``generate`` run), ``train`` (an
EDMSound model trained on a corpus), ``fad`` (Fréchet audio distance maths) and
``fad_folders`` (FAD between two folders of audio)."""
