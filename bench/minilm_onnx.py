#!/usr/bin/python3
"""minilm_onnx.py -- a MiniLM-L6-shaped BERT with random weights, written as
a sense model folder (safetensors) and as an ONNX graph, for ort_bench.js.

The encoder is written here in plain torch (no transformers package): the
computation of Hugging Face's BertModel -- word + position + token-type
embeddings, LayerNorm (eps 1e-12), 6 post-LN layers of 12-head
self-attention and a GELU (erf) FFN -- with the same module names, so the
state_dict keys are HF's tensor names (embeddings.word_embeddings.weight,
encoder.layer.N.attention.self.query.weight, ...), the names embed/bert.c
binds. Shapes: all-MiniLM-L6-v2's (hidden 384, intermediate 1536, vocab
30522, 512 positions, 2 token types).

Weights come from torch.manual_seed(SEED): linear and embedding weights
N(0, 0.02) (BERT's initializer_range), biases N(0, 0.02) and LayerNorm
gains 1 + N(0, 0.05), betas N(0, 0.02) -- nonzero, so a bias or a gain
bound to the wrong place shows up in the agreement check.

Writes into OUT (default build/minilm-ort):
  config.json, model.safetensors       the encoder, F32, HF names
  vocab.txt, tokenizer_config.json     a placeholder WordPiece vocabulary of
                                       30522 entries ([PAD] 0, [UNK] 100,
                                       [CLS] 101, [SEP] 102, [MASK] 103,
                                       letters, digits, [unusedN] fillers)
                                       so sn_model_load takes the folder;
                                       the benchmark feeds token ids
  modules.json, 1_Pooling/config.json  mean pooling, no normalize
  model.onnx                           inputs input_ids, attention_mask
                                       (int64 [batch, sequence], dynamic);
                                       output last_hidden_state
                                       [batch, sequence, 384]; token types
                                       are all 0, as in the C engine.
                                       Opset 12 by default: ONNX Runtime's
                                       built-in BERT attention fusion
                                       (com.microsoft.Attention) matches
                                       only Softmax/Unsqueeze of opset <= 12
                                       and Add(MatMul, bias) operand order
                                       (see linear()); with opset 14 it
                                       runs attention unfused
  check.json, check_ids.bin,           a fixed batch of sequences of unequal
  check_torch.bin                      lengths (the lengths in check.json;
                                       ids int32 packed back to back) and
                                       torch's last hidden state for it
                                       (float32, packed, padding excluded)

Run with Debian's torch (it is in /usr/bin/python3, not in a pyenv python):
  sudo apt-get install -y python3-torch     # torch 1.13, ~35 s
  /usr/bin/python3 bench/minilm_onnx.py [--out DIR] [--seed N] [--opset N]
torch.onnx.export needs no onnx package.
"""
import argparse
import json
import math
import os
import struct
import sys

try:
    import torch
    from torch import nn
except ImportError:
    sys.exit("minilm_onnx: no torch in %s; install Debian's: "
             "sudo apt-get install -y python3-torch, then run it with "
             "/usr/bin/python3" % sys.executable)

HIDDEN, LAYERS, HEADS, INTER = 384, 6, 12, 1536
VOCAB, NPOS, NTYPES, EPS = 30522, 512, 2, 1e-12
CHECK_LENS = [1, 7, 16, 33, 128, 64, 2, 100]


def linear(mod, x):
    """nn.Linear written out as x W^T + b, so that the export reads
    Add(MatMul, bias): torch's own Linear exports Add(bias, MatMul), an
    operand order ONNX Runtime's built-in BERT fusions do not match."""
    return torch.matmul(x, mod.weight.t()) + mod.bias


class Embeddings(nn.Module):
    def __init__(self):
        super().__init__()
        self.word_embeddings = nn.Embedding(VOCAB, HIDDEN)
        self.position_embeddings = nn.Embedding(NPOS, HIDDEN)
        self.token_type_embeddings = nn.Embedding(NTYPES, HIDDEN)
        self.LayerNorm = nn.LayerNorm(HIDDEN, eps=EPS)

    def forward(self, input_ids):
        n = input_ids.shape[1]
        pos = torch.arange(n, dtype=torch.long, device=input_ids.device)
        x = (self.word_embeddings(input_ids) +
             self.position_embeddings(pos).unsqueeze(0) +
             self.token_type_embeddings.weight[0])
        return self.LayerNorm(x)


class SelfAttention(nn.Module):
    def __init__(self):
        super().__init__()
        self.query = nn.Linear(HIDDEN, HIDDEN)
        self.key = nn.Linear(HIDDEN, HIDDEN)
        self.value = nn.Linear(HIDDEN, HIDDEN)

    def heads(self, x):  # [B, L, H] -> [B, heads, L, d]
        b, n = x.shape[0], x.shape[1]
        return x.view(b, n, HEADS, HIDDEN // HEADS).permute(0, 2, 1, 3)

    def forward(self, x, mask_add):
        q = self.heads(linear(self.query, x))
        k = self.heads(linear(self.key, x))
        v = self.heads(linear(self.value, x))
        s = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(HIDDEN // HEADS)
        p = torch.softmax(s + mask_add, dim=-1)
        c = torch.matmul(p, v).permute(0, 2, 1, 3).contiguous()
        return c.view(c.shape[0], c.shape[1], HIDDEN)


class SelfOutput(nn.Module):
    def __init__(self):
        super().__init__()
        self.dense = nn.Linear(HIDDEN, HIDDEN)
        self.LayerNorm = nn.LayerNorm(HIDDEN, eps=EPS)

    def forward(self, h, x):
        return self.LayerNorm(linear(self.dense, h) + x)


class Attention(nn.Module):
    def __init__(self):
        super().__init__()
        setattr(self, "self", SelfAttention())
        self.output = SelfOutput()

    def forward(self, x, mask_add):
        return self.output(getattr(self, "self")(x, mask_add), x)


class Intermediate(nn.Module):
    def __init__(self):
        super().__init__()
        self.dense = nn.Linear(HIDDEN, INTER)

    def forward(self, x):
        return nn.functional.gelu(linear(self.dense, x))  # erf GELU


class Output(nn.Module):
    def __init__(self):
        super().__init__()
        self.dense = nn.Linear(INTER, HIDDEN)
        self.LayerNorm = nn.LayerNorm(HIDDEN, eps=EPS)

    def forward(self, h, x):
        return self.LayerNorm(linear(self.dense, h) + x)


class Layer(nn.Module):
    def __init__(self):
        super().__init__()
        self.attention = Attention()
        self.intermediate = Intermediate()
        self.output = Output()

    def forward(self, x, mask_add):
        a = self.attention(x, mask_add)
        return self.output(self.intermediate(a), a)


class Encoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.layer = nn.ModuleList([Layer() for _ in range(LAYERS)])


class Bert(nn.Module):
    def __init__(self):
        super().__init__()
        self.embeddings = Embeddings()
        self.encoder = Encoder()

    def forward(self, input_ids, attention_mask):
        # the additive mask of BERT: 0 for tokens, -10000 for padding
        m = attention_mask[:, None, None, :].to(torch.float32)
        mask_add = (1.0 - m) * -10000.0
        x = self.embeddings(input_ids)
        for layer in self.encoder.layer:
            x = layer(x, mask_add)
        return x


def init_weights(model):
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "LayerNorm.weight" in name:
                p.copy_(1.0 + 0.05 * torch.randn_like(p))
            else:
                p.normal_(0.0, 0.02)


def write_safetensors(path, tensors):
    """tensors: list of (name, float32 tensor); the format is an 8-byte
    little-endian header length, a JSON header, then the raw data."""
    header, blobs, off = {}, [], 0
    for name, t in tensors:
        b = t.detach().contiguous().to(torch.float32).numpy().tobytes()
        header[name] = {"dtype": "F32", "shape": list(t.shape),
                        "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)  # keep the data 8-byte aligned
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


def write_json(path, obj):
    with open(path, "w") as f:
        json.dump(obj, f, indent=2)
        f.write("\n")


def write_folder(out, model):
    write_json(os.path.join(out, "config.json"), {
        "architectures": ["BertModel"], "model_type": "bert",
        "hidden_size": HIDDEN, "num_hidden_layers": LAYERS,
        "num_attention_heads": HEADS, "intermediate_size": INTER,
        "hidden_act": "gelu", "layer_norm_eps": EPS,
        "max_position_embeddings": NPOS, "type_vocab_size": NTYPES,
        "vocab_size": VOCAB, "pad_token_id": 0})
    write_safetensors(os.path.join(out, "model.safetensors"),
                      list(model.state_dict().items()))
    vocab = ["[PAD]"] + ["[unused%d]" % i for i in range(99)]
    vocab += ["[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    vocab += [chr(c) for c in range(ord("a"), ord("z") + 1)]
    vocab += [chr(c) for c in range(ord("0"), ord("9") + 1)]
    vocab += list("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~")
    vocab += ["##" + chr(c) for c in range(ord("a"), ord("z") + 1)]
    i = 99
    while len(vocab) < VOCAB:
        vocab.append("[unused%d]" % i)
        i += 1
    with open(os.path.join(out, "vocab.txt"), "w") as f:
        f.write("\n".join(vocab) + "\n")
    write_json(os.path.join(out, "tokenizer_config.json"),
               {"do_lower_case": True, "model_max_length": NPOS})
    write_json(os.path.join(out, "modules.json"), [
        {"idx": 0, "name": "0", "path": "",
         "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling",
         "type": "sentence_transformers.models.Pooling"}])
    os.makedirs(os.path.join(out, "1_Pooling"), exist_ok=True)
    write_json(os.path.join(out, "1_Pooling", "config.json"),
               {"word_embedding_dimension": HIDDEN, "pooling_mode": "mean"})


def write_check(out, model, seed):
    g = torch.Generator().manual_seed(seed + 1)
    seqs = [torch.randint(1, VOCAB, (n,), generator=g) for n in CHECK_LENS]
    ids = torch.cat(seqs).to(torch.int32)
    with open(os.path.join(out, "check_ids.bin"), "wb") as f:
        f.write(ids.numpy().tobytes())
    rows = []
    with torch.no_grad():
        for s in seqs:  # one at a time: no padding involved
            h = model(s[None, :], torch.ones(1, len(s), dtype=torch.long))
            rows.append(h[0])
    with open(os.path.join(out, "check_torch.bin"), "wb") as f:
        f.write(torch.cat(rows).numpy().astype("<f4").tobytes())
    write_json(os.path.join(out, "check.json"),
               {"lens": CHECK_LENS, "hidden": HIDDEN, "seed": seed})


def export_onnx(out, model, opset):
    ids = torch.randint(1, VOCAB, (2, 16))
    mask = torch.ones(2, 16, dtype=torch.long)
    axes = {0: "batch", 1: "sequence"}
    torch.onnx.export(
        model, (ids, mask), os.path.join(out, "model.onnx"),
        input_names=["input_ids", "attention_mask"],
        output_names=["last_hidden_state"],
        dynamic_axes={"input_ids": axes, "attention_mask": axes,
                      "last_hidden_state": axes},
        opset_version=opset, do_constant_folding=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="build/minilm-ort")
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--opset", type=int, default=12)
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    torch.manual_seed(a.seed)
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    model = Bert().eval()
    init_weights(model)
    write_folder(a.out, model)
    write_check(a.out, model, a.seed)
    export_onnx(a.out, model, a.opset)
    n = sum(p.numel() for p in model.parameters())
    print("minilm_onnx: wrote %s (%d parameters, seed %d, torch %s, "
          "opset %d)" % (a.out, n, a.seed, torch.__version__, a.opset))


if __name__ == "__main__":
    main()
