"""A tiny, fully known llama-architecture model in GGUF, for running a real llama.cpp server in tests.

No model can be downloaded here, so this one is written with `gguf` (llama.cpp's own writer): a
byte-level vocabulary (GPT-2's byte-to-unicode table, one merge) plus ChatML's two control tokens,
one transformer block whose attention and feed-forward outputs are zero, and identical token
embeddings. The residual stream is therefore the same at every position, and the logits are a
fixed preference order over the vocabulary that this file chooses (`PREFERENCE`).

Under a grammar (llama.cpp's JSON-schema constrained decoding) greedy sampling then writes the
*smallest* answer the schema admits: strings close at once, numbers are one digit, arrays end as
soon as they may. Without a grammar it writes nothing (end of turn ranks first). It is not a
language model; it is a real llama.cpp inference over a real GGUF file whose answers we can predict.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

N_EMBD = 64
N_HEAD = 4
N_FF = 64
CONTEXT = 65536
IM_START, IM_END = "<|im_start|>", "<|im_end|>"
CHATML = ("{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] "
          "+ '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")

# Higher first. Whitespace last: the grammar never needs it. End of turn first: it may come only
# where the grammar is complete.
PREFERENCE = [IM_END, '"', "]", "}", ",", ":", "7", "1", "2", "3", "4", "5", "6", "8", "9", "0", "{", "["]


def _byte_tokens() -> list[str]:
    """GPT-2's byte -> printable unicode table, in byte order (what llama.cpp's BPE expects)."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    table, extra = {b: chr(b) for b in printable}, 0
    for b in range(256):
        if b not in table:
            table[b] = chr(256 + extra)
            extra += 1
    return [table[b] for b in range(256)]


def write(path: Path) -> Path:
    import gguf

    space = _byte_tokens()[ord(" ")]
    tokens = [*_byte_tokens(), IM_START, IM_END, space * 2]  # llama.cpp wants at least one merge
    by_text = {t: i for i, t in enumerate(tokens)}
    scores = np.zeros(len(tokens), dtype=np.float32)
    for rank, text in enumerate(reversed(PREFERENCE), start=1):
        scores[by_text[_byte_tokens()[ord(text)] if len(text) == 1 else text]] = 10.0 + rank
    for ws in " \t\n\r":
        scores[by_text[_byte_tokens()[ord(ws)]]] = -10.0
    scores[by_text[space * 2]] = -10.0

    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_name("repo-pilot tiny test model")
    writer.add_context_length(CONTEXT)
    writer.add_embedding_length(N_EMBD)
    writer.add_block_count(1)
    writer.add_feed_forward_length(N_FF)
    writer.add_head_count(N_HEAD)
    writer.add_head_count_kv(N_HEAD)
    writer.add_rope_dimension_count(N_EMBD // N_HEAD)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("default")
    writer.add_token_list(tokens)
    writer.add_token_types([gguf.TokenType.NORMAL] * 256 + [gguf.TokenType.CONTROL] * 2 + [gguf.TokenType.NORMAL])
    writer.add_token_merges([f"{space} {space}"])
    writer.add_bos_token_id(by_text[IM_START])
    writer.add_eos_token_id(by_text[IM_END])
    writer.add_add_bos_token(False)
    writer.add_chat_template(CHATML)

    vocab = len(tokens)
    ones = np.ones(N_EMBD, dtype=np.float32)
    zeros = lambda *shape: np.zeros(shape, dtype=np.float32)  # noqa: E731
    writer.add_tensor("token_embd.weight", np.tile(ones, (vocab, 1)))
    writer.add_tensor("output_norm.weight", ones.copy())
    writer.add_tensor("output.weight", np.outer(scores, ones / N_EMBD).astype(np.float32))
    writer.add_tensor("blk.0.attn_norm.weight", ones.copy())
    for name in ("attn_q", "attn_k", "attn_v", "attn_output"):
        writer.add_tensor(f"blk.0.{name}.weight", zeros(N_EMBD, N_EMBD))
    writer.add_tensor("blk.0.ffn_norm.weight", ones.copy())
    writer.add_tensor("blk.0.ffn_gate.weight", zeros(N_FF, N_EMBD))
    writer.add_tensor("blk.0.ffn_up.weight", zeros(N_FF, N_EMBD))
    writer.add_tensor("blk.0.ffn_down.weight", zeros(N_EMBD, N_FF))

    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path
