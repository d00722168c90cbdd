"""Turn a :class:`Prompt` into the token ids a chat model is given."""

from __future__ import annotations

from collections.abc import Sequence

from specfair.errors import SpecfairError
from specfair.tasks.prompt import Prompt


def build_messages(
    prompt: Prompt | str,
    turn: int = 0,
    history: Sequence[str] = (),
    system: str | None = None,
) -> list[dict[str, str]]:
    """Messages for asking ``prompt.turns[turn]``: for each earlier turn its user message and
    the model's own answer from ``history``, as Spec-Bench / MT-bench do."""
    turns = (prompt,) if isinstance(prompt, str) else prompt.turns
    pid = "<str>" if isinstance(prompt, str) else prompt.id
    if not 0 <= turn < len(turns):
        raise SpecfairError(f"prompt {pid} has {len(turns)} turn(s); no turn {turn}")
    if len(history) < turn:
        raise SpecfairError(
            f"prompt {pid}: turn {turn} needs the model's {turn} earlier answer(s), "
            f"got {len(history)}"
        )
    messages: list[dict[str, str]] = []
    if system is not None:
        messages.append({"role": "system", "content": system})
    for i in range(turn):
        messages.append({"role": "user", "content": turns[i]})
        messages.append({"role": "assistant", "content": history[i]})
    messages.append({"role": "user", "content": turns[turn]})
    return messages


def encode_prompt(
    tokenizer,
    prompt: Prompt | str,
    turn: int = 0,
    history: Sequence[str | Sequence[int]] = (),
    system: str | None = None,
) -> list[int]:
    """Token ids of the chat-templated conversation up to the user message ``turn``, ending
    with the assistant generation prompt.

    ``history`` holds the model's own earlier answers (text, or token ids which are decoded
    without special tokens). ``system=None`` adds no system message, so the template's default
    (Qwen's "You are Qwen, ...") applies.
    """
    texts = [
        h if isinstance(h, str) else tokenizer.decode(list(h), skip_special_tokens=True)
        for h in history
    ]
    messages = build_messages(prompt, turn, texts, system)
    if getattr(tokenizer, "chat_template", None) is None:
        raise SpecfairError("the tokenizer has no chat template")
    out = tokenizer.apply_chat_template(messages, tokenize=True, add_generation_prompt=True)
    if not isinstance(out, list):  # transformers 5: a BatchEncoding
        out = out["input_ids"]
    if out and isinstance(out[0], list):  # batched form
        out = out[0]
    return [int(i) for i in out]
