#!/usr/bin/env python3
"""The expected logits of tests/data/micro-gpt-oss for test_dp 8.x, in plain Python (doubles), transcribing
OpenAI's reference forward pass (openai/gpt-oss gpt_oss/torch/model.py: RotaryEmbedding with YaRN concentration
and NTK-by-parts frequencies, sdpa with sinks and a sliding window, swiglu with clamp and +1 on interleaved
gate/up, top-k then softmax over the chosen, biases everywhere). It shares no code with etchsim. Weights: tensor
t (etchsim's tensor order, listed below), element k (row-major) = A * sin(1.3 * k + 0.7 * t), plus SHIFT on each gate_up
bias's elements (minus SHIFT on every fourth); the test's rows callback makes the same. Gate and up of expert e are the even and odd rows of OpenAI's mlp1, so mlp1 row 2i is
gate row i and row 2i+1 is up row i; mlp1_bias likewise (etchsim keeps the interleaved bias as one tensor).
Run it to print the C table the test holds."""
import math
import struct

H, NH, KVH, HD, F, E, TOPK, V, L = 4, 2, 1, 8, 2, 3, 2, 5, 2
WINDOW = [2, 0]  # layer 0 sliding over 2 positions, layer 1 full
THETA, FACTOR, CTX0, BETA_FAST, BETA_SLOW, LIMIT, ALPHA, EPS = 150000.0, 32.0, 4096, 32.0, 1.0, 7.0, 1.702, 1e-5
AMP = 1.0
TOKENS = [1, 3, 0, 4, 2]
SHIFT = 7.0  # added to each gate_up bias's elements but every fourth (subtracted there), so gates and ups cross the clamp

shapes = [("embed", V, H)]
for l in range(L):
    shapes += [("an", 1, H), ("q", NH * HD, H), ("qb", 1, NH * HD), ("k", KVH * HD, H), ("kb", 1, KVH * HD),
               ("v", KVH * HD, H), ("vb", 1, KVH * HD), ("o", H, NH * HD), ("ob", 1, H), ("sinks", 1, NH),
               ("fn", 1, H), ("router", E, H), ("rb", 1, E)]
    for e in range(E):
        shapes += [("g%d" % e, F, H), ("u%d" % e, F, H), ("d%d" % e, H, F)]
    for e in range(E):
        shapes += [("gub%d" % e, 1, 2 * F), ("db%d" % e, 1, H)]
shapes += [("out_norm", 1, H), ("lm_head", V, H)]


def tensor(t):
    _, r, c = shapes[t]
    flat = [AMP * math.sin(1.3 * k + 0.7 * t) for k in range(r * c)]
    if shapes[t][0].startswith("gub"):
        flat = [v + (SHIFT if k % 4 != 3 else -SHIFT) for k, v in enumerate(flat)]
    flat = [struct.unpack("f", struct.pack("f", v))[0] for v in flat]  # the test feeds FP32 weights
    return [flat[i * c:(i + 1) * c] for i in range(r)]


W = [tensor(t) for t in range(len(shapes))]
at = {}
i = 1
for l in range(L):
    names = ["an", "q", "qb", "k", "kb", "v", "vb", "o", "ob", "sinks", "fn", "router", "rb"]
    for n in names:
        at[(l, n)] = W[i]; i += 1
    for e in range(E):
        for n in ("g", "u", "d"):
            at[(l, n + str(e))] = W[i]; i += 1
    for e in range(E):
        for n in ("gub", "db"):
            at[(l, n + str(e))] = W[i]; i += 1
out_norm, lm_head = W[i], W[i + 1]


def mv(w, x):
    return [sum(a * b for a, b in zip(row, x)) for row in w]


def rmsnorm(x, g):
    r = 1.0 / math.sqrt(sum(v * v for v in x) / len(x) + EPS)
    return [v * r * s for v, s in zip(x, g[0])]


def add(x, b):
    return [a + c for a, c in zip(x, b[0])]


# RotaryEmbedding._compute_concentration_and_inv_freq
freq = [THETA ** (j / HD) for j in range(0, HD, 2)]
concentration = 0.1 * math.log(FACTOR) + 1.0
d_half = HD / 2
low = d_half * math.log(CTX0 / (BETA_FAST * 2 * math.pi)) / math.log(THETA)
high = d_half * math.log(CTX0 / (BETA_SLOW * 2 * math.pi)) / math.log(THETA)
assert 0 < low < high < d_half - 1
inv_freq = []
for j in range(int(d_half)):
    ramp = min(max((j - low) / (high - low), 0.0), 1.0)
    mask = 1 - ramp
    inv_freq.append(1.0 / (FACTOR * freq[j]) * (1 - mask) + 1.0 / freq[j] * mask)


def rope(v, pos):  # _apply_rotary_emb on one head: halves
    c = [math.cos(pos * f) * concentration for f in inv_freq]
    s = [math.sin(pos * f) * concentration for f in inv_freq]
    h = HD // 2
    x1, x2 = v[:h], v[h:]
    return [x1[j] * c[j] - x2[j] * s[j] for j in range(h)] + [x2[j] * c[j] + x1[j] * s[j] for j in range(h)]


clamped = [0, 0]
kcache = [[] for _ in range(L)]
vcache = [[] for _ in range(L)]
rows = []
for pos, tok in enumerate(TOKENS):
    x = list(W[0][tok])
    for l in range(L):
        t = rmsnorm(x, at[(l, "an")])
        q = add(mv(at[(l, "q")], t), at[(l, "qb")])
        k = add(mv(at[(l, "k")], t), at[(l, "kb")])
        v = add(mv(at[(l, "v")], t), at[(l, "vb")])
        q = sum((rope(q[h * HD:(h + 1) * HD], pos) for h in range(NH)), [])
        k = sum((rope(k[h * HD:(h + 1) * HD], pos) for h in range(KVH)), [])
        kcache[l].append(k)
        vcache[l].append(v)
        att = []
        for h in range(NH):  # sdpa: scores of the window's positions, then the sink, softmax, sink dropped
            kv = h // (NH // KVH)
            qh = q[h * HD:(h + 1) * HD]
            js = [j for j in range(pos + 1) if WINDOW[l] == 0 or pos - j < WINDOW[l]]
            sc = [sum(a * b for a, b in zip(qh, kcache[l][j][kv * HD:(kv + 1) * HD])) / math.sqrt(HD) for j in js]
            sink = at[(l, "sinks")][0][h]
            mx = max(sc + [sink])
            z = sum(math.exp(s - mx) for s in sc) + math.exp(sink - mx)
            w = [math.exp(s - mx) / z for s in sc]
            att += [sum(w[n] * vcache[l][j][kv * HD + d] for n, j in enumerate(js)) for d in range(HD)]
        o = add(mv(at[(l, "o")], att), at[(l, "ob")])
        x = [a + b for a, b in zip(x, o)]
        t = rmsnorm(x, at[(l, "fn")])
        g = add(mv(at[(l, "router")], t), at[(l, "rb")])
        top = sorted(range(E), key=lambda e: (-g[e], e))[:TOPK]
        mxg = max(g[e] for e in top)
        zz = sum(math.exp(g[e] - mxg) for e in top)
        ew = [math.exp(g[e] - mxg) / zz for e in top]
        acc = [0.0] * H
        for e, we in zip(top, ew):
            mlp1 = []  # interleave: row 2i gate i, row 2i+1 up i
            for r in range(F):
                mlp1 += [at[(l, "g%d" % e)][r], at[(l, "u%d" % e)][r]]
            h1 = [a + b for a, b in zip(mv(mlp1, t), at[(l, "gub%d" % e)][0])]
            xg, xl = h1[0::2], h1[1::2]
            clamped[0] += sum(1 for a in xg if a > LIMIT)
            clamped[1] += sum(1 for a in xl if abs(a) > LIMIT)
            xg = [min(a, LIMIT) for a in xg]
            xl = [min(max(a, -LIMIT), LIMIT) for a in xl]
            y = [a / (1 + math.exp(-ALPHA * a)) * (b + 1) for a, b in zip(xg, xl)]
            d = add(mv(at[(l, "d%d" % e)], y), at[(l, "db%d" % e)])
            acc = [a + we * b for a, b in zip(acc, d)]
        x = [a + b for a, b in zip(x, acc)]
    rows.append(mv(lm_head, rmsnorm(x, out_norm)))

print("/* tests/gpt_oss_oracle.py: logits of micro-gpt-oss for tokens %s (gates clamped %d times, ups %d) */"
      % (TOKENS, clamped[0], clamped[1]))
print("static const double MICRO_LOGITS[%d][%d] = {" % (len(TOKENS), V))
for r in rows:
    print("    {" + ", ".join("%.10g" % v for v in r) + "},")
print("};")
print("/* YaRN: low %.6f high %.6f concentration %.9f inv_freq %s */" % (low, high, concentration,
      ", ".join("%.9g" % f for f in inv_freq)))
