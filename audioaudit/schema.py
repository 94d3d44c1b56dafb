"""File names and table columns shared by the index, audit, report and benchmark sides.

Index directory ``index/NAME/``::

    index.faiss         the FAISS index; vector id == items.row
    rerank.npy          ivfpq only: the raw (n, d) vectors, row == items.row, for exact re-ranking
    large_index.json    ivfpq only: the IVF-PQ plan, build seconds and memory figures
    items.parquet       one row per segment (ITEM_COLUMNS + size, mtime_ns, pcm_hash: the
                        file's size/mtime fingerprint and the hash of its decoded PCM,
                        audioaudit.audio.fingerprint.pcm_hash). ``path`` is relative to the corpus root;
                        files added from outside it (``index add``) keep an absolute path
    encoder.json        {"spec": spec string or null, "name": ..., "identity": {...}}: the
                        encoder the vectors were made with (spec lets audit reload it)
    manifest.json       corpus root, counts, index type + params, skipped files with
                        reasons, package versions, created time; written last (a build
                        that has no manifest, or state != "complete", did not finish)
    shards/             embedding shards (parquet: ITEM_COLUMNS + size, mtime_ns, pcm_hash
                        + "embedding" as a fixed-size list<float32>; ``row`` is the position
                        inside the shard; members and skipped files in the schema metadata),
                        the resumable unit of work (audioaudit.index.shards)
    reference.parquet   cached train-vs-train nearest non-self neighbour (REFERENCE_COLUMNS)
    duplicates.parquet  duplicate groups (DUPLICATE_COLUMNS + size)
    calibration.json    optional threshold calibrated for this index's encoder (with its
                        false_flag_rate_bound and, when too few clips, a note)
    background/         optional background set: vectors.npy, clips.parquet, background.json
    .lock               held by a running build/add (filelock)
    .readers.lock       flock: readers hold it shared while they read the folder, a commit
                        exclusive while it renames (audioaudit.index.store.reading / commit)
    .commit.lock        a waiting commit holds it so new readers queue behind the writer
    .staging-PID-N/     a writer's new files before their commit (removed after it)
    .commit.json        the commit journal: present only while (or if killed while) files
                        are renamed into place; the next reader or writer finishes it

Audit run directory ``runs/NAME/``::

    queries.parquet     one row per generated clip (QUERY_COLUMNS + n_segments, pcm_hash,
                        top1_dup_group, background (the score normaliser), exact_copy_of
                        (training item with bit-identical PCM, or null) + any metadata
                        columns the generator supplied, e.g. seed, prompt, sampler)
    matches.parquet     top-k training *sources* per generated clip (MATCH_COLUMNS +
                        dup_size, dup_members (";"-joined item ids of the duplicate group));
                        a duplicate group is one source: one row, its best member;
                        with ``audit --verify`` also verify_corr (aligned log-mel
                        correlation of the two recordings) and verify_overlap, and
                        queries get top1_verify_corr (audioaudit/audit/verify.py)
    matches.csv         the same table as CSV
    reference.parquet   copy of the index's train-vs-train reference similarities
    summary.json        threshold (+ how it was chosen and the precision it stands for),
                        flagged count/rate with a binomial CI, overall and per class,
                        percentiles, p95 gap, fraction above threshold, ratio test.
                        Keys: run, index, corpus_root, generated_root, encoder{spec,identity},
                        n_queries, n_skipped, threshold{value,on,source,precision},
                        flagged{count,n,rate,ci95}, per_class{cls: same + flagged},
                        percentiles{gen_vs_train,train_vs_train: {"50","90","95","99"}},
                        p95_gap, fraction_above, ratio_test{count,n,rate,ci95,tau},
                        flagged_sources, memorisation (per duplication level), exact_copies
    skipped.csv         path, kind, reason of every generated file that was not audited
"""
from __future__ import annotations

INDEX_FILE = "index.faiss"
ITEMS_FILE = "items.parquet"
ENCODER_FILE = "encoder.json"
MANIFEST_FILE = "manifest.json"
SHARDS_DIR = "shards"
REFERENCE_FILE = "reference.parquet"
DUPLICATES_FILE = "duplicates.parquet"
CALIBRATION_FILE = "calibration.json"
LOCK_FILE = ".lock"

QUERIES_FILE = "queries.parquet"
MATCHES_FILE = "matches.parquet"
MATCHES_CSV = "matches.csv"
SUMMARY_FILE = "summary.json"
SKIPPED_FILE = "skipped.csv"

# items.parquet: one row per analysed segment of a training clip
ITEM_COLUMNS = [
    "row",        # int64, FAISS vector id
    "item_id",    # str, stable id of the clip (its path relative to the corpus root)
    "path",       # str, path relative to the corpus root (posix)
    "label",      # str | null, class
    "segment",    # int, segment index within the clip
    "start",      # float, seconds
    "end",        # float, seconds
    "duration",   # float, clip length in seconds
    "sha256",     # str, sha256 of the file bytes
]

# queries.parquet: one row per audited (generated) clip
QUERY_COLUMNS = [
    "query_id",   # str, id of the generated clip (path relative to the generated folder)
    "path",       # str, relative path
    "label",      # str | null, class or prompt-derived label
    "duration",   # float seconds
    "sample_rate",  # int, the file's original rate (audio resampled only at the edge)
    "top1_similarity",  # float
    "top1_score",       # float, normalised score
    "top1_item_id",     # str
    "nn_ratio",         # float, ||x-NN1|| / ||x-NN2|| (Gu et al. 2023)
    "flag",             # bool
]

# matches.parquet: top-k distinct training clips per generated clip
MATCH_COLUMNS = [
    "query_id", "rank", "item_id", "train_path", "train_label",
    "similarity",   # float, max over segment pairs (cosine)
    "score",        # float, normalised score (what the threshold applies to)
    "query_start", "query_end",   # seconds, the query span that matched
    "train_start", "train_end",   # seconds, the training span it matched
    "flag",         # bool
    "dup_group",    # int | null, duplicate group of the training clip
]

REFERENCE_COLUMNS = ["item_id", "nn_item_id", "similarity"]
DUPLICATE_COLUMNS = ["group", "item_id", "path", "kind"]  # kind: exact | near
