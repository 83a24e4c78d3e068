"""Verb `chat --model EXPORT [sampling flags]`: a conversation over stdin/stdout, one request a line.

The session:
- first ``{"event": "ready", "model", "prompt_format", "stage"}`` once the model is loaded;
- then per stdin line ``{"messages": [{"role", "content"}, ...], "image": "/abs/path" | null}``
  (the whole conversation so far: the client keeps the history and sends it every turn), zero
  or more ``{"event": "token", "text"}`` as the answer grows (streamed, never half a character)
  and one ``{"event": "answer", "text", "finish_reason", "new_tokens", "seconds"}``;
- a request that cannot be answered (malformed JSON, unreadable image, no user message, too long
  for the model's context) gets ``{"event": "answer", "error": "<reason>"}`` and the session goes on;
- stdin's end closes the session: ``done`` with ``{"answers": n, "errors": m}``.

The image's path is read as given (absolute paths are what the CLI sends); the model, its prompt
format and its image preprocessing are the export's own (loom_compute/infer/loading.py).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from loom_compute.protocol import emitter
from loom_compute.verbs.dispatch import Verb
from loom_compute.verbs.generate import add_model_arguments, sampling_from_args


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    add_model_arguments(parser)


def _answer(runner: Any, params: Any, line: str) -> dict[str, Any]:
    """The answer event's fields for one request line (streams token events on the way)."""
    from loom_compute.infer.loading import RowError
    from loom_compute.infer.prompts import PromptError, parse_messages

    out = emitter()
    try:
        request = json.loads(line)
    except json.JSONDecodeError as exc:
        return {"error": f"the request is not JSON ({exc.msg} at column {exc.colno})"}
    if not isinstance(request, dict):
        return {"error": "a request must be a JSON object {\"messages\": [...], \"image\": path|null}"}
    image = request.get("image")
    if image is not None and (not isinstance(image, str) or not image):
        return {"error": "key 'image' must be a path or null"}
    try:
        messages = parse_messages(request.get("messages"))
        prepared = runner.request(messages, image)
    except (PromptError, RowError) as exc:
        return {"error": exc.message}
    started = time.perf_counter()
    (result,) = runner.generator.generate([prepared], params, on_token=lambda _i, text: out.emit("token", {"text": text}))
    return {
        "text": result.text,
        "finish_reason": result.finish_reason,
        "new_tokens": result.new_tokens,
        "seconds": round(time.perf_counter() - started, 4),
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    from loom_compute.infer.loading import InferenceModel

    params = sampling_from_args(args)
    runner = InferenceModel.load(args.model, device=args.device, dtype=args.dtype)
    out = emitter()
    out.emit("ready", runner.describe())
    answers = errors = 0
    while True:
        line = sys.stdin.readline()
        if not line:
            break
        if not line.strip():
            continue
        fields = _answer(runner, params, line)
        if "error" in fields:
            errors += 1
        else:
            answers += 1
        out.emit("answer", fields)
    return {"answers": answers, "errors": errors}


VERB = Verb(
    name="chat",
    help="answer JSON-lines requests from stdin with a Loom export, streaming token events; stdin EOF ends it",
    run=run,
    add_arguments=_add_arguments,
)
