#!/usr/bin/env python3
"""Outputs held still: `etchsim run`, `area`, `eval` and `compare` JSON on a set of configurations,
compared with the outputs stored in tests/data/golden/ (host-time fields left out).

  golden.py                 check every configuration (a ctest: golden)
  golden.py NAME...         check some
  golden.py --update [NAME...]   write the stored outputs anew (after a change meant to move them;
                            say why in the commit)
  golden.py --list          the configurations

A refactor changes none of these files. Each is the command's JSON re-printed in its own key order,
so a value, a key or the order of keys that moves shows up as a diff naming its path.
Needs ETCHSIM (binary), ETCHSIM_MODELS and ETCHSIM_TESTDATA in the environment; the functional
configurations need stories260K.gguf (ETCHSIM_TEST_MODELS, else ETCHSIM_TEST_MODELS_DEFAULT) and are
skipped, with a line saying so, without it.
"""
import json
import os
import subprocess
import sys
import tempfile

ETCHSIM = os.environ["ETCHSIM"]
MODELS = os.environ["ETCHSIM_MODELS"]
DATA = os.environ["ETCHSIM_TESTDATA"]
STORE = os.path.join(DATA, "golden")
TINY_CHIP = os.path.join(DATA, "tiny-chip.json")
TINY = ["--chip", TINY_CHIP, "--model", "tiny-llama"]
SHORT = ["--prompt", "64", "--generate", "16"]
# fields that measure the host, not the simulated chip
HOST_TIME = {"sim_wall_s", "wall_s", "started_utc", "finished_utc", "pid", "host_s", "elapsed_s"}


def stories():
    d = os.environ.get("ETCHSIM_TEST_MODELS") or os.environ.get("ETCHSIM_TEST_MODELS_DEFAULT", "")
    p = os.path.join(d, "stories260K.gguf")
    return p if os.path.isfile(p) else None


ROOT = os.path.dirname(os.path.abspath(MODELS))
TIKTOKEN = os.path.join(MODELS, "llm", "llama-3.1-8b", "tokenizer.tiktoken")  # scripts/fetch-vocab


def fp32(model):
    return ["--model", model, "--chip", TINY_CHIP, "--set", "tile.lanes.activation_format=fp32",
            "--set", "kv.element_bits=32", "--set", "kv.element_format=fp32", "--set", "link.elem_bits=32",
            "--set", "head.embed_rom.rows=1024", "--set", "head.lm_rom.rows=256"]


# name: (arguments, what it needs beyond the checkout: None, "stories" (stories260K.gguf) or "tiktoken"
# (the Llama 3 vocabulary scripts/fetch-vocab writes)). "{stories}" is replaced by its path.
CASES = {
    "run-dense": (["run", *SHORT], None),
    "run-dense-streams8": (["run", *SHORT, "--streams", "8"], None),
    "run-dense-fp4": (["run", *SHORT, "--streams", "4", "--recipe", "fp4", "--set", "tile.rom.rows=1600",
                       "--set", "head.embed_rom.rows=34068", "--set", "head.lm_rom.rows=34068"], None),
    "run-dense-hc1mix": (["run", "--prompt", "128", "--generate", "8", "--recipe", "hc1-mix"], None),
    "run-moe": (["run", "--model", "olmoe-1b-7b", "--chip", "olmoe-1b-7b-class", *SHORT, "--streams", "3"], None),
    "run-moe-zipf": (["run", "--model", "olmoe-1b-7b", "--chip", "olmoe-1b-7b-class", "--prompt", "32",
                      "--generate", "8", "--streams", "2", "--routing", "zipf:1.2"], None),
    "run-ssm": (["run", "--model", "falcon-mamba-7b", "--chip", "falcon-mamba-7b-class", *SHORT, "--streams", "2"],
                None),
    "run-shared-kv-ports": (["run", *TINY, "--prompt", "48", "--generate", "12", "--streams", "4",
                             "--set", "kv.tiles_per_group=4"], None),
    "run-tied-streams4": (["run", "--model", "llama-3.2-1b", "--prompt", "40", "--generate", "6", "--streams", "4"],
                          None),
    "run-tokens-per-read-2": (["run", *SHORT, "--streams", "6", "--set", "tile.lanes.tokens_per_read=2"], None),
    "run-tiny": (["run", *TINY, "--prompt", "40", "--generate", "10", "--streams", "5"], None),
    "run-cycle": (["run", *TINY, "--prompt", "24", "--generate", "6", "--streams", "2", "--fidelity", "cycle"],
                  None),
    "run-cycle-ssm": (["run", "--model", os.path.join(DATA, "tiny-mamba"), "--chip", TINY_CHIP, "--prompt", "16",
                       "--generate", "4", "--fidelity", "cycle"], None),
    "run-power-limit": (["run", *SHORT, "--streams", "32", "--set", "card.power_limit_w=60"], None),
    "run-tiny-moe": (["run", "--model", os.path.join(DATA, "tiny-moe"), "--chip", TINY_CHIP, "--prompt", "20",
                      "--generate", "6", "--streams", "3", "--set", "tile.rom.rows=128"], None),
    "functional-tiny-moe": (["run", "--model", os.path.join(DATA, "tiny-moe"), "--chip", TINY_CHIP, "--set",
                             "tile.rom.rows=128", "--mode", "functional", "--synthetic", "4", "--prompt", "9",
                             "--generate", "5", "--streams", "2"], None),
    "functional-tiny-mamba": (["run", "--model", os.path.join(DATA, "tiny-mamba"), "--chip", TINY_CHIP,
                               "--mode", "functional", "--synthetic", "4", "--prompt", "9", "--generate", "5"], None),
    "run-store-sram": (["run", "--chip", os.path.join(DATA, "tiny-chip-sram.json"), "--model", "tiny-llama", "--prompt",
                        "40", "--generate", "10", "--streams", "3"], None),
    "run-store-hbm": (["run", "--chip", os.path.join(DATA, "tiny-chip-hbm.json"), "--model", "tiny-llama", "--prompt",
                       "40", "--generate", "10", "--streams", "6"], None),
    "area-dense": (["area"], None),
    "area-moe": (["area", "--model", "olmoe-1b-7b", "--chip", "olmoe-1b-7b-class"], None),
    "area-ssm": (["area", "--model", "falcon-mamba-7b", "--chip", "falcon-mamba-7b-class"], None),
    "area-tokens-per-read-2": (["area", "--set", "tile.lanes.tokens_per_read=2"], None),
    "eval-demo": (["eval", "--records", "40"], "tiktoken"),
    "eval-demo-spf": (["eval", "--records", "24", "--policy", "spf", "--no-prefix-sharing"], "tiktoken"),
    "compare": (["compare", "--prompt", "64", "--generate", "16", "--eval-prompt", "100", "--eval-generate", "4"],
                None),
    "functional-stories-f32": (["run", *fp32("{stories}"), "--mode", "functional", "--weights", "{stories}",
                                "--recipe", "f32", "--prompt", "12", "--generate", "8"], "stories"),
    "functional-stories-hc1mix": (["run", "--model", "{stories}", "--chip", TINY_CHIP, "--mode", "functional",
                                   "--weights", "{stories}", "--prompt", "10", "--generate", "6", "--streams", "2"],
                                  "stories"),
    "functional-synthetic-cycle": (["run", "--model", "{stories}", "--chip", TINY_CHIP, "--mode", "functional",
                                    "--synthetic", "3", "--prompt", "8", "--generate", "4", "--fidelity", "cycle"],
                                   "stories"),
    "eval-functional-stories": (["eval", "--model", "{stories}", "--chip", TINY_CHIP, "--mode", "functional",
                                 "--weights", "{stories}", "--vocab", "{stories}", "--records", "6",
                                 "--max-new-tokens", "3"], "stories"),
}


def strip(v):
    if isinstance(v, dict):
        return {k: strip(x) for k, x in v.items() if k not in HOST_TIME}
    if isinstance(v, list):
        return [strip(x) for x in v]
    return v


def output(name):
    args, needs = CASES[name]
    s = stories()
    if (needs == "stories" and not s) or (needs == "tiktoken" and not os.path.isfile(TIKTOKEN)):
        return None
    args = [a.replace("{stories}", s or "") for a in args]
    with tempfile.TemporaryDirectory() as tmp:
        p = subprocess.run([ETCHSIM, *args, "--json", "--no-db"] if args[0] in ("run", "eval") else
                           [ETCHSIM, *args, "--json"], capture_output=True, text=True, timeout=900, cwd=tmp)
    if p.returncode != 0:
        raise SystemExit(f"golden {name}: etchsim {' '.join(args)} exited {p.returncode}: {p.stderr.strip()}")
    text = json.dumps(strip(json.loads(p.stdout)), indent=1) + "\n"
    text = text.replace(s, "STORIES") if s else text
    return text.replace(DATA, "TESTDATA").replace(ROOT, "CHECKOUT")


def diff(a, b, path="$"):
    """The first few paths where stored a and new b differ (values, keys or key order)."""
    out = []
    if isinstance(a, dict) and isinstance(b, dict):
        if list(a) != list(b):
            ka, kb = set(a), set(b)
            out.append(f"{path}: keys {sorted(ka - kb)} gone, {sorted(kb - ka)} new" if ka != kb
                       else f"{path}: key order changed")
        for k in a:
            if k in b:
                out += diff(a[k], b[k], f"{path}.{k}")
    elif isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            out.append(f"{path}: {len(a)} items, now {len(b)}")
        for i, (x, y) in enumerate(zip(a, b)):
            out += diff(x, y, f"{path}[{i}]")
    elif a != b or type(a) is not type(b):
        out.append(f"{path}: {a!r} -> {b!r}")
    return out


def main(argv):
    update = "--update" in argv
    names = [a for a in argv if not a.startswith("--")] or list(CASES)
    if "--list" in argv:
        for n, (args, needs) in CASES.items():
            print(f"{n:28} etchsim {' '.join(args)}" + (f"   (needs {needs})" if needs else ""))
        return 0
    bad = [n for n in names if n not in CASES]
    if bad:
        print(f"golden: unknown configuration {', '.join(bad)} (golden.py --list)", file=sys.stderr)
        return 2
    failed, skipped = [], []
    os.makedirs(STORE, exist_ok=True)
    for n in names:
        text = output(n)
        path = os.path.join(STORE, n + ".json")
        if text is None:
            skipped.append(n)
            continue
        if update:
            with open(path, "w") as f:
                f.write(text)
            print(f"wrote {path}")
            continue
        if not os.path.isfile(path):
            failed.append(n)
            print(f"{n}: no stored output {path} (golden.py --update {n})")
            continue
        stored = open(path).read()
        if stored != text:
            failed.append(n)
            d = diff(json.loads(stored), json.loads(text)) or ["formatting differs"]
            print(f"{n}: output moved ({len(d)} paths):\n  " + "\n  ".join(d[:20]))
        else:
            print(f"{n}: unchanged")
    if skipped:
        print(f"skipped: {', '.join(skipped)}: stories260K.gguf (set ETCHSIM_TEST_MODELS) or {TIKTOKEN} "
              "(scripts/fetch-vocab) not found")
    if failed:
        print(f"{len(failed)} of {len(names)} outputs moved: {', '.join(failed)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
