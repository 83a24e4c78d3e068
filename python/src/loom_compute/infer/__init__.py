"""Inference: prompt formats (prompts.py), image preprocessing (images.py), batched generation
(generate.py) and loading an export for it (loading.py); the verbs are verbs/generate.py and
verbs/chat.py."""
