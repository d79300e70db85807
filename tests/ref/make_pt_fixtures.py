"""make_pt_fixtures.py: small PyTorch checkpoints written by the real torch.save, plus the
tensors livegen must read from each (names after the MODELS.md 1 mapping, contiguous data,
dtypes kept) written with tests/ref/st.py as <name>.expected.safetensors. Used by
tests/unit/test_pt_fixtures.c. A few KB in all.

Usage (repo root, on a machine with torch):
    python3 tests/ref/make_pt_fixtures.py tests/fixtures/pt
"""
import collections
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import st  # noqa: E402


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: python3 tests/ref/make_pt_fixtures.py OUT_DIR")
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    g = torch.Generator().manual_seed(1234)

    def r(*shape, dtype=torch.float32):
        return torch.randn(*shape, generator=g).to(dtype)

    def save(name, obj, expected, **kw):
        torch.save(obj, os.path.join(out, name + ".pt"), **kw)
        st.save(os.path.join(out, name + ".expected.safetensors"),
                {k: v.detach().contiguous() for k, v in expected.items()})
        print("wrote", name + ".pt", "with", len(expected), "tensors")

    # 1. plain OrderedDict of f32 tensors under official names
    sd = collections.OrderedDict()
    sd["patch_embedding.weight"] = r(4, 16, 1, 2, 2)
    sd["patch_embedding.bias"] = r(4)
    sd["blocks.0.ffn.0.weight"] = r(8, 4)
    sd["head.modulation"] = r(1, 2, 4)
    save("plain_f32", sd, sd)

    # 2. bf16 and f16 tensors, an nn.Parameter (no 0-dim tensor: st.py cannot write one)
    sd = collections.OrderedDict()
    sd["a_bf16"] = r(3, 5, dtype=torch.bfloat16)
    sd["b_f16"] = r(2, 2, 2, dtype=torch.float16)
    sd["c_param"] = torch.nn.Parameter(r(6))
    save("mixed_dtypes", sd, {k: v.detach() for k, v in sd.items()})

    # 3. nested training checkpoint: generator_ema wins over generator; "model." and
    #    "_fsdp_wrapped_module." are stripped; non-tensor values (ints, floats, strings, dtypes)
    #    are ignored
    ema = collections.OrderedDict()
    ema["model._fsdp_wrapped_module.blocks.0.self_attn.q.weight"] = r(4, 4)
    ema["model._fsdp_wrapped_module.blocks.0.self_attn.q.bias"] = r(4)
    ema["model.head.head.weight"] = r(64, 4)
    gen = collections.OrderedDict((k, r(*v.shape)) for k, v in ema.items())
    ckpt = {"generator": gen, "generator_ema": ema, "step": 1000, "lr": 2e-6, "note": "dmd",
            "dtype": torch.bfloat16}
    expected = {
        "blocks.0.self_attn.q.weight": ema["model._fsdp_wrapped_module.blocks.0.self_attn.q.weight"],
        "blocks.0.self_attn.q.bias": ema["model._fsdp_wrapped_module.blocks.0.self_attn.q.bias"],
        "head.head.weight": ema["model.head.head.weight"],
    }
    save("nested_generator", ckpt, expected)

    # 4. views: a transposed (non-contiguous) tensor, a row with a storage offset and a
    #    narrowed slice, all sharing one storage with the base tensor
    base = r(4, 6)
    sd = collections.OrderedDict()
    sd["w"] = base
    sd["w_t"] = base.t()
    sd["row"] = base[2]
    sd["cols"] = base[:, 1:4]
    save("views_shared", sd, {k: v.contiguous() for k, v in sd.items()})

    # 5. a real module's state_dict (carries _metadata) saved with pickle protocol 4
    #    (FRAME, MEMOIZE, STACK_GLOBAL, SHORT_BINUNICODE)
    torch.manual_seed(0)
    mod = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.GELU(), torch.nn.Linear(8, 4))
    sd = mod.state_dict()
    save("module_proto4", sd, dict(sd), pickle_protocol=4)

    # 6. diffusers names (mapped to official names by the reader)
    sd = collections.OrderedDict()
    sd["condition_embedder.time_proj.weight"] = r(24, 4)
    sd["blocks.0.attn1.to_out.0.weight"] = r(4, 4)
    sd["blocks.0.norm2.weight"] = r(4)
    sd["scale_shift_table"] = r(1, 2, 4)
    save("diffusers_names", sd, {
        "time_projection.1.weight": sd["condition_embedder.time_proj.weight"],
        "blocks.0.self_attn.o.weight": sd["blocks.0.attn1.to_out.0.weight"],
        "blocks.0.norm3.weight": sd["blocks.0.norm2.weight"],
        "head.modulation": sd["scale_shift_table"],
    })


if __name__ == "__main__":
    main()
