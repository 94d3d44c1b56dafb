"""The resumable ``generate`` run: any generator -> one WAV per clip + metadata tables.

A run is pinned by ``run.json`` (generator, clip count, seed, the condition of every clip,
sampler options). The request is first checked against what the generator declares it uses
(:func:`prepare_run`): an option it would not use is an error, or a warning and left out where
it changes nothing. Each finished clip appends one row to the journal ``.metadata.jsonl``
right after its WAV is written, so a killed run resumes where it stopped: the same run in the
same folder -- or the same run with another ``--n``, not below the clips already written --
generates only the clips whose journal row or WAV is missing. ``metadata.csv`` /
``metadata.parquet`` are rewritten from the journal at the end, listing exactly the clips
whose WAV is on disk, and every count reported comes from there, never from the request. A
generator that gives fewer clips than asked is an error naming it and its reason, raised
after the clips it did give are written and listed (a rerun resumes). Source files the
generator skipped are listed in ``skipped.csv``. Clip ``i`` uses seed ``seed + i``, so any
clip can be reproduced alone.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from audioaudit.errors import UserError
from audioaudit.util import atomic
from generators.base import GeneratorError

RUN_FILE = "run.json"
JOURNAL = ".metadata.jsonl"
META_CSV, META_PARQUET = "metadata.csv", "metadata.parquet"
SKIPPED = "skipped.csv"
PINNED = ("generator", "seed", "options")  # what a resumed run must share with the one in --out


@dataclass(frozen=True)
class GenerateRun:
    """What to generate; :meth:`record` is what ``run.json`` holds."""

    generator: str  # generator spec, e.g. edmsound:DIR
    plan: list  # the condition of every clip (None: unconditional)
    seed: int = 0
    options: dict = field(default_factory=dict)  # sampler options passed to ``generate``
    kind: str = "class"  # metadata column naming the condition: "class" or "prompt"

    def record(self) -> dict:
        return {"generator": self.generator, "n": len(self.plan), "seed": self.seed, "conditions": self.plan,
                "options": self.options}


@dataclass(frozen=True)
class GenerateResult:
    """Counted from the journal and the files on disk, never from the request."""

    written: int  # clips this call wrote (journal row + WAV on disk)
    kept: int  # clips kept from an earlier, interrupted run
    listed: int  # rows of metadata.csv / metadata.parquet (= WAVs on disk)
    seconds: float
    skipped: int = 0  # source files the generator skipped (rows of skipped.csv)
    warnings: tuple[str, ...] = ()  # options left out because they change nothing here


def prepare_run(run: GenerateRun):
    """``(generator, run, warnings)``: the generator loaded and the request checked against its
    ``uses`` (:func:`generators.request.check_request`); options it does not use but that change
    nothing are left out of the returned run (and named in ``warnings``)."""
    from generators.registry import load_generator
    from generators.request import check_request

    gen = load_generator(run.generator)
    uses = getattr(gen, "uses", None)
    if uses is None:  # a generator that declares nothing gets its own checks only
        return gen, run, []
    checked = check_request(run.generator, uses, run.options, run.kind, run.plan)
    return gen, replace(run, options=checked.options), checked.warnings


def read_conditions(classes: list[str] | None, prompts: list[str] | None,
                    prompts_file: Path | None) -> tuple[list, str]:
    """The conditions to cycle through and their kind ("prompt" or "class")."""
    prompts = list(prompts or [])
    if prompts_file is not None:
        if not prompts_file.is_file():
            raise UserError(f"{prompts_file}: prompts file not found")
        lines = [ln.strip() for ln in prompts_file.read_text(encoding="utf-8").splitlines()]
        prompts += [ln for ln in lines if ln and not ln.startswith("#")]
        if not prompts:
            raise UserError(f"{prompts_file}: no prompts in the file (one per line)")
    if classes and prompts:
        raise UserError("pass --class or --prompt/--prompts-file, not both")
    if prompts:
        return prompts, "prompt"
    return list(classes or []), "class"


def plan_clips(n: int | None, conds: list) -> list:
    """The condition of each of ``n`` clips, cycling ``conds`` (default: one clip each)."""
    if n is None:
        if not conds:
            raise UserError("pass --n (how many clips), or prompts/classes to generate one clip each")
        n = len(conds)
    return [conds[i % len(conds)] if conds else None for i in range(n)]


def _journal_rows(out: Path) -> list[dict]:
    """Rows of the journal; a line torn by a killed writer is dropped (its clip is redone)."""
    path = out / JOURNAL
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return rows


def finished_rows(out: Path) -> list[dict]:
    """Journal rows whose WAV is on disk: the clips the run has written."""
    return [r for r in _journal_rows(out) if (out / r["path"]).is_file()]


def check_same_run(out: Path, old: dict, new: dict, rows: list[dict]) -> None:
    """A UserError unless ``new`` continues the run ``old`` that wrote ``rows`` (nothing written:
    anything goes): same generator, seed and options, the same conditions for the clips written,
    and a clip count that keeps them all."""
    if not rows:
        return
    if any(old.get(k) != new.get(k) for k in PINNED):
        raise UserError(f"{out} holds clips of a different generate run ({RUN_FILE} differs); "
                        "pass --overwrite or another --out")
    last = max(int(r["index"]) for r in rows)
    if last >= new["n"]:
        raise UserError(f"{out} already holds {len(rows)} clips of this run, up to clip {last}: pass --n {last + 1} "
                        "or more to keep them, or --overwrite")
    before = old.get("conditions") or []
    changed = [i for i in sorted(int(r["index"]) for r in rows)
               if i >= len(before) or before[i] != new["conditions"][i]]
    if changed:
        raise UserError(f"{out} holds clips of a different generate run (clip {changed[0]} was made for another "
                        "class/prompt); pass --overwrite or another --out")


def clear_run(out: Path) -> None:
    """Remove what an earlier run wrote in ``out`` (the WAVs its journal names, the journal, the tables)."""
    for r in _journal_rows(out):
        name = str(r.get("path", ""))
        if name and Path(name).name == name:  # only files this run wrote, directly in out
            (out / name).unlink(missing_ok=True)
    for name in (JOURNAL, META_CSV, META_PARQUET, SKIPPED):
        (out / name).unlink(missing_ok=True)


def resume_state(out: Path, run: GenerateRun, overwrite: bool) -> set[int]:
    """Indices already written by an earlier run this one continues (resume); refuses a different run."""
    record = run.record()
    prev = out / RUN_FILE
    if prev.is_file() and not overwrite:
        rows = finished_rows(out)
        check_same_run(out, json.loads(prev.read_text()), record, rows)
        if (out / JOURNAL).is_file():  # keep only whole rows of finished clips, so appends stay parseable
            atomic.write_text(out / JOURNAL, "".join(json.dumps(r) + "\n" for r in rows))
        atomic.write_json(prev, record, indent=2, sort_keys=True, newline=False)
        return {int(r["index"]) for r in rows}
    if overwrite and out.is_dir():
        clear_run(out)
    out.mkdir(parents=True, exist_ok=True)
    atomic.write_json(prev, record, indent=2, sort_keys=True, newline=False)
    return set()


def metadata_row(index: int, clip, batch, kind: str, path: str) -> dict:
    """One metadata row: path, index, seed, condition, rate, generator, then scalar metadata."""
    row = {"path": path, "index": index, "seed": clip.seed, "condition": clip.condition,
           kind: clip.condition, "sample_rate": batch.sample_rate, "generator": batch.generator}
    for k, v in {**batch.meta, **clip.meta}.items():
        if k in row or k in ("skipped", "shortfall"):
            continue
        row[k] = v if v is None or isinstance(v, (str, int, float, bool)) else json.dumps(v)
    return row


def write_tables(out: Path) -> int:
    """metadata.csv + metadata.parquet listing the clips on disk, in clip order; returns the row count."""
    import pandas as pd

    rows = {int(r["index"]): r for r in finished_rows(out)}
    if not rows:  # nothing written: no table may claim otherwise
        for name in (META_CSV, META_PARQUET):
            (out / name).unlink(missing_ok=True)
        return 0
    df = pd.DataFrame([rows[i] for i in sorted(rows)])
    atomic.write_csv(df, out / META_CSV)
    atomic.write_parquet(df, out / META_PARQUET)
    return len(df)


def write_skipped(out: Path, skipped: dict) -> None:
    import pandas as pd

    if skipped:
        atomic.write_csv(pd.DataFrame(list(skipped.values())), out / SKIPPED)


def count_rows(path: Path) -> int:
    import pandas as pd

    return len(pd.read_csv(path)) if path.is_file() else 0


def consecutive(idx: list[int]) -> list[list[int]]:
    """``idx`` split into runs of consecutive indices."""
    runs: list[list[int]] = []
    for i in idx:
        if runs and runs[-1][-1] == i - 1:
            runs[-1].append(i)
        else:
            runs.append([i])
    return runs


def wav_name(index: int, seed) -> str:
    return f"gen_{index:05d}.wav" if seed is None else f"gen_{index:05d}_seed{seed}.wav"


def shortfall(run: GenerateRun, part: list[int], batch) -> str:
    """The error for a batch that is not the ``len(part)`` clips asked for."""
    got, asked = len(batch.clips), len(part)
    span = f"clips {part[0]}..{part[-1]} of the {len(run.plan)} of this run"
    if got > asked:
        return f"{run.generator} gave {got} clips where {asked} were asked for ({span}); none of them was written"
    reason = (batch.meta or {}).get("shortfall") or "it gave no reason"
    return f"{run.generator} gave {got} of the {asked} clips asked for ({span}): {reason}"


def generate_missing(gen, run: GenerateRun, todo: list[int], out: Path, *, batch_size: int,
                     progress: bool) -> None:
    """Generate clips ``todo`` in chunks of ``batch_size``: WAV first, then its journal row.

    A batch shorter than asked is written (it holds the first clips asked for), then raises a
    :class:`GeneratorError` naming the generator and its reason. Source files the generator
    skipped go to ``skipped.csv``, also when it raises."""
    from audioaudit.audio.io import write_wav
    from audioaudit.util.progress import progress_bar

    skipped: dict[str, dict] = {}
    try:
        with progress_bar(len(todo), "generating", enabled=progress) as advance, \
                open(out / JOURNAL, "a") as journal:
            for a in range(0, len(todo), batch_size):
                # consecutive indices share one call (seed + i per sample); gaps (resume) get their own
                for part in consecutive(todo[a : a + batch_size]):
                    batch = gen.generate(len(part), conditions=[run.plan[i] for i in part],
                                         seed=run.seed + part[0], **run.options)
                    for s in (batch.meta or {}).get("skipped") or []:
                        rec = dict(s) if isinstance(s, dict) else {"path": s[0], "reason": s[1]}
                        skipped.setdefault(str(rec.get("path")), rec)
                    clips = batch.clips if len(batch.clips) <= len(part) else []
                    for i, clip in zip(part, clips):
                        name = wav_name(i, clip.seed)
                        write_wav(out / name, clip.wave, batch.sample_rate)
                        journal.write(json.dumps(metadata_row(i, clip, batch, run.kind, name)) + "\n")
                    journal.flush()
                    advance(len(clips))
                    if len(batch.clips) != len(part):
                        raise GeneratorError(shortfall(run, part, batch))
    finally:
        write_skipped(out, skipped)


def run_generate(run: GenerateRun, out: Path, *, gen=None, batch_size: int = 8, overwrite: bool = False,
                 progress: bool = True) -> GenerateResult:
    """Generate every clip of ``run`` not already in ``out``, then write the metadata tables.

    ``gen``: the generator :func:`prepare_run` loaded for ``run`` (loaded and checked here when None).
    Counts come from the journal and the files; a clip of the plan not on disk at the end is an error."""
    warnings: list[str] = []
    if gen is None:
        gen, run, warnings = prepare_run(run)
    done = resume_state(out, run, overwrite)
    todo = [i for i in range(len(run.plan)) if i not in done]
    t0 = time.time()
    try:
        if todo:
            generate_missing(gen, run, todo, out, batch_size=batch_size, progress=progress)
    except GeneratorError as e:
        listed = write_tables(out)
        kept = (f"The {listed} clip(s) written so far are kept in {out} (listed in {META_CSV}); a rerun into the "
                "same --out resumes") if listed else f"Nothing was written to {out}"
        raise GeneratorError(f"{e}. {kept}") from None
    listed = write_tables(out)
    finished = {int(r["index"]) for r in finished_rows(out)}
    missing = [i for i in range(len(run.plan)) if i not in finished]
    if missing:
        raise GeneratorError(f"{run.generator}: {len(missing)} of the {len(run.plan)} clips are not in {out} "
                             f"(first: clip {missing[0]}); {listed} listed in {META_CSV}; a rerun resumes")
    return GenerateResult(len(finished - done), len(finished & done), listed, time.time() - t0,
                          count_rows(out / SKIPPED), tuple(warnings))
