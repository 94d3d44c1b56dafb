"""FAISS back ends behind one facade (:mod:`.facade`): flat / IVF / HNSW in memory, and the large IVF-PQ path (:mod:`.ivfpq`, :mod:`.streaming`, :mod:`.large`, :mod:`.plan`, :mod:`.rerank`)."""
