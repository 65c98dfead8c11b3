"""What one GPU's kernels can do on a long dense prefill: run on a real GPU (device tool).

    python benchmarks/device_prefill_replica.py [--out docs/prefill-replica.md]

A public lab's vLLM runs of Qwen3-14B and Qwen3-32B on one H100 (32,000-token prompts) reach about a third
of the BF16 peak, where the same lab's A100 reaches about 60 %. This script times the same work with plain
kernels (cuBLAS matmuls, the SDPA attention kernels PyTorch ships) so the gap can be read against what the
GPU itself does: one decoder layer of each model, built from its bundled config.json with random weights, prefills the prompt
in chunks (vLLM's default 8,192 batched tokens), each chunk attending to the cache written by the chunks
before it; the layer's time times the number of layers is the prompt's time. Norms, RoPE and the
residual adds are kept; the vocabulary head runs once (only the last token's logits are needed).
No engine overheads (scheduling, sampling, HTTP) are included, so this is a ceiling, not a prediction.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

MODELS = ("Qwen/Qwen3-32B", "Qwen/Qwen3-14B")


def bundled_config(model: str) -> dict:
    return json.loads((ROOT / "src/sparkserve/models/bundled" / f"{model.replace('/', '--')}.json").read_text())


def layer_flops(cfg: dict, chunk: int, prefix: int) -> tuple[float, float]:
    """Matmul and attention FLOPs of one layer for `chunk` new tokens after `prefix` cached ones."""
    h, heads, kv, d, inter = (cfg["hidden_size"], cfg["num_attention_heads"], cfg["num_key_value_heads"],
                              cfg["head_dim"], cfg["intermediate_size"])
    params = h * (heads + 2 * kv) * d + heads * d * h + 3 * h * inter
    # causal: token i of the chunk sees prefix + i + 1 keys; QK^T and PV are 2 FLOPs each per key and dim
    keys = chunk * prefix + chunk * (chunk + 1) / 2
    return 2.0 * params * chunk, 4.0 * heads * d * keys


def build_layer(torch, cfg: dict, max_tokens: int, fp8: bool):
    h, heads, kv, d, inter = (cfg["hidden_size"], cfg["num_attention_heads"], cfg["num_key_value_heads"],
                              cfg["head_dim"], cfg["intermediate_size"])
    dev, bf = "cuda", torch.bfloat16

    def weight(n: int, k: int):
        w = (torch.randn(n, k, device=dev, dtype=bf) / k ** 0.5)
        return w.to(torch.float8_e4m3fn) if fp8 else w

    w = {"qkv": weight((heads + 2 * kv) * d, h), "o": weight(h, heads * d),
         "gate_up": weight(2 * inter, h), "down": weight(h, inter)}
    norms = {n: torch.ones(size, device=dev, dtype=bf) for n, size in
             (("in", h), ("post", h), ("q", d), ("k", d))}
    cache_k = torch.zeros(1, kv, max_tokens, d, device=dev, dtype=bf)
    cache_v = torch.zeros_like(cache_k)
    inv = 1.0 / (cfg.get("rope_theta", 1e6) ** (torch.arange(0, d, 2, device=dev, dtype=torch.float32) / d))
    angles = torch.outer(torch.arange(max_tokens, device=dev, dtype=torch.float32), inv)
    cos, sin = angles.cos().to(bf), angles.sin().to(bf)
    one = torch.ones((), device=dev)
    return w, norms, cache_k, cache_v, cos, sin, one


def make_step(torch, cfg: dict, parts, fp8: bool, backend):
    import torch.nn.functional as F
    from torch.nn.attention import sdpa_kernel
    from torch.nn.attention.bias import causal_lower_right

    w, norms, cache_k, cache_v, cos, sin, one = parts
    heads, kv, d, inter = cfg["num_attention_heads"], cfg["num_key_value_heads"], cfg["head_dim"], cfg["intermediate_size"]
    eps = cfg.get("rms_norm_eps", 1e-6)

    def mm(x, weight):
        if fp8:
            return torch._scaled_mm(x.to(torch.float8_e4m3fn), weight.t(), scale_a=one, scale_b=one,
                                    out_dtype=torch.bfloat16)
        return x @ weight.t()

    def rope(x, pos):
        c, s = cos[pos][None, None], sin[pos][None, None]
        x1, x2 = x[..., : d // 2], x[..., d // 2:]
        return torch.cat((x1 * c - x2 * s, x2 * c + x1 * s), dim=-1)

    def step(x, prefix: int):
        n = x.shape[0]
        pos = torch.arange(prefix, prefix + n, device=x.device)
        y = F.rms_norm(x, (x.shape[-1],), norms["in"], eps)
        q, k, v = mm(y, w["qkv"]).split((heads * d, kv * d, kv * d), dim=-1)
        q = F.rms_norm(q.view(n, heads, d), (d,), norms["q"], eps).transpose(0, 1)[None]
        k = F.rms_norm(k.view(n, kv, d), (d,), norms["k"], eps).transpose(0, 1)[None]
        cache_k[:, :, prefix:prefix + n] = rope(k, pos)
        cache_v[:, :, prefix:prefix + n] = v.view(n, kv, d).transpose(0, 1)[None]
        keys, values = cache_k[:, :, : prefix + n], cache_v[:, :, : prefix + n]
        with sdpa_kernel(backend):
            att = F.scaled_dot_product_attention(rope(q, pos), keys, values,
                                                 attn_mask=causal_lower_right(n, prefix + n), enable_gqa=True)
        x = x + mm(att[0].transpose(0, 1).reshape(n, heads * d), w["o"])
        y = F.rms_norm(x, (x.shape[-1],), norms["post"], eps)
        gate, up = mm(y, w["gate_up"]).split((inter, inter), dim=-1)
        return x + mm(F.silu(gate) * up, w["down"])

    return step


def time_ms(torch, fn, iters: int = 5) -> float:
    for _ in range(2):
        fn()
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(iters):
        fn()
    end.record()
    torch.cuda.synchronize()
    return start.elapsed_time(end) / iters


def replicate(torch, model: str, prompt: int, chunk: int, fp8: bool, backend) -> dict:
    cfg = bundled_config(model)
    parts = build_layer(torch, cfg, prompt, fp8)
    step = make_step(torch, cfg, parts, fp8, backend)
    x_full = torch.randn(chunk, cfg["hidden_size"], device="cuda", dtype=torch.bfloat16)
    layer_ms, mat, att = 0.0, 0.0, 0.0
    for prefix in range(0, prompt, chunk):
        n = min(chunk, prompt - prefix)
        x = x_full[:n]
        layer_ms += time_ms(torch, lambda: step(x, prefix))
        m, a = layer_flops(cfg, n, prefix)
        mat, att = mat + m, att + a
    layers = cfg["num_hidden_layers"]
    head = torch.randn(cfg["vocab_size"], cfg["hidden_size"], device="cuda", dtype=torch.bfloat16)
    last = torch.randn(1, cfg["hidden_size"], device="cuda", dtype=torch.bfloat16)
    head_ms = time_ms(torch, lambda: last @ head.t())
    seconds = (layer_ms * layers + head_ms) / 1000
    flops = (mat + att) * layers
    torch.cuda.empty_cache()
    return {"model": model, "matmuls": "fp8" if fp8 else "bf16", "backend": str(backend).split(".")[-1],
            "prompt": prompt, "chunk": chunk, "seconds": seconds, "tok_s": prompt / seconds,
            "tflops": flops / seconds / 1e12, "attention_share_of_flops": att / (mat + att)}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "prefill-replica.md")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--prompt", type=int, default=32000)
    ap.add_argument("--chunk", type=int, default=8192)
    args = ap.parse_args()
    import torch
    from torch.nn.attention import SDPBackend

    from sparkserve.hardware.catalog import get_profile
    from sparkserve.hardware.detect import detect

    found = detect()
    profile = get_profile(found.profile_id) if found.profile_id else None
    name = torch.cuda.get_device_name(0)
    fp8_ok = hasattr(torch, "_scaled_mm") and torch.cuda.get_device_capability(0) >= (8, 9)
    results = []
    for model in MODELS:
        for fp8 in (False, True) if fp8_ok else (False,):
            for backend in (SDPBackend.FLASH_ATTENTION, SDPBackend.CUDNN_ATTENTION, SDPBackend.EFFICIENT_ATTENTION):
                try:
                    row = replicate(torch, model, args.prompt, args.chunk, fp8, backend)
                except RuntimeError as exc:
                    print(json.dumps({"model": model, "fp8": fp8, "backend": str(backend), "error": str(exc)[:200]}))
                    torch.cuda.empty_cache()
                    continue
                print(json.dumps(row), flush=True)
                results.append(row)
    peaks = {p: profile.dense_tflops(p) for p in ("bf16", "fp8")} if profile else {}
    lines = ["# A long dense prefill on plain kernels", "",
             f"Written by `benchmarks/device_prefill_replica.py` on {name} (profile {found.profile_id}); "
             f"dense peaks BF16 {peaks.get('bf16')} / FP8 {peaks.get('fp8')} TFLOPS from the hardware catalog. "
             f"One {args.prompt:,}-token prompt, {args.chunk:,}-token chunks, one decoder layer timed per chunk "
             "and multiplied by the layer count; attention in BF16 through the named SDPA kernel.", "",
             "| model | matmuls | attention kernel | seconds | prefill tok/s | TFLOPS | share of peak | attention share of FLOPs |",
             "|---|---|---|---|---|---|---|---|"]
    for r in results:
        peak = peaks.get(r["matmuls"])
        share = f"{r['tflops'] / peak:.0%}" if peak else "n/a"
        lines.append(f"| {r['model']} | {r['matmuls']} | {r['backend']} | {r['seconds']:.2f} | {r['tok_s']:,.0f} | "
                     f"{r['tflops']:.0f} | {share} | {r['attention_share_of_flops']:.0%} |")
    lines += ["", "How to read it: this is what the GPU's stock kernels do with the prompt and nothing else (no"
              " scheduler, sampler, HTTP or decode steps), the ceiling an engine on the same kernels stays under."
              " PyTorch's FLASH_ATTENTION backend is FlashAttention-2; engines on Hopper may run FlashAttention-3"
              " (vLLM's default there), which is faster, so on Hopper an engine can beat this table's attention."
              " docs/planner.md compares it with the public measurements and the planner's predictions."]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
