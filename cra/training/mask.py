"""The end-of-turn check: every training sample must teach the model to stop.

A fine-tuned chat model that never stops generating almost always comes from a chat
template that leaves the end-of-turn token out of the loss mask (or out of the text).
Before training, each sample is tokenized the way the trainer does it (chat template of
prompt, then of prompt + answer; the loss covers what the answer added) and refused
unless that completion mask is non-empty and its last non-whitespace token is
`<|im_end|>`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from cra.errors import CraError

END_OF_TURN = "<|im_end|>"


class MaskError(CraError, ValueError):
    """A sample's completion mask is empty or does not end with the end-of-turn token."""

    def __init__(self, message: str, *, row: int) -> None:
        super().__init__(
            message,
            hint="fix the base model's chat template so every assistant turn ends with "
            f"{END_OF_TURN} (the model would never learn to stop)",
        )
        self.row = row


def _ids(tokenizer: Any, messages: list[dict[str, Any]], *, generation_prompt: bool) -> list[int]:
    out = tokenizer.apply_chat_template(
        messages, tokenize=True, add_generation_prompt=generation_prompt, return_dict=False
    )
    if isinstance(out, dict) or hasattr(out, "keys"):
        out = out["input_ids"]
    return [int(i) for i in out]


def completion_tokens(
    tokenizer: Any, prompt: list[dict[str, Any]], answer: list[dict[str, Any]]
) -> list[str]:
    """The tokens the loss covers for one prompt and answer."""
    prompt_ids = _ids(tokenizer, prompt, generation_prompt=True)
    full_ids = _ids(tokenizer, [*prompt, *answer], generation_prompt=False)
    if full_ids[: len(prompt_ids)] != prompt_ids:
        return []  # the template renders the prompt differently once answered: no clean mask
    return list(tokenizer.convert_ids_to_tokens(full_ids[len(prompt_ids) :]))


def check_completion_masks(tokenizer: Any, rows: Iterable[dict[str, Any]]) -> int:
    """Check every answer of every row (completion, or chosen and rejected); return how
    many masks were checked. Raise MaskError naming the first bad row."""
    end = tokenizer.convert_tokens_to_ids(END_OF_TURN)
    if end is None or end == tokenizer.unk_token_id:
        raise MaskError(f"the tokenizer has no {END_OF_TURN} token", row=0)
    checked = 0
    for number, row in enumerate(rows, start=1):
        for key in ("completion", "chosen", "rejected"):
            if key not in row:
                continue
            tokens = completion_tokens(tokenizer, row["prompt"], row[key])
            if not tokens:
                raise MaskError(f"row {number}: the {key} mask is empty", row=number)
            stripped = list(tokens)
            while stripped and not tokenizer.convert_tokens_to_string([stripped[-1]]).strip():
                stripped.pop()
            if not stripped or stripped[-1] != END_OF_TURN:
                last = stripped[-1] if stripped else "nothing"
                raise MaskError(
                    f"row {number}: the {key} mask ends with {last!r}, not {END_OF_TURN}",
                    row=number,
                )
            checked += 1
    return checked


def sequence_length(tokenizer: Any, row: dict[str, Any]) -> int:
    """Tokens of the row's longest rendered conversation (prompt plus one answer)."""
    answers = [row[k] for k in ("completion", "chosen", "rejected") if k in row]
    return max(
        (len(_ids(tokenizer, [*row["prompt"], *a], generation_prompt=False)) for a in answers),
        default=0,
    )
