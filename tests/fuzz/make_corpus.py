"""make_corpus.py: writes the small seed corpora of the fuzzers into tests/fuzz/corpus/.
Plain python3 (no torch): the pickles are assembled by hand the way torch.save writes them.
Usage: python3 tests/fuzz/make_corpus.py   (from the repo root; rewrites the seed files)"""
import io
import json
import os
import struct
import zipfile

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")


def st_bytes(tensors, pad=True):
    """tensors: list of (name, dtype, shape, raw bytes)."""
    header, off, blobs = {}, 0, []
    for name, dt, shape, raw in sorted(tensors):
        header[name] = {"dtype": dt, "shape": shape, "data_offsets": [off, off + len(raw)]}
        off += len(raw)
        blobs.append(raw)
    header["__metadata__"] = {"format": "pt"}
    h = json.dumps(header, separators=(",", ":")).encode()
    if pad:
        h += b" " * ((8 - len(h) % 8) % 8)
    return struct.pack("<Q", len(h)) + h + b"".join(blobs)


def f32(*v):
    return struct.pack("<%df" % len(v), *v)


def uni(s):
    b = s.encode()
    return b"X" + struct.pack("<I", len(b)) + b


def glob(mod, name):
    return b"c" + mod.encode() + b"\n" + name.encode() + b"\n"


def odict():
    return glob("collections", "OrderedDict") + b")R"


def ints(*v):
    return b"(" + b"".join(b"K" + bytes([x]) for x in v) + b"t"


def tensor(cls, key, numel, offset, size, stride, memo=None):
    out = glob("torch._utils", "_rebuild_tensor_v2") + b"("
    out += b"(" + uni("storage") + glob("torch", cls) + uni(key) + uni("cpu") + b"K" + bytes([numel]) + b"tQ"
    if memo is not None:
        out += b"q" + bytes([memo])
    out += b"K" + bytes([offset]) + ints(*size) + ints(*stride) + b"\x89" + odict() + b"tR"
    return out


def state_dict_pickle(wrap=None):
    inner = odict() + b"q\x01(" + uni("model.w") + tensor("FloatStorage", "0", 12, 0, (3, 4), (4, 1), 2)
    inner += uni("model.wt") + glob("torch._utils", "_rebuild_tensor_v2") + b"(h\x02K\x00" + ints(4, 3) + ints(1, 4) + b"\x89" + odict() + b"tR"
    inner += uni("bf") + tensor("BFloat16Storage", "1", 2, 0, (2,), (1,))
    inner += uni("half") + tensor("HalfStorage", "2", 3, 0, (1, 3), (3, 1))
    inner += uni("step") + b"J" + struct.pack("<i", 1234) + uni("lr") + b"G" + struct.pack(">d", 1e-3)
    inner += b"u}" + uni("_metadata") + b"}sb"
    body = inner if wrap is None else b"}q\x00(" + uni(wrap) + inner + b"u"
    return b"\x80\x02" + body + b"."


def pt_bytes(pkl, compress=False):
    bio = io.BytesIO()
    with zipfile.ZipFile(bio, "w", zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED) as z:
        z.writestr("archive/data.pkl", pkl)
        z.writestr("archive/byteorder", b"little")
        z.writestr("archive/data/0", f32(*range(12)))
        z.writestr("archive/data/1", b"\xc0\x3f\x00\xc0")
        z.writestr("archive/data/2", b"\x00\x00\x00\x38\x00\x3c")
        z.writestr("archive/version", b"3\n")
    return bio.getvalue()


def pt64_bytes(pkl):
    bio = io.BytesIO()
    with zipfile.ZipFile(bio, "w", zipfile.ZIP_STORED, allowZip64=True) as z:
        for name, data in (("archive/data.pkl", pkl), ("archive/data/0", f32(*range(12)))):
            with z.open(name, "w", force_zip64=True) as f:
                f.write(data)
    return bio.getvalue()


def write(kind, name, data):
    d = os.path.join(ROOT, kind)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def main():
    write("safetensors", "basic.safetensors",
          st_bytes([("a.weight", "F32", [2, 2], f32(1, 2, 3, 4)), ("b", "BF16", [2], b"\x80\x3f\x00\x40"),
                    ("c", "F16", [1, 1, 3], b"\x00\x3c" * 3), ("s", "F32", [], f32(7)), ("e", "F32", [0, 3], b"")]))
    write("safetensors", "unpadded.safetensors", st_bytes([("x", "F32", [3], f32(1, 2, 3))], pad=False))
    write("safetensors", "diffusers.safetensors",
          st_bytes([("condition_embedder.time_proj.weight", "F32", [1], f32(1)),
                    ("blocks.0.attn1.to_q.weight", "F32", [1], f32(2)),
                    ("blocks.0.norm2.bias", "F32", [1], f32(3)),
                    ("model._fsdp_wrapped_module.proj_out.weight", "F32", [1], f32(4))]))
    write("safetensors", "plain.pt", pt_bytes(state_dict_pickle()))
    write("safetensors", "index.json", b'{"weight_map":{"x":"basic.safetensors"}}')
    write("zip", "plain.pt", pt_bytes(state_dict_pickle()))
    write("zip", "deflated.pt", pt_bytes(state_dict_pickle(), compress=True))
    write("zip", "zip64.pt", pt64_bytes(state_dict_pickle()))
    write("pickle", "state_dict.pkl", state_dict_pickle())
    write("pickle", "nested.pkl", state_dict_pickle("generator_ema"))
    write("pickle", "param.pkl", b"\x80\x02" + odict() + b"(" + uni("p") + glob("torch._utils", "_rebuild_parameter") + b"(" +
          tensor("FloatStorage", "0", 4, 0, (4,), (1,)) + b"\x88" + odict() + b"tRu.")
    write("pickle", "proto4.pkl", b"\x80\x04\x95\x20\x00\x00\x00\x00\x00\x00\x00}\x94(\x8c\x01a\x94]\x94(K\x01M\x00\x01\x8a\x02\x00\x80e\x8c\x01b\x94N\x88\x89\x87u.")


if __name__ == "__main__":
    main()
