"""Reads one raw WebDataset shard's samples in tar order with Python's `tarfile` (no `pipe:`).

Grouping and checks follow the TypeScript reader (src/shards/grouping.ts, validate.ts, reader.ts;
docs/formats.md section 1) so both sides call the same samples good and give bad ones the same
reason. The image check here is a full decode with PIL, converted to RGB the way transformers'
`convert_to_rgb` does (alpha composited on white), so the scorer gets exactly what an HF
processor would have made of the file.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import tarfile
import warnings
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from loom_compute.images_limit import MAX_IMAGE_PIXELS
from loom_compute.infer.images import to_rgb

IMAGE_FIELDS = {"jpg": "jpg", "jpeg": "jpg", "png": "png", "webp": "webp"}
SAMPLE_FIELDS = frozenset([*IMAGE_FIELDS, "txt", "json"])
PIL_FORMATS = {"jpg": "JPEG", "png": "PNG", "webp": "WEBP"}
# webdataset's base_plus_ext, as src/shards/keys.ts MEMBER_NAME_RE.
MEMBER_NAME_RE = re.compile(r"^((?:.*/|)[^.]+)[.]([^/]*)$", re.DOTALL)
UID_RE = re.compile(r"^[0-9a-f]{32}$")
# The key rule of src/shards/keys.ts (keyProblem, extensionProblem): what the writer cannot
# store is an `unsafe_key` at read time, so one hostile name never aborts a reshard.
MAX_KEY_BYTES = 512
MAX_KEY_PART_BYTES = 200
_CONTROL_OR_BACKSLASH = re.compile(r"[\x00-\x1f\x7f\\]")
_NOT_UTF8 = re.compile("[\ufffd\ud800-\udfff]")
BLOCK = 512
DECODE_WINDOW_PER_WORKER = 4  # images in flight per decode thread
END_OF_ARCHIVE = 2 * BLOCK


@dataclass(frozen=True)
class GoodSample:
    key: str
    uid: str
    caption: str
    image_bytes: bytes = field(repr=False)
    ext: str
    image: Image.Image = field(repr=False, compare=False)
    """The decoded image, RGB."""


@dataclass(frozen=True)
class BadSample:
    key: str | None
    reason: str
    detail: str


Item = GoodSample | BadSample


def split_member_name(name: str) -> tuple[str, str] | None:
    """(key, lower-cased extension) of a tar member path, or None when it has no field name."""
    match = MEMBER_NAME_RE.match(name)
    if not match or match.group(2) == "":
        return None
    return match.group(1), match.group(2).lower()


def derive_uid(shard_path: str | Path, key: str) -> str:
    """md5 of "<shard file basename>/<key>", as src/shards/keys.ts `deriveUid`."""
    return hashlib.md5(f"{Path(shard_path).name}/{key}".encode()).hexdigest()


def is_valid_uid(value: object) -> bool:
    return isinstance(value, str) and UID_RE.fullmatch(value) is not None


def key_problem(key: str) -> str | None:
    """Why `key` cannot be written as a sample key, or None; src/shards/keys.ts `keyProblem`."""
    if key == "":
        return "the key is empty"
    shown = json.dumps(key, ensure_ascii=False)
    if _CONTROL_OR_BACKSLASH.search(key):
        return f"key {shown} contains a control character or backslash"
    # tarfile decodes names with surrogateescape; Node gives U+FFFD: both mean "not UTF-8".
    if _NOT_UTF8.search(key):
        return f"key {json.dumps(key)} is not valid UTF-8"
    if key.startswith("/"):
        return f"key {shown} is an absolute path"
    parts = key.split("/")
    if any(part in ("", ".", "..") for part in parts):
        return f'key {shown} has an empty, "." or ".." path part'
    if "." in parts[-1]:
        return f"key {shown} contains a dot in its last part (the first dot there separates key and extension)"
    size = len(key.encode("utf-8"))
    if size > MAX_KEY_BYTES:
        return f"key of {size} bytes is longer than {MAX_KEY_BYTES} bytes (starts {json.dumps(key[:40], ensure_ascii=False)})"
    if any(len(part.encode("utf-8")) > MAX_KEY_PART_BYTES for part in parts):
        return f"key {shown} has a path part longer than {MAX_KEY_PART_BYTES} bytes"
    return None


def extension_problem(ext: str) -> str | None:
    """Why a member extension cannot be written, or None; src/shards/keys.ts `extensionProblem`."""
    if ext == "":
        return "has an empty extension"
    if "/" in ext or _CONTROL_OR_BACKSLASH.search(ext):
        return f'{json.dumps(ext)}: an extension cannot hold "/", a backslash or a control character'
    if _NOT_UTF8.search(ext):
        return f"{json.dumps(ext)}: the extension is not valid UTF-8"
    return None


def decode_image(data: bytes, ext: str) -> tuple[Image.Image | None, str, str]:
    """(RGB image, "", "") or (None, reason, detail); reason is corrupt_image, truncated_image or
    image_too_large (judged from the header, before any pixel is decoded)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # PIL's DecompressionBombWarning and EXIF chatter
            with Image.open(io.BytesIO(data)) as image:
                if image.format != PIL_FORMATS[ext]:
                    return None, "corrupt_image", f"the bytes are {image.format or 'not an image'}, not {PIL_FORMATS[ext]}"
                width, height = image.size
                if width * height > MAX_IMAGE_PIXELS:
                    return None, "image_too_large", _too_large(width, height)
                image.load()
                return to_rgb(image), "", ""
    except OSError as exc:
        text = str(exc)
        reason = "truncated_image" if "truncated" in text.lower() or "broken data stream" in text else "corrupt_image"
        return None, reason, text
    except Image.DecompressionBombError as exc:
        # PIL refuses at open (over twice the limit), before the format could be compared; the TS
        # header check compares it first, so a mislabelled one stays corrupt_image there too.
        if _signature_format(data) != ext:
            return None, "corrupt_image", f"the bytes are not {PIL_FORMATS[ext]}"
        return None, "image_too_large", str(exc)
    except (ValueError, SyntaxError) as exc:
        return None, "corrupt_image", str(exc) or type(exc).__name__


def _signature_format(data: bytes) -> str | None:
    if data[:3] == b"\xff\xd8\xff":
        return "jpg"
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return "png"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    return None


def _too_large(width: int, height: int) -> str:
    return f"{width}x{height} is {width * height} pixels, more than the limit of {MAX_IMAGE_PIXELS}"


@dataclass
class _Member:
    name: str
    ext: str
    data: bytes


@dataclass
class _Group:
    key: str
    members: list[_Member] = field(default_factory=list)


def _names(members: list[_Member]) -> str:
    return ", ".join(m.name.rsplit("/", 1)[-1] for m in members)


def _judge(group: _Group, shard: Path, seen: set[str]) -> Iterator[BadSample | _Undecoded]:
    plain: list[_Member] = []
    dotted: dict[str, list[_Member]] = {}
    for m in group.members:
        dot = m.ext.rfind(".")
        if dot >= 0 and m.ext[dot + 1 :] in SAMPLE_FIELDS:
            intended = m.name[: len(m.name) - (len(m.ext) - dot)]
            dotted.setdefault(intended, []).append(m)
        else:
            plain.append(m)
    for intended, members in dotted.items():
        yield BadSample(intended, "dotted_key", f'members {_names(members)}: key "{intended}" contains a dot (WebDataset keys end at the first dot)')
    if not plain:
        return
    key = group.key

    def bad(reason: str, detail: str) -> BadSample:
        return BadSample(key, reason, detail)

    unsafe = key_problem(key) or next(
        (f"member extension {p}" for p in (extension_problem(m.name[len(key) + 1 :]) for m in plain) if p), None
    )
    if unsafe:
        yield bad("unsafe_key", f"{unsafe}; members {_names(plain)} skipped")
        return
    if key in seen:
        yield bad("duplicate_key", f"key already seen earlier in this shard; members {_names(plain)} skipped")
        return
    seen.add(key)
    images = [m for m in plain if m.ext in IMAGE_FIELDS]
    txt = next((m for m in plain if m.ext == "txt"), None)
    meta_member = next((m for m in plain if m.ext == "json"), None)
    if not images:
        yield bad("missing_image", f"no .jpg/.png/.webp member (has {_names(plain)})")
        return
    if len(images) > 1:
        yield bad("multiple_images", f"more than one image member: {_names(images)}")
        return
    if txt is None:
        yield bad("missing_caption", f"no .txt member (has {_names(plain)})")
        return
    try:
        caption = txt.data.decode("utf-8")
    except UnicodeDecodeError:
        yield bad("invalid_caption", f"{txt.name} is not valid UTF-8")
        return
    if caption.strip() == "":
        yield bad("empty_caption", f"{txt.name} is {'empty' if caption == '' else 'only whitespace'}")
        return
    # No .json is fine (image + .txt caption sets): metadata {} and a derived uid, as the TS reader.
    meta: object = {}
    if meta_member is not None:
        try:
            meta = json.loads(meta_member.data.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as exc:
            yield bad("invalid_json", f"{meta_member.name} does not parse: {exc}")
            return
    if not isinstance(meta, dict):
        assert meta_member is not None
        yield bad("invalid_json", f"{meta_member.name} holds {type(meta).__name__}, not an object")
        return
    if "uid" not in meta:
        uid = derive_uid(shard, key)
    elif is_valid_uid(meta["uid"]):
        uid = meta["uid"]
    else:
        yield bad("invalid_uid", f"{meta_member.name}: uid {json.dumps(meta['uid'])} is not 32 lowercase hex characters")
        return
    yield _Undecoded(key=key, uid=uid, caption=caption, member_ext=images[0].ext, data=images[0].data)


@dataclass(frozen=True)
class _Undecoded:
    """A sample whose every part checked out except its image, which is decoded last (maybe in a pool)."""

    key: str
    uid: str
    caption: str
    member_ext: str
    data: bytes

    def decode(self) -> GoodSample | BadSample:
        ext = IMAGE_FIELDS[self.member_ext]
        image, reason, detail = decode_image(self.data, ext)
        if image is None:
            return BadSample(self.key, reason, f"{self.key}.{self.member_ext}: {detail}")
        return GoodSample(key=self.key, uid=self.uid, caption=self.caption, image_bytes=self.data, ext=ext, image=image)


def _has_all_parts(group: _Group) -> bool:
    """Image, caption and json (at a cut; a json-less sample is not kept there, as in TS: its
    .json may be what the cut took)."""
    exts = {m.ext for m in group.members}
    return "txt" in exts and "json" in exts and any(e in exts for e in IMAGE_FIELDS)


def _how_it_ended(fileobj: io.BufferedReader, offset: int, name: str) -> tuple[str, str] | None:
    """Why the archive stopped at `offset` (the next header's place), as the TS reader judges it:
    None for an end-of-archive marker, else (truncated_tar | corrupt_tar, detail).

    `tarfile` stops quietly at a zero block, a cut header and an invalid header after valid ones,
    so the bytes there decide."""
    fileobj.seek(offset)
    rest = fileobj.read(END_OF_ARCHIVE)
    if len(rest) < BLOCK:
        return "truncated_tar", f"{name}: the archive ends inside a header or before its end-of-archive marker"
    if rest[:BLOCK].count(0) == BLOCK:
        if len(rest) < END_OF_ARCHIVE:
            return "truncated_tar", f"{name}: the archive ends without its end-of-archive marker"
        return None
    return "corrupt_tar", f"{name}: invalid tar header at byte {offset}"


def read_shard(path: str | Path, decode_workers: int = 0) -> Iterator[Item]:
    """Yields the shard's good samples (decoded) and bad ones (with reason), in tar order.

    Never raises for bad data: a file that is not a tar, a cut or corrupt archive and every
    bad sample are yielded as `BadSample`s (key None for file-level problems) and the good
    samples around them are kept. With `decode_workers` > 0 images are decoded by that many
    threads (PIL releases the GIL while decoding), a window ahead of the consumer; the items
    and their order are the same.
    """
    if decode_workers <= 0:
        for item in _read_structure(path):
            yield item.decode() if isinstance(item, _Undecoded) else item
        return
    window: deque[Future[Item] | Item] = deque()
    with ThreadPoolExecutor(max_workers=decode_workers, thread_name_prefix="loom-decode") as pool:
        for item in _read_structure(path):
            window.append(pool.submit(item.decode) if isinstance(item, _Undecoded) else item)
            while len(window) > DECODE_WINDOW_PER_WORKER * decode_workers:
                yield _settled(window.popleft())
        while window:
            yield _settled(window.popleft())


def _settled(entry: Future[Item] | Item) -> Item:
    return entry.result() if isinstance(entry, Future) else entry


def _read_structure(path: str | Path) -> Iterator[BadSample | _Undecoded]:
    """`read_shard` up to the images: every check but decoding, in tar order."""
    shard = Path(path)
    seen: set[str] = set()
    current: _Group | None = None
    deferred: list[BadSample] = []  # nameless members met inside an open group, reported after it
    try:
        fileobj = open(shard, "rb")  # noqa: SIM115 - closed by the `with` below
    except OSError as exc:
        yield BadSample(None, "unreadable_file", f"{shard}: {exc.strerror or exc}")
        return
    with fileobj:
        try:
            tar = tarfile.open(fileobj=fileobj, mode="r:")  # noqa: SIM115 - the `with` above closes the file
        except tarfile.TarError as exc:
            yield BadSample(None, "not_a_tar", f"{shard.name}: {exc}")
            return
        end_problem: tuple[str, str, str | None] | None = None  # reason, detail, partial member name
        try:
            for info in tar:
                if not info.isfile():
                    continue
                split = split_member_name(info.name)
                if split is None:
                    nameless = BadSample(None, "missing_extension", f'member "{info.name}" has no extension, so it belongs to no field')
                    if current is None:
                        yield nameless
                    else:
                        deferred.append(nameless)
                    continue
                key, ext = split
                try:
                    handle = tar.extractfile(info)
                    data = handle.read() if handle is not None else b""
                    if len(data) != info.size:
                        raise tarfile.ReadError("unexpected end of data")
                except (tarfile.TarError, OSError, EOFError) as exc:
                    end_problem = ("truncated_tar", f"{shard.name}: member {info.name} is cut off ({exc})", info.name)
                    break
                if current is not None and (current.key != key or any(m.ext == ext for m in current.members)):
                    yield from _judge(current, shard, seen)
                    yield from deferred
                    deferred = []
                    current = None
                if current is None:
                    current = _Group(key)
                current.members.append(_Member(info.name, ext, data))
            else:
                ended = _how_it_ended(fileobj, tar.offset, shard.name)
                if ended is not None:
                    end_problem = (*ended, None)
        except tarfile.TarError as exc:
            reason = "truncated_tar" if "unexpected end" in str(exc) else "corrupt_tar"
            end_problem = (reason, f"{shard.name}: {exc} after byte {tar.offset}", None)
        if end_problem is None:
            if current is not None:
                yield from _judge(current, shard, seen)
            yield from deferred
            return
        reason, detail, partial_name = end_problem
        partial_key = None
        if partial_name is not None:
            split = split_member_name(partial_name)
            partial_key = split[0] if split else partial_name
        reported = False
        if current is not None:
            if _has_all_parts(current) and partial_key != current.key:
                yield from _judge(current, shard, seen)
            else:
                yield BadSample(current.key, reason, f"{detail}; sample has only {', '.join(m.ext for m in current.members)}")
                reported = True
        if partial_key is not None and (current is None or partial_key != current.key):
            yield BadSample(partial_key, reason, detail)
            reported = True
        if not reported:
            yield BadSample(None, reason, detail)
        yield from deferred
