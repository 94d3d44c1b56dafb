"""Duplicate recordings inside one corpus: grouping (exact PCM hash + confirmed near pairs), audio verification of candidate pairs and near twins. Pure: no index needed."""
