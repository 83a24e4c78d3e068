"""Reading Loom's packed shards (written by src/pack/packedShard.ts) and collating them for training.

A packed shard is a tar whose first member, ``__loom_pack__.json``, says what the shard was packed
for (tokenizer hash, image tokens per image, sequence length, stage, image size); then one
WebDataset sample per packed sequence: ``{key}.tokens.npy`` (int32), ``{key}.doclens.npy`` (int32),
``{key}.loss.npy`` (uint8), ``{key}.imgNNN.jpg`` and ``{key}.json`` (source uids). The layout is
described in docs/formats.md ("Packed shards").

Collation conventions (``collate_packed``):
- ``labels`` are NOT shifted: ``labels[t]`` is the target for the token at t, as HF causal-LM
  models expect (they shift inside the loss). A label is the token id where the loss mask is 1,
  else -100; the first token of every document is always -100, because with isolated documents
  nothing before it in its own document can predict it.
- Padding (``pad_id``) fills each row to ``seq_len``. It counts as one more segment of its own:
  ``cu_seqlens`` covers every position of the flattened batch (so its last entry is B*seq_len)
  and padding positions count from 0 like a document. Its labels are -100, attention_mask 0.
"""

from __future__ import annotations

import io
import json
import re
import tarfile
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from loom_compute.config import RunConfig
from loom_compute.errors import LoomComputeError
from loom_compute.labels import IGNORE_INDEX

META_MEMBER = "__loom_pack__.json"
FORMAT = "loom-packed"
VERSION = 1

#: Fields of the header a run must agree with; the reader refuses a shard that differs in any.
CHECKED_FIELDS = ("tokenizer_sha256", "image_tokens_per_image", "seq_len", "stage", "image_size")
#: Fields checked only when the caller gives them.
OPTIONAL_FIELDS = ("image_token_id", "pad_id", "eos_id")

_SEQUENCE_PARTS = {"tokens.npy", "doclens.npy", "loss.npy", "json"}
_IMAGE_EXT = re.compile(r"^img(\d{3,})\.jpg$")


class PackedShardError(LoomComputeError):
    """A packed shard that cannot be used: wrong run, or broken content. The message names the file."""


# `loom pack` writes PACK/w{window:06d}/{shard:08d}.tar (src/pack/window.ts windowDirName,
# src/pack/packedShard.ts); a shard being written is a hidden temp sibling that never matches.
_WINDOW_DIR = re.compile(r"^w\d{6}$")
_SHARD_FILE = re.compile(r"^\d{8}\.tar$")


def packed_shard_paths(pack_dir: str | Path) -> list[Path]:
    """The finished packed shards of a `loom pack` output directory, window by window, in order."""
    root = Path(pack_dir)
    paths = sorted(
        shard
        for window in (root.iterdir() if root.is_dir() else ())
        if _WINDOW_DIR.match(window.name) and window.is_dir()
        for shard in window.iterdir()
        if _SHARD_FILE.match(shard.name) and shard.is_file()
    )
    if not paths:
        raise PackedShardError(f"{root}: no packed shards (w??????/????????.tar); run `loom pack` first")
    return paths


def expectations(config: RunConfig, tokenizer_sha256: str) -> dict[str, Any]:
    """What a run (resolved config) expects of its packed shards."""
    return {
        "tokenizer_sha256": tokenizer_sha256,
        "image_tokens_per_image": config.image_tokens_per_image,
        "seq_len": config.data.seq_len,
        "stage": config.stage,
        "image_size": config.model.vision.image_size,
    }


def read_pack_meta(path: str | Path) -> dict[str, Any]:
    """The header of a packed shard, read from its first member only."""
    path = Path(path)
    with _open(path) as tar:
        try:
            first = next(iter(tar), None)
        except tarfile.TarError as exc:
            raise PackedShardError(f"{path}: not a readable tar ({exc})") from exc
        if first is not None:
            return _parse_meta(path, first, tar)
    raise PackedShardError(f"{path}: empty archive, expected {META_MEMBER} as its first member")


def read_packed_shard(path: str | Path, expect: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    """Yields each packed sequence of the shard, in order, after checking the header against ``expect``.

    ``expect`` must hold every field of CHECKED_FIELDS (see ``expectations``) and may hold
    OPTIONAL_FIELDS. Each sequence is a dict: ``key``, ``tokens`` (int32 [n]), ``doclens``
    (int32 [docs]), ``loss`` (uint8 [n]), ``images`` (uint8 [images, S, S, 3], RGB) and ``uids``.
    The tar is read as a stream (``r|``): one sequence in memory at a time.
    """
    path = Path(path)
    missing = [f for f in CHECKED_FIELDS if f not in expect]
    if missing:
        raise ValueError(f"read_packed_shard: expect lacks {', '.join(missing)}")
    with _open(path) as tar:
        members = iter(tar)
        try:
            first = next(members)
        except StopIteration:
            raise PackedShardError(f"{path}: empty archive, expected {META_MEMBER} as its first member") from None
        except tarfile.TarError as exc:
            raise PackedShardError(f"{path}: not a readable tar ({exc})") from exc
        meta = _parse_meta(path, first, tar)
        _check_meta(path, meta, expect)
        totals = {"sequences": 0, "documents": 0, "images": 0, "real_tokens": 0}
        for _, key, parts in _group(path, members, tar):
            sequence = _sequence(path, key, parts, meta)  # type: ignore[arg-type]
            totals["sequences"] += 1
            totals["documents"] += len(sequence["doclens"])
            totals["images"] += len(sequence["images"])
            totals["real_tokens"] += len(sequence["tokens"])
            yield sequence
    for field, count in totals.items():
        if meta[field] != count:
            raise PackedShardError(f"{path}: header says {field} = {meta[field]} but the shard holds {count} (file truncated or damaged?)")


def _open(path: Path) -> tarfile.TarFile:
    try:
        return tarfile.open(path, mode="r|")
    except FileNotFoundError:
        raise PackedShardError(f"{path}: no such packed shard") from None
    except (tarfile.TarError, OSError) as exc:
        raise PackedShardError(f"{path}: not a readable tar ({exc})") from exc


def _read(path: Path, tar: tarfile.TarFile, member: tarfile.TarInfo) -> bytes:
    handle = tar.extractfile(member)
    if handle is None:
        raise PackedShardError(f"{path}: member {member.name} is not a regular file")
    try:
        return handle.read()
    except (tarfile.TarError, OSError) as exc:
        raise PackedShardError(f"{path}: member {member.name} is cut off or damaged ({exc})") from exc


def _parse_meta(path: Path, member: tarfile.TarInfo, tar: tarfile.TarFile) -> dict[str, Any]:
    if member.name != META_MEMBER:
        raise PackedShardError(f"{path}: first member is {member.name!r}, expected {META_MEMBER} (not a Loom packed shard?)")
    try:
        meta = json.loads(_read(path, tar, member).decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise PackedShardError(f"{path}: {META_MEMBER} is not valid JSON ({exc})") from exc
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise PackedShardError(f"{path}: {META_MEMBER} has format {meta.get('format') if isinstance(meta, dict) else None!r}, expected {FORMAT!r}")
    if meta.get("version") != VERSION:
        raise PackedShardError(f"{path}: packed shard format version {meta.get('version')!r}, this reader reads version {VERSION}")
    needed = (*CHECKED_FIELDS, *OPTIONAL_FIELDS, "sequences", "documents", "images", "real_tokens")
    absent = [f for f in needed if f not in meta]
    if absent:
        raise PackedShardError(f"{path}: {META_MEMBER} lacks {', '.join(absent)}")
    return meta


def _check_meta(path: Path, meta: Mapping[str, Any], expect: Mapping[str, Any]) -> None:
    for field in (*CHECKED_FIELDS, *OPTIONAL_FIELDS):
        if field in expect and meta[field] != expect[field]:
            raise PackedShardError(
                f"{path}: packed for {field} = {meta[field]!r} but this run has {field} = {expect[field]!r}; "
                "repack the data for this run's config and tokenizer",
                field=field,
                shard=meta[field],
                run=expect[field],
            )


def _group(
    path: Path,
    members: Iterable[tarfile.TarInfo],
    tar: tarfile.TarFile,
    wanted: Callable[[int], bool] | None = None,
) -> Iterator[tuple[int, str, dict[str, bytes] | None]]:
    """Consecutive members with the same key, as WebDataset groups them: (ordinal, key, parts).

    With ``wanted``, the members of sequences whose ordinal it rejects are skipped unread and
    their ``parts`` is None, so a reader starting mid-shard pays only for tar headers.
    """
    ordinal, key = -1, None
    parts: dict[str, bytes] | None = None
    seen: set[str] = set()
    try:
        for member in members:
            if not member.isfile():
                continue
            base = member.name.rsplit("/", 1)[-1]
            if "." not in base:
                raise PackedShardError(f"{path}: member {member.name!r} has no extension")
            member_key, ext = base.split(".", 1)
            if member_key != key:
                if key is not None:
                    yield ordinal, key, parts
                if member_key in seen:
                    raise PackedShardError(f"{path}: members of sequence {member_key} are not together (key seen before)")
                seen.add(member_key)
                ordinal, key = ordinal + 1, member_key
                parts = {} if wanted is None or wanted(ordinal) else None
            if parts is None:
                continue
            if ext in parts:
                raise PackedShardError(f"{path}: sequence {member_key} has two {ext} members")
            parts[ext] = _read(path, tar, member)
    except (tarfile.TarError, OSError) as exc:
        raise PackedShardError(f"{path}: archive is damaged after sequence {key} ({exc})") from exc
    if key is not None:
        yield ordinal, key, parts


def _npy(path: Path, key: str, ext: str, data: bytes, dtype: np.dtype) -> np.ndarray:
    try:
        array = np.load(io.BytesIO(data), allow_pickle=False)
    except (ValueError, OSError) as exc:
        raise PackedShardError(f"{path}: {key}.{ext} is not a valid .npy ({exc})") from exc
    if array.dtype != dtype or array.ndim != 1:
        raise PackedShardError(f"{path}: {key}.{ext} holds {array.dtype} with shape {array.shape}, expected 1-D {dtype}")
    return array


def _sequence(path: Path, key: str, parts: dict[str, bytes], meta: Mapping[str, Any]) -> dict[str, Any]:
    where = f"{path}: sequence {key}"
    missing = sorted(_SEQUENCE_PARTS - parts.keys())
    if missing:
        raise PackedShardError(f"{where} lacks {', '.join(missing)}")
    image_names: dict[int, str] = {}
    for ext in parts:
        match = _IMAGE_EXT.match(ext)
        if match:
            image_names[int(match.group(1))] = ext
        elif ext not in _SEQUENCE_PARTS:
            raise PackedShardError(f"{where} has an unexpected member {key}.{ext}")
    if sorted(image_names) != list(range(len(image_names))):
        raise PackedShardError(f"{where}: images are not numbered 0..{len(image_names) - 1}: {sorted(image_names)}")

    tokens = _npy(path, key, "tokens.npy", parts["tokens.npy"], np.dtype("<i4"))
    doclens = _npy(path, key, "doclens.npy", parts["doclens.npy"], np.dtype("<i4"))
    loss = _npy(path, key, "loss.npy", parts["loss.npy"], np.dtype("u1"))
    if len(loss) != len(tokens):
        raise PackedShardError(f"{where}: loss mask has {len(loss)} values for {len(tokens)} tokens")
    if int(doclens.sum()) != len(tokens) or (doclens <= 0).any():
        raise PackedShardError(f"{where}: document lengths {doclens.tolist()} do not add up to its {len(tokens)} tokens")
    if len(tokens) > meta["seq_len"]:
        raise PackedShardError(f"{where}: {len(tokens)} tokens exceed seq_len {meta['seq_len']}")
    image_tokens = int((tokens == meta["image_token_id"]).sum())
    if image_tokens != len(image_names) * meta["image_tokens_per_image"]:
        raise PackedShardError(
            f"{where}: {image_tokens} image tokens but {len(image_names)} image(s) of {meta['image_tokens_per_image']} tokens"
        )
    try:
        info = json.loads(parts["json"].decode("utf-8"))
        uids = list(info["uids"])
    except (UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError) as exc:
        raise PackedShardError(f"{where}: {key}.json has no readable uids list ({exc})") from exc
    if len(uids) != len(doclens):
        raise PackedShardError(f"{where}: {len(uids)} uids for {len(doclens)} documents")

    size = meta["image_size"]
    images = np.empty((len(image_names), size, size, 3), dtype=np.uint8)
    for i in range(len(image_names)):
        name = f"{key}.{image_names[i]}"
        try:
            with Image.open(io.BytesIO(parts[image_names[i]])) as img:
                rgb = img.convert("RGB")
        except (OSError, ValueError) as exc:
            raise PackedShardError(f"{path}: {name} is not a readable image ({exc})") from exc
        if rgb.size != (size, size):
            raise PackedShardError(f"{path}: {name} is {rgb.size[0]}x{rgb.size[1]}, expected {size}x{size} (image_size)")
        images[i] = np.asarray(rgb)
    return {"key": key, "tokens": tokens, "doclens": doclens, "loss": loss, "images": images, "uids": uids}


def collate_packed(
    sequences: Sequence[Mapping[str, Any]],
    seq_len: int,
    pad_id: int,
    image_mean: Sequence[float],
    image_std: Sequence[float],
) -> dict[str, Any]:
    """Batches packed sequences for an isolated-attention forward (conventions in the module docstring).

    Returns ``input_ids``, ``labels``, ``position_ids``, ``attention_mask`` (int64 [B, seq_len]),
    ``document_ids`` (int32 [B, seq_len]: the segment index of each position over the whole batch,
    padding segments included), ``cu_seqlens`` (int32 [segments + 1], boundaries over the flattened
    B*seq_len positions), ``max_seqlen`` (int), ``pixel_values`` (float32 [images, 3, S, S],
    (x/255 - mean) / std, images in row-major order of appearance) and ``images_per_row`` (int64 [B]).
    """
    if len(sequences) == 0:
        raise ValueError("collate_packed: no sequences")
    batch = len(sequences)
    input_ids = np.full((batch, seq_len), pad_id, dtype=np.int64)
    labels = np.full((batch, seq_len), IGNORE_INDEX, dtype=np.int64)
    position_ids = np.zeros((batch, seq_len), dtype=np.int64)
    attention_mask = np.zeros((batch, seq_len), dtype=np.int64)
    document_ids = np.zeros((batch, seq_len), dtype=np.int32)
    segment_lengths: list[int] = []
    for row, seq in enumerate(sequences):
        tokens = np.asarray(seq["tokens"])
        loss = np.asarray(seq["loss"])
        doclens = [int(n) for n in seq["doclens"]]
        n = len(tokens)
        if n > seq_len:
            raise ValueError(f"collate_packed: sequence {seq.get('key', row)} has {n} tokens, more than seq_len {seq_len}")
        input_ids[row, :n] = tokens
        labels[row, :n] = np.where(loss == 1, tokens, IGNORE_INDEX)
        attention_mask[row, :n] = 1
        at = 0
        for length in [*doclens, *([seq_len - n] if n < seq_len else [])]:
            position_ids[row, at : at + length] = np.arange(length)
            document_ids[row, at : at + length] = len(segment_lengths)
            if at < n:
                labels[row, at] = IGNORE_INDEX  # a document's first token has nothing before it to predict it
            segment_lengths.append(length)
            at += length
    cu_seqlens = np.zeros(len(segment_lengths) + 1, dtype=np.int32)
    np.cumsum(segment_lengths, out=cu_seqlens[1:])

    images = [np.asarray(seq["images"], dtype=np.uint8) for seq in sequences]
    sizes = {img.shape[1:] for img in images if len(img)}
    if len(sizes) > 1:
        raise ValueError(f"collate_packed: images of different sizes in one batch: {sorted(sizes)}")
    size = next(iter(sizes))[0] if sizes else 0
    stacked = np.concatenate([img.reshape(-1, size, size, 3) for img in images], axis=0) if sizes else np.zeros((0, 0, 0, 3), np.uint8)
    mean = torch.tensor(image_mean, dtype=torch.float32).view(1, 3, 1, 1)
    std = torch.tensor(image_std, dtype=torch.float32).view(1, 3, 1, 1)
    pixels = torch.from_numpy(stacked).permute(0, 3, 1, 2).to(torch.float32).div_(255.0)
    pixel_values = ((pixels - mean) / std).contiguous()

    return {
        "input_ids": torch.from_numpy(input_ids),
        "labels": torch.from_numpy(labels),
        "position_ids": torch.from_numpy(position_ids),
        "attention_mask": torch.from_numpy(attention_mask),
        "document_ids": torch.from_numpy(document_ids),
        "cu_seqlens": torch.from_numpy(cu_seqlens),
        "max_seqlen": max(segment_lengths),
        "pixel_values": pixel_values,
        "images_per_row": torch.tensor([len(img) for img in images], dtype=torch.int64),
    }


def check_pack_meta(path: str | Path, expect: Mapping[str, Any]) -> dict[str, Any]:
    """The header of a packed shard after checking it against ``expect`` (as ``read_packed_shard`` does)."""
    path = Path(path)
    missing = [f for f in CHECKED_FIELDS if f not in expect]
    if missing:
        raise ValueError(f"check_pack_meta: expect lacks {', '.join(missing)}")
    meta = read_pack_meta(path)
    _check_meta(path, meta, expect)
    return meta


def read_packed_members(path: str | Path, meta: Mapping[str, Any], wanted: Iterable[int]) -> Iterator[tuple[int, str, dict[str, bytes]]]:
    """Raw members of the sequences at the ordinals ``wanted`` (0-based, in file order), without decoding them.

    For a loader that starts inside a shard: the tar is opened for random access, so sequences that
    are not wanted cost only their 512-byte tar headers. ``meta`` is the header the caller checked
    before (``check_pack_meta``); a shard whose header changed since is refused. After the last
    member the number of sequences is checked against the header, so a cut-off file is caught.
    Decode a yielded sequence with ``decode_packed_sequence``.
    """
    path = Path(path)
    want = set(wanted)
    try:
        tar = tarfile.open(path, mode="r:")
    except FileNotFoundError:
        raise PackedShardError(f"{path}: no such packed shard") from None
    except (tarfile.TarError, OSError) as exc:
        raise PackedShardError(f"{path}: not a readable tar ({exc})") from exc
    with tar:
        try:
            first = tar.next()
            if first is None:
                raise PackedShardError(f"{path}: empty archive, expected {META_MEMBER} as its first member")
            header = _parse_meta(path, first, tar)
            if header != dict(meta):
                raise PackedShardError(f"{path}: header changed since the loader read it (shard rewritten during the run?)")
            count = 0
            # Iterating a random-access tar starts over from the first member.
            for ordinal, key, parts in _group(path, (m for m in tar if m is not first), tar, want.__contains__):
                count += 1
                if parts is not None:
                    yield ordinal, key, parts
        except (tarfile.TarError, OSError) as exc:
            raise PackedShardError(f"{path}: archive is damaged ({exc})") from exc
    if count != meta["sequences"]:
        raise PackedShardError(f"{path}: header says sequences = {meta['sequences']} but the shard holds {count} (file truncated or damaged?)")


def decode_packed_sequence(path: str | Path, key: str, parts: dict[str, bytes], meta: Mapping[str, Any]) -> dict[str, Any]:
    """One sequence from its raw members (as ``read_packed_members`` yields them), checked and decoded
    like ``read_packed_shard`` does."""
    return _sequence(Path(path), key, parts, meta)
