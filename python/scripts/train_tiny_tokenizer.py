#!/usr/bin/env python3
"""Train Loom's bundled tiny tokenizer: a Qwen-like byte-level BPE for the synthetic data.

Same shape as Qwen2's tokenizer.json (NFC normaliser, Qwen2's split regex, ByteLevel bytes, no
unknown token, so any text encodes) with a small vocabulary and four special tokens:
``<|endoftext|>`` (pad), ``<|im_start|>``, ``<|im_end|>`` (eos) and ``<image>`` (image
placeholder), with ids 0-3.

Corpus: every line of each ``--corpus`` file (the synthetic captions and Q/A), plus a few hundred
general English sentences built into this script so that SFT and benchmark phrasing and arbitrary
user text tokenize sensibly. ``--synth-scenes N`` adds the synth generator's own text (captions and
SFT Q/A of N scenes from ``captionCorpus`` in dist/src/synth/corpus.js, so build the TypeScript
first). With neither, the script falls back to a provisional scene-caption corpus generated here
and says so. The bundled tokenizer is made by (from the repository root):

    npx tsc -p tsconfig.json
    .venv/bin/python python/scripts/train_tiny_tokenizer.py --synth-scenes 5000 \\
        --out assets/tokenizer/tiny/tokenizer.json

The output is deterministic: the same corpus and options give the same bytes. Beside the
tokenizer.json it writes an HF-style tokenizer_config.json (so AutoTokenizer.from_pretrained(dir)
loads the directory) and prints a JSON summary (hash, size, vocabulary) on stdout.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import subprocess
import sys
import tempfile
from pathlib import Path

from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

# Qwen2's pre-tokenizer split: contractions, letter runs with one leading non-letter, single
# digits (so numbers tokenize digit by digit, as in Qwen), punctuation runs, newlines, spaces.
QWEN2_SPLIT_REGEX = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)

PAD_TOKEN = "<|endoftext|>"
IM_START_TOKEN = "<|im_start|>"
EOS_TOKEN = "<|im_end|>"
IMAGE_TOKEN = "<image>"
SPECIAL_TOKENS = [PAD_TOKEN, IM_START_TOKEN, EOS_TOKEN, IMAGE_TOKEN]

DEFAULT_VOCAB_SIZE = 1536
MODEL_MAX_LENGTH = 4096

CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)

# Fixed prompts that every benchmark or SFT sample carries: weighted so they become few tokens.
PROMPT_PHRASES = [
    "You are a helpful assistant.",
    "Answer with the option's letter from the given choices directly.",
    "Answer the question using a single word or phrase.",
    "Hint:", "Question:", "Options:", "A.", "B.", "C.", "D.",
]
PROMPT_WEIGHT = 20

GENERAL_ENGLISH = """\
Describe the image in detail.
Provide a short description of the picture.
What do you see in this image?
What is shown in the picture?
Please describe what is happening in this photo.
Is there anything unusual about this image?
Look at the image and answer the question below.
Choose the best answer from the options.
Which of the following statements is correct?
Which option best describes the image?
Based on the image, what can you infer?
Hint: count the objects carefully before you answer.
Question: How many objects are there in total?
Options: A. one B. two C. three D. four
The answer is B.
The correct answer is C, because there are three of them.
Yes, there is.
No, there is not.
I am not sure, but it looks like a circle.
Sorry, I cannot tell from this image.
Let me think step by step.
First, find the largest shape. Then compare its colour with the others.
Thank you! Is there anything else I can help you with?
Sure, here is a summary of the text.
Hello! How are you today?
The weather is nice and sunny this morning.
It was raining heavily when we arrived at the station.
She opened the window to let some fresh air into the room.
They walked along the river until the sun went down.
The children played football in the park after school.
My grandmother bakes bread every Sunday.
He forgot his umbrella on the bus again.
We should leave early to avoid the traffic.
The meeting has been moved to Thursday afternoon.
Please send me the report by the end of the week.
The museum is closed on Mondays and public holidays.
A cup of coffee costs about three dollars here.
The train to London departs at 7:45 from platform 2.
The population of the city grew by 12% in ten years.
In 1969, humans walked on the Moon for the first time.
Water boils at 100 degrees Celsius at sea level.
The value of pi is approximately 3.14159.
Two plus two equals four, and ten divided by two is five.
The recipe needs 250 grams of flour, 2 eggs and a pinch of salt.
Her phone number is 555-0134, and her email is anna@example.com.
Visit https://example.org/docs for more information.
The file is saved as results_2024-05-01.csv in the data folder.
Run the command `python train.py --epochs 3` to start training.
def add(a, b): return a + b
for i in range(10): print(i)
if (x > 0 && y < 5) { return true; }
The function returns a list of integers sorted in ascending order.
Error: file not found. Please check the path and try again.
Loading the model took 12.5 seconds on the CPU.
The quick brown fox jumps over the lazy dog.
Pack my box with five dozen liquor jugs.
How vexingly quick daft zebras jump!
Sphinx of black quartz, judge my vow.
A journey of a thousand miles begins with a single step.
Knowledge is power, and practice makes perfect.
The early bird catches the worm.
Actions speak louder than words.
Time flies when you are having fun.
Every cloud has a silver lining.
Mathematics is the language in which the universe is written.
Photosynthesis turns light, water and carbon dioxide into sugar and oxygen.
The heart pumps blood through the arteries and veins.
Plants need sunlight, water and nutrients to grow.
The Earth orbits the Sun once every 365.25 days.
The Pacific Ocean is the largest ocean on Earth.
Mount Everest is the highest mountain above sea level.
Light travels faster than sound.
A triangle has three sides and three angles.
A square has four equal sides and four right angles.
A circle is the set of points at the same distance from its centre.
The area of a rectangle is its width times its height.
An hexagon has six sides, and an octagon has eight.
Red, yellow and blue are often called primary colours.
Mixing blue and yellow paint gives green.
Orange is a mix of red and yellow.
Purple and violet are close to each other on the colour wheel.
Black absorbs light, while white reflects it.
Grey is between black and white.
Pink is a light shade of red.
Brown is a dark shade of orange.
The sky is blue because air scatters short wavelengths of light.
The leaves turn yellow, orange and red in autumn.
Snow covered the roofs and the streets overnight.
The cat is sleeping on the sofa next to the window.
A dog is running across a green field.
Two birds are sitting on a wire above the road.
A man is riding a bicycle down a busy street.
A woman is reading a book in a quiet library.
A group of people are standing in front of a building.
A red car is parked next to a white van.
A bowl of fruit sits on a wooden kitchen table.
There is a tall tree in the middle of the garden.
The boat is floating on a calm lake at sunset.
A plate of pasta with tomato sauce and basil.
A close-up photo of a yellow flower with a bee on it.
An old stone bridge crosses a narrow river.
A city skyline at night with many lights.
A child holding a blue balloon at a fair.
A laptop, a notebook and a pen on a desk.
A black and white photo of a street in the 1950s.
A map of Europe with the capital cities marked.
A diagram showing the parts of a flower.
A chart comparing sales in 2022 and 2023.
A poster with the words "Summer Sale" in large letters.
A screenshot of a web page with a search box.
The logo is a green leaf inside a circle.
The sign says "No parking between 8 am and 6 pm".
The label on the bottle reads "Shake well before use".
The image is blurry and too dark to see any details.
The picture shows nothing but a plain white background.
The photo was taken from above, looking down at the table.
In the top left corner there is a small icon.
At the bottom right you can see the date.
On the left side of the image there is a door.
On the right side there is a window with curtains.
In the centre of the picture stands a statue.
Near the top edge there is a thin line.
The object in the middle is larger than the others.
The smaller one is on the left, and the bigger one is on the right.
Both shapes have the same colour.
None of the shapes are touching each other.
All of the circles are red except one.
Most of the squares are blue.
Only one of the triangles is green.
There are more circles than squares.
There are fewer triangles than stars.
The number of objects is even.
Count the circles, then count the squares, and add the two numbers.
One, two, three, four, five, six, seven, eight, nine, ten.
First, second, third, fourth, fifth.
zero 0, one 1, two 2, three 3, four 4, five 5, six 6, seven 7, eight 8, nine 9.
Monday, Tuesday, Wednesday, Thursday, Friday, Saturday and Sunday.
January, February, March, April, May, June, July, August, September, October, November, December.
North, south, east and west.
Up, down, left, right, above, below, beside, between, inside, outside.
Large, medium, small, tiny, huge, big, little.
Bright, dark, pale, light, deep, vivid, dull.
Round, square, triangular, oval, flat, curved, straight.
Striped, dotted, plain, textured, noisy, smooth, gradient.
Is the circle above or below the square?
What colour is the largest object?
What shape is in the top right corner?
How many red objects are there?
Are there any green triangles?
Which shape appears most often?
What is the background like?
Is the background striped or plain?
Where is the blue square?
What is to the left of the yellow star?
Does the image contain exactly three objects?
Is this caption a good description of the image?
Rate how well the caption matches the image on a scale from 0 to 100.
Score: 85
Score: 100
The caption describes the image accurately.
The caption does not match the image.
The caption contains random letters and makes no sense.
The colours in the caption are wrong.
The count in the caption is wrong.
The image is almost blank.
I'd like to know more about this.
It's a nice day, isn't it?
They're going to the market, and we'll meet them there.
You've done a great job, and I'm proud of you.
Don't worry; it'll be fine.
Who, what, where, when, why and how?
This is a test sentence with some punctuation: commas, colons; semicolons - and dashes!
"Quoted text," she said, 'and single quotes too.'
(Parentheses), [brackets], {braces} and <angle brackets>.
Prices: $5.99, 10 EUR, 7 GBP, 1000 JPY.
Percentages like 50%, 99.9% and 0.5% are common.
Dates such as 2025-01-31 and 31/01/2025 are written differently.
Times like 09:30, 12:00 and 23:59.
Large numbers: 1,000,000 and 3.2 billion.
Math: x^2 + y^2 = z^2, and e = mc^2.
Café, naïve, résumé, jalapeño, über, façade.
Straße, Grüße, Mädchen, schön.
Español, français, português, italiano, deutsch.
Привет, как дела?
Γειά σου κόσμε.
你好，世界。今天天气很好。
こんにちは、世界。
안녕하세요.
مرحبا بالعالم.
שלום עולם.
नमस्ते दुनिया।
I love this! 😀👍🎉
The flag emoji 🇫🇷 and the family emoji 👨‍👩‍👧 are made of several code points.
Arrows → ← ↑ ↓ and symbols © ® ™ ° ± × ÷.
Tabs\tand several   spaces   should survive.
"""

# Provisional scene vocabulary, used only when no --corpus is given (the synth generator owns the
# real one; rerun with its captionCorpus to replace this).
_COLOURS = ["red", "green", "blue", "yellow", "orange", "purple", "pink", "brown", "black", "white", "grey", "cyan"]
_SHAPES = ["circle", "square", "triangle", "star", "ellipse", "rectangle", "diamond", "hexagon"]
_SIZES = ["small", "medium", "large", "tiny", "big"]
_POSITIONS = ["in the top left", "in the top right", "in the bottom left", "in the bottom right",
              "in the centre", "near the top", "near the bottom", "on the left", "on the right"]
_COUNTS = ["one", "two", "three", "four", "five", "six", "seven", "eight"]
_BACKGROUNDS = ["plain", "striped", "gradient", "noisy", "dotted", "solid"]


def _plural(shape: str) -> str:
    return shape + "es" if shape.endswith("x") else shape + "s"


def provisional_scene_corpus(seed: int, n: int) -> list[str]:
    rng = random.Random(seed)
    lines: list[str] = []
    for _ in range(n):
        colour, shape, size = rng.choice(_COLOURS), rng.choice(_SHAPES), rng.choice(_SIZES)
        count = rng.randrange(1, len(_COUNTS) + 1)
        bg = f"a {rng.choice(_BACKGROUNDS)} {rng.choice(_COLOURS)} background"
        kind = rng.randrange(6)
        if kind == 0:
            lines.append(f"A {size} {colour} {shape} {rng.choice(_POSITIONS)} on {bg}.")
        elif kind == 1:
            other = rng.choice(_SHAPES)
            lines.append(f"{_COUNTS[count - 1].capitalize()} {colour} {_plural(shape) if count > 1 else shape} "
                         f"and a {rng.choice(_COLOURS)} {other} on {bg}.")
        elif kind == 2:
            lines.append(f"How many {_plural(shape)} are there? There {'is' if count == 1 else 'are'} "
                         f"{_COUNTS[count - 1]}.")
        elif kind == 3:
            lines.append(f"What colour is the {shape} {rng.choice(_POSITIONS)}? It is {colour}.")
        elif kind == 4:
            lines.append(f"What shape is {rng.choice(_POSITIONS)}? A {colour} {shape}.")
        else:
            lines.append(f"{bg[0].upper()}{bg[1:]} with {_COUNTS[count - 1]} {size} {colour} "
                         f"{_plural(shape) if count > 1 else shape}.")
    return lines


def general_english() -> list[str]:
    sentences = [line.replace("\\t", "\t") for line in GENERAL_ENGLISH.splitlines() if line.strip()]
    return sentences + PROMPT_PHRASES * PROMPT_WEIGHT


def read_corpus(paths: list[Path]) -> list[str]:
    texts: list[str] = []
    for path in paths:
        try:
            content = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as error:
            raise SystemExit(f"train_tiny_tokenizer: cannot read corpus {path}: {error}")
        texts.extend(line for line in content.splitlines() if line.strip())
    return texts


def synth_corpus(seed: int, scenes: int) -> list[str]:
    """The synth generator's captions and Q/A, via node on the compiled TypeScript."""
    repo = Path(__file__).resolve().parents[2]
    module = repo / "dist" / "src" / "synth" / "corpus.js"
    if not module.exists():
        raise SystemExit(f"train_tiny_tokenizer: {module} is missing: run `npx tsc -p tsconfig.json` first")
    script = ("import(process.argv[1]).then((m) => process.stdout.write("
              "JSON.stringify(m.captionCorpus(Number(process.argv[2]), Number(process.argv[3])))))")
    result = subprocess.run(["node", "-e", script, module.as_uri(), str(seed), str(scenes)],
                            capture_output=True, text=True, encoding="utf-8", check=False)
    if result.returncode != 0:
        raise SystemExit(f"train_tiny_tokenizer: captionCorpus failed: {result.stderr.strip()}")
    texts = json.loads(result.stdout)
    return [t for t in texts if t.strip()]


def build_tokenizer() -> Tokenizer:
    tokenizer = Tokenizer(models.BPE(unk_token=None, fuse_unk=False, byte_fallback=False))
    tokenizer.normalizer = normalizers.NFC()
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(QWEN2_SPLIT_REGEX), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False),
    ])
    tokenizer.post_processor = processors.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False)
    tokenizer.decoder = decoders.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False)
    return tokenizer


def train(texts: list[str], vocab_size: int, min_frequency: int) -> Tokenizer:
    tokenizer = build_tokenizer()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        show_progress=False,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tokenizer.train_from_iterator(texts, trainer=trainer, length=len(texts))
    return tokenizer


def tokenizer_config(tokenizer: Tokenizer) -> dict:
    added = {}
    for token in SPECIAL_TOKENS:
        added[str(tokenizer.token_to_id(token))] = {
            "content": token, "lstrip": False, "normalized": False, "rstrip": False,
            "single_word": False, "special": True,
        }
    return {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "add_bos_token": False,
        "add_prefix_space": False,
        "added_tokens_decoder": added,
        "bos_token": None,
        "eos_token": EOS_TOKEN,
        "pad_token": PAD_TOKEN,
        "unk_token": None,
        "additional_special_tokens": [IM_START_TOKEN, IMAGE_TOKEN],
        "image_token": IMAGE_TOKEN,
        "clean_up_tokenization_spaces": False,
        "model_max_length": MODEL_MAX_LENGTH,
        "split_special_tokens": False,
        "chat_template": CHAT_TEMPLATE,
    }


def write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", type=Path, action="append", default=[],
                        help="UTF-8 text file, one training text per line (repeatable)")
    parser.add_argument("--out", type=Path, required=True, help="where to write tokenizer.json")
    parser.add_argument("--vocab-size", type=int, default=DEFAULT_VOCAB_SIZE)
    parser.add_argument("--min-frequency", type=int, default=2)
    parser.add_argument("--synth-scenes", type=int, default=0,
                        help="add captionCorpus(seed, N) from the compiled synth generator")
    parser.add_argument("--synth-seed", type=int, default=0)
    parser.add_argument("--provisional-seed", type=int, default=0,
                        help="seed of the built-in provisional scene corpus used when no --corpus is given")
    parser.add_argument("--provisional-size", type=int, default=20000)
    args = parser.parse_args(argv)

    corpus = read_corpus(args.corpus)
    source = [str(p) for p in args.corpus]
    if args.synth_scenes > 0:
        corpus += synth_corpus(args.synth_seed, args.synth_scenes)
        source.append(f"synth:captionCorpus(seed={args.synth_seed}, n={args.synth_scenes})")
    if not corpus:
        print("train_tiny_tokenizer: no --corpus given: using the built-in PROVISIONAL scene corpus "
              "(rerun with the synth generator's captionCorpus)", file=sys.stderr)
        corpus = provisional_scene_corpus(args.provisional_seed, args.provisional_size)
        source = ["provisional"]
    texts = corpus + general_english()
    tokenizer = train(texts, args.vocab_size, args.min_frequency)

    for expected_id, token in enumerate(SPECIAL_TOKENS):
        if tokenizer.token_to_id(token) != expected_id:
            raise SystemExit(f"train_tiny_tokenizer: special token {token} got id "
                             f"{tokenizer.token_to_id(token)}, expected {expected_id}")

    data = tokenizer.to_str(pretty=False).encode("utf-8") + b"\n"
    write_atomic(args.out, data)
    config = json.dumps(tokenizer_config(tokenizer), indent=2, ensure_ascii=False) + "\n"
    write_atomic(args.out.parent / "tokenizer_config.json", config.encode("utf-8"))
    summary = {
        "out": str(args.out),
        "sha256": hashlib.sha256(data).hexdigest(),
        "bytes": len(data),
        "vocab_size": tokenizer.get_vocab_size(with_added_tokens=True),
        "corpus": source,
        "corpus_texts": len(corpus),
        "general_english_texts": len(general_english()),
    }
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
