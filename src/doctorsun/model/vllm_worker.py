"""The vLLM side of ``doctorsun.model.vllm_engine``: run by the vLLM environment's own Python (``make vllm``),
so it imports vLLM and the standard library only, never DoctorSun (whose pins differ from vLLM's).

    python vllm_worker.py MODEL_DIR --dtype float32 [--max-model-len N] [--memory-fraction F]

It loads ``vllm.LLM`` once, prints ``@@ready``, then answers one JSON line per batch on stdin:
``{"requests": [{"prompt": str, "images": [png path], "max_tokens": int, "stop": [str], "temperature": float,
"top_p": float, "seed": int}]}`` -> ``@@{"outputs": [{"text": str, "token_ids": [int], "prompt_tokens": int,
"finish_reason": "stop" | "length"}]}`` (temperature 0, the default: greedy). A request with ``"score_last": n``
is scored instead: ``{"logprob": float, "tokens": n}``, the sum of the log-probabilities of its prompt's last
``n`` tokens (a batch is all one kind). Protocol lines start with ``@@`` so that
vLLM's own log lines on stdout are told apart; an empty line or end of input stops it.
"""

import argparse
import json
import sys


def score(out, n: int) -> dict:
    """The summed log-probability of the last ``n`` prompt tokens of one output (vLLM gives, per prompt
    position, a dict holding at least the actual token's log-probability; the first position has none)."""
    ids, lps = list(out.prompt_token_ids), out.prompt_logprobs
    total = 0.0
    for i in range(len(ids) - n, len(ids)):
        total += lps[i][ids[i]].logprob
    return {"logprob": total, "tokens": n, "prompt_tokens": len(ids)}


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("model")
    p.add_argument("--dtype", default="float32")
    p.add_argument("--max-model-len", type=int, default=None, help="default: the model's own")
    p.add_argument("--memory-fraction", type=float, default=None,
                   help="vLLM's gpu_memory_utilization (on CPU: the share of RAM its KV cache takes)")
    p.add_argument("--max-images", type=int, default=1)
    args = p.parse_args()

    from PIL import Image
    from vllm import LLM, SamplingParams

    kwargs = {"gpu_memory_utilization": args.memory_fraction} if args.memory_fraction else {}
    if args.max_model_len:
        kwargs["max_model_len"] = args.max_model_len
    llm = LLM(model=args.model, dtype=args.dtype, enforce_eager=True,
              limit_mm_per_prompt={"image": args.max_images}, seed=0, **kwargs)
    print("@@ready", flush=True)
    for line in sys.stdin:
        if not line.strip():
            break
        batch = json.loads(line)["requests"]
        scoring = bool(batch) and all(r.get("score_last") for r in batch)
        prompts, params = [], []
        for r in batch:
            item = {"prompt": r["prompt"]}
            if r.get("images"):
                images = [Image.open(path).convert("RGB") for path in r["images"]]
                item["multi_modal_data"] = {"image": images[0] if len(images) == 1 else images}
            prompts.append(item)
            if scoring:
                params.append(SamplingParams(temperature=0.0, max_tokens=1, prompt_logprobs=0))
                continue
            sampled = float(r.get("temperature") or 0.0) > 0
            params.append(SamplingParams(temperature=float(r.get("temperature") or 0.0), max_tokens=r["max_tokens"],
                                         top_p=float(r.get("top_p", 1.0)) if sampled else 1.0,
                                         seed=r.get("seed") if sampled else None,
                                         stop=r.get("stop") or None, skip_special_tokens=True))
        outs = llm.generate(prompts, params, use_tqdm=False)
        if scoring:
            reply = {"outputs": [score(o, r["score_last"]) for o, r in zip(outs, batch, strict=True)]}
            print("@@" + json.dumps(reply), flush=True)
            continue
        reply = {"outputs": [{"text": o.outputs[0].text, "token_ids": list(o.outputs[0].token_ids),
                              "prompt_tokens": len(o.prompt_token_ids or []),
                              "finish_reason": "length" if o.outputs[0].finish_reason == "length" else "stop"}
                             for o in outs]}
        print("@@" + json.dumps(reply, ensure_ascii=False), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
