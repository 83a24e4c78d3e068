"""Prompt formats: how a conversation becomes the token ids a model was trained on.

A model is asked in the format it learned (loom.json ``prompt_format``); each format is a small
class in a registry, built once per tokenizer (``make_renderer``) and then called per request:

    renderer = make_renderer("chatml", tokenizer, PromptSettings.from_config(config, image_grid))
    ids = renderer.render(messages, has_image=True)      # ends with the generation prompt
    renderer.stop_ids                                    # the ids that end an answer

The rules every format shares:
- **Pieces, not one string.** Each fixed piece of the template (``<|im_start|>user\\n``, the
  system block, ...) and each message value is tokenized on its own and the ids concatenated, as
  Loom's SFT packer does (src/pack/sft.ts). Pieces meet at special tokens or newlines, so this
  equals tokenizing the rendered string, except that values stay *data text*.
- **Values are data text** (DESIGN.md, loom_compute.data_text): a literal ``<|im_end|>`` or
  ``<image>`` typed in a message is ordinary tokens, never the special id; only the template adds
  special ids. The structural tokens must therefore be marked special in the tokenizer, else a
  value could still produce them: refused up front.
- **One image, one placeholder.** The image becomes ``image_tokens`` copies of the image id (its
  projected features replace them in the model). Where it goes is the format's rule; a request
  with an image but no ``<image>`` in its first user message gets it at the start of that message.

The formats:
- ``chatml``: exactly Loom's SFT template (src/pack/sft.ts) = Qwen2-Instruct's chat template:
  ``<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n`` (or the request's own system
  message), then per turn ``<|im_start|>{role}\\n{value}<|im_end|>\\n``, then
  ``<|im_start|>assistant\\n``. With an image, the first ``<image>`` of the first user value is
  removed, the value trimmed, and the turn's content becomes image ids + ``\\n`` + value (LLaVA's
  preprocessing, which SFT packing follows). Checked against vectors/chatml/conversations.json,
  rendered by transformers' ``apply_chat_template``. The MLM-Filter scorer builds its prompts
  from the same pieces (``ChatMLPieces``). Stops: ``<|im_end|>`` and the tokenizer's eos.
- ``caption``: a pre-trained model knows no turns, only ``data.pretrain_template`` (default
  ``<image>\\n{caption}<|im_end|>``). The prompt is the template up to ``{caption}`` (image ids in
  place of the image token) followed by the last user message as data text: the model continues
  the caption. Earlier messages are ignored. Stops: the tokenizer's eos.
- ``prismatic-qwen2``: the released Open-Qwen2VL (Open-Qwen2VL's prismatic-vlms,
  ``Qwen2PromptBuilder`` and ``FinetuneDataset``): ``<s>`` then
  ``<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n``, each user turn
  ``<|im_start|>user\\n{msg}<|im_end|>assistant\\n`` (no ``<|im_start|>`` before ``assistant``),
  each assistant turn ``{msg or " "}<|im_end|>\\n``; every message is stripped first. The image
  goes where the first user message has ``<image>`` (the original splits the text there), else
  ``<image>\\n`` is put in front. The prompt ends with ``assistant\\n`` as in training: the
  original's ``get_prompt`` right-strips the ``\\n`` and its ``generate_batch`` prepends a second
  ``<s>``; Loom gives the model the context it was fine-tuned on instead. The original always
  writes the default system prompt; a request's own system message replaces it here (stripped,
  in the same ``<|im_start|>system\\n...<|im_end|>\\n`` block). Stops: ``<|im_end|>`` and the eos.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from loom_compute.data_text import encode_data_text, plain_text_tokenizer
from loom_compute.errors import LoomComputeError

if TYPE_CHECKING:
    from tokenizers import Tokenizer

    from loom_compute.config import RunConfig

SYSTEM_PROMPT = "You are a helpful assistant."
IM_START = "<|im_start|>"
IM_END = "<|im_end|>"
ROLES = ("system", "user", "assistant")
CAPTION_SLOT = "{caption}"


class PromptError(LoomComputeError):
    """A conversation, tokenizer or template that cannot be rendered; the message says why."""


@dataclass(frozen=True)
class Message:
    role: str
    content: str


def parse_messages(raw: Any, where: str = "messages") -> list[Message]:
    """Messages from JSON (``[{"role", "content"}, ...]``), checked; errors name the key."""
    if not isinstance(raw, list) or not raw:
        raise PromptError(f"{where} must be a non-empty list of {{\"role\", \"content\"}} objects")
    out = []
    for i, m in enumerate(raw):
        if not isinstance(m, Mapping):
            raise PromptError(f"{where}[{i}] is not an object")
        role, content = m.get("role"), m.get("content")
        if role not in ROLES:
            raise PromptError(f"{where}[{i}].role must be one of {', '.join(ROLES)}, got {role!r}")
        if not isinstance(content, str):
            raise PromptError(f"{where}[{i}].content must be a string")
        if role == "system" and i != 0:
            raise PromptError(f"{where}[{i}]: a system message may only come first")
        out.append(Message(role, content))
    if not any(m.role == "user" for m in out):
        raise PromptError(f"{where} has no user message")
    if out[-1].role != "user":
        raise PromptError(f"{where}: the last message must be the user's (the model answers it), got {out[-1].role!r}")
    return out


@dataclass(frozen=True)
class PromptSettings:
    """What a renderer needs beside the tokenizer (from the run config and the model)."""

    image_token: str
    eos_token: str
    pad_token: str
    image_tokens: int  # ids per image: image_grid ** 2
    pretrain_template: str = "<image>\n{caption}<|im_end|>"

    @classmethod
    def from_config(cls, config: RunConfig, image_grid: int | None = None) -> PromptSettings:
        tok = config.tokenizer
        grid = config.image_grid if image_grid is None else image_grid
        return cls(tok.image_token, tok.eos_token, tok.pad_token, grid * grid, config.data.pretrain_template)


class PromptRenderer:
    """One prompt format bound to one tokenizer. Subclasses set ``name`` and implement ``render``."""

    name: ClassVar[str]

    def __init__(self, tokenizer: Tokenizer, settings: PromptSettings) -> None:
        self.tokenizer = tokenizer
        self.settings = settings
        self.plain = plain_text_tokenizer(tokenizer)
        self._special = {t.content for t in tokenizer.get_added_tokens_decoder().values() if t.special}
        self.image_token_id = self.special_id(settings.image_token, "tokenizer.image_token")
        self.eos_id = self.special_id(settings.eos_token, "tokenizer.eos_token")
        self.newline = self.encode("\n")
        self.stop_ids: tuple[int, ...] = (self.eos_id,)

    # ---- helpers shared by the formats ---------------------------------------------------------

    def special_id(self, token: str, what: str) -> int:
        """The id of a structural token, which must exist and be special (else data text could write it)."""
        found = self.tokenizer.token_to_id(token)
        if found is None:
            raise PromptError(f"the {self.name} prompt format needs the token {token!r} ({what}); the tokenizer has none")
        if token not in self._special:
            raise PromptError(f"the tokenizer's {token!r} is not marked special ({what}), so a message containing it would become its id")
        return int(found)

    def encode(self, template_text: str) -> list[int]:
        """A fixed template piece: special-token strings in it are their ids."""
        return list(self.tokenizer.encode(template_text, add_special_tokens=False).ids)

    def data(self, text: str) -> list[int]:
        """A message value: plain text, special-token strings included."""
        return encode_data_text(self.plain, [text])[0] if text else []

    def image_ids(self) -> list[int]:
        return [self.image_token_id] * self.settings.image_tokens

    def render(self, messages: Sequence[Message], has_image: bool, add_generation_prompt: bool = True) -> list[int]:
        raise NotImplementedError


def strip_image_placeholder(value: str, image_token: str) -> str:
    """LLaVA's preprocessing (src/pack/sft.ts stripImagePlaceholder): the first placeholder out, then trimmed."""
    at = value.find(image_token)
    if at < 0:
        return value.strip()
    return (value[:at] + value[at + len(image_token) :]).strip()


# ---- chatml ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ChatMLPieces:
    """The fixed pieces of Loom's ChatML, tokenized once (shared with the MLM-Filter scorer)."""

    system: list[int]  # "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
    system_head: list[int]  # "<|im_start|>system\n" (for a request's own system message)
    user_head: list[int]
    assistant_head: list[int]
    im_end: int
    newline: list[int]


class ChatML(PromptRenderer):
    name = "chatml"

    def __init__(self, tokenizer: Tokenizer, settings: PromptSettings) -> None:
        super().__init__(tokenizer, settings)
        im_end = self.special_id(IM_END, "the ChatML turn closer")
        self.special_id(IM_START, "the ChatML turn opener")
        self.special_id(settings.pad_token, "tokenizer.pad_token")
        self.pieces = ChatMLPieces(
            system=self.encode(f"{IM_START}system\n{SYSTEM_PROMPT}{IM_END}\n"),
            system_head=self.encode(f"{IM_START}system\n"),
            user_head=self.encode(f"{IM_START}user\n"),
            assistant_head=self.encode(f"{IM_START}assistant\n"),
            im_end=im_end,
            newline=self.newline,
        )
        self.stop_ids = tuple(dict.fromkeys((im_end, self.eos_id)))

    def render(self, messages: Sequence[Message], has_image: bool, add_generation_prompt: bool = True) -> list[int]:
        p = self.pieces
        close = [p.im_end, *p.newline]
        ids: list[int] = []
        rest = list(messages)
        if rest and rest[0].role == "system":
            ids += p.system_head + self.data(rest[0].content) + close
            rest = rest[1:]
        else:
            ids += p.system
        image_pending = has_image
        for m in rest:
            ids += p.user_head if m.role == "user" else p.assistant_head
            if m.role == "user" and image_pending:
                ids += self.image_ids() + p.newline + self.data(strip_image_placeholder(m.content, self.settings.image_token))
                image_pending = False
            else:
                ids += self.data(m.content)
            ids += close
        if image_pending:
            raise PromptError("the conversation has an image but no user message to put it in")
        if add_generation_prompt:
            ids += p.assistant_head
        return ids


# ---- caption ---------------------------------------------------------------------------------


class Caption(PromptRenderer):
    name = "caption"

    def __init__(self, tokenizer: Tokenizer, settings: PromptSettings) -> None:
        super().__init__(tokenizer, settings)
        template = settings.pretrain_template
        if template.count(CAPTION_SLOT) != 1:
            raise PromptError(f"data.pretrain_template must hold {CAPTION_SLOT} once, got {template!r}")
        head = template.split(CAPTION_SLOT)[0]
        if head.count(settings.image_token) > 1:
            raise PromptError(f"data.pretrain_template holds the image token more than once before {CAPTION_SLOT}: {template!r}")
        before, _, after = head.partition(settings.image_token)
        self.before = self.encode(before) if before else []
        self.after = self.encode(after) if after else []
        self.image_in_head = settings.image_token in head

    def render(self, messages: Sequence[Message], has_image: bool, add_generation_prompt: bool = True) -> list[int]:
        users = [m for m in messages if m.role == "user"]
        if not users:
            raise PromptError("the caption format needs a user message (the caption's beginning)")
        text = users[-1].content
        if has_image:
            if not self.image_in_head:
                raise PromptError("data.pretrain_template puts the image after {caption}; a caption cannot be continued from an image there")
            at = text.find(self.settings.image_token)
            if at >= 0:
                text = text[:at] + text[at + len(self.settings.image_token) :]
            text = text.lstrip()
        image = self.image_ids() if has_image else []
        return self.before + image + self.after + self.data(text)


# ---- prismatic-qwen2 -------------------------------------------------------------------------


class PrismaticQwen2(PromptRenderer):
    name = "prismatic-qwen2"
    BOS = "<s>"

    def __init__(self, tokenizer: Tokenizer, settings: PromptSettings) -> None:
        super().__init__(tokenizer, settings)
        self.bos = self.special_id(self.BOS, "the Prismatic Qwen2 BOS, added to the vocabulary by Open-Qwen2VL")
        self.im_end = self.special_id(IM_END, "the ChatML turn closer")
        self.special_id(IM_START, "the ChatML turn opener")
        self.system = self.encode(f"{IM_START}system\n{SYSTEM_PROMPT}{IM_END}\n")
        self.system_head = self.encode(f"{IM_START}system\n")
        self.user_head = self.encode(f"{IM_START}user\n")
        self.assistant_open = self.encode("assistant\n")
        self.stop_ids = tuple(dict.fromkeys((self.im_end, self.eos_id)))

    def render(self, messages: Sequence[Message], has_image: bool, add_generation_prompt: bool = True) -> list[int]:
        token = self.settings.image_token
        ids = [self.bos]
        rest = list(messages)
        if rest and rest[0].role == "system":
            ids += self.system_head + self.data(rest[0].content.strip()) + [self.im_end] + self.newline
            rest = rest[1:]
        else:
            ids += self.system
        image_pending = has_image
        for m in rest:
            msg = m.content.strip()
            if m.role == "assistant":
                ids += self.data(msg or " ") + [self.im_end] + self.newline
                continue
            ids += self.user_head
            if image_pending:
                if token not in msg:
                    msg = f"{token}\n{msg}"
                before, _, after = msg.partition(token)
                ids += self.data(before) + self.image_ids() + self.data(after)
                image_pending = False
            else:
                ids += self.data(msg)
            # The user turn itself opens the answer: "<|im_end|>assistant\n", no <|im_start|>.
            ids += [self.im_end] + self.assistant_open
        if image_pending:
            raise PromptError("the conversation has an image but no user message to put it in")
        return ids


# ---- the registry ----------------------------------------------------------------------------

FORMATS: dict[str, Callable[[Tokenizer, PromptSettings], PromptRenderer]] = {
    ChatML.name: ChatML,
    Caption.name: Caption,
    PrismaticQwen2.name: PrismaticQwen2,
}


def register_format(name: str, factory: Callable[[Tokenizer, PromptSettings], PromptRenderer]) -> None:
    """Adds a format (the importer's, e.g. a LLaVA conversation template); a name is registered once."""
    if name in FORMATS:
        raise ValueError(f"prompt format {name!r} is already registered")
    FORMATS[name] = factory


def make_renderer(name: str, tokenizer: Tokenizer, settings: PromptSettings) -> PromptRenderer:
    factory = FORMATS.get(name)
    if factory is None:
        raise PromptError(f"unknown prompt format {name!r}; known: {', '.join(FORMATS)}")
    return factory(tokenizer, settings)


def render_prompt(
    format: str,
    tokenizer: Tokenizer,
    messages: Sequence[Message] | Any,
    settings: PromptSettings,
    has_image: bool,
) -> list[int]:
    """One-off rendering (builds the renderer each call; keep a ``make_renderer`` result for many)."""
    if not (isinstance(messages, Sequence) and all(isinstance(m, Message) for m in messages)):
        messages = parse_messages(messages)
    return make_renderer(format, tokenizer, settings).render(messages, has_image)
