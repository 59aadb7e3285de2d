"""``seqlab s4 ...`` commands: ``bench`` (the benchmark suite) and ``generate`` (step-mode generation)."""

from __future__ import annotations

import argparse
import time


def _bench(args: argparse.Namespace) -> int:
    from .bench import run_all, summary_lines

    device = args.device or _default_device()
    result = run_all(device=device, quick=args.quick, sections=tuple(args.sections), budget_s=args.budget,
                     out_json=args.out, out_png=args.png, show_progress=not args.no_progress)
    print("\n".join(summary_lines(result)))
    if args.out:
        print(f"wrote {args.out}" + (f" and {args.png}" if args.png else ""))
    return 0


def _default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _generate(args: argparse.Namespace) -> int:
    import torch
    from tqdm import tqdm

    from .blocks import SequenceModel

    device = args.device or _default_device()
    torch.manual_seed(args.seed)
    model = SequenceModel(0, args.vocab, d_model=args.d_model, n_layers=args.layers, vocab_size=args.vocab,
                          d_state=args.d_state, mode=args.mode).to(device).eval()
    if args.checkpoint:
        model.load_state_dict(torch.load(args.checkpoint, map_location=device))
    with torch.no_grad():
        ctx = torch.randint(0, args.vocab, (args.batch, args.context), device=device)
        t = time.perf_counter()
        out, state = model(ctx, return_state=True)
        model.setup_step()
        tok = out[:, -1].argmax(-1)
        generated = [tok]
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        t_prefill = time.perf_counter() - t
        t = time.perf_counter()
        for _ in tqdm(range(args.tokens - 1), desc="generating", unit="tok"):
            logits, state = model.step(tok, state)
            tok = logits.argmax(-1) if args.temperature <= 0 else torch.multinomial(
                torch.softmax(logits / args.temperature, -1), 1)[:, 0]
            generated.append(tok)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        dt = time.perf_counter() - t
    seq = torch.stack(generated, 1)
    print(f"prefill of {args.context} tokens: {t_prefill * 1e3:.1f} ms; "
          f"{(args.tokens - 1) * args.batch / max(dt, 1e-9):.0f} tokens/s in step mode on {device}")
    print("first sequence:", seq[0, :32].tolist(), "..." if args.tokens > 32 else "")
    return 0


def register(sub) -> None:
    """Add ``seqlab s4 bench`` and ``seqlab s4 generate`` to an argparse subparsers object."""
    p = sub.add_parser("s4", help="S4 state-space layers: benchmarks and generation")
    s4sub = p.add_subparsers(dest="s4_command", metavar="S4_COMMAND")
    p.set_defaults(func=lambda a: (p.print_help(), 0)[1])

    b = s4sub.add_parser("bench", help="kernel / layer / Table 3 / generation benchmarks (JSON + PNG)")
    b.add_argument("--device", default=None, help="cpu or cuda (default: cuda if available)")
    b.add_argument("--quick", action="store_true", help="tiny sizes (CPU smoke test)")
    b.add_argument("--sections", nargs="+", default=["kernel", "generation", "table3", "layer"],
                   choices=["kernel", "layer", "table3", "generation"])
    b.add_argument("--budget", type=float, default=480.0, help="seconds; later cases are recorded as skipped")
    b.add_argument("--out", default=None, help="JSON output path")
    b.add_argument("--png", default=None, help="PNG plot path")
    b.add_argument("--no-progress", action="store_true")
    b.set_defaults(func=_bench)

    g = s4sub.add_parser("generate", help="greedy/sampled step-mode generation from an S4 language model")
    g.add_argument("--device", default=None)
    g.add_argument("--checkpoint", default=None, help="state_dict of a SequenceModel with these sizes")
    g.add_argument("--vocab", type=int, default=256)
    g.add_argument("--d-model", type=int, default=256)
    g.add_argument("--d-state", type=int, default=64)
    g.add_argument("--layers", type=int, default=6)
    g.add_argument("--mode", default="nplr", choices=["nplr", "diag"])
    g.add_argument("--context", type=int, default=1024, help="random prompt length")
    g.add_argument("--tokens", type=int, default=128)
    g.add_argument("--batch", type=int, default=1)
    g.add_argument("--temperature", type=float, default=0.0, help="0: greedy")
    g.add_argument("--seed", type=int, default=0)
    g.set_defaults(func=_generate)
