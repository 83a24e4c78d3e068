"""Verb `generate --model EXPORT --input IN.jsonl --out OUT.jsonl [sampling flags]`: batch answers.

Input rows: ``{"id", "image": path|null, "messages": [{"role", "content"}, ...]}`` or the short
form ``{"id", "image", "prompt"}`` (one user message); a relative image path is relative to
IN.jsonl's folder. Output rows, in input order: ``{"id", "answer", "finish_reason", "new_tokens"}``,
or ``{"id", "error"}`` for a row that cannot be answered (malformed JSON, no id, a duplicate id,
missing or corrupt image, no user message, a prompt too long for the model's context). A bad row
is counted and never stops the run.

**Resuming, and what a crash can cost.** Each rank appends its finished batches to its own part
file ``OUT.part-<rank>`` and fsyncs after every batch, so a kill -9 loses at most the batch in
flight. A crash can leave a torn last line: readers ignore a line that does not end in a newline
(it is the batch in flight) and the rank truncates it before appending again. At the start every
rank reads OUT and all part files (of any earlier world size): an id with an answer there is
skipped; an id that only has an error is tried again. At the end rank 0 merges OUT and the part
files into OUT (one line per id, an answer preferred to an error, input order; written to a
temporary file and renamed) and removes the part files. Killed during the merge, the next run finds
the same records again.

**Several GPUs.** Under torchrun each rank loads the model on its own GPU (LOCAL_RANK) and takes
the rows whose index i in IN.jsonl has ``i % world_size == rank``; ranks meet at the end (a gloo
barrier) so that rank 0 merges and reports the totals.

done: ``{"out", "answered", "skipped_existing", "bad_rows", "new_tokens", "seconds", "tokens_per_s"}``
(answered, bad_rows and new_tokens count this run only, over all ranks).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from loom_compute.errors import UsageError
from loom_compute.locks import output_lock
from loom_compute.protocol import log, process_rank, progress, world_size
from loom_compute.verbs.dispatch import Verb


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags `generate` and `chat` share: the export, sampling, device and dtype."""
    parser.add_argument("--model", required=True, metavar="EXPORT", help="a Loom export directory (runs/NAME/export or an imported one)")
    parser.add_argument("--max-new-tokens", type=int, default=256, metavar="N", help="new tokens per answer at most (default 256)")
    parser.add_argument("--temperature", type=float, default=0.0, help="0 = greedy (default); above 0 samples")
    parser.add_argument("--top-p", type=float, default=1.0, help="nucleus sampling: keep the most probable tokens up to this mass (default 1.0 = off)")
    parser.add_argument("--top-k", type=int, default=0, help="keep only the k most probable tokens (default 0 = off)")
    parser.add_argument("--seed", type=int, default=0, help="sampling seed (default 0)")
    parser.add_argument("--stop", action="append", default=[], metavar="STR", help="a stop string (repeatable); the answer is cut before it")
    parser.add_argument("--device", default="auto", help="auto (default: this rank's GPU with bf16 if there is one, else cpu), cpu, cuda or cuda:N")
    parser.add_argument("--dtype", default="auto", choices=("auto", "float32", "bfloat16"), help="auto (default): bfloat16 on CUDA, float32 on the CPU")


def sampling_from_args(args: argparse.Namespace) -> Any:
    """The sampling flags, checked: a bad value is a usage error (exit 2) naming the flag."""
    from loom_compute.errors import LoomComputeError
    from loom_compute.infer.generate import SamplingParams

    try:
        return SamplingParams(
            max_new_tokens=args.max_new_tokens,
            temperature=args.temperature,
            top_p=args.top_p,
            top_k=args.top_k,
            seed=args.seed,
            stop_strings=tuple(args.stop),
        )
    except LoomComputeError as exc:
        raise UsageError(exc.message) from None


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    add_model_arguments(parser)
    parser.add_argument("--input", required=True, metavar="IN.jsonl", help="one request per line: {id, image, messages} or {id, image, prompt}")
    parser.add_argument("--out", required=True, metavar="OUT.jsonl", help="answers, one per line, in input order; a rerun skips ids already answered")
    parser.add_argument("--batch-size", type=int, default=8, metavar="N", help="rows generated together (default 8)")


# ---- reading rows ------------------------------------------------------------------------------


@dataclass
class Row:
    index: int  # position among the input's non-blank lines: the unit ranks split by
    id: str
    image: Path | None = None
    messages: Any = None
    error: str | None = None


def read_rows(path: Path) -> list[Row]:
    """Every non-blank line of IN.jsonl as a Row; a malformed one carries its error."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"--input {path}: cannot read it ({exc})") from None
    rows: list[Row] = []
    seen: set[str] = set()
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        index = len(rows)
        try:
            raw = json.loads(line)
        except json.JSONDecodeError as exc:
            rows.append(Row(index, f"#{number}", error=f"{path}:{number}: not JSON ({exc.msg})"))
            continue
        if not isinstance(raw, dict):
            rows.append(Row(index, f"#{number}", error=f"{path}:{number}: a row must be a JSON object"))
            continue
        rid = raw.get("id")
        if isinstance(rid, int) and not isinstance(rid, bool):
            rid = str(rid)
        if not isinstance(rid, str) or not rid:
            rows.append(Row(index, f"#{number}", error=f"{path}:{number}: key 'id' is missing or not a non-empty string"))
            continue
        if rid in seen:
            rows.append(Row(index, rid, error=f"{path}:{number}: duplicate id {rid!r} (the first row with it is answered)"))
            continue
        seen.add(rid)
        row = Row(index, rid)
        image = raw.get("image")
        if image is not None and (not isinstance(image, str) or not image):
            row.error = f"{path}:{number}: key 'image' must be a path or null"
        elif image is not None:
            row.image = (path.parent / image) if not Path(image).is_absolute() else Path(image)
        if "messages" in raw:
            row.messages = raw["messages"]
        elif isinstance(raw.get("prompt"), str):
            row.messages = [{"role": "user", "content": raw["prompt"]}]
        elif row.error is None:
            row.error = f"{path}:{number}: no user message (give 'messages' or 'prompt')"
        rows.append(row)
    return rows


# ---- the output files --------------------------------------------------------------------------


def part_path(out: Path, rank: int) -> Path:
    return out.with_name(f"{out.name}.part-{rank}")


def _part_files(out: Path) -> list[Path]:
    return sorted(p for p in out.parent.glob(f"{out.name}.part-*") if p.name[len(out.name) + 6 :].isdigit())


def read_records(path: Path) -> Iterator[dict[str, Any]]:
    """Complete lines only: a last line without its newline is a torn write and is skipped."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return
    for line in data.split(b"\n")[:-1]:
        try:
            record = json.loads(line)
        except (json.JSONDecodeError, UnicodeDecodeError):
            continue
        if isinstance(record, dict) and isinstance(record.get("id"), str):
            yield record


def existing_records(out: Path) -> list[dict[str, Any]]:
    records = list(read_records(out))
    for part in _part_files(out):
        records.extend(read_records(part))
    return records


def repair_torn_tail(path: Path) -> None:
    """Cuts an unfinished last line (a crash mid-write) so appends start on a line of their own."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return
    end = data.rfind(b"\n") + 1
    if end != len(data):
        with open(path, "r+b") as handle:
            handle.truncate(end)


def append_records(path: Path, records: list[dict[str, Any]]) -> None:
    if not records:
        return
    text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())


def merge_output(out: Path, rows: list[Row]) -> None:
    """OUT = one record per id (answers over errors, later over earlier), in input order; parts removed."""
    from loom_compute.atomic import write_text_atomic

    best: dict[str, dict[str, Any]] = {}
    for record in existing_records(out):
        previous = best.get(record["id"])
        if previous is None or "error" in previous or "error" not in record:
            best[record["id"]] = record
    order: dict[str, int] = {}
    for row in rows:
        order.setdefault(row.id, row.index)
    ordered = sorted(best.values(), key=lambda r: (order.get(r["id"], len(order)), r["id"]))
    write_text_atomic(out, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in ordered))
    for part in _part_files(out):
        part.unlink(missing_ok=True)


# ---- the run ---------------------------------------------------------------------------------


def _batches(rows: list[Row], size: int) -> Iterator[list[Row]]:
    for start in range(0, len(rows), size):
        yield rows[start : start + size]


def run(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    from loom_compute.infer.loading import InferenceModel, RowError
    from loom_compute.infer.prompts import PromptError, parse_messages

    if args.batch_size < 1:
        raise UsageError(f"--batch-size must be at least 1, got {args.batch_size}")
    params = sampling_from_args(args)
    source, out = Path(args.input), Path(args.out)
    if not out.parent.is_dir():
        raise UsageError(f"--out {out}: the folder {out.parent} does not exist")
    rank, world = process_rank(), world_size()
    group = _init_group(world)
    started = time.perf_counter()

    # One writer per part file; rank 0's lock also covers the merge (and so the whole output).
    with output_lock(part_path(out, rank).with_name(part_path(out, rank).name + ".lock"), f"--out {out}"):
        rows = read_rows(source)
        done_ids = {r["id"] for r in existing_records(out) if "error" not in r}
        mine = [row for row in rows if row.index % world == rank]
        todo = [row for row in mine if row.id not in done_ids]
        skipped = len(mine) - len(todo)
        runner = InferenceModel.load(args.model, device=args.device, dtype=args.dtype) if todo else None
        part = part_path(out, rank)
        repair_torn_tail(part)
        answered = bad = new_tokens = 0
        finished = 0
        for batch in _batches(todo, args.batch_size):
            records: list[dict[str, Any]] = []
            ready = []
            for row in batch:
                if row.error is not None:
                    records.append({"id": row.id, "error": row.error})
                    continue
                try:
                    messages = parse_messages(row.messages, f"row {row.id!r}: messages")
                    ready.append((row, runner.request(messages, row.image)))  # type: ignore[union-attr]
                except PromptError as exc:
                    records.append({"id": row.id, "error": exc.message})
                except RowError as exc:
                    records.append({"id": row.id, "error": exc.message})
            if ready:
                results = runner.generator.generate([req for _, req in ready], params)  # type: ignore[union-attr]
                for (row, _), result in zip(ready, results):
                    records.append({"id": row.id, "answer": result.text, "finish_reason": result.finish_reason, "new_tokens": result.new_tokens})
                    new_tokens += result.new_tokens
            answered += sum(1 for r in records if "answer" in r)
            bad += sum(1 for r in records if "error" in r)
            position = {id(record): k for k, record in enumerate(records)}
            by_row = {row.id: row.index for row in batch}
            records.sort(key=lambda r: (by_row.get(r["id"], 0), position[id(r)]))
            append_records(part, records)
            finished += len(batch)
            progress(finished, len(todo), rows_done=finished)

        totals = [answered, bad, new_tokens, skipped]
        if group is not None:
            import torch.distributed as dist

            summed = torch.tensor(totals, dtype=torch.long)
            dist.all_reduce(summed)
            totals = summed.tolist()
        if rank == 0:
            merge_output(out, rows)
        if group is not None:
            import torch.distributed as dist

            dist.barrier()
            dist.destroy_process_group()
    seconds = time.perf_counter() - started
    answered, bad, new_tokens, skipped = totals
    if bad:
        log("warning", f"{bad} row(s) could not be answered; their errors are in {out}")
    return {
        "out": str(out),
        "answered": answered,
        "skipped_existing": skipped,
        "bad_rows": bad,
        "new_tokens": new_tokens,
        "seconds": round(seconds, 3),
        "tokens_per_s": round(new_tokens / seconds, 2) if seconds > 0 else 0.0,
    }


def _init_group(world: int) -> Any:
    """A gloo group for the final barrier and the totals (torchrun's env), or None on one process."""
    if world <= 1:
        return None
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group("gloo")
    return dist.group.WORLD


VERB = Verb(
    name="generate",
    help="answer a JSON-lines file of image+text prompts with a Loom export: batched, resumable, one rank per GPU",
    run=run,
    add_arguments=_add_arguments,
)
