"""umt5_ref.py: plain PyTorch reference of Wan2.1's umT5-xxl text encoder (the module tree of
Wan's wan/modules/t5.py: T5Encoder with a separate relative position embedding per block,
shared_pos=False), used to make golden tensors for `livegen probe umt5`.

Default (golden fixtures, run from the repo root; writes under OUTDIR, about 1 MB):
    python3 tests/ref/umt5_ref.py tests/fixtures/umt5
  umt5_tiny.safetensors        tiny random weights (vocab 1000, d 64, 2 layers, 4 heads x 16,
                               d_ff 128, 32 buckets), official names, F32, seeded
  umt5_in_<n>.safetensors      `ids` F32 [n] (token ids as exact floats; the C safetensors reader
                               has no I32), ending in </s> = 1, for n in 1, 23, 150
  umt5_out_<n>.safetensors     `ctx` F32 [512, 64]: the encoder run like Wan runs it (ids padded
                               with 0 to 512, attention mask hiding the pad keys, rows >= n
                               zeroed), computed in float64

Real weights (GPU machine; checks the C encoder on the real checkpoint):
    python3 tests/ref/umt5_ref.py OUTDIR --weights models_t5_umt5-xxl-enc-bf16.pth \
        --in IN.safetensors [--dtype float32|bfloat16] [--device cuda]
  writes OUTDIR/umt5_real_out.safetensors with `ctx` F32 [512, 4096].
Needs torch (and numpy through torch); reads/writes safetensors with tests/ref/st.py."""
import argparse
import math
import os
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import st  # noqa: E402

TEXT_LEN = 512


def fp16_clamp(x):
    if x.dtype == torch.float16 and torch.isinf(x).any():
        clamp = torch.finfo(x.dtype).max - 1000
        x = torch.clamp(x, min=-clamp, max=clamp)
    return x


class GELU(nn.Module):
    def forward(self, x):
        return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * torch.pow(x, 3.0))))


class T5LayerNorm(nn.Module):
    def __init__(self, dim, eps=1e-6):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x):
        x = x * torch.rsqrt(x.float().pow(2).mean(dim=-1, keepdim=True) + self.eps)
        if self.weight.dtype in [torch.float16, torch.bfloat16]:
            x = x.type_as(self.weight)
        return self.weight * x


class T5Attention(nn.Module):
    def __init__(self, dim, dim_attn, num_heads):
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = dim_attn // num_heads
        self.q = nn.Linear(dim, dim_attn, bias=False)
        self.k = nn.Linear(dim, dim_attn, bias=False)
        self.v = nn.Linear(dim, dim_attn, bias=False)
        self.o = nn.Linear(dim_attn, dim, bias=False)

    def forward(self, x, mask=None, pos_bias=None):
        b, n, c = x.size(0), self.num_heads, self.head_dim
        q = self.q(x).view(b, -1, n, c)
        k = self.k(x).view(b, -1, n, c)
        v = self.v(x).view(b, -1, n, c)
        attn_bias = x.new_zeros(b, n, q.size(1), k.size(1))
        if pos_bias is not None:
            attn_bias += pos_bias
        if mask is not None:
            mask = mask.view(b, 1, 1, -1) if mask.ndim == 2 else mask.unsqueeze(1)
            attn_bias.masked_fill_(mask == 0, torch.finfo(x.dtype).min)
        # no scaling: T5 folds it into the initialisation
        attn = torch.einsum("binc,bjnc->bnij", q, k) + attn_bias
        attn = F.softmax(attn.float(), dim=-1).type_as(attn)
        x = torch.einsum("bnij,bjnc->binc", attn, v)
        x = x.reshape(b, -1, n * c)
        return self.o(x)


class T5FeedForward(nn.Module):
    def __init__(self, dim, dim_ffn):
        super().__init__()
        self.gate = nn.Sequential(nn.Linear(dim, dim_ffn, bias=False), GELU())
        self.fc1 = nn.Linear(dim, dim_ffn, bias=False)
        self.fc2 = nn.Linear(dim_ffn, dim, bias=False)

    def forward(self, x):
        return self.fc2(self.fc1(x) * self.gate(x))


class T5RelativeEmbedding(nn.Module):
    def __init__(self, num_buckets, num_heads, bidirectional=True, max_dist=128):
        super().__init__()
        self.num_buckets = num_buckets
        self.num_heads = num_heads
        self.bidirectional = bidirectional
        self.max_dist = max_dist
        self.embedding = nn.Embedding(num_buckets, num_heads)

    def forward(self, lq, lk):
        device = self.embedding.weight.device
        rel_pos = torch.arange(lk, device=device).unsqueeze(0) - torch.arange(lq, device=device).unsqueeze(1)
        rel_pos = self._relative_position_bucket(rel_pos)
        rel_pos_embeds = self.embedding(rel_pos)
        return rel_pos_embeds.permute(2, 0, 1).unsqueeze(0).contiguous()  # [1, N, Lq, Lk]

    def _relative_position_bucket(self, rel_pos):
        if self.bidirectional:
            num_buckets = self.num_buckets // 2
            rel_buckets = (rel_pos > 0).long() * num_buckets
            rel_pos = torch.abs(rel_pos)
        else:
            num_buckets = self.num_buckets
            rel_buckets = 0
            rel_pos = -torch.min(rel_pos, torch.zeros_like(rel_pos))
        max_exact = num_buckets // 2
        rel_pos_large = max_exact + (torch.log(rel_pos.float() / max_exact) /
                                     math.log(self.max_dist / max_exact) *
                                     (num_buckets - max_exact)).long()
        rel_pos_large = torch.min(rel_pos_large, torch.full_like(rel_pos_large, num_buckets - 1))
        rel_buckets += torch.where(rel_pos < max_exact, rel_pos, rel_pos_large)
        return rel_buckets


class T5SelfAttention(nn.Module):
    def __init__(self, dim, dim_attn, dim_ffn, num_heads, num_buckets):
        super().__init__()
        self.norm1 = T5LayerNorm(dim)
        self.attn = T5Attention(dim, dim_attn, num_heads)
        self.norm2 = T5LayerNorm(dim)
        self.ffn = T5FeedForward(dim, dim_ffn)
        self.pos_embedding = T5RelativeEmbedding(num_buckets, num_heads, bidirectional=True)

    def forward(self, x, mask=None):
        e = self.pos_embedding(x.size(1), x.size(1))
        x = fp16_clamp(x + self.attn(self.norm1(x), mask=mask, pos_bias=e))
        x = fp16_clamp(x + self.ffn(self.norm2(x)))
        return x


class T5Encoder(nn.Module):
    def __init__(self, vocab, dim, dim_attn, dim_ffn, num_heads, num_layers, num_buckets):
        super().__init__()
        self.token_embedding = nn.Embedding(vocab, dim)
        self.blocks = nn.ModuleList([
            T5SelfAttention(dim, dim_attn, dim_ffn, num_heads, num_buckets) for _ in range(num_layers)])
        self.norm = T5LayerNorm(dim)

    def forward(self, ids, mask=None):
        x = self.token_embedding(ids)
        for block in self.blocks:
            x = block(x, mask)
        return self.norm(x)


def encode(model, ids_list, device):
    """Wan's T5EncoderModel.__call__ + the DiT's zero padding: [512, d] with rows >= n zero."""
    n = len(ids_list)
    ids = torch.zeros(1, TEXT_LEN, dtype=torch.long, device=device)
    mask = torch.zeros(1, TEXT_LEN, dtype=torch.long, device=device)
    ids[0, :n] = torch.tensor(ids_list, dtype=torch.long, device=device)
    mask[0, :n] = 1
    with torch.no_grad():
        ctx = model(ids, mask)[0]
    out = torch.zeros_like(ctx)
    out[:n] = ctx[:n]
    return out.float().cpu()


def make_tiny(seed=1234):
    """Tiny random encoder; init like models/model_spec.c but with visible norms/position bias."""
    vocab, dim, heads, hd, ffn, layers, buckets = 1000, 64, 4, 16, 128, 2, 32
    torch.manual_seed(seed)
    m = T5Encoder(vocab, dim, heads * hd, ffn, heads, layers, buckets).double()
    with torch.no_grad():
        for name, p in m.named_parameters():
            if name == "token_embedding.weight":
                p.normal_(0.0, 1.0)
            elif "pos_embedding" in name:
                p.normal_(0.0, 1.0)
            elif "norm" in name:
                p.copy_(1.0 + 0.2 * torch.randn_like(p))
            else:
                p.normal_(0.0, 1.0 / math.sqrt(p.shape[1]))
    return m


def golden(outdir):
    os.makedirs(outdir, exist_ok=True)
    m = make_tiny()
    sd = {k: v.float() for k, v in m.state_dict().items()}
    assert len(sd) == 22, sorted(sd)
    st.save(os.path.join(outdir, "umt5_tiny.safetensors"), sd)
    m = m.double()  # keep float64 for the goldens, weights as saved (f32-exact)
    with torch.no_grad():
        for k, p in m.state_dict().items():
            p.copy_(sd[k].double())
    g = torch.Generator().manual_seed(77)
    for n in (1, 23, 150):
        ids = (torch.randint(2, 1000, (n,), generator=g)).tolist()
        ids[-1] = 1  # </s>
        st.save(os.path.join(outdir, f"umt5_in_{n}.safetensors"), {"ids": torch.tensor(ids, dtype=torch.float32)})
        ctx = encode(m, ids, "cpu")
        st.save(os.path.join(outdir, f"umt5_out_{n}.safetensors"), {"ctx": ctx})
        print(f"n={n}: ctx |max| {ctx.abs().max().item():.4f}, rows>=n zero: {bool((ctx[n:] == 0).all())}")
    print(f"wrote {outdir}")


def real(outdir, weights, in_path, dtype, device):
    if weights.endswith(".safetensors"):
        sd = st.load(weights)
    else:
        sd = torch.load(weights, map_location="cpu", weights_only=True)
    vocab, dim = sd["token_embedding.weight"].shape
    inner = sd["blocks.0.attn.q.weight"].shape[0]
    buckets, heads = sd["blocks.0.pos_embedding.embedding.weight"].shape
    ffn = sd["blocks.0.ffn.fc1.weight"].shape[0]
    layers = len({k.split(".")[1] for k in sd if k.startswith("blocks.")})
    print(f"weights: {len(sd)} tensors, vocab {vocab}, dim {dim}, {layers} layers, {heads} heads, ffn {ffn}")
    dt = {"float32": torch.float32, "bfloat16": torch.bfloat16}[dtype]
    m = T5Encoder(vocab, dim, inner, ffn, heads, layers, buckets)
    m.load_state_dict(sd)
    m = m.to(device=device, dtype=dt).eval()
    ids = [int(v) for v in st.load(in_path)["ids"].tolist()]
    ctx = encode(m, ids, device)
    os.makedirs(outdir, exist_ok=True)
    path = os.path.join(outdir, "umt5_real_out.safetensors")
    st.save(path, {"ctx": ctx})
    print(f"{len(ids)} ids -> {path} (|max| {ctx.abs().max().item():.4f})")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("outdir")
    ap.add_argument("--weights", help="real umT5 weights (.pth/.safetensors); needs --in")
    ap.add_argument("--in", dest="in_path", help="safetensors with `ids` [n]")
    ap.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    a = ap.parse_args()
    if a.weights:
        if not a.in_path:
            ap.error("--weights needs --in")
        real(a.outdir, a.weights, a.in_path, a.dtype, a.device)
    else:
        golden(a.outdir)


if __name__ == "__main__":
    main()
