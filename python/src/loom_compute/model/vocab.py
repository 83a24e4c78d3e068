"""Growing the LLM's vocabulary to the run's tokenizer (e.g. the ``<image>`` token Loom adds to a
real Qwen tokenizer, src/tokenize/imageToken.ts).

New rows are the mean of the existing rows, as LLaVA initialises the embeddings of tokens it adds;
the output head gets the same treatment from its own rows when it is not tied to the embeddings.
transformers 5.x's ``resize_token_embeddings`` would draw them from N(mean, 1e-9 * covariance) of
the old rows: the same in effect, but a draw from the RNG (so the rows would depend on what ran
before) and an O(hidden^2) covariance. The mean is deterministic and cheap.

Rows the checkpoint already has are never touched. That matters for Qwen2.5: its table has 151936
rows for 151665 tokenizer ids, so Loom's ``<image>`` (id 151665) lands on a spare row and nothing
grows. Its input row is never read (image features replace it, vlm.py), and its output row only
ever meets the loss as a wrong answer, so training pushes its logit down.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import PreTrainedModel


def grow_vocabulary(llm: PreTrainedModel, vocab_size: int) -> int:
    """Grows the input embeddings (and an untied lm_head) to ``vocab_size`` rows; returns the rows added.

    Old rows keep their values bit for bit; ``llm.config.vocab_size`` follows (transformers updates it).
    """
    old_rows = llm.get_input_embeddings().num_embeddings
    if vocab_size <= old_rows:
        return 0
    output = llm.get_output_embeddings()
    tied = output is not None and output.weight is llm.get_input_embeddings().weight
    # mean_resizing=False: transformers only allocates and copies; the new rows are set below.
    llm.resize_token_embeddings(vocab_size, mean_resizing=False)
    added = vocab_size - old_rows
    with torch.no_grad():
        _fill_with_mean(llm.get_input_embeddings().weight, old_rows)
        output = llm.get_output_embeddings()
        if output is not None and not tied:
            _fill_with_mean(output.weight, old_rows)
            bias = getattr(output, "bias", None)
            if isinstance(bias, nn.Parameter):
                bias[old_rows:] = bias[:old_rows].mean()
    return added


def _fill_with_mean(weight: torch.Tensor, old_rows: int) -> None:
    # The mean in fp32 whatever the storage dtype, so a bf16 table does not lose it to rounding.
    weight[old_rows:] = weight[:old_rows].float().mean(dim=0).to(weight.dtype)
