import torch

from specfair.models import load_model, load_tokenizer
from specfair.models.smoke import smoke_answer


def test_smoke_answer_is_the_greedy_continuation_with_and_without_chat_template(tiny_pair):
    model, tok = load_model(tiny_pair[0], dtype="float32"), load_tokenizer(tiny_pair[0])
    ids = tok.apply_chat_template([{"role": "user", "content": "hi"}], add_generation_prompt=True,
                                  return_dict=True, return_tensors="pt")["input_ids"]
    ref = model.generate(ids, max_new_tokens=6, do_sample=False,
                         attention_mask=torch.ones_like(ids))[0, ids.shape[1]:]
    assert smoke_answer(model, tok, "hi", 6, stream=False) == tok.decode(
        ref, skip_special_tokens=True)
    tok.chat_template = None
    raw = tok("hi", return_tensors="pt")["input_ids"]
    ref = model.generate(raw, max_new_tokens=6, do_sample=False,
                         attention_mask=torch.ones_like(raw))[0, raw.shape[1]:]
    assert smoke_answer(model, tok, "hi", 6, stream=False) == tok.decode(
        ref, skip_special_tokens=True)
