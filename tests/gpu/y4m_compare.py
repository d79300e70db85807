# tests/gpu/y4m_compare.py A.y4m B.y4m: per-frame PSNR (or "identical") of two YUV4MPEG2 files
# of one size (4:2:0), e.g. the engine on 1 vs 2 stages on the GPU machine.
import sys
import numpy as np
def frames(p):
    d = open(p, "rb").read()
    hdr, _, body = d.partition(b"\n")
    w = int([t for t in hdr.split() if t.startswith(b"W")][0][1:]); h = int([t for t in hdr.split() if t.startswith(b"H")][0][1:])
    fs = 6 + w * h * 3 // 2
    return [np.frombuffer(body[i + 6:i + fs], np.uint8).astype(np.float64) for i in range(0, len(body), fs)]
a, b = frames(sys.argv[1]), frames(sys.argv[2])
print("frames", len(a), len(b))
for i, (x, y) in enumerate(zip(a, b)):
    mse = ((x - y) ** 2).mean()
    print(i, "identical" if mse == 0 else "psnr %.1f dB maxdiff %d" % (10 * np.log10(255 * 255 / mse), np.abs(x - y).max()))
