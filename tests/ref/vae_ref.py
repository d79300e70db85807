"""vae_ref.py: golden fixtures for `livegen probe vae-encode|vae-decode|taehv-decode`.

A plain PyTorch implementation of the Wan2.1 VAE (wan/modules/vae.py semantics: CausalConv3d
with CACHE_T = 2 feature caches, RMS_norm, residual/attention blocks, resample with time_conv,
the 'Rep' rule of upsample3d, streaming encode 1 + 4 + 4 frames and decode one latent per call)
and of the TAEHV decoder (madebyollin/taehv semantics: Clamp, MemBlocks, TGrow, trim of the
first 3 frames; TGrow weights wider than needed are sliced to their last channels), on tiny
seeded random weights under the official names (VAE dim 8, TAEHV widths 32/16/8/8), 64x64
frames, computed in float64 on the CPU.

Run from the repo root:  python3 tests/ref/vae_ref.py tests/fixtures/vae
Writes (all f32 safetensors, about 4 MB in total):
  wan_vae_tiny.safetensors, taehv_tiny.safetensors             weights
  vae_encode_in / vae_encode_out.safetensors                   x.k [1,3,T,64,64] -> z.k, zn.k [1,16,1,8,8]
  vae_decode_in / vae_decode_out.safetensors                   z.k [1,16,1,8,8] -> x.k [1,3,T,64,64]
  taehv_decode_in / taehv_decode_out.safetensors               z.k -> x.k (same layout)
"""
import math
import os
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import st  # noqa: E402

CACHE_T = 2
Z = 16
MEAN = [-0.7571, -0.7089, -0.9113, 0.1075, -0.1745, 0.9653, -0.1517, 1.5508,
        0.4134, -0.0715, 0.5517, -0.3632, -0.1922, -0.9497, 0.2503, -0.2921]
STD = [2.8184, 1.4541, 2.3275, 2.6558, 1.2196, 1.7708, 2.6052, 2.0743,
       3.2687, 2.1526, 2.8652, 1.5579, 1.6382, 1.1253, 2.8251, 1.9160]


# ---------------------------------------------------------------------------------------------
# Wan VAE


class CausalConv3d(nn.Conv3d):
    """Conv3d with time padding 2p in front only (spatial p each side); a cache of earlier
    frames replaces that many zero frames."""

    def __init__(self, cin, cout, k, stride=1, padding=0):
        super().__init__(cin, cout, k, stride=stride, padding=0)
        p = padding if isinstance(padding, tuple) else (padding,) * 3
        self.causal_pad = (p[2], p[2], p[1], p[1], 2 * p[0], 0)

    def forward(self, x, cache=None):
        pad = list(self.causal_pad)
        if cache is not None and pad[4] > 0:
            x = torch.cat([cache, x], 2)
            pad[4] -= cache.shape[2]
        return super().forward(F.pad(x, pad))


def cached_conv(conv, x, fc, fi):
    """The reference's per-conv cache step: the next cache is the last CACHE_T frames of x,
    topped up with the previous cache's last frame when x has fewer."""
    i = fi[0]
    nxt = x[:, :, -CACHE_T:].clone()
    if nxt.shape[2] < 2 and fc[i] is not None:
        nxt = torch.cat([fc[i][:, :, -1:], nxt], 2)
    y = conv(x, fc[i])
    fc[i] = nxt
    fi[0] += 1
    return y


class RMSNorm(nn.Module):
    def __init__(self, c, images):
        super().__init__()
        self.scale = c ** 0.5
        self.gamma = nn.Parameter(torch.ones((c, 1, 1) if images else (c, 1, 1, 1)))

    def forward(self, x):
        return F.normalize(x, dim=1) * self.scale * self.gamma


class ResidualBlock(nn.Module):
    def __init__(self, cin, cout):
        super().__init__()
        self.residual = nn.Sequential(
            RMSNorm(cin, False), nn.SiLU(), CausalConv3d(cin, cout, 3, padding=1),
            RMSNorm(cout, False), nn.SiLU(), nn.Dropout(0.0), CausalConv3d(cout, cout, 3, padding=1))
        self.shortcut = CausalConv3d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x, fc=None, fi=None):
        h = self.shortcut(x)
        for layer in self.residual:
            if isinstance(layer, CausalConv3d) and fc is not None:
                x = cached_conv(layer, x, fc, fi)
            else:
                x = layer(x)
        return x + h


class AttentionBlock(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.norm = RMSNorm(c, True)
        self.to_qkv = nn.Conv2d(c, 3 * c, 1)
        self.proj = nn.Conv2d(c, c, 1)

    def forward(self, x):
        b, c, t, h, w = x.shape
        y = x.permute(0, 2, 1, 3, 4).reshape(b * t, c, h, w)
        y = self.norm(y)
        q, k, v = self.to_qkv(y).reshape(b * t, 1, 3 * c, h * w).permute(0, 1, 3, 2).chunk(3, -1)
        a = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(c), -1) @ v  # [bt,1,hw,c]
        y = a.squeeze(1).permute(0, 2, 1).reshape(b * t, c, h, w)
        y = self.proj(y)
        return y.reshape(b, t, c, h, w).permute(0, 2, 1, 3, 4) + x


class Resample(nn.Module):
    def __init__(self, c, mode):
        super().__init__()
        self.mode = mode
        if mode.startswith('up'):
            self.resample = nn.Sequential(nn.Upsample(scale_factor=(2.0, 2.0), mode='nearest-exact'),
                                          nn.Conv2d(c, c // 2, 3, padding=1))
            if mode == 'upsample3d':
                self.time_conv = CausalConv3d(c, 2 * c, (3, 1, 1), padding=(1, 0, 0))
        else:
            self.resample = nn.Sequential(nn.ZeroPad2d((0, 1, 0, 1)), nn.Conv2d(c, c, 3, stride=2))
            if mode == 'downsample3d':
                self.time_conv = CausalConv3d(c, c, (3, 1, 1), stride=(2, 1, 1))

    def forward(self, x, fc=None, fi=None):
        b, c, t, h, w = x.shape
        if self.mode == 'upsample3d' and fc is not None:
            i = fi[0]
            if fc[i] is None:  # first chunk: no time_conv, mark the cache
                fc[i] = 'Rep'
            else:
                nxt = x[:, :, -CACHE_T:].clone()
                if nxt.shape[2] < 2:
                    prev = torch.zeros_like(nxt) if isinstance(fc[i], str) else fc[i][:, :, -1:]
                    nxt = torch.cat([prev, nxt], 2)
                x = self.time_conv(x, None if isinstance(fc[i], str) else fc[i])
                fc[i] = nxt
                x = x.reshape(b, 2, c, t, h, w)
                x = torch.stack((x[:, 0], x[:, 1]), 3).reshape(b, c, 2 * t, h, w)
            fi[0] += 1
        t = x.shape[2]
        y = self.resample(x.permute(0, 2, 1, 3, 4).reshape(b * t, x.shape[1], h, w))
        x = y.reshape(b, t, y.shape[1], y.shape[2], y.shape[3]).permute(0, 2, 1, 3, 4)
        if self.mode == 'downsample3d' and fc is not None:
            i = fi[0]
            if fc[i] is None:
                fc[i] = x.clone()
            else:
                last = x[:, :, -1:].clone()
                x = self.time_conv(torch.cat([fc[i][:, :, -1:], x], 2))
                fc[i] = last
            fi[0] += 1
        return x


class Encoder3d(nn.Module):
    def __init__(self, dim, zc, mult=(1, 2, 4, 4), nres=2, tdown=(False, True, True)):
        super().__init__()
        dims = [dim * u for u in (1,) + tuple(mult)]
        self.conv1 = CausalConv3d(3, dims[0], 3, padding=1)
        layers = []
        for i, (cin, cout) in enumerate(zip(dims[:-1], dims[1:])):
            for _ in range(nres):
                layers.append(ResidualBlock(cin, cout))
                cin = cout
            if i != len(mult) - 1:
                layers.append(Resample(cout, 'downsample3d' if tdown[i] else 'downsample2d'))
        self.downsamples = nn.Sequential(*layers)
        self.middle = nn.Sequential(ResidualBlock(cout, cout), AttentionBlock(cout),
                                    ResidualBlock(cout, cout))
        self.head = nn.Sequential(RMSNorm(cout, False), nn.SiLU(), CausalConv3d(cout, zc, 3, padding=1))

    def forward(self, x, fc, fi):
        x = cached_conv(self.conv1, x, fc, fi)
        for layer in self.downsamples:
            x = layer(x, fc, fi)
        for layer in self.middle:
            x = layer(x, fc, fi) if isinstance(layer, ResidualBlock) else layer(x)
        for layer in self.head:
            x = cached_conv(layer, x, fc, fi) if isinstance(layer, CausalConv3d) else layer(x)
        return x


class Decoder3d(nn.Module):
    def __init__(self, dim, zc, mult=(1, 2, 4, 4), nres=2, tup=(True, True, False)):
        super().__init__()
        dims = [dim * u for u in (mult[-1],) + tuple(mult[::-1])]
        self.conv1 = CausalConv3d(zc, dims[0], 3, padding=1)
        self.middle = nn.Sequential(ResidualBlock(dims[0], dims[0]), AttentionBlock(dims[0]),
                                    ResidualBlock(dims[0], dims[0]))
        layers = []
        for i, (cin, cout) in enumerate(zip(dims[:-1], dims[1:])):
            if i in (1, 2, 3):
                cin //= 2
            for _ in range(nres + 1):
                layers.append(ResidualBlock(cin, cout))
                cin = cout
            if i != len(mult) - 1:
                layers.append(Resample(cout, 'upsample3d' if tup[i] else 'upsample2d'))
        self.upsamples = nn.Sequential(*layers)
        self.head = nn.Sequential(RMSNorm(cout, False), nn.SiLU(), CausalConv3d(cout, 3, 3, padding=1))

    def forward(self, x, fc, fi):
        x = cached_conv(self.conv1, x, fc, fi)
        for layer in self.middle:
            x = layer(x, fc, fi) if isinstance(layer, ResidualBlock) else layer(x)
        for layer in self.upsamples:
            x = layer(x, fc, fi)
        for layer in self.head:
            x = cached_conv(layer, x, fc, fi) if isinstance(layer, CausalConv3d) else layer(x)
        return x


def n_causal(m):
    return sum(isinstance(x, CausalConv3d) for x in m.modules())


class WanVAE(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.encoder = Encoder3d(dim, 2 * Z)
        self.conv1 = CausalConv3d(2 * Z, 2 * Z, 1)
        self.conv2 = CausalConv3d(Z, Z, 1)
        self.decoder = Decoder3d(dim, Z)
        self.reset()

    def reset(self):
        self.enc_cache = [None] * n_causal(self.encoder)
        self.dec_cache = [None] * n_causal(self.decoder)

    def encode_call(self, x):
        """x [1,3,T,H,W] (T = 1, then 4) -> mu [1,16,1,h,w]"""
        out = self.encoder(x, self.enc_cache, [0])
        return self.conv1(out)[:, :Z]

    def decode_call(self, z):
        """z [1,16,1,h,w] normalised -> [1,3,T,H,W] clamped"""
        mean = torch.tensor(MEAN, dtype=z.dtype).view(1, Z, 1, 1, 1)
        std = torch.tensor(STD, dtype=z.dtype).view(1, Z, 1, 1, 1)
        x = self.conv2(z * std + mean)
        return self.decoder(x, self.dec_cache, [0]).clamp(-1, 1)


# ---------------------------------------------------------------------------------------------
# TAEHV decoder


def conv3x3(cin, cout, bias=True):
    return nn.Conv2d(cin, cout, 3, padding=1, bias=bias)


class Clamp(nn.Module):
    def forward(self, x):
        return torch.tanh(x / 3) * 3


class MemBlock(nn.Module):
    def __init__(self, n):
        super().__init__()
        self.conv = nn.Sequential(conv3x3(2 * n, n), nn.ReLU(), conv3x3(n, n), nn.ReLU(), conv3x3(n, n))
        self.skip = nn.Identity()
        self.act = nn.ReLU()

    def forward(self, x, past):
        return self.act(self.conv(torch.cat([x, past], 1)) + self.skip(x))


class TGrow(nn.Module):
    def __init__(self, n, stride):
        super().__init__()
        self.stride = stride
        self.conv = nn.Conv2d(n, n * stride, 1, bias=False)

    def forward(self, x):
        c = x.shape[1]
        return self.conv(x).reshape(-1, c, x.shape[2], x.shape[3])


class TAEHVDecoder(nn.Module):
    def __init__(self, nf=(256, 128, 64, 64), latent=16, tup=(False, True, True)):
        super().__init__()
        s = [2 if t else 1 for t in tup]
        self.decoder = nn.Sequential(
            Clamp(), conv3x3(latent, nf[0]), nn.ReLU(),
            MemBlock(nf[0]), MemBlock(nf[0]), MemBlock(nf[0]), nn.Upsample(scale_factor=2),
            TGrow(nf[0], s[0]), conv3x3(nf[0], nf[1], bias=False),
            MemBlock(nf[1]), MemBlock(nf[1]), MemBlock(nf[1]), nn.Upsample(scale_factor=2),
            TGrow(nf[1], s[1]), conv3x3(nf[1], nf[2], bias=False),
            MemBlock(nf[2]), MemBlock(nf[2]), MemBlock(nf[2]), nn.Upsample(scale_factor=2),
            TGrow(nf[2], s[2]), conv3x3(nf[2], nf[3], bias=False),
            nn.ReLU(), conv3x3(nf[3], 3))
        self.trim = s[0] * s[1] * s[2] - 1

    def load_sliced(self, sd):
        """The reference loader: TGrow weights with more rows keep the last ones."""
        own = self.state_dict()
        sd = dict(sd)
        for k, v in own.items():
            if k in sd and sd[k].shape[0] > v.shape[0]:
                sd[k] = sd[k][-v.shape[0]:]
        self.load_state_dict(sd)

    def decode_parallel(self, z):
        """z [N,T,C,h,w] -> frames [N, 4T - trim, 3, H, W] in [0,1] (all frames at once)"""
        n, t = z.shape[:2]
        x = z.reshape(n * t, *z.shape[2:])
        for b in self.decoder:
            if isinstance(b, MemBlock):
                tt = x.shape[0] // n
                xs = x.reshape(n, tt, *x.shape[1:])
                past = F.pad(xs, (0, 0, 0, 0, 0, 0, 1, 0))[:, :tt].reshape(x.shape)
                x = b(x, past)
            else:
                x = b(x)
        x = x.reshape(n, -1, *x.shape[1:]).clamp(0, 1)
        return x[:, self.trim:]

    def decode_stream(self, zs):
        """Frame by frame with per-block memory, like the reference's streaming decoder."""
        mem = [None] * len(self.decoder)
        out = []

        def run(x, i):
            while i < len(self.decoder):
                b = self.decoder[i]
                if isinstance(b, MemBlock):
                    past = mem[i] if mem[i] is not None else torch.zeros_like(x)
                    mem[i] = x
                    x = b(x, past)
                elif isinstance(b, TGrow):
                    y = b(x)
                    for f in range(b.stride):
                        run(y[f:f + 1], i + 1)
                    return
                else:
                    x = b(x)
                i += 1
            out.append(x.clamp(0, 1))

        for k in range(zs.shape[1]):
            run(zs[:, k], 0)
        return torch.stack(out, 1)[:, self.trim:]


# ---------------------------------------------------------------------------------------------
# weights and fixtures


def randomize(model, gen, scale_out=None):
    """Seeded weights: N(0, 1/fan_in) kernels, N(0, 0.05^2) biases, 1 + N(0, 0.1^2) gammas;
    scale_out multiplies named output layers (to keep outputs mostly inside the clamp)."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith('gamma'):
                p.copy_(1 + 0.1 * torch.randn(p.shape, generator=gen))
            elif p.ndim == 1:
                p.copy_(0.05 * torch.randn(p.shape, generator=gen))
            else:
                fan_in = p[0].numel()
                p.copy_(torch.randn(p.shape, generator=gen) / math.sqrt(fan_in))
            if scale_out and name in scale_out:
                p.mul_(scale_out[name][0]).add_(scale_out[name][1])


def f32_dict(sd):
    return {k: v.detach().to(torch.float32).contiguous() for k, v in sd.items()}


def main():
    if len(sys.argv) != 2:
        print(__doc__)
        sys.exit(2)
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(1234)
    H = W = 64

    # Wan VAE, dim 8: weights drawn in f32, computed in f64 from exactly those values
    vae = WanVAE(8)
    randomize(vae, gen, {'decoder.head.2.weight': (0.3, 0.0)})
    vae_sd = f32_dict(vae.state_dict())
    st.save(os.path.join(out, 'wan_vae_tiny.safetensors'), vae_sd)
    vae = vae.double().eval()

    with torch.no_grad():
        frames = (torch.rand((1, 3, 9, H, W), generator=gen) * 2 - 1).float()
        enc_in, enc_out = {}, {}
        vae.reset()
        chunks = [(0, 1), (1, 5), (5, 9)]
        mean = torch.tensor(MEAN, dtype=torch.float64).view(1, Z, 1, 1, 1)
        std = torch.tensor(STD, dtype=torch.float64).view(1, Z, 1, 1, 1)
        for k, (a, b) in enumerate(chunks):
            x = frames[:, :, a:b]
            mu = vae.encode_call(x.double())
            enc_in[f'x.{k}'] = x
            enc_out[f'z.{k}'] = mu.float()
            enc_out[f'zn.{k}'] = ((mu - mean) / std).float()
        st.save(os.path.join(out, 'vae_encode_in.safetensors'), enc_in)
        st.save(os.path.join(out, 'vae_encode_out.safetensors'), enc_out)

        dec_in, dec_out = {}, {}
        vae.reset()
        for k in range(3):
            z = torch.randn((1, Z, 1, H // 8, W // 8), generator=gen).float()
            dec_in[f'z.{k}'] = z
            dec_out[f'x.{k}'] = vae.decode_call(z.double()).float()
            assert dec_out[f'x.{k}'].shape[2] == (1 if k == 0 else 4)
        st.save(os.path.join(out, 'vae_decode_in.safetensors'), dec_in)
        st.save(os.path.join(out, 'vae_decode_out.safetensors'), dec_out)

    # TAEHV, widths 32/16/8/8; decoder.7 (TGrow stride 1) is stored with 2n rows and sliced
    tae = TAEHVDecoder(nf=(32, 16, 8, 8))
    randomize(tae, gen, {'decoder.22.weight': (0.3, 0.0), 'decoder.22.bias': (1.0, 0.5)})
    tae_sd = f32_dict(tae.state_dict())
    extra = torch.randn(tae_sd['decoder.7.conv.weight'].shape, generator=gen) / math.sqrt(32)
    tae_sd['decoder.7.conv.weight'] = torch.cat([extra.float(), tae_sd['decoder.7.conv.weight']], 0)
    st.save(os.path.join(out, 'taehv_tiny.safetensors'), tae_sd)
    tae = TAEHVDecoder(nf=(32, 16, 8, 8))
    tae.load_sliced(st.load(os.path.join(out, 'taehv_tiny.safetensors')))
    tae = tae.double().eval()
    with torch.no_grad():
        zs = torch.randn((1, 3, Z, H // 8, W // 8), generator=gen).float()
        par = tae.decode_parallel(zs.double())       # [1, 9, 3, H, W]
        seq = tae.decode_stream(zs.double())
        assert par.shape == (1, 9, 3, H, W), par.shape
        assert torch.allclose(par, seq, atol=1e-12), (par - seq).abs().max()
        pix = (par * 2 - 1).permute(0, 2, 1, 3, 4).float()  # [1,3,9,H,W] in [-1,1]
        t_in, t_out = {}, {}
        for k, (a, b) in enumerate(chunks):
            t_in[f'z.{k}'] = zs[:, k].unsqueeze(2).contiguous()
            t_out[f'x.{k}'] = pix[:, :, a:b].contiguous()
        st.save(os.path.join(out, 'taehv_decode_in.safetensors'), t_in)
        st.save(os.path.join(out, 'taehv_decode_out.safetensors'), t_out)

    total = sum(os.path.getsize(os.path.join(out, f)) for f in os.listdir(out))
    for name, d in (('encode', enc_out), ('decode', dec_out), ('taehv', t_out)):
        parts = ', '.join(f'{k} {tuple(v.shape)} |max| {v.abs().max():.3f}' for k, v in d.items())
        print(f'{name}: {parts}')
    print(f'wrote {len(os.listdir(out))} files, {total / 1e6:.2f} MB to {out}')


if __name__ == '__main__':
    main()
