"""Audio at the edge: decoding and writing files, corpus scans, the one windowing rule, the decode pool, fingerprints and the synthetic corpus."""
