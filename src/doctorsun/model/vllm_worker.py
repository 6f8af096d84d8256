"""The vLLM side of ``doctorsun.model.vllm_engine``: run by the vLLM environment's own Python (``make vllm``),
so it imports vLLM and the standard library only, never DoctorSun (whose pins differ from vLLM's).

    python vllm_worker.py MODEL_DIR --dtype float32 [--max-model-len N] [--memory-fraction F]

It loads ``vllm.LLM`` once, prints ``@@ready``, then answers one JSON line per batch on stdin:
``{"requests": [{"prompt": str, "images": [png path], "max_tokens": int, "stop": [str], "temperature": float,
"top_p": float, "seed": int}]}`` -> ``@@{"outputs": [{"text": str, "token_ids": [int], "prompt_tokens": int,
"finish_reason": "stop" | "length"}]}`` (temperature 0, the default: greedy). Protocol lines start with ``@@`` so that
vLLM's own log lines on stdout are told apart; an empty line or end of input stops it.
"""

import argparse
import json
import sys


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
        prompts, params = [], []
        for r in batch:
            item = {"prompt": r["prompt"]}
            if r.get("images"):
                images = [Image.open(path).convert("RGB") for path in r["images"]]
                item["multi_modal_data"] = {"image": images[0] if len(images) == 1 else images}
            prompts.append(item)
            sampled = float(r.get("temperature") or 0.0) > 0
            params.append(SamplingParams(temperature=float(r.get("temperature") or 0.0), max_tokens=r["max_tokens"],
                                         top_p=float(r.get("top_p", 1.0)) if sampled else 1.0,
                                         seed=r.get("seed") if sampled else None,
                                         stop=r.get("stop") or None, skip_special_tokens=True))
        outs = llm.generate(prompts, params, use_tqdm=False)
        reply = {"outputs": [{"text": o.outputs[0].text, "token_ids": list(o.outputs[0].token_ids),
                              "prompt_tokens": len(o.prompt_token_ids or []),
                              "finish_reason": "length" if o.outputs[0].finish_reason == "length" else "stop"}
                             for o in outs]}
        print("@@" + json.dumps(reply, ensure_ascii=False), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
