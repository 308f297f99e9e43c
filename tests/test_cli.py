#!/usr/bin/env python3
"""Command-line tests of etchsim: run as `test_cli.py CASE`.

Groups:
  outputs      json_keys, area_json, help_texts, db_complete, db_killed_run
  functional   infer_stories, functional_run, functional_timing_invariance, eval_functional,
               rom_partial_blocks, numerics (need stories260K.gguf; SKIPPED without it)
  weights      nonfinite_weights, derived_chip_fits (stories260K.gguf), tied_lm_head_only
  calibration  default_calibration
  oracle       sim_equals_analytic(_tiny), knee, kv_slots_wait, energy_balance
  overrides    set_override
  stores       store_rom_to_sram_hbm, store_crossover, store_shared, store_hc1_class (weights in SRAM or HBM)
  errors       err_*: each bad input gives one line naming file and key, exit 1
               (usage errors exit 2)
Needs ETCHSIM (binary), ETCHSIM_MODELS and ETCHSIM_TESTDATA in the environment.
"""
import functools
import json
import math
import re
import os
import shutil
import signal
import sqlite3
import stat
import subprocess
import sys
import tempfile
import time

ETCHSIM = os.environ["ETCHSIM"]
MODELS = os.environ["ETCHSIM_MODELS"]
DATA = os.environ["ETCHSIM_TESTDATA"]
ROOT = os.path.dirname(os.path.abspath(MODELS))  # the checkout: .ci/ holds the project's budgets
TINY = ["--chip", os.path.join(DATA, "tiny-chip.json"), "--model", "tiny-llama"]


SANITIZER_REPORT = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:")


def run(*args, ok=True):
    p = subprocess.run([ETCHSIM, *args], capture_output=True, text=True, timeout=600)
    for r in SANITIZER_REPORT:  # the sanitizer build: any report fails the test, whatever the exit code
        if r in p.stderr:
            raise AssertionError(f"etchsim {' '.join(args)}: sanitizer report: {p.stderr[-3000:]}")
    if ok and p.returncode != 0:
        raise AssertionError(f"etchsim {' '.join(args)} exited {p.returncode}: {p.stderr}")
    return p


def run_json(*args):
    p = run("run", "--json", *args)
    return json.loads(p.stdout)


def expect(cond, msg):
    if not cond:
        raise AssertionError(msg)


def expect_error(args, *needles, code=1):
    p = run(*args, ok=False)
    expect(p.returncode == code, f"{args}: exit {p.returncode}, want {code}; stderr {p.stderr!r}")
    err = p.stderr.strip()
    expect(err, f"{args}: no error message")
    for n in needles:
        expect(n in err, f"{args}: error {err!r} lacks {n!r}")
    expect(p.stdout == "", f"{args}: printed to stdout on error: {p.stdout!r}")
    return err


def chip_copy(tmp, edit):
    """Copy hc1-class.json into tmp, apply edit(dict) and return the path."""
    with open(os.path.join(MODELS, "chips", "hc1-class.json")) as f:
        c = json.load(f)
    edit(c)
    path = os.path.join(tmp, "chip.json")
    with open(path, "w") as f:
        json.dump(c, f)
    return path


# ---- outputs ---------------------------------------------------------------

def test_json_keys():
    j = run_json("--no-db")
    for k in ["decode_tokens_per_s", "tokens_per_s", "ttft_ns", "token_latency_ns", "watts",
              "joules_per_token", "area_mm2", "transistors", "cycles", "clock_hz",
              "analytic_decode_tokens_per_s", "sim_wall_s"]:
        expect(k in j, f"missing key {k}")
        if k != "token_latency_ns":
            expect(isinstance(j[k], (int, float)) and j[k] > 0, f"{k} = {j[k]!r}")
    expect(set(j["token_latency_ns"]) >= {"p50", "p99"}, "token_latency_ns lacks p50/p99")
    expect(j["token_latency_ns"]["p50"] <= j["token_latency_ns"]["p99"], "p50 > p99")
    expect(j["prompt_tokens"] == 1024 and j["generate_tokens"] == 1024 and j["streams"] == 1,
           "defaults are not 1024/1024/1")
    expect(j["chip"] == "hc1-class" and j["model"] == "llama-3.1-8b", "default chip/model")
    expect(j["tokens"] == 1024, "token count")


def test_area_json():
    j = json.loads(run("area", "--json").stdout)
    parts = j["breakdown"]
    expect(abs(sum(v["mm2"] for v in parts.values()) - j["area_mm2"]) < 1e-6 * j["area_mm2"], "mm2 sum")
    expect(abs(sum(v["transistors"] for v in parts.values()) - j["transistors"]) < 1e-6 * j["transistors"],
           "transistor sum")
    expect(j["rom_bits"] >= j["model_bits"], "ROM smaller than the model")
    r = run_json("--no-db", "--generate", "2", "--prompt", "8")
    expect(abs(r["area_mm2"] - j["area_mm2"]) < 1e-9 * j["area_mm2"], "run and area disagree")


def test_help_texts():
    for cmd in ["run", "area"]:
        p = run(cmd, "--help")
        expect("usage: etchsim " + cmd in p.stdout and "--chip" in p.stdout, f"{cmd} --help")
    p = run("--help")
    expect(all(f"\n  {c} " in p.stdout for c in ["eval", "run", "area", "rom", "infer", "dataset"]),
           "top-level help lists every command")
    p = run("infer", "--help")
    expect("usage: etchsim infer" in p.stdout and "--logits" in p.stdout, "infer --help")
    p = run("run", "--help")
    expect("--mode timing|functional" in p.stdout and "--synthetic" in p.stdout, "run --help: functional mode")
    p = run(ok=False)
    expect(p.returncode == 2 and "usage" in p.stderr, "no command")


def test_db_complete():
    with tempfile.TemporaryDirectory() as tmp:
        db = os.path.join(tmp, "r.sqlite")
        run("run", *TINY, "--prompt", "20", "--generate", "30", "--streams", "3", "--db", db)
        run("run", *TINY, "--prompt", "5", "--generate", "4", "--db", db)
        con = sqlite3.connect(db)
        rows = con.execute("SELECT id, status, streams, cycles, summary FROM runs ORDER BY id").fetchall()
        expect([r[:3] for r in rows] == [(1, "complete", 3), (2, "complete", 1)], f"runs {rows}")
        expect(json.loads(rows[0][4])["tokens"] == 90, "summary")
        n = con.execute("SELECT COUNT(*) FROM tokens WHERE run_id=1").fetchone()[0]
        expect(n == 90, f"tokens rows {n}")
        seqs = con.execute("SELECT seq, prompt_tokens, gen_tokens, ttft_ns FROM sequences WHERE run_id=1").fetchall()
        expect(len(seqs) == 3 and all(s[1] == 20 and s[2] == 30 and s[3] > 0 for s in seqs), f"{seqs}")
        units = {r[0] for r in con.execute("SELECT unit FROM unit_stats WHERE run_id=1")}
        expect({"embed", "tile0", "tile3", "head", "link0", "feedback", "host_link"} <= units, f"{units}")
        # per-token latency of idx 0 is the TTFT
        t0 = con.execute("SELECT latency_ns FROM tokens WHERE run_id=1 AND seq=0 AND idx=0").fetchone()[0]
        ttft = con.execute("SELECT ttft_ns FROM sequences WHERE run_id=1 AND seq=0").fetchone()[0]
        expect(abs(t0 - ttft) < 1e-6, "token 0 latency is not the TTFT")


def test_db_killed_run():
    with tempfile.TemporaryDirectory() as tmp:
        db = os.path.join(tmp, "k.sqlite")
        p = subprocess.Popen([ETCHSIM, "run", "--streams", "64", "--db", db],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 60
        seen = False
        while time.time() < deadline and not seen:
            time.sleep(0.05)
            try:
                con = sqlite3.connect(db)
                seen = con.execute("SELECT COUNT(*) FROM runs").fetchone()[0] == 1
                con.close()
            except sqlite3.Error:
                pass
        p.send_signal(signal.SIGKILL)
        p.wait()
        expect(seen, "run row never appeared")
        con = sqlite3.connect(db)
        status = con.execute("SELECT status FROM runs").fetchall()
        expect(status == [("running",)], f"killed run status {status}")
        n = con.execute("SELECT COUNT(*) FROM tokens").fetchone()[0]
        expect(n == 0, f"killed run left {n} token rows")


# ---- calibration -----------------------------------------------------------

def test_sanitizer_stacks():
    """The sanitizer build (registered only there): after a simulation, LeakSanitizer scans the
    main thread's own stack (SystemC 2.3.4 leaves AddressSanitizer believing it runs on a freed
    coroutine stack, or on none: es_stack.h). LSan's log_threads shows the stack it scans and
    the stack pointer, which must lie in it: a run at each fidelity and an eval. Then one simulating command 50 times, and 20 times
    with address randomisation off (setarch -R), where a stale range made every run fault."""
    if os.environ.get("ETCHSIM_SANITIZED") != "1":
        raise Skip("not the sanitizer build")
    env = dict(os.environ, ASAN_OPTIONS="exitcode=86:detect_leaks=1:abort_on_error=0",
               LSAN_OPTIONS="exitcode=86:log_threads=1")
    base = [ETCHSIM, "run", *TINY, "--prompt", "8", "--generate", "4", "--no-db"]
    with tempfile.TemporaryDirectory() as tmp:
        cases = [(base, 0),
                 ([ETCHSIM, "run", *TINY, "--prompt", "8", "--generate", "4", "--no-db",
                   "--fidelity", "cycle", "--streams", "2"], 0),
                 ([ETCHSIM, "eval", *TINY, "--records", "5", "--max-new-tokens", "2", "--no-compare",
                   "--db", os.path.join(tmp, "e.sqlite")], 0)]
        for args, code in cases:
            p = subprocess.run(args, capture_output=True, text=True, env=env, timeout=600)
            expect(p.returncode == code, f"{args}: exit {p.returncode}: {p.stderr[-2000:]}")
            stacks = re.findall(r"Stack at (0x[0-9a-f]+)-(0x[0-9a-f]+) \(SP = (0x[0-9a-f]+)\)", p.stderr)
            expect(stacks, f"{args}: LeakSanitizer logged no stack (leak detection off?): {p.stderr[-2000:]}")
            for lo, hi, sp in stacks:
                expect(int(lo, 16) <= int(sp, 16) < int(hi, 16),
                       f"{args}: LSan scans {lo}-{hi}, not the stack the SP {sp} is on: {p.stderr[-2000:]}")
            expect("not in stack range" not in p.stderr and "Tracer caught" not in p.stderr,
                   f"{args}: {p.stderr[-2000:]}")
    env["LSAN_OPTIONS"] = "exitcode=86"
    setarch = shutil.which("setarch")
    for norand, n in ((False, 50), (True, 20)):
        args = (["setarch", os.uname().machine, "-R"] if norand else []) + base
        if norand and not setarch:
            raise AssertionError("setarch (util-linux) is missing")
        for i in range(n):
            p = subprocess.run(args, capture_output=True, text=True, env=env, timeout=600)
            expect(p.returncode == 0 and "Sanitizer" not in p.stderr and "Tracer" not in p.stderr,
                   f"run {i + 1} of {n}{' without ASLR' if norand else ''}: exit {p.returncode}: "
                   f"{p.stderr[-2000:]}")


def test_default_calibration():
    j = run_json("--no-db")
    checks = [("decode_tokens_per_s", 17000, 0.10), ("area_mm2", 815, 0.10),
              ("transistors", 53e9, 0.15)]
    for key, target, tol in checks:
        expect(abs(j[key] - target) <= tol * target, f"{key} = {j[key]:.4g}, want {target} +- {tol:.0%}")


# ---- oracle ----------------------------------------------------------------

def same_cycles(j, label, keys=("ttft", "decode_first", "decode_last", "decode_total")):
    s, a = j["stream0_cycles"], j["analytic_stream0_cycles"]
    for k in keys:
        expect(s[k] == a[k], f"{label}: {k} simulated {s[k]} != analytic {a[k]}")
    expect(s["decode_total"] > 0, f"{label}: no decode steps")


def test_sim_equals_analytic():
    j = run_json("--no-db")
    same_cycles(j, "default")
    expect(abs(j["decode_tokens_per_s"] - j["analytic_decode_tokens_per_s"]) <
           1e-9 * j["decode_tokens_per_s"], "decode rate differs from the analytic one")


def test_sim_equals_analytic_tiny():
    for prompt, gen in [(1, 2), (7, 5), (8, 9), (100, 37), (250, 250)]:
        same_cycles(run_json("--no-db", *TINY, "--prompt", str(prompt), "--generate", str(gen)),
                    f"tiny {prompt}/{gen}")
    # tied embeddings: embedding lookup and LM head share one ROM
    same_cycles(run_json("--no-db", "--model", "llama-3.2-1b", "--prompt", "40", "--generate", "6"),
                "llama-3.2-1b")


def test_fidelity_agreement():
    """--fidelity cycle advances the tiles clock by clock: each resource an issue stage and a
    pipeline of its latency, beats moving one stage per cycle. Uncontended, it takes exactly the
    transaction fidelity's cycles and energy (tiny chip and Llama-3.2-1B, one stream; an SSM too).
    Under contention the transaction fidelity reserves each item's ops as it enters and the cycle
    fidelity's controller re-derives the reservations from the pipelines' state every clock: with
    each tile's KV port its own they take the same cycles (many streams, two tokens per ROM
    read); with ports shared by 2 and 4 tiles, whose items a tile cannot see, within 1 %."""
    def both(*args):
        t = run_json("--no-db", *args)
        c = run_json("--no-db", *args, "--fidelity", "cycle")
        expect(t["fidelity"] == "transaction" and c["fidelity"] == "cycle", f"{args}: fidelity keys")
        return t, c
    for args in ([*TINY, "--prompt", "8", "--generate", "4"], [*TINY, "--prompt", "100", "--generate", "37"],
                 ["--model", "llama-3.2-1b", "--prompt", "40", "--generate", "6"],
                 ["--chip", os.path.join(MODELS, "chips", "falcon-mamba-7b-class.json"), "--model", "falcon-mamba-7b",
                  "--prompt", "16", "--generate", "4"]):
        t, c = both(*args)
        expect(t["cycles"] == c["cycles"], f"{args}: transaction {t['cycles']} cycles, cycle {c['cycles']}")
        expect(abs(t["energy_j"] - c["energy_j"]) <= 1e-12 * t["energy_j"], f"{args}: energy {t['energy_j']} {c['energy_j']}")
    for extra in (["--streams", "16", "--prompt", "64", "--generate", "32"],
                  ["--streams", "32", "--prompt", "24", "--generate", "12", "--set", "kv.tiles_per_group=2"],
                  ["--streams", "32", "--prompt", "64", "--generate", "32", "--set", "kv.tiles_per_group=4"],
                  ["--streams", "16", "--prompt", "24", "--generate", "12", "--set", "tile.lanes.tokens_per_read=2"]):
        t, c = both(*TINY, *extra)
        d = c["cycles"] / t["cycles"] - 1
        expect(t["cycles"] > 2 * run_json("--no-db", *TINY, *extra[2:6])["cycles"], f"{extra}: not contended")
        shared = any(a.startswith("kv.tiles_per_group") for a in extra)
        expect(abs(d) <= 0.01 if shared else d == 0,
               f"{extra}: cycle fidelity {c['cycles']} against {t['cycles']} ({100 * d:+.2f} %)")
    expect_error(["run", "--no-db", *TINY, "--fidelity", "clock"], "--fidelity", "transaction or cycle", code=2)
    expect_error(["run", "--no-db", "--model", "olmoe-1b-7b", "--chip", os.path.join(MODELS, "chips", "olmoe-1b-7b-class.json"),
                  "--prompt", "8", "--generate", "2", "--fidelity", "cycle"], "--fidelity cycle", "experts")


def test_rtl_cosim():
    """--rtl-cosim runs tile 0's lane matmuls through the Verilated reference RTL (rtl-ref/msa_slice.v
    and fp_scale_acc.v) inside the cycle fidelity: the tiny model's greedy tokens and every
    position's logits equal functional mode's bit for bit. Tile 0's lanes take the pipeline the
    RTL has (measured as it opens: hc1-class's tile.lanes.pipeline_depth); with the chip set to it,
    the run takes the cycle fidelity's own cycles. --rtl-cosim needs functional mode and the cycle
    fidelity."""
    base = ["--no-db", *TINY, "--mode", "functional", "--synthetic", "3", "--prompt", "8", "--generate", "6"]
    probe = run("run", *base, "--fidelity", "cycle", "--rtl-cosim", ok=False)
    if probe.returncode != 0 and "built without Verilator" in probe.stderr:
        print(f"rtl_cosim: skipped: {probe.stderr.strip()}")
        sys.exit(77)
    with open(os.path.join(MODELS, "chips", "hc1-class.json")) as f:
        depth = json.load(f)["tile"]["lanes"]["pipeline_depth"]["value"]
    with tempfile.TemporaryDirectory() as tmp:
        la, lb = os.path.join(tmp, "a.bin"), os.path.join(tmp, "b.bin")
        a = run_json(*base, "--logits", la)
        b = run_json(*base, "--fidelity", "cycle", "--rtl-cosim", "--logits", lb)
        cs = b["functional"]["rtl_cosim"]
        expect(cs["rows"] > 0 and cs["rtl_cycles"] > cs["rows"], f"no rows through the RTL: {cs}")
        expect(cs["lane_pipeline_cycles"] == depth, f"RTL lane pipeline {cs['lane_pipeline_cycles']}, hc1-class {depth}")
        expect(a["functional"]["output_ids"] == b["functional"]["output_ids"],
               f"tokens: functional {a['functional']['output_ids']}, co-simulated {b['functional']['output_ids']}")
        with open(la, "rb") as fa, open(lb, "rb") as fb:
            expect(fa.read() == fb.read(), "the co-simulated logits differ from functional mode's")
    at = ["--set", f"tile.lanes.pipeline_depth={depth}"]
    c = run_json(*base, "--fidelity", "cycle", *at)
    d = run_json(*base, "--fidelity", "cycle", "--rtl-cosim", *at)
    expect(c["cycles"] == d["cycles"], f"at the RTL's depth: cycle fidelity {c['cycles']}, co-simulated {d['cycles']}")
    plain = run_json(*base, "--fidelity", "cycle")  # the tiny chip's own lanes: 10 cycles of pipeline
    expect(b["cycles"] < plain["cycles"], f"tile 0 did not take the RTL's pipeline: {b['cycles']} against {plain['cycles']}")
    expect_error(["run", *base, "--rtl-cosim"], "--rtl-cosim needs --mode functional and --fidelity cycle", code=2)
    expect_error(["run", "--no-db", *TINY, "--fidelity", "cycle", "--rtl-cosim"], "--rtl-cosim needs", code=2)
    # what the Verilated lane is not: an error, never a silent fall back to the C datapath
    expect_error(["run", *base, "--fidelity", "cycle", "--rtl-cosim", "--set", "tile.lanes.activation_format=fp8"],
                 "--rtl-cosim", "q_proj", "not int8", "tile.lanes.activation_format")


def test_knee():
    """The tiny chip is pipeline-bound: aggregate tokens/s rises with every stream well below
    the knee, never exceeds the analytical saturation, reaches it within 5 % well past the knee
    and stays flat while latency grows."""
    base = ["--no-db", *TINY, "--prompt", "8", "--generate", "400"]
    first = run_json(*base, "--streams", "1")
    knee = int(first["analytic_knee_streams"])
    sat = first["analytic_saturated_tokens_per_s"]
    expect(4 <= knee < first["kv_slots"], f"fixture should be pipeline-bound: knee {knee}")
    counts = list(range(2, knee // 2 + 1)) + [knee, 2 * knee, 2 * knee + 2, 2 * knee + 4]
    res = {1: first}
    for s in counts:
        res[s] = run_json(*base, "--streams", str(s))
    tps = {s: r["tokens_per_s"] for s, r in res.items()}
    lat = {s: r["token_latency_ns"]["p50"] for s, r in res.items()}
    for s in range(2, knee // 2 + 1):
        expect(tps[s] > tps[s - 1] * 1.05, f"tokens/s did not rise from {s-1} to {s}: {tps}")
    for s, t in tps.items():
        expect(t <= sat * 1.0001, f"{s} streams: {t} tokens/s above the analytical saturation {sat}")
    k2 = 2 * knee
    expect(tps[k2] > 0.95 * sat, f"not saturated at twice the knee ({k2}): {tps[k2]} vs {sat}")
    for s in (k2 + 2, k2 + 4):
        expect(tps[s] < tps[k2] * 1.02, f"tokens/s still rising at {s}: {tps}")
        expect(lat[s] > lat[s - 2], f"latency did not grow at {s}: {lat}")


def test_knee_kv():
    """hc1-class at 1k context: the knee is the KV slot count (10240
    positions / 1016 per sequence = 10), not the pipeline (about 33)."""
    base = ["--no-db", "--prompt", "16", "--generate", "1000"]
    first = run_json(*base)
    slots, knee = int(first["kv_slots"]), int(first["analytic_knee_streams"])
    expect(knee == slots, f"hc1-class should be KV-bound: knee {knee}, slots {slots}")
    res = {1: first}
    for s in range(2, slots + 3):
        res[s] = run_json(*base, "--streams", str(s))
    tps = {s: r["tokens_per_s"] for s, r in res.items()}
    lat = {s: r["stream_ns_per_token"] for s, r in res.items()}
    for s in range(2, knee + 1):
        expect(tps[s] > tps[s - 1] * 1.05, f"tokens/s did not rise from {s-1} to {s}: {tps}")
    for s in range(knee + 1, knee + 3):
        expect(tps[s] < tps[knee] * 1.02, f"tokens/s still rising past the knee at {s}: {tps}")
        expect(lat[s] > lat[s - 1] * 1.05, f"per-token latency did not grow at {s}: {lat}")
        expect(res[s]["max_in_flight"] == slots, "KV slots overflowed")


def test_kv_port_contention():
    """Tiles sharing one KV SRAM port. One stream's decode (one token in
    flight) still matches the oracle exactly, but its prefill chunks, in
    several tiles at once, queue on the port; several streams lose throughput."""
    shared = ["--set", "kv.tiles_per_group=4"]
    base = ["--no-db", *TINY, "--prompt", "200", "--generate", "100"]
    one = run_json(*base, *shared)
    same_cycles(one, "shared port, one stream", ("decode_first", "decode_last", "decode_total"))
    expect(one["stream0_cycles"]["ttft"] > one["analytic_stream0_cycles"]["ttft"],
           "prefill chunks did not contend for the shared port")
    own = run_json(*base, "--streams", "4")
    contended = run_json(*base, "--streams", "4", *shared)
    expect(contended["tokens_per_s"] < 0.97 * own["tokens_per_s"],
           f"no contention: {contended['tokens_per_s']} vs {own['tokens_per_s']}")
    expect(contended["token_latency_ns"]["p50"] > own["token_latency_ns"]["p50"], "latency unchanged")


def test_group_items():
    """tokens_per_read > 1: tokens of several sequences waiting at a tile share
    one pass over its weights, so many streams go faster; one stream alone still
    matches the oracle exactly."""
    # one item at a time per tile: the tiles, not the head, are the bottleneck
    base = ["--no-db", *TINY, "--prompt", "8", "--generate", "200", "--set", "tile.items_in_flight=1"]
    four = ["--set", "tile.lanes.tokens_per_read=4"]
    same_cycles(run_json(*base, *four), "tokens_per_read 4, one stream")
    one = run_json(*base, "--streams", "32")
    grouped = run_json(*base, "--streams", "32", *four)
    expect(grouped["tokens_per_s"] > 1.5 * one["tokens_per_s"],
           f"grouping gained too little: {grouped['tokens_per_s']} vs {one['tokens_per_s']}")
    expect(grouped["energy_by_event_j"]["rom_reads"] < 0.5 * one["energy_by_event_j"]["rom_reads"],
           "shared ROM reads did not halve ROM read energy")
    expect(grouped["analytic_saturated_tokens_per_s"] >= 0.9 * grouped["tokens_per_s"],
           f"analytic saturation {grouped['analytic_saturated_tokens_per_s']} below simulated {grouped['tokens_per_s']}")


def test_energy_hand_count():
    """The tiny chip, one stream: one prefill chunk of 8 tokens (positions 0-7) and one decode
    step (position 8). Every event each tile and the head count is written out below by hand
    from tiny-llama (hidden 256, FFN 768, 8 heads of 32, 2 KV heads) and tests/data/tiny-chip.json;
    each unit's energy must equal its counts times the energies in models/process/n6.json, divided
    by the card's 0.9 VR efficiency. An event charged twice or missed fails here."""
    # Per token, one layer. Lane cells: q 256x256 = 65,536; k 64x256 = 16,384; v 64x256 in int6 =
    # 2 cells per weight = 32,768; o 65,536; gate, up, down 768x256 = 196,608 each: 770,048.
    # ROM bits at 3.25 bits per int3 weight and 6.25 per int6: q 212,992; k 53,248; v 102,400;
    # o 212,992; gate, up, down 638,976 each: 2,498,560.
    # Vector ops: attn_norm 2x256, rope 256+64, attn_residual 256, ffn_norm 2x256, silu_mul 768,
    # ffn_residual 256 = 2,624; group scales, rows x cols/64: q 1,024, k 256, v 256, o 1,024,
    # gate 3,072, up 3,072, down 256 x 12 = 3,072: 11,776; 14,400 per token.
    # Attention over contexts 1..8 (prefill) and 9 (decode): 36 + 9 = 45 positions attended;
    # MACs 2 x 256 per position = 23,040; softmax 8 heads per position = 360 vector ops;
    # KV 2 x 64 x 8 = 1,024 bits per position: 46,080 read, 9 x 1,024 = 9,216 written.
    # Registers (clock_gating unit): lanes 8,192 x 8 bits = 65,536 per lane cycle; lane cycles per
    # token max(cells / 8,192, bits / 65,536): q 8, k 2, v 4, o 8, gate/up/down 24 each = 94,
    # 9 tokens = 846. Vector 64 x 256 = 16,384 bits per cycle, 41 cycles per token (norms 2 x 4
    # each, rope 5, residuals 4 each, silu 12), 369 cycles. Attention 4 positions x 262,144 =
    # 1,048,576 bits per cycle: prefill 2 (write 8 x 1,024 bits over 4,096-bit port) +
    # ceil(ctx/4) over ctx 1..8 = 12, + 8 x 8 latency = 78; decode 1 + 3 + 8 = 12; 90 cycles.
    tile = {"rom_bits": 9 * 2498560, "cell_macs": 9 * 770048, "vector_ops": 9 * 14400 + 360,
            "attn_macs": 23040, "kv_read_bits": 46080, "kv_write_bits": 9216, "link_bit_mm": 0,
            "register_bit_cycles": 846 * 65536 + 369 * 16384 + 90 * 1048576}
    # The head, twice (the prompt's last token, then the decode token): out_norm 2 x 256 vector ops;
    # lm_head 1,024 x 256 in int6 = 524,288 cells, 1,638,400 bits, 1,024 x 4 group scales; sampler
    # 1,024 vector ops. Registers: out_norm 8 cycles x 16,384; lm_head 64 cycles (524,288 / 8,192
    # lanes > 1,638,400 / 65,536 = 25) x 65,536; sampler 16 + 10 = 26 cycles x 64 x 48 bits.
    head = {"rom_bits": 2 * 1638400, "cell_macs": 2 * 524288, "vector_ops": 2 * (512 + 4096 + 1024),
            "attn_macs": 0, "kv_read_bits": 0, "kv_write_bits": 0, "link_bit_mm": 0,
            "register_bit_cycles": 2 * (8 * 16384 + 64 * 65536 + 26 * 3072)}
    with open(os.path.join(MODELS, "process", "n6.json")) as f:
        en = {k: v["value"] for k, v in json.load(f)["energy"].items()}
    fj = {"rom_bits": en["rom_read_fj_per_bit"], "cell_macs": en["lane_cell_mac_fj"],
          "vector_ops": en["vector_op_fj"], "attn_macs": en["attention_mac_fj"],
          "kv_read_bits": en["sram_read_fj_per_bit"], "kv_write_bits": en["sram_write_fj_per_bit"],
          "link_bit_mm": en["wire_fj_per_bit_mm"],
          # a clocked register bit: the flip-flop and the clock network that feeds it
          "register_bit_cycles": en["register_fj_per_bit_cycle"] + en["clock_network_fj_per_bit_cycle"]}
    with tempfile.TemporaryDirectory() as tmp:
        db = os.path.join(tmp, "e.sqlite")
        run("run", *TINY, "--prompt", "8", "--generate", "2", "--db", db)
        con = sqlite3.connect(db)
        con.row_factory = sqlite3.Row
        rows = {r["unit"]: r for r in con.execute("SELECT * FROM unit_stats")}
        con.close()
    for name, want in [(f"tile{t}", tile) for t in range(4)] + [("head", head)]:
        r = rows[name]
        for k, v in want.items():
            expect(r[k] == v, f"{name}.{k}: {r[k]}, hand count {v}")
        joules = sum(v * fj[k] for k, v in want.items()) * 1e-15 / 0.9
        expect(abs(r["energy_j"] - joules) <= 1e-9 * joules, f"{name}: {r['energy_j']} J, hand count {joules} J")


def test_err_power_config():
    """Power inputs out of range: a negative energy, a gating mode that does not exist, register
    bits below zero; each names its file and key. Clock gating changes power, never timing."""
    expect_error(["run", "--no-db", *TINY, "--set", "process.energy.register_fj_per_bit_cycle=-1"],
                 "n6.json", "energy.register_fj_per_bit_cycle", "expected a number in [0")
    expect_error(["run", "--no-db", *TINY, "--set", "process.energy.lane_cell_mac_fj=-0.5"],
                 "energy.lane_cell_mac_fj")
    expect_error(["run", "--no-db", *TINY, "--set", "process.energy.clock_network_fj_per_bit_cycle=-0.1"],
                 "n6.json", "energy.clock_network_fj_per_bit_cycle", "expected a number in [0")
    expect_error(["run", "--no-db", *TINY, "--set", "clock_gating=per-lane"],
                 "tiny-chip.json", "clock_gating", '"none", "tile" or "unit"', "per-lane")
    expect_error(["run", "--no-db", *TINY, "--set", "tile.lanes.register_bits_per_cell=-8"],
                 "tile.lanes.register_bits_per_cell")
    base = [*TINY, "--prompt", "8", "--generate", "20", "--streams", "3"]
    js = {g: run_json("--no-db", *base, "--set", f"clock_gating={g}") for g in ("none", "tile", "unit")}
    for g in ("none", "tile"):
        expect(js[g]["cycles"] == js["unit"]["cycles"], f"clock_gating {g} changed the cycles")
    # coarser gating clocks more registers for longer
    expect(js["unit"]["watts"] < js["tile"]["watts"] < js["none"]["watts"],
           f"watts unit {js['unit']['watts']}, tile {js['tile']['watts']}, none {js['none']['watts']}")
    expect(js["none"]["energy_by_event_j"]["registers"] == 0 and js["none"]["energy_by_event_j"]["clock_ungated"] > 0,
           "clock_gating none: registers are a constant power, not events")


def test_set_process():
    """--set process=NAME|PATH picks the process table (it was recorded but ignored): a table with half
    the logic leakage lowers static power and nothing else; an unknown one is an error naming it."""
    expect_error(["run", "--no-db", *TINY, "--set", "process=n7"], "tiny-chip.json", "'process'", "n7")
    with tempfile.TemporaryDirectory() as tmp:
        with open(os.path.join(MODELS, "process", "n6.json")) as f:
            proc = json.load(f)
        proc["leakage"]["logic_w_per_mm2"]["value"] /= 2
        half = os.path.join(tmp, "half.json")
        with open(half, "w") as f:
            json.dump(proc, f)
        base = run_json("--no-db", *TINY, "--prompt", "8", "--generate", "4")
        other = run_json("--no-db", *TINY, "--prompt", "8", "--generate", "4", "--set", f"process={half}")
        expect(other["static_w"] < base["static_w"] and other["dynamic_j"] == base["dynamic_j"] and other["cycles"] == base["cycles"],
               f"static {other['static_w']} vs {base['static_w']}")


def test_limits():
    """Sizes a user controls are checked before work starts: a demo dataset larger than the disk's
    free space fails at once and leaves no file; FIFO depth and vocabulary ranks have documented
    limits (the vocabulary grows its table geometrically, so a large one loads in linear time)."""
    shm = "/dev/shm"
    if os.path.isdir(shm) and os.statvfs(shm).f_bavail * os.statvfs(shm).f_frsize < 32e9:
        out = os.path.join(shm, f"etchsim-test-{os.getpid()}.csv")
        expect_error(["dataset", "demo", "-o", out, "--records", "100000000"], out, "need up to", "GB free")
        expect(not os.path.exists(out) and not os.path.exists(out + ".tmp"), "a refused dataset left a file")
    else:
        print("limits: /dev/shm missing or larger than 32 GB; the free-space check was not exercised")
    expect_error(["dataset", "demo", "-o", "x.csv", "--records", "100000001"], "--records", code=2)
    expect_error(["run", "--no-db", "--set", "scheduler.fifo_depth=1048576"], "scheduler.fifo_depth", "4096")
    with tempfile.TemporaryDirectory() as tmp:
        vocab = os.path.join(tmp, "v.tiktoken")
        with open(vocab, "w") as f:
            f.write("YQ== 0\nYg== 16777216\n")
        expect_error(["eval", "--no-db", "--no-compare", "--records", "5", "--vocab", vocab], "v.tiktoken", "16777216",
                     "at most 2097152 ranks")


WALL_CLOCK = {"sim_wall_s", "started_utc", "finished_utc", "pid", "wall_s"}


def db_rows(db):
    """Every row of every table, wall-clock fields (and the summary's) left out, in a stable order."""
    con = sqlite3.connect(db)
    out = {}
    for (t,) in con.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name"):
        cur = con.execute(f"SELECT * FROM {t}")
        cols = [d[0] for d in cur.description]
        rows = []
        for r in cur.fetchall():
            row = {c: v for c, v in zip(cols, r) if c not in WALL_CLOCK}
            if row.get("summary"):
                row["summary"] = {k: v for k, v in json.loads(row["summary"]).items() if k not in WALL_CLOCK}
            rows.append(json.dumps(row, sort_keys=True))
        out[t] = sorted(rows)
    con.close()
    return out


def test_determinism():
    """The same inputs and seed give the same --json summary and the same rows in every table, apart
    from wall-clock fields: runs of several streams, functional mode, MoE routing, and eval."""
    with tempfile.TemporaryDirectory() as tmp:
        data = os.path.join(tmp, "d.csv")
        write_csv(data, [f"R{i},record {i} {'z' * (i % 7)}" for i in range(30)])
        cases = [["run", *TINY, "--prompt", "20", "--generate", "30", "--streams", "6"],
                 ["run", *TINY, "--prompt", "8", "--generate", "6", "--mode", "functional", "--synthetic", "5"],
                 ["run", *MOE, "--prompt", "8", "--generate", "10", "--streams", "3", "--routing", "zipf:1.2"],
                 ["eval", *TINY, "--data", data, "--rule", "Is it fine?"],
                 ["run", *TINY, "--prompt", "8", "--generate", "40", "--streams", "8", "--set", "card.power_limit_w=13"]]
        for i, args in enumerate(cases):
            got = []
            for k in range(2):
                db = os.path.join(tmp, f"c{i}-{k}.sqlite")
                j = json.loads(run(*args, "--json", "--db", db).stdout)
                got.append(({k2: v for k2, v in j.items() if k2 not in WALL_CLOCK}, db_rows(db)))
            expect(got[0][0] == got[1][0], f"{args}: the --json summaries differ")
            for t in got[0][1]:
                expect(got[0][1][t] == got[1][1][t], f"{args}: table {t} differs")


def test_chip_keys():
    """`etchsim chip keys` lists every key of the shipped chip files and process tables, and each
    numeric range it states is the one the loader holds: a value just outside it is an error
    naming the key, from the command line as from a file."""
    out = run("chip", "keys").stdout
    listed = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) >= 3 and parts[1] in ("number", "integer", "boolean", "text"):
            listed[parts[0]] = (parts[1], line)
    def leaves(node, prefix=""):
        if isinstance(node, dict) and not ("value" in node and not any(isinstance(v, dict) for v in node.values())):
            for k, v in node.items():
                yield from leaves(v, f"{prefix}.{k}" if prefix else k)
        else:
            yield prefix
    for kind, folder in (("chip", "chips"), ("process", "process")):
        for name in os.listdir(os.path.join(MODELS, folder)):
            if not name.endswith(".json"):
                continue
            with open(os.path.join(MODELS, folder, name)) as f:
                for key in leaves(json.load(f)):
                    parts = key.split(".")
                    if parts[:2] == ["weights", "roles"]:
                        key = ".".join(["weights", "roles", "ROLE"] + parts[3:])
                    expect(key in listed, f"{folder}/{name}: key {key} is not in `etchsim chip keys`")
    probed = 0
    for key, (typ, line) in listed.items():
        m = re.search(r"\s(-?[0-9.e+]+) \.\. (-?[0-9.e+]+)", line)
        if not m or typ not in ("number", "integer"):
            continue
        lo, hi = float(m.group(1)), float(m.group(2))
        proc = line in out.split("process table keys")[1]
        setkey = ("process." if proc else "") + key
        above = hi + 1 if typ == "integer" else hi * 2 + 1
        below = lo - 1 if typ == "integer" or lo == 0 else lo / 2
        for v in (above, below):
            val = str(int(v)) if typ == "integer" else repr(v)
            expect_error(["area", "--set", f"{setkey}={val}"], key)
            probed += 1
    expect(probed > 100, f"only {probed} bounds probed")
    # a key no table holds is an error naming it (a misspelt optional key would leave its default)
    with tempfile.TemporaryDirectory() as tmp:
        def bad_chip(edit, *needles, folder="chips", name="hc1-class.json"):
            with open(os.path.join(MODELS, folder, name)) as f:
                doc = json.load(f)
            edit(doc)
            path = os.path.join(tmp, name)
            with open(path, "w") as f:
                json.dump(doc, f)
            if folder == "chips":
                expect_error(["area", "--chip", path], path, *needles)
            else:  # a process table, through a chip naming it by path
                with open(os.path.join(MODELS, "chips", "hc1-class.json")) as f:
                    chip = json.load(f)
                chip["process"] = path
                cpath = os.path.join(tmp, "c.json")
                with open(cpath, "w") as f:
                    json.dump(chip, f)
                expect_error(["area", "--chip", cpath], path, *needles)
        bad_chip(lambda d: d["tile"].__setitem__("items_in_fligth", 4), "'tile.items_in_fligth'", "not a chip key",
                 "did you mean 'tile.items_in_flight'")
        bad_chip(lambda d: d.__setitem__("notes", "x"), "'notes'", "not a chip key")
        bad_chip(lambda d: d["weights"].setdefault("roles", {}).__setitem__("attn_q", {"format": "int6", "grup": 64}),
                 "'weights.roles.attn_q.grup'", "not a chip key")
        bad_chip(lambda d: d["clock_hz"].__setitem__("sorce", "x"), "'clock_hz'", "not 'sorce'")
        bad_chip(lambda d: d["energy"].__setitem__("rom_read_fj_per_bits", 1), "'energy.rom_read_fj_per_bits'",
                 "not a process key", folder="process", name="n6.json")


def test_outputs_only_replace_files():
    """Outputs written beside their path and renamed into place (traces, datasets, ROM images, plots)
    replace only a regular file: a pipe or a folder there is an error naming it, and it is left as
    it was (a trace to /dev/null used to replace the device with a file)."""
    with tempfile.TemporaryDirectory() as tmp:
        fifo = os.path.join(tmp, "pipe")
        os.mkfifo(fifo)
        folder = os.path.join(tmp, "folder")
        os.mkdir(folder)
        for target in (fifo, folder):
            expect_error(["run", "--no-db", *TINY, "--prompt", "8", "--generate", "2", "--trace", target], target,
                         "a trace goes to a regular file")
            expect_error(["dataset", "demo", "-o", target, "--records", "5"], target, "regular file")
            expect_error(["rom", "build", "--model", "tiny-llama", "--chip", os.path.join(DATA, "tiny-chip.json"),
                          "--synthetic", "1", "-o", target], target, "regular file")
        expect(stat.S_ISFIFO(os.stat(fifo).st_mode) and os.path.isdir(folder), "a target was replaced")
        expect(sorted(os.listdir(tmp)) == ["folder", "pipe"], f"left behind: {os.listdir(tmp)}")
        # plots: a pipe where a figure goes
        sens = os.path.join(tmp, "s.json")
        with open(sens, "w") as f:
            json.dump({"workloads": {"w": {"nominal_w": 1, "params": []}}}, f)
        out = os.path.join(tmp, "plots")
        os.mkdir(out)
        os.mkfifo(os.path.join(out, "tornado.png"))
        p = subprocess.run([os.path.join(ROOT, "scripts", "plot"), "--sensitivity", sens, "--out", out],
                           capture_output=True, text=True, timeout=120)
        expect(p.returncode != 0 and "not a regular file" in p.stderr and stat.S_ISFIFO(os.stat(os.path.join(out, "tornado.png")).st_mode),
               f"plot over a pipe: {p.returncode} {p.stderr}")


def test_resource_overlap():
    """A tile's lanes, vector unit and attention engine are separate servers: with several
    streams, one item's attention overlaps another's projections (the resources' busy cycles
    add up to more than the tile's), with one stream they never do; single-stream decode
    equals the analytical model; items_in_flight 1 gives the serial tile back."""
    base = [*TINY, "--prompt", "8", "--generate", "100"]
    with tempfile.TemporaryDirectory() as tmp:
        def units(extra):
            db = os.path.join(tmp, "o.sqlite")
            if os.path.exists(db):
                os.remove(db)
            j = run_json(*base, *extra, "--db", db)
            con = sqlite3.connect(db)
            u = {r[0]: r[1] for r in con.execute("SELECT unit, busy_cycles FROM unit_stats")}
            con.close()
            return j, u
        one, u1 = units(["--streams", "1"])
        same_cycles(one, "one stream with resource-level tiles")
        many, um = units(["--streams", "12"])
        for t in range(4):
            parts1 = sum(u1[f"tile{t}.{r}"] for r in ("lanes", "vector", "attention"))
            partsm = sum(um[f"tile{t}.{r}"] for r in ("lanes", "vector", "attention"))
            expect(parts1 <= u1[f"tile{t}"], f"tile{t} overlapped with one stream: {parts1} > {u1[f'tile{t}']}")
            expect(partsm > 1.1 * um[f"tile{t}"], f"tile{t}: no overlap with 12 streams: {partsm} vs {um[f'tile{t}']}")
        serial = run_json(*base, "--no-db", "--streams", "12", "--set", "tile.items_in_flight=1")
        expect(many["tokens_per_s"] > 1.3 * serial["tokens_per_s"],
               f"overlap gained too little: {many['tokens_per_s']} vs {serial['tokens_per_s']}")


def test_area_tokens_per_read():
    """Serving more tokens per ROM read needs an adder-tree input per token: the tiles' lane
    area grows in proportion; ROM, SRAM and the head do not."""
    a1 = json.loads(run("area", "--json").stdout)
    a2 = json.loads(run("area", "--json", "--set", "tile.lanes.tokens_per_read=2").stdout)
    b1, b2 = a1["breakdown"], a2["breakdown"]
    # hc1-class: 32 tiles x 176,128 lane cells and 704,512 head lane cells, each the synthesized
    # lane cell of rtl-ref/lane-synth.json (3-bit cells, 24-bit accumulator)
    with open(os.path.join(ROOT, "rtl-ref", "lane-synth.json")) as f:
        cell = [c for c in json.load(f)["lane_cells"] if c["cell_bits"] == 3 and c["params"]["ACC_BITS"] == 24][0]
    lt = cell["transistors"] / cell["params"]["N"]
    expect(a1["lane_cell_transistors"] == lt and a1["lane_cell_register_bits"] == cell["flip_flops"] / cell["params"]["N"],
           f"lane cell {a1['lane_cell_transistors']} T, {a1['lane_cell_register_bits']} bits against {cell}")
    tiles, head = 32 * 176128 * lt, 704512 * lt
    expect(abs(b1["lanes"]["transistors"] - (tiles + head)) < 1, f"lanes {b1['lanes']['transistors']}")
    expect(abs(b2["lanes"]["transistors"] - (2 * tiles + head)) < 1, f"lanes at 2 {b2['lanes']['transistors']}")
    expect(a2["area_mm2"] > a1["area_mm2"] and b2["rom"] == b1["rom"] and b2["kv_sram"] == b1["kv_sram"],
           "only the lanes grow")


def test_lane_rtl():
    """The lane cell's transistors and register bits come from the synthesized RTL
    (area.lane_rtl, rtl-ref/lane-synth.json): synthesizing msa_tree with a register after every
    adder level instead of every second one moves the lanes' transistors, area and register bits;
    a synthesis file older than the RTL beside it, a lane width or accumulator it has no cell for,
    and a chip giving the cell both ways are errors."""
    if shutil.which("yosys") is None:
        sys.exit("lane_rtl: needs yosys (Debian package 'yosys'; scripts/setup installs it)")
    base = json.loads(run("area", "--json").stdout)
    with tempfile.TemporaryDirectory() as tmp:
        synth = os.path.join(tmp, "every-level.json")
        p = subprocess.run([os.path.join(ROOT, "scripts", "synth-rtl"), "--reg-every", "1", "--cell-bits", "3",
                            "--out", synth], capture_output=True, text=True, timeout=300)
        expect(p.returncode == 0, f"synth-rtl: {p.stderr}")
        with open(synth) as f:
            sources = json.load(f)["sources"]
        for v in sources:  # the sources it names, beside it
            shutil.copy(os.path.join(ROOT, "rtl-ref", v), tmp)
        moved = json.loads(run("area", "--json", "--set", f"area.lane_rtl={synth}").stdout)
        with open(synth) as f:
            cell = json.load(f)["lane_cells"][0]
        expect(moved["lane_cell_transistors"] == cell["transistors"] / 64 and moved["lane_cell_register_bits"] == cell["flip_flops"] / 64,
               f"lane cell {moved['lane_cell_transistors']}, {moved['lane_cell_register_bits']} against {cell}")
        lanes0, lanes1 = base["breakdown"]["lanes"], moved["breakdown"]["lanes"]
        ratio = moved["lane_cell_transistors"] / base["lane_cell_transistors"]
        expect(ratio > 1.1 and abs(lanes1["transistors"] / lanes0["transistors"] - ratio) < 1e-9
               and lanes1["mm2"] > lanes0["mm2"] and moved["area_mm2"] > base["area_mm2"]
               and moved["lane_cell_register_bits"] > 2 * base["lane_cell_register_bits"],
               f"every level: {moved['lane_cell_transistors']} T/cell against {base['lane_cell_transistors']}")
        # a changed RTL beside the file: refused until synthesized again
        with open(os.path.join(tmp, "msa_tree.v"), "a") as f:
            f.write("// changed\n")
        expect_error(["area", "--set", f"area.lane_rtl={synth}"], synth, "synthesized from other RTL", "scripts/synth-rtl")
        expect_error(["area", "--set", "tile.lanes.accumulator_bits=32"], "lane-synth.json",
                     "no lane cell synthesized", "accumulator_bits 32", "--acc-bits 32")
        with open(os.path.join(MODELS, "chips", "hc1-class.json")) as f:
            chip = json.load(f)
        chip["area"]["lane_transistors"] = {"value": 650, "source": "x"}
        both = os.path.join(tmp, "both.json")
        with open(both, "w") as f:
            json.dump(chip, f)
        expect_error(["area", "--chip", both], both, "area.lane_transistors", "one or the other")


def read_vcd(path):
    """A VCD file's signals: {name: [(time, value), ...]}, parsed here (scalar and vector changes)."""
    names, changes, t = {}, {}, 0
    with open(path) as f:
        for line in f:
            w = line.split()
            if not w:
                continue
            if w[0] == "$var":
                names[w[3]] = w[4]
                changes[w[4]] = []
            elif w[0].startswith("#"):
                t = int(w[0][1:])
            elif w[0].startswith("b") and len(w) == 2 and w[1] in names:
                changes[names[w[1]]].append((t, int(w[0][1:], 2)))
    return changes


def test_vcd():
    """--vcd writes SystemC signals as a VCD file that GTKWave's vcd2fst converts: a signal per tile
    (work items booked and unfinished), KV positions held and sequences in flight, whose peaks are
    the run's own kv_max_used and max_in_flight and which end at zero. A run whose simulation fails
    leaves no file behind; a pipe where the file goes is refused and left as it was."""
    if shutil.which("vcd2fst") is None:
        sys.exit("vcd: needs vcd2fst (Debian package 'gtkwave'; scripts/setup installs it)")
    with tempfile.TemporaryDirectory() as tmp:
        vcd, db = os.path.join(tmp, "run.vcd"), os.path.join(tmp, "run.sqlite")
        j = run_json(*TINY, "--prompt", "40", "--generate", "6", "--streams", "3", "--db", db, "--vcd", vcd)
        expect(sorted(n for n in os.listdir(tmp) if "vcd" in n) == ["run.vcd"], f"left behind: {os.listdir(tmp)}")
        p = subprocess.run(["vcd2fst", vcd, os.path.join(tmp, "run.fst")], capture_output=True, text=True, timeout=120)
        expect(p.returncode == 0 and os.path.getsize(os.path.join(tmp, "run.fst")) > 0, f"vcd2fst: {p.returncode} {p.stderr}")
        sig = read_vcd(vcd)
        tiles = [n for n in sig if n.startswith("tile")]
        expect(len(tiles) == 4 and all(sig[n] for n in tiles), f"tile signals {sorted(sig)}")
        peak = lambda n: max(v for _, v in sig[n])
        expect(peak("kv_positions_held") == j["kv_max_used"] and peak("sequences_in_flight") == j["max_in_flight"],
               f"peaks {peak('kv_positions_held')} / {peak('sequences_in_flight')} against {j['kv_max_used']} / {j['max_in_flight']}")
        expect(all(sig[n][-1][1] == 0 for n in sig), f"not idle at the end: { {n: sig[n][-1] for n in sig} }")
        expect(all(1 <= peak(n) <= 3 for n in tiles), "a tile held more items than its 3 slots")
        # each tile is busy while it holds an item: the time its signal is above zero is its
        # unit_stats busy cycles (1 ns cycles, times in ps)
        con = sqlite3.connect(db)
        busy = dict(con.execute("SELECT unit, busy_cycles FROM unit_stats WHERE unit LIKE 'tile_'").fetchall())
        con.close()
        for n in tiles:
            ch, held = sig[n], 0
            for (t0, v), (t1, _) in zip(ch, ch[1:]):
                held += t1 - t0 if v > 0 else 0
            expect(held == busy[n[:-len("_items")]] * 1000, f"{n}: above zero for {held} ps, busy {busy[n[:-len('_items')]]} cycles")
        # the last change is at or before the run's end (ps)
        end_ps = max(c[-1][0] for c in sig.values())
        expect(end_ps <= j["cycles"] * 1000, f"last change at {end_ps} ps, run of {j['cycles']} cycles")
        # a run that fails in the simulation (simulated time past SystemC's) leaves nothing
        bad = os.path.join(tmp, "bad.vcd")
        expect_error(["run", "--no-db", "--set", "card.power_limit_w=0", "--set", "clock_hz=1e6", "--set",
                      "tile.lanes.count=1", "--set", "tile.lanes.cell_bits=1", "--set", "tile.rom.banks=1", "--set",
                      "tile.rom.rows=1099511627776", "--set", "tile.rom.row_bits=1", "--vcd", bad], "simulated time would pass")
        expect(not any(n.startswith("bad") for n in os.listdir(tmp)), f"a failed run left {os.listdir(tmp)}")
        pipe = os.path.join(tmp, "pipe.vcd")
        os.mkfifo(pipe)
        expect_error(["run", *TINY, "--prompt", "8", "--generate", "2", "--no-db", "--vcd", pipe], pipe, "VCD")
        expect(stat.S_ISFIFO(os.stat(pipe).st_mode), "the VCD replaced a pipe")


def test_utilization():
    """Die utilization = sum of unit area x busy cycles / (die area x run cycles), from the
    unit_stats rows; every mm2 of the die is some unit's or control's or I/O's exactly once;
    one stream leaves most of the die idle, more streams fill it."""
    with tempfile.TemporaryDirectory() as tmp:
        db = os.path.join(tmp, "u.sqlite")
        one = run_json(*TINY, "--prompt", "8", "--generate", "50", "--db", db)
        many = run_json(*TINY, "--prompt", "8", "--generate", "50", "--streams", "12", "--db", db)
        con = sqlite3.connect(db)
        for run_id, j in ((1, one), (2, many)):
            rows = con.execute("SELECT area_mm2, busy_cycles FROM unit_stats WHERE run_id=?", (run_id,)).fetchall()
            active = sum(a * b for a, b in rows)
            want = active / (j["area_mm2"] * j["cycles"])
            expect(abs(j["utilization"]["die"] - want) < 1e-9, f"run {run_id}: die {j['utilization']['die']} != {want}")
            units = sum(a for a, _ in rows)
            rest = j["area"]["control"]["mm2"] + j["area"]["io"]["mm2"]
            expect(abs(units + rest - j["area_mm2"]) < 1e-6 * j["area_mm2"],
                   f"unit areas {units} + control and I/O {rest} != die {j['area_mm2']}")
        con.close()
        expect(one["utilization"]["die"] < 0.5 * many["utilization"]["die"], "more streams did not fill the die")
    # the analytical one-user figure (etchsim area) against a simulated decode-only run: a prompt of
    # one token, 400 decode steps whose attention grows linearly, read at the middle position
    for model in (["--model", "tiny-llama"], ["--model", os.path.join(DATA, "tiny-moe"), "--set", "tile.rom.rows=128"],
                  ["--model", os.path.join(DATA, "tiny-mamba")]):
        sim = run_json("--no-db", "--chip", os.path.join(DATA, "tiny-chip.json"), *model, "--prompt", "1",
                       "--generate", "400")["utilization"]["die"]
        an = json.loads(run("area", "--json", "--chip", os.path.join(DATA, "tiny-chip.json"), *model,
                            "--position", "200").stdout)["utilization_one_user"]["die"]
        expect(abs(sim - an) < 0.03 * an, f"{model[1]}: simulated one-user utilization {sim} vs analytic {an}")


def test_lane_mapping():
    """tile.lanes.mapping partitioned: each tensor group (q/k/v, o, gate/up, down) has its own
    share of the lanes and banks, in proportion to its lane cells. One stream takes exactly the
    analytical time, longer than striped (each projection gets a fraction of the lanes); the
    saturation bound is the same (every partition is busy as long per token as the striped
    lanes); a partition that cannot hold its tensors is an error naming it."""
    base = ["--no-db", *TINY, "--prompt", "8", "--generate", "100"]
    part = ["--set", "tile.lanes.mapping=partitioned"]
    s1, p1 = run_json(*base), run_json(*base, *part)
    same_cycles(p1, "partitioned, one stream")
    expect(p1["decode_tokens_per_s"] < 0.7 * s1["decode_tokens_per_s"], "partitioned one stream not slower")
    # tiles the bottleneck: a quarter of the lanes
    few = ["--set", "tile.lanes.count=2048"]
    sb, pb = run_json(*base, *few), run_json(*base, *few, *part)
    expect(abs(pb["analytic_saturated_tokens_per_s"] - sb["analytic_saturated_tokens_per_s"])
           < 0.02 * sb["analytic_saturated_tokens_per_s"], "saturation bounds differ")
    many = run_json(*base, *few, *part, "--streams", "24")
    expect(many["tokens_per_s"] <= 1.0001 * pb["analytic_saturated_tokens_per_s"], "partitioned above its bound")
    # 40 rows: the tile holds the layer, but the o partition's 5 banks do not hold o's 212,992 bits
    expect_error(["run", "--no-db", *TINY, "--set", "tile.rom.rows=40", *part], "partition o", "tile.rom")
    run("run", "--no-db", *TINY, "--set", "tile.rom.rows=40", "--prompt", "4", "--generate", "2")
    expect_error(["run", "--no-db", *TINY, "--set", "tile.lanes.mapping=diagonal"], "tile.lanes.mapping", "striped")


MOE = ["--model", os.path.join(DATA, "tiny-moe"), "--chip", os.path.join(DATA, "tiny-chip.json"),
       "--set", "tile.rom.rows=128"]


def test_moe():
    """Mixture of experts (an OLMoE-shaped fixture, 16 experts, top-2): each expert runs on lanes
    of its own. One stream: every pass reads exactly top_k / experts of the expert ROM and decode
    equals the analytical model; more streams keep more experts busy; with Zipf routing the hot
    experts are fired most and queue; a replay file is followed."""
    one = run_json("--no-db", *MOE, "--prompt", "1", "--generate", "60")
    m = one["moe"]
    expect(m["expert_utilization"] == 2 / 16, f"one stream: expert utilization {m['expert_utilization']}")
    expect(sum(m["fired_by_expert"]) == 60 * 4 * 2, f"fired {sum(m['fired_by_expert'])} != 60 tokens x 4 layers x 2")
    same_cycles(one, "MoE one stream", ("decode_first", "decode_last", "decode_total"))
    busy = [run_json("--no-db", *MOE, "--prompt", "1", "--generate", "60", "--streams", str(s))["moe"]["expert_busy_fraction"]
            for s in (1, 4, 16)]
    expect(busy[0] < busy[1] < busy[2], f"expert busy fraction does not rise with streams: {busy}")
    z = run_json("--no-db", *MOE, "--prompt", "1", "--generate", "60", "--streams", "16", "--routing", "zipf:1.5")["moe"]
    f, q = z["fired_by_expert"], z["mean_queue_ns_by_expert"]
    expect(f[0] > 3 * f[15] and f[0] == max(f), f"zipf: fired {f}")
    expect(q[0] > 0 and q[0] > 2 * max(q[8:]), f"zipf: the hottest expert does not queue most: {q}")
    with tempfile.TemporaryDirectory() as tmp:
        rp = os.path.join(tmp, "route.txt")
        with open(rp, "w") as fh:
            fh.write("3 7\n")
        r = run_json("--no-db", *MOE, "--prompt", "1", "--generate", "20", "--routing", "replay:" + rp)["moe"]
        expect([i for i, n in enumerate(r["fired_by_expert"]) if n] == [3, 7], f"replay: {r['fired_by_expert']}")
        with open(rp, "w") as fh:
            fh.write("3 7\n3 16\n")
        expect_error(["run", "--no-db", *MOE, "--routing", "replay:" + rp], rp, "line 2", "0 to 15")
        cfg = os.path.join(tmp, "bad-moe")
        os.makedirs(cfg)
        with open(os.path.join(DATA, "tiny-moe", "config.json")) as fh:
            c = json.load(fh)
        c["num_experts_per_tok"] = 17
        with open(os.path.join(cfg, "config.json"), "w") as fh:
            json.dump(c, fh)
        expect_error(["run", "--no-db", "--model", cfg], "num_experts_per_tok", "17", "16 experts")
    expect_error(["run", "--no-db", *TINY, "--routing", "zipf:1"], "--routing", "dense")


def test_moe_functional():
    """Functional mode runs a mixture of experts, routed by its router's own scores: with f32
    weights and an FP32 datapath its logits equal the FP32 reference's within 1e-4 with the same
    tokens, and the experts fired are the router's (not the uniform draw of timing mode)."""
    vocab = stories()
    with tempfile.TemporaryDirectory() as tmp:
        ra, rb = os.path.join(tmp, "a.json"), os.path.join(tmp, "b.json")
        common = ["--model", os.path.join(DATA, "tiny-moe"), "--synthetic", "3", "--text", "Once upon a time",
                  "--vocab", vocab, "--generate", "10", "--logits"]
        a = json.loads(run("infer", *common, ra, "--json").stdout)
        j = json.loads(run("run", "--json", "--no-db", "--chip", os.path.join(DATA, "tiny-chip.json"), "--set",
                           "tile.rom.rows=1024", *F32_HEAD_ROMS, "--mode", "functional", "--recipe", "f32", *FP32_DATAPATH, *common,
                           rb).stdout)
        expect(a["output_ids"] == j["functional"]["output_ids"], f"tokens {a['output_ids']} vs {j['functional']['output_ids']}")
        la, lb = json.load(open(ra)), json.load(open(rb))
        d = max(max(abs(x - y) for x, y in zip(p["logits"], q["logits"])) for p, q in zip(la, lb))
        expect(len(la) == len(lb) == 14 and d <= 1e-4, f"MoE datapath differs from the reference by {d}")
        fired = j["moe"]["fired_by_expert"]
        # 5 prompt ids + 10 generated, the last never fed back: 14 forward passes x 4 layers x top-2
        expect(sum(fired) == 14 * 4 * 2, f"fired {sum(fired)} != 14 passes x 4 layers x 2")
        t = run_json("--no-db", *MOE, "--prompt", "5", "--generate", "10")
        expect(t["moe"]["fired_by_expert"] != fired, "functional routing looks like timing mode's draw")


def test_budget():
    """budget check: the default run passes the committed budgets; a 10 % slower clock fails on
    decode tokens/s (and the latencies) with exit 1 and a valid JUnit report naming the metric;
    max_regress_pct against a baseline run catches the same change; bad budgets, a missing
    baseline, an unknown run, a run that never completed and a missing database are each one
    clear error with exit 2, and the database is never created."""
    import xml.etree.ElementTree as ET
    budgets = os.path.join(ROOT, ".ci", "budgets-run.json")
    with tempfile.TemporaryDirectory() as tmp:
        ok, slow = os.path.join(tmp, "ok.sqlite"), os.path.join(tmp, "slow.sqlite")
        run("run", "--db", ok)
        run("run", "--db", slow, "--set", "clock_hz=9e8")
        junit = os.path.join(tmp, "ok.xml")
        p = run("budget", "check", "--db", ok, "--budgets", budgets, "--junit", junit)
        expect("all 5 limits hold" in p.stdout, f"unchanged run: {p.stdout}")
        suite = ET.parse(junit).getroot().find("testsuite")
        expect(suite.get("tests") == "5" and suite.get("failures") == "0", f"junit {suite.attrib}")
        junit = os.path.join(tmp, "slow.xml")
        p = run("budget", "check", "--db", slow, "--budgets", budgets, "--junit", junit, ok=False)
        expect(p.returncode == 1, f"slower clock: exit {p.returncode}")
        verdict = {l.split()[0]: l.split()[-1] for l in p.stdout.splitlines()[2:]}
        expect(verdict["decode_tokens_per_s"] == "FAIL" and verdict["token_latency_ns.p99"] == "FAIL"
               and verdict["watts"] == "ok", f"verdicts {verdict}")
        def summary(db):
            con = sqlite3.connect(db)
            text, = con.execute("SELECT summary FROM runs ORDER BY id DESC LIMIT 1").fetchone()
            con.close()
            return json.loads(text)
        fast, slowed = summary(ok)["decode_tokens_per_s"], summary(slow)["decode_tokens_per_s"]
        # the same cycles at 0.9 times the clock
        expect(abs(slowed - 0.9 * fast) < 1e-6 * fast, f"tokens/s {slowed} at 0.9 GHz, {fast} at 1 GHz")
        expect(f"decode_tokens_per_s = {slowed:.6g}, below the minimum 16500" in p.stderr, p.stderr)
        root = ET.parse(junit).getroot()
        failed = [c.get("name") for c in root.iter("testcase") if c.find("failure") is not None]
        expect("decode_tokens_per_s >= 16500" in failed and "watts <= 38" not in failed, f"junit failures {failed}")
        expect(root.find("testsuite").get("failures") == str(len(failed)), "junit failure count")
        reg = os.path.join(tmp, "reg.json")
        with open(reg, "w") as f:
            json.dump({"decode_tokens_per_s": {"max_regress_pct": 5}, "joules_per_token": {"max_regress_pct": 10}}, f)
        p = run("budget", "check", "--db", slow, "--budgets", reg, "--baseline-db", ok, ok=False)
        expect(p.returncode == 1 and f"10% worse than {fast:.6g}" in p.stderr, f"regression: {p.stderr}")
        expect("joules_per_token" not in p.stderr, "7 % worse energy is within 10 %")
        run("budget", "check", "--db", ok, "--budgets", reg, "--baseline", "1")  # a run against itself
        # errors: each names the file or key, exit 2
        def bad(text, *needles, extra=()):
            path = os.path.join(tmp, "b.json")
            with open(path, "w") as f:
                f.write(text)
            expect_error(["budget", "check", "--db", ok, "--budgets", path, *extra], *needles, code=2)
        bad('{"x":', "b.json", "malformed JSON")
        bad('[1]', "b.json", "expected a JSON object")
        bad('{"watts": {"max": 1}, "watts": {"max": 2}}', "'watts' appears twice")
        bad('{"tokens_per_sec": {"min": 1}}', "b.json", "tokens_per_sec", "has no")
        bad('{"area.rom": {"max": 1}}', "area.rom", "an object")
        bad('{"tokens_per_s": {"minimum": 1}}', "'minimum'", "expected min, max")
        bad('{"tokens_per_s": {"min": "fast"}}', "'min' expects a number")
        bad('{"tokens_per_s": {"max_regress_pct": 2}}', "needs a baseline")
        bad('{"tokens_per_s": {"min": 1, "better": "up"}}', "'better'", "higher")
        bad('{}', "b.json", "at least one metric")
        bad('{"watts": {}}', "b.json: metric 'watts': no limits; expected at least one of min, max or max_regress_pct")
        bad('{"decode_tokens_per_s": {"min": 1}, "watts": {"better": "higher"}}', "b.json: metric 'watts': no limits")
        bad('{"%s": {"max": 1}}' % ("x" * 300), "b.json", "at most 255 bytes")
        # the JUnit report replaces only a regular file (a pipe there stays a pipe)
        pipe = os.path.join(tmp, "report.xml")
        os.mkfifo(pipe)
        expect_error(["budget", "check", "--db", ok, "--budgets", budgets, "--junit", pipe], pipe, "JUnit", code=2)
        expect(stat.S_ISFIFO(os.stat(pipe).st_mode), "the JUnit report replaced a pipe")
        expect_error(["budget", "check", "--db", ok, "--budgets", budgets, "--run", "9"], "ok.sqlite", "no run 9", code=2)
        expect_error(["budget", "check", "--db", ok, "--budgets", budgets, "--run", "x"], "--run", "whole number", code=2)
        con = sqlite3.connect(ok)
        con.execute("INSERT INTO runs(started_utc, status, version, command, chip, model) "
                    "VALUES('2026-01-01T00:00:00Z', 'running', '0', 'run', 'c', 'm')")
        con.commit()
        con.close()
        expect_error(["budget", "check", "--db", ok, "--budgets", budgets, "--run", "2"], "run 2 never completed", code=2)
        run("budget", "check", "--db", ok, "--budgets", budgets)  # the newest complete run: 1
        missing = os.path.join(tmp, "none.sqlite")
        expect_error(["budget", "check", "--db", missing, "--budgets", budgets], "none.sqlite", code=2)
        expect(not os.path.exists(missing), "budget check created a database")
        expect_error(["budget", "check", "--budgets", budgets], "--db is required", code=2)


def test_budget_ci():
    """The project's own budgets (.ci/budgets-*.json) hold for the default run and the demo eval."""
    with tempfile.TemporaryDirectory() as tmp:
        db = os.path.join(tmp, "ci.sqlite")
        run("run", "--db", db)
        run("budget", "check", "--db", db, "--budgets", os.path.join(ROOT, ".ci", "budgets-run.json"))
        run("eval", "--db", db)
        run("budget", "check", "--db", db, "--budgets", os.path.join(ROOT, ".ci", "budgets-eval.json"),
            "--junit", os.path.join(tmp, "eval.xml"))


def load_trace(path):
    """A --trace file: its events, track names by id, and the complete spans by track name."""
    with open(path) as f:
        ev = json.load(f)["traceEvents"]
    names = {e["tid"]: e["args"]["name"] for e in ev if e["ph"] == "M" and e["name"] == "thread_name"}
    spans = {}
    for e in ev:
        if e["ph"] == "X":
            spans.setdefault(names[e["tid"]], []).append(e)
    return ev, names, spans


def test_link_credits():
    """A link is folded into its sender with credit flow control: a tile starts a transfer into the
    next tile only while that tile's input FIFO has a free slot. So between entering tile j (its
    transfer on link j starts) and leaving it (its transfer on link j+1 starts), at most
    fifo_depth + 1 + items_in_flight items are held: the FIFO, the one item read from it to wait
    for a slot, and the tile's slots. Tiny chip, fifo_depth 1, one slot, 8 streams, from the trace
    (items by request and position, which tiles 1 and 2 keep). A transfer out starts when its item
    leaves as long as the outgoing link is free then: its serialization (a few cycles) is far
    shorter than a tile's work, and with the check in place the bound is met exactly."""
    with tempfile.TemporaryDirectory() as tmp:
        tr = os.path.join(tmp, "t.json")
        run("run", "--no-db", *TINY, "--prompt", "24", "--generate", "6", "--streams", "8",
            "--set", "scheduler.fifo_depth=1", "--set", "tile.items_in_flight=1", "--trace", tr)
        _, _, spans = load_trace(tr)
    def key(e):
        return (e["args"]["request"], e["args"]["pos"])
    for j in (1, 2):
        into = {key(e): e["ts"] for e in spans[f"link{j}"]}
        out = {key(e): e["ts"] for e in spans[f"link{j + 1}"]}
        expect(set(into) == set(out), f"tile{j}: items in and out differ")
        held = peak = 0
        for _, d in sorted([(t, 1) for t in into.values()] + [(t, -1) for t in out.values()]):
            held += d
            peak = max(peak, held)
        expect(peak == 3, f"tile{j}: {peak} items held at once between its links, credits allow 1 + 1 + 1")


def test_trace():
    """--trace writes a Chrome trace-event file: a track per unit; each track's spans add up to the
    unit's busy cycles in unit_stats and, on a lanes or vector track, never overlap; with several
    streams one request's attention overlaps another's projections; every request has one flow
    start and one end; the counters peak at max_in_flight and kv_max_used; a window keeps only
    the events that overlap it; eval traces too; bad options and paths are errors."""
    load = load_trace
    with tempfile.TemporaryDirectory() as tmp:
        tr, db = os.path.join(tmp, "t.json"), os.path.join(tmp, "t.sqlite")
        j = run_json(*TINY, "--prompt", "24", "--generate", "12", "--streams", "6", "--db", db, "--trace", tr)
        ns_per_cycle = 1e9 / j["clock_hz"]
        ev, names, spans = load(tr)
        con = sqlite3.connect(db)
        busy = {r[0]: r[1] for r in con.execute("SELECT unit, busy_cycles FROM unit_stats")}
        con.close()
        traced = set(names.values())
        for u in ("embed", "head", "host_completion", "tile0.lanes", "tile3.vector", "tile1.attention", "link0"):
            expect(u in traced, f"no track for {u}: {sorted(traced)}")
        for unit, ss in spans.items():
            total = sum(e["dur"] for e in ss) * 1e3 / ns_per_cycle  # us -> cycles
            expect(abs(total - busy[unit]) < 0.01 * len(ss) + 1e-6, f"{unit}: spans {total} cycles, unit_stats {busy[unit]}")
            if unit.endswith(".lanes") or unit.endswith(".vector"):
                ss = sorted(ss, key=lambda e: e["ts"])
                for a, b in zip(ss, ss[1:]):
                    expect(a["ts"] + a["dur"] <= b["ts"] + 1e-9, f"{unit}: overlapping spans {a} {b}")
        overlap = False
        for t in range(4):
            for a in spans[f"tile{t}.attention"]:
                for b in spans[f"tile{t}.lanes"]:
                    if a["args"]["request"] != b["args"]["request"] and a["ts"] < b["ts"] + b["dur"] and b["ts"] < a["ts"] + a["dur"]:
                        overlap = True
        expect(overlap, "no attention span overlaps another request's projection")
        for ph in ("s", "f"):
            ids = sorted(e["id"] for e in ev if e["ph"] == ph)
            expect(ids == list(range(6)), f"flow '{ph}' ids {ids}")
        peak = {}
        for e in ev:
            if e["ph"] == "C":
                peak[e["name"]] = max(peak.get(e["name"], 0), e["args"]["value"])
        expect(peak == {"sequences in flight": j["max_in_flight"], "KV positions held": j["kv_max_used"]}, f"counters {peak}")
        # a window: only spans overlapping [a, b] ns, and fewer of them
        end_us = max(e["ts"] + e.get("dur", 0) for e in ev if "ts" in e)
        a, b = end_us * 1e3 * 0.4, end_us * 1e3 * 0.5
        run_json(*TINY, "--prompt", "24", "--generate", "12", "--streams", "6", "--no-db", "--trace", tr,
                 "--trace-window", f"{a}:{b}")
        wev, _, wspans = load(tr)
        xs = [e for e in wev if e["ph"] == "X"]
        expect(0 < len(xs) < sum(len(s) for s in spans.values()), f"window kept {len(xs)} spans")
        expect(all(e["ts"] * 1e3 <= b and (e["ts"] + e["dur"]) * 1e3 >= a for e in xs), "a span outside the window")
        # eval: one flow per record
        data = os.path.join(tmp, "d.csv")
        write_csv(data, [f"R{i},record {i}" for i in range(10)])
        run("eval", "--no-db", "--no-compare", *TINY, "--data", data, "--rule", "Fine?", "--trace", tr)
        eev, _, _ = load(tr)
        expect(sorted(e["id"] for e in eev if e["ph"] == "f") == list(range(10)), "eval: a flow end per record")
        expect_error(["run", "--no-db", *TINY, "--prompt", "8", "--generate", "2", "--trace", os.path.join(tmp, "no", "t.json")],
                     "t.json.tmp", "cannot write")
        expect_error(["run", "--no-db", *TINY, "--trace", tr, "--trace-window", "5:2"], "--trace-window", "START:END", code=2)
        expect_error(["run", "--no-db", *TINY, "--trace-window", "0:2"], "needs --trace", code=2)
        expect_error(["eval", "--no-db", *TINY, "--data", data, "--trace-window", "x"], "--trace-window", code=2)


def sweep_rows(db):
    """A merged sweep database's rows, keyed by point, without wall-clock fields or run ids."""
    con = sqlite3.connect(db)
    out = {}
    for point, params, run_id, status, error in con.execute(
            "SELECT point, params, run_id, status, error FROM sweep_points ORDER BY point"):
        row = {"params": json.loads(params), "status": status, "error": error}
        if run_id is not None:
            summary, = con.execute("SELECT summary FROM runs WHERE id = ?", (run_id,)).fetchone()
            row["summary"] = {k: v for k, v in json.loads(summary).items() if k != "sim_wall_s"}
            for t in ("sequences", "tokens", "unit_stats"):
                row[t] = con.execute(f"SELECT * FROM {t} WHERE run_id = ? ORDER BY 2, 3", (run_id,)).fetchall()
                row[t] = [r[1:] for r in row[t]]
        out[point] = row
    con.close()
    return out


def test_sweep():
    """etchsim sweep runs the cross product of a grid (a zip group moving together), each point in
    its own process, and merges them into one database: a sweep_points row per point; each done
    point's run equals a single run of its parameters; a failing point keeps its error, the others
    go on and the exit status is 1; bad grids are errors naming the file and key."""
    with tempfile.TemporaryDirectory() as tmp:
        grid = {"chip": [os.path.join(DATA, "tiny-chip.json")], "model": ["tiny-llama"], "clock_hz": [5e8, 1e9],
                "streams": [1, 3, 0], "prompt": [8], "generate": [4],
                "zip": [{"tile.lanes.tokens_per_read": [1, 2], "tile.items_in_flight": [1, 2]}]}
        g, out = os.path.join(tmp, "g.json"), os.path.join(tmp, "s.sqlite")
        with open(g, "w") as f:
            json.dump(grid, f)
        p = run("sweep", "--grid", g, "--db", out, "--jobs", "2", ok=False)
        expect(p.returncode == 1, f"exit {p.returncode}: {p.stderr}")
        expect("12 points, 8 done, 4 failed" in p.stdout, p.stdout)
        expect(not os.path.exists(out + ".points") and not os.path.exists(out + ".tmp"), "points folder left behind")
        rows = sweep_rows(out)
        expect(sorted(rows) == list(range(12)), f"points {sorted(rows)}")
        # the first axis varies slowest; zip keys move together
        expect(rows[0]["params"]["clock_hz"] == 5e8 and rows[11]["params"]["clock_hz"] == 1e9, "axis order")
        expect(all((r["params"]["tile.lanes.tokens_per_read"], r["params"]["tile.items_in_flight"]) in ((1, 1), (2, 2))
                   for r in rows.values()), "zip group")
        for i, r in rows.items():
            q = r["params"]
            if q["streams"] == 0:
                expect(r["status"] == "failed" and "--streams" in r["error"], f"point {i}: {r}")
                continue
            expect(r["status"] == "done" and r["error"] is None, f"point {i}: {r}")
            single = run_json("--no-db", "--chip", q["chip"], "--model", q["model"], "--prompt", "8", "--generate", "4",
                              "--streams", str(q["streams"]), "--set", f"clock_hz={q['clock_hz']}",
                              "--set", f"tile.lanes.tokens_per_read={q['tile.lanes.tokens_per_read']}",
                              "--set", f"tile.items_in_flight={q['tile.items_in_flight']}")
            single.pop("sim_wall_s")
            expect(r["summary"] == single, f"point {i}: the sweep's run differs from a single run")
            expect(len(r["tokens"]) == 4 * q["streams"], f"point {i}: {len(r['tokens'])} token rows")
        # bad grids
        def bad(text, *needles):
            path = os.path.join(tmp, "bad.json")
            with open(path, "w") as f:
                f.write(text)
            expect_error(["sweep", "--grid", path, "--db", os.path.join(tmp, "x.sqlite")], *needles, code=2)
        bad('{"clock_hz": [1e9', "bad.json", "malformed JSON")
        bad('{"clock_hz": 1e9}', "bad.json", "'clock_hz'", "non-empty list")
        bad('{"clock_hz": []}', "'clock_hz'", "non-empty list")
        bad('{"clock_hz": [{"a": 1}]}', "'clock_hz'", "numbers, strings or booleans")
        bad('{"zip": [{"a": [1, 2], "b": [1]}]}', "zip group", "equal lists")
        bad('{"a": [1], "zip": [{"a": [2]}]}', "'a' appears twice")
        bad('{"command": "infer", "a": [1]}', "'command'", "run")
        bad('{"command": "run"}', "names no key")
        # unknown keys: refused before any point runs, naming the nearest valid key
        bad('{"clock_hz": [1e9], "clok_hz": [1e9]}', "bad.json: key 'clok_hz': not a run option, chip key, process key or deployment key "
            "(did you mean 'clock_hz'?")
        bad('{"process.leakage_nw_per_transistor": [1, 2]}', "key 'process.leakage_nw_per_transistor'",
            "the nearest is 'process.leakage.rom_w_per_mm2'")
        bad('{"zip": [{"tile.lanes.count": [1], "kv.bytes_pre_tile": [2]}]}', "'kv.bytes_pre_tile'",
            "did you mean 'kv.bytes_per_tile'?")
        bad('{"command": "eval", "prompt": [8]}', "key 'prompt': an option of run, not of eval")
        bad('{"command": "eval", "polcy": ["spf"]}', "not an eval option", "did you mean 'policy'?")
        expect(not os.path.exists(os.path.join(tmp, "x.sqlite.points")), "a refused grid left a points folder")
        expect_error(["sweep", "--grid", g, "--db", out], "s.sqlite exists", code=2)
        expect_error(["sweep", "--grid", g, "--db", os.path.join(tmp, "y.sqlite"), "--jobs", "0"], "--jobs", code=2)
        expect_error(["sweep", "--db", out], "--grid is required", code=2)


def test_sweep_parallel():
    """--emit parallel writes a job list that GNU parallel runs; `sweep merge` gathers it into a
    database whose rows equal `etchsim sweep --jobs 2`'s (apart from wall-clock fields), failed
    point included; a point that never ran is failed, not lost."""
    if not shutil.which("parallel"):
        raise AssertionError("GNU parallel is not installed (Debian package parallel; scripts/setup installs it)")
    with tempfile.TemporaryDirectory() as tmp:
        g = os.path.join(tmp, "g.json")
        with open(g, "w") as f:
            json.dump({"chip": [os.path.join(DATA, "tiny-chip.json")], "model": ["tiny-llama"], "clock_hz": [5e8, 1e9],
                       "streams": [2, 0], "prompt": [8], "generate": [4]}, f)
        local, par = os.path.join(tmp, "local.sqlite"), os.path.join(tmp, "par.sqlite")
        run("sweep", "--grid", g, "--db", local, "--jobs", "2", "--keep-points", ok=False)
        # the kept folder merges again to the same rows
        run("sweep", "merge", "--db", os.path.join(tmp, "again.sqlite"), local + ".points", ok=False)
        expect(sweep_rows(os.path.join(tmp, "again.sqlite")) == sweep_rows(local), "re-merging the kept points differs")
        p = run("sweep", "--grid", g, "--db", par, "--emit", "parallel")
        d = par + ".points"
        expect(f"parallel --jobs N < {d}/jobs.txt" in p.stdout and not os.path.exists(par), p.stdout)
        with open(os.path.join(d, "jobs.txt")) as f:
            expect(len(f.read().splitlines()) == 4, "one job per point")
        subprocess.run(["parallel", "--will-cite", "--jobs", "2"], stdin=open(os.path.join(d, "jobs.txt")),
                       capture_output=True, timeout=300)
        m = run("sweep", "merge", "--db", par, d, ok=False)
        expect(m.returncode == 1 and "4 points, 2 done, 2 failed" in m.stdout, f"merge: {m.stdout} {m.stderr}")
        a, b = sweep_rows(local), sweep_rows(par)
        expect(a == b, "GNU parallel's merged rows differ from the local sweep's")
        # a point whose job never ran
        os.remove(os.path.join(d, "0.sqlite"))
        os.remove(os.path.join(d, "0.log"))
        run("sweep", "merge", "--db", os.path.join(tmp, "gap.sqlite"), d, ok=False)
        r = sweep_rows(os.path.join(tmp, "gap.sqlite"))
        expect(r[0]["status"] == "failed" and "never ran" in r[0]["error"], f"missing point: {r[0]}")
        expect_error(["sweep", "merge", "--db", os.path.join(tmp, "z.sqlite"), tmp], "grid.json", "--emit", code=2)


def test_sweep_slurm():
    """--emit slurm writes an array job that a single-node Slurm cluster on this machine
    (scripts/slurm-local) runs; each task's state is checked (not just an empty queue), and
    `sweep merge` gives the rows of `etchsim sweep --jobs 2`."""
    root = os.path.join(ROOT, "scripts", "slurm-local")
    with tempfile.TemporaryDirectory() as tmp:
        g = os.path.join(tmp, "g.json")
        with open(g, "w") as f:
            json.dump({"chip": [os.path.join(DATA, "tiny-chip.json")], "model": ["tiny-llama"], "clock_hz": [5e8, 1e9],
                       "streams": [2, 0], "prompt": [8], "generate": [4]}, f)
        local, sl = os.path.join(tmp, "local.sqlite"), os.path.join(tmp, "slurm.sqlite")
        run("sweep", "--grid", g, "--db", local, "--jobs", "2", ok=False)
        run("sweep", "--grid", g, "--db", sl, "--emit", "slurm")
        d = sl + ".points"
        cluster = os.path.join(tmp, "cluster")
        env = dict(os.environ, ETCHSIM_SLURM_PORT=str(20000 + os.getpid() % 20000 // 2 * 2))
        p = subprocess.run([root, "start", cluster], capture_output=True, text=True, env=env, timeout=120)
        expect(p.returncode == 0, f"slurm-local start: {p.stderr}")
        env["SLURM_CONF"] = os.path.join(cluster, "slurm.conf")
        try:
            p = subprocess.run(["sbatch", "--parsable", os.path.join(d, "sweep.sbatch")], capture_output=True, text=True,
                               env=env, timeout=60)
            expect(p.returncode == 0, f"sbatch: {p.stderr}")
            job = p.stdout.strip().split(";")[0]
            deadline = time.time() + 240
            while True:  # the queue, polled with a limit
                q = subprocess.run(["squeue", "-h", "-j", job], capture_output=True, text=True, env=env, timeout=30)
                if q.returncode == 0 and not q.stdout.strip():
                    break
                expect(time.time() < deadline, f"array job {job} still queued after 240 s: {q.stdout}")
                time.sleep(0.5)
            # an empty queue is not success: every task's final state
            info = subprocess.run(["scontrol", "-o", "show", "job", job], capture_output=True, text=True, env=env,
                                  timeout=30).stdout
            states = {}
            for line in info.splitlines():
                f = dict(kv.split("=", 1) for kv in line.split() if "=" in kv)
                states[int(f["ArrayTaskId"])] = f["JobState"]
            expect(states == {0: "COMPLETED", 1: "FAILED", 2: "COMPLETED", 3: "FAILED"}, f"task states {states}")
        finally:
            subprocess.run([root, "stop", cluster], capture_output=True, timeout=60)
        m = run("sweep", "merge", "--db", sl, d, ok=False)
        expect(m.returncode == 1 and "4 points, 2 done, 2 failed" in m.stdout, f"merge: {m.stdout} {m.stderr}")
        expect(sweep_rows(local) == sweep_rows(sl), "Slurm's merged rows differ from the local sweep's")


def test_plot():
    """scripts/plot renders every figure from one sweep database and from one eval database, as
    PNG files, and --describe says what a reader sees: sweep lines and latency curves named by their
    parameters in units (GHz, not 1e9), one Pareto frontier per workload over the design keys, the
    KV-slot knee on the streams figure, per-record latency for eval (not per token), the first 100
    results marked, every utilization and power bar labelled, and the power bars adding up to the
    run's watts. A missing database, a run whose summary is not JSON, a database without etchsim's
    tables: one clear error, no traceback. A database holding runs and an eval: the latency figure
    of the run shows runs only."""
    plot = os.path.join(ROOT, "scripts", "plot")
    with tempfile.TemporaryDirectory() as tmp:
        g, sw = os.path.join(tmp, "g.json"), os.path.join(tmp, "sw.sqlite")
        with open(g, "w") as f:
            json.dump({"chip": [os.path.join(DATA, "tiny-chip.json")], "model": ["tiny-llama"], "clock_hz": [5e8, 1e9],
                       "streams": [1, 4], "prompt": [8], "generate": [16]}, f)
        run("sweep", "--grid", g, "--db", sw, "--jobs", "2")
        ev = os.path.join(tmp, "ev.sqlite")
        data = os.path.join(tmp, "d.csv")
        write_csv(data, [f"R{i},record {i}" for i in range(120)])
        run("eval", "--db", ev, "--no-compare", *TINY, "--data", data, "--rule", "Fine?")
        seen = {}
        for db, want in ((sw, ["sweep-clock_hz.png", "sweep-streams.png", "pareto.png", "streams-knee.png",
                               "latency-cdf.png", "power.png", "area.png", "utilization.png"]),
                         (ev, ["latency-cdf.png", "eval-progress.png", "power.png", "area.png", "utilization.png"])):
            out = os.path.join(tmp, os.path.basename(db) + "-plots")
            p = subprocess.run([plot, db, "--out", out, "--describe"], capture_output=True, text=True)
            expect(p.returncode == 0, f"plot {db}: {p.stderr}")
            expect(sorted(os.listdir(out)) == sorted(want), f"{db}: wrote {sorted(os.listdir(out))}")
            seen[db] = json.loads(p.stdout)
            expect(sorted(seen[db]) == sorted(want), f"--describe names {sorted(seen[db])}")
            for name in want:
                with open(os.path.join(out, name), "rb") as f:
                    head = f.read(24)
                w, h = int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")
                expect(head[:8] == b"\x89PNG\r\n\x1a\n" and w > 400 and h > 300, f"{name}: not a PNG figure ({w}x{h})")
        d = seen[sw]
        expect(d["sweep-clock_hz.png"]["xlabels"] == ["clock_hz, GHz"] * 2, f"clock axis {d['sweep-clock_hz.png']}")
        expect(sorted(d["sweep-clock_hz.png"]["legend"]) == ["streams=1", "streams=4"], d["sweep-clock_hz.png"]["legend"])
        expect(sorted(d["sweep-streams.png"]["legend"]) == ["clock_hz=0.5 GHz", "clock_hz=1 GHz"],
               d["sweep-streams.png"]["legend"])
        lat = d["latency-cdf.png"]["legend"]
        expect(len(lat) == 4 and all(re.fullmatch(r"clock_hz=(0\.5|1) GHz, streams=(1|4): \2 sequences?, \d+ tokens", x)
                                     for x in lat), f"latency {lat}")
        # streams is workload, clock_hz design: a frontier per streams value, its points named by the clock
        par = d["pareto.png"]
        expect(sorted(par["legend"]) == ["frontier: streams=1", "frontier: streams=4"], f"pareto {par['legend']}")
        expect(par["texts"] and all(re.fullmatch(r"clock_hz=(0\.5|1) GHz", t) for t in par["texts"]), par["texts"])
        knee = d["streams-knee.png"]
        expect(all("KV-slot knee" in x for x in knee["legend"] if x.startswith("clock_hz")), f"knee {knee}")
        # each design's analytical saturation is its own legend entry, named by the design
        sat = sorted(re.sub(r"[\d,]+ tokens/s", "N tokens/s", x) for x in knee["legend"] if x.startswith("analytical"))
        expect(sat == [f"analytical saturation N tokens/s (decode), clock_hz={c} GHz" for c in ("0.5", "1")], f"knee {knee}")
        e = seen[ev]
        expect(e["latency-cdf.png"]["titles"] == ["Per-record latency", "Time to first token, per record"] and
               e["latency-cdf.png"]["xlabels"][0] == "record latency, µs (submission to last token)" and
               e["latency-cdf.png"]["legend"] == ["run 1 (eval): 120 records"], e["latency-cdf.png"])
        expect(any(t.startswith("first 100 results: ") for t in e["eval-progress.png"]["texts"]), e["eval-progress.png"])
        con = sqlite3.connect(ev)
        summ = json.loads(con.execute("SELECT summary FROM runs").fetchone()[0])
        # the per-record panel spans the records' submission-to-last-token times, the other their first tokens
        rec = con.execute("SELECT MIN(done_ns - submit_ns), MAX(done_ns - submit_ns), MIN(first_token_ns - submit_ns), "
                          "MAX(first_token_ns - submit_ns) FROM records WHERE status = 'done'").fetchone()
        expect(e["latency-cdf.png"]["xdata"] == [[rec[0] / 1e3, rec[1] / 1e3], [rec[2] / 1e3, rec[3] / 1e3]],
               f"latency panels {e['latency-cdf.png']['xdata']} against the records' {rec}")
        units = con.execute("SELECT COUNT(*) FROM unit_stats WHERE unit NOT LIKE 'tile%' AND unit NOT LIKE 'link%'").fetchone()[0]
        con.close()
        expect(len([t for t in e["utilization.png"]["texts"] if t.strip().endswith("%")]) == units,
               f"utilization bars unlabelled: {e['utilization.png']['texts']}")
        pw = [float(re.match(r" ([\d.]+) W", t).group(1)) for t in e["power.png"]["texts"]]
        expect(len(pw) == len(summ["energy_by_event_j"]) and abs(sum(pw) - summ["watts"]) < 0.01 * len(pw) + 1e-9,
               f"power bars {pw} against {summ['watts']} W")
        p = subprocess.run([plot, os.path.join(tmp, "none.sqlite")], capture_output=True, text=True)
        expect(p.returncode != 0 and "none.sqlite: no such database" in p.stderr, f"missing database: {p.stderr!r}")
        # a summary that is not JSON, and a database without etchsim's tables: one line, no traceback
        def variant(name, sql, src=None):
            """A database in tmp: a copy of src (or a new one) with sql applied."""
            path = os.path.join(tmp, name)
            if src:
                shutil.copy(src, path)
            con = sqlite3.connect(path)
            con.execute(sql)
            con.commit()
            con.close()
            return path
        bad = variant("bad.sqlite", "UPDATE runs SET summary = 'not json'", ev)
        other = variant("other.sqlite", "CREATE TABLE runs(id INTEGER)")
        norec = variant("norec.sqlite", "DROP TABLE records", ev)  # an eval's database without its records
        empty = os.path.join(tmp, "empty.sqlite")
        open(empty, "w").close()
        tables = "not an etchsim database (expected the tables runs, sequences, tokens, unit_stats, records; missing: "
        for db, needle in ((bad, "bad.sqlite: run 1: its summary is not JSON"),
                           (other, "other.sqlite: " + tables + "sequences, tokens, unit_stats, records)"),
                           (norec, "norec.sqlite: " + tables + "records)"),
                           (empty, "empty.sqlite: " + tables + "runs, sequences, tokens, unit_stats, records)")):
            p = subprocess.run([plot, db, "--out", os.path.join(tmp, "x")], capture_output=True, text=True)
            expect(p.returncode == 1 and needle in p.stderr and "Traceback" not in p.stderr and
                   len(p.stderr.strip().splitlines()) == 1, f"{db}: {p.returncode} {p.stderr!r}")
        # a run logged beside the eval: the run's latency figure has the run alone (never an eval's
        # per-record latency beside a run's inter-token latency)
        run("run", "--db", ev, *TINY, "--prompt", "4", "--generate", "6", "--streams", "2")
        p = subprocess.run([plot, ev, "--out", os.path.join(tmp, "mixed"), "--describe"], capture_output=True, text=True)
        expect(p.returncode == 0, f"mixed: {p.stderr}")
        m = json.loads(p.stdout)["latency-cdf.png"]
        expect(m["legend"] == ["run 2 (run): 2 sequences, 10 tokens"] and
               m["titles"] == ["Time to first token, per sequence", "Inter-token latency (each token after a sequence's first)"],
               f"mixed database: {m}")
        # the tornado chart of a scripts/bench-sensitivity file (its layout, two parameters)
        sens = os.path.join(tmp, "sens.json")
        rows = [{"key": "energy.a_fj", "value": 1, "low": 0.5, "high": 2, "low_w": 90, "high_w": 120},
                {"key": "leakage.b_w_per_mm2", "value": 1, "low": 0.1, "high": 3, "low_w": 99, "high_w": 101}]
        with open(sens, "w") as f:
            json.dump({"chip": "x", "workloads": {"w": {"nominal_w": 100, "params": rows}}}, f)
        p = subprocess.run([plot, "--sensitivity", sens, "--out", os.path.join(tmp, "t")], capture_output=True, text=True)
        expect(p.returncode == 0 and os.listdir(os.path.join(tmp, "t")) == ["tornado.png"], f"tornado: {p.stderr}")
        with open(sens, "w") as f:
            f.write("{}")
        p = subprocess.run([plot, "--sensitivity", sens], capture_output=True, text=True)
        expect(p.returncode != 0 and "not a scripts/bench-sensitivity file" in p.stderr, f"bad sensitivity file: {p.stderr!r}")


SSM = ["--model", os.path.join(DATA, "tiny-mamba"), "--chip", os.path.join(DATA, "tiny-chip.json")]


def test_ssm():
    """A state-space model (a Mamba-shaped fixture: 512 channels x 16 states, conv 4): no KV,
    so a decode step costs the same at every position; one stream equals the analytical model;
    the state SRAM bounds the sequences in flight at (channels x states + 3 x channels) x 8 bits
    per layer each; a chip without a scan engine and a state size of 0 are errors."""
    with tempfile.TemporaryDirectory() as tmp:
        db = os.path.join(tmp, "s.sqlite")
        j = run_json("--db", db, *SSM, "--prompt", "8", "--generate", "40")
        con = sqlite3.connect(db)
        kv, st = con.execute("SELECT SUM(kv_read_bits + kv_write_bits), SUM(state_read_bits) FROM unit_stats").fetchone()
        con.close()
        # 48 tokens (8 prompt, 39 fed back, the last sampled only) x 4 layers x 77,824 state bits read
        expect(kv == 0 and st == (8 + 39) * 4 * 77824, f"SSM: KV traffic {kv}, state bits read {st}")
    same_cycles(j, "SSM one stream")
    s = j["stream0_cycles"]
    expect(s["decode_first"] == s["decode_last"], f"decode step grows with position: {s}")
    # 4 MiB per tile = 33,554,432 bits / ((512 x 16 + 3 x 512) x 8 = 77,824) = 431 sequences
    expect(j["kv_slots"] == 431, f"state slots {j['kv_slots']}")
    # 100,000 bytes = 800,000 bits / 77,824 = 10 sequences at once
    k = run_json("--no-db", *SSM, "--prompt", "8", "--generate", "40", "--streams", "14",
                 "--set", "kv.bytes_per_tile=100000")
    expect(k["kv_slots"] == 10 and k["max_in_flight"] == 10 and k["tokens"] == 14 * 40, f"{k['max_in_flight']} in flight")
    with tempfile.TemporaryDirectory() as tmp:
        with open(os.path.join(DATA, "tiny-chip.json")) as fh:
            c = json.load(fh)
        del c["tile"]["scan"]
        chip = os.path.join(tmp, "noscan.json")
        with open(chip, "w") as fh:
            json.dump(c, fh)
        expect_error(["run", "--no-db", "--model", os.path.join(DATA, "tiny-mamba"), "--chip", chip],
                     "tile.scan.elems_per_cycle", "scan engine")
        with open(os.path.join(DATA, "tiny-mamba", "config.json")) as fh:
            m = json.load(fh)
        m["state_size"] = 0
        os.makedirs(os.path.join(tmp, "m"))
        with open(os.path.join(tmp, "m", "config.json"), "w") as fh:
            json.dump(m, fh)
        expect_error(["run", "--no-db", "--model", os.path.join(tmp, "m")], "state_size")


def test_chip_derive():
    """chip derive reproduces the shipped chips for OLMoE-1B-7B and Falcon-Mamba-7B, which reach
    hc1-class's area; every number in every shipped chip carries a source; a target area too small
    for the model's ROM is an error."""
    hc1 = json.loads(run("area", "--json").stdout)["area_mm2"]
    with tempfile.TemporaryDirectory() as tmp:
        for model in ("olmoe-1b-7b", "falcon-mamba-7b"):
            out = os.path.join(tmp, model + ".json")
            run("chip", "derive", "--model", model, "-o", out)
            with open(out) as f1, open(os.path.join(MODELS, "chips", model + "-class.json")) as f2:
                expect(json.load(f1) == json.load(f2), f"{model}: derived chip differs from the shipped one")
            a = json.loads(run("area", "--json", "--chip", out, "--model", model).stdout)["area_mm2"]
            expect(hc1 * 0.995 < a <= hc1 * 1.0001, f"{model}: {a} mm2 against {hc1}")
        # a template naming its lane synthesis by path: the derived chip names it from its own folder
        with open(os.path.join(MODELS, "chips", "hc1-class.json")) as f:
            tmpl = json.load(f)
        tmpl["area"]["lane_rtl"]["value"] = os.path.join(ROOT, "rtl-ref", "lane-synth.json")
        os.makedirs(os.path.join(tmp, "a", "b"))
        with open(os.path.join(tmp, "a", "t.json"), "w") as f:
            json.dump(tmpl, f)
        out = os.path.join(tmp, "a", "b", "d.json")
        run("chip", "derive", "--model", "olmoe-1b-7b", "--like", os.path.join(tmp, "a", "t.json"), "-o", out)
        with open(out) as f:
            rel = json.load(f)["area"]["lane_rtl"]["value"]
        expect(not rel.startswith("/") and os.path.realpath(os.path.join(tmp, "a", "b", rel))
               == os.path.realpath(os.path.join(ROOT, "rtl-ref", "lane-synth.json")), f"derived lane_rtl {rel}")
        run("area", "--chip", out, "--model", "olmoe-1b-7b")
        expect_error(["chip", "derive", "--model", "olmoe-1b-7b", "--area", "300", "-o", os.path.join(tmp, "x.json")],
                     "exceeds --area")
        expect(not os.path.exists(os.path.join(tmp, "x.json")), "a failed derive wrote its file")

    def unsourced(node, path=""):
        if isinstance(node, dict):
            if "value" in node:
                return [] if "source" in node or not isinstance(node["value"], (int, float)) else [path]
            return sum((unsourced(v, f"{path}.{k}" if path else k) for k, v in node.items()), [])
        return [path] if isinstance(node, (int, float)) and not isinstance(node, bool) else []
    for name in os.listdir(os.path.join(MODELS, "chips")):
        if name.endswith(".json"):
            with open(os.path.join(MODELS, "chips", name)) as f:
                missing = unsourced(json.load(f))
            expect(not missing, f"{name}: numbers without a source: {missing[:5]}")
    # every energy and leakage of a process table: a source, and the ends of its cited range around it
    for name in os.listdir(os.path.join(MODELS, "process")):
        with open(os.path.join(MODELS, "process", name)) as f:
            proc = json.load(f)
        expect(not unsourced(proc), f"{name}: numbers without a source: {unsourced(proc)[:5]}")
        for group in ("energy", "leakage"):
            for k, v in proc[group].items():
                lo, hi = v.get("range", (None, None))
                expect(lo is not None and 0 <= lo <= v["value"] <= hi, f"{name}: {group}.{k}: range {v.get('range')} around {v['value']}")


def test_compare():
    """etchsim compare: one table for the dense, MoE and SSM models on chips of equal area; its
    figures equal single runs of the same configurations."""
    rows = json.loads(run("compare", "--json").stdout)
    expect([r["model"] for r in rows] == ["llama-3.1-8b", "olmoe-1b-7b", "falcon-mamba-7b"], f"rows {rows}")
    for r in rows:
        one = run_json("--no-db", "--model", r["model"], "--chip", r["chip"])
        ev = run_json("--no-db", "--model", r["model"], "--chip", r["chip"], "--prompt", "150", "--generate", "4")
        for k, src in (("decode_tokens_per_s", one["decode_tokens_per_s"]),
                       ("saturated_tokens_per_s", one["analytic_saturated_tokens_per_s"]),
                       ("joules_per_token", one["joules_per_token"]), ("die_utilization", one["utilization"]["die"]),
                       ("sequences_1k", one["kv_slots"]), ("sequences_eval", ev["kv_slots"]),
                       ("area_mm2", one["area_mm2"])):
            expect(r[k] == src, f"{r['model']}: {k} {r[k]} != single run {src}")
    expect(rows[1]["active_param_share"] < 0.25 and rows[0]["active_param_share"] == 1.0, "active share")
    expect(rows[2]["sequences_1k"] == rows[2]["sequences_eval"], "an SSM's capacity depends on length")
    p = run("compare")
    expect("olmoe-1b-7b" in p.stdout and "seqs" in p.stdout, "text table")


def test_weights_registry():
    """One format registry: a chip whose weights.* name the formats a ROM image was built with
    gives the same cycles and energy with and without the image; a format outside the registry
    is an error naming the key."""
    with tempfile.TemporaryDirectory() as tmp:
        recipe = os.path.join(tmp, "chip-formats.json")
        with open(recipe, "w") as f:
            json.dump({"name": "chip-formats", "rules": [
                {"match": {"role": ["attn_norm", "ffn_norm", "out_norm"]}, "format": "bf16"},
                {"match": {"role": ["attn_v", "lm_head"]}, "format": "int6", "group": 64},
                {"match": {}, "format": "int3", "group": 64}]}, f)
        rom = os.path.join(tmp, "t.rom")
        run("rom", "build", "--model", "tiny-llama", "--chip", os.path.join(DATA, "tiny-chip.json"), "--recipe",
            recipe, "--synthetic", "1", "-o", rom)
        base = ["--no-db", *TINY, "--prompt", "8", "--generate", "20"]
        a, b = run_json(*base), run_json(*base, "--rom", rom)
        for k in ("cycles", "dynamic_j"):
            expect(a[k] == b[k], f"{k}: chip formats {a[k]} != ROM image {b[k]}")
        expect_error(["run", "--no-db", *TINY, "--set", "weights.default.format=int5"], "weights.default.format", "int5")


def test_ssm_functional():
    """Functional mode runs a state-space model: with f32 weights and an FP32 datapath its logits
    equal the FP32 reference's (etchsim infer, a float scan written apart) within 1e-4 and its
    tokens are the same; the chip's own datapath changes no cycle."""
    vocab = stories()  # a SentencePiece vocabulary of 512 tokens, inside the fixture's 1024
    with tempfile.TemporaryDirectory() as tmp:
        ra, rb = os.path.join(tmp, "a.json"), os.path.join(tmp, "b.json")
        common = ["--model", os.path.join(DATA, "tiny-mamba"), "--synthetic", "3", "--text", "Once upon a time",
                  "--vocab", vocab, "--generate", "12", "--logits"]
        a = json.loads(run("infer", *common, ra, "--json").stdout)
        b = json.loads(run("run", "--json", "--no-db", "--chip", os.path.join(DATA, "tiny-chip.json"), "--mode",
                           "functional", "--recipe", "f32", *FP32_DATAPATH, "--set", "tile.rom.rows=256", *F32_HEAD_ROMS, *common,
                           rb).stdout)["functional"]
        expect(a["output_ids"] == b["output_ids"], f"tokens: reference {a['output_ids']} datapath {b['output_ids']}")
        la, lb = json.load(open(ra)), json.load(open(rb))
        expect(len(la) == len(lb) == 16, f"{len(la)} / {len(lb)} logit rows")
        d = max(max(abs(x - y) for x, y in zip(p["logits"], q["logits"])) for p, q in zip(la, lb))
        expect(d <= 1e-4, f"SSM datapath differs from the reference by {d}")
    base = ["--json", "--no-db", *SSM, "--prompt", "20", "--generate", "12", "--streams", "5"]
    t = run_json(*base, "--recipe", "hc1-mix")  # the formats the functional run quantizes to
    f = run_json(*base, "--mode", "functional", "--synthetic", "3")
    expect(t["cycles"] == f["cycles"] and t["energy_j"] == f["energy_j"], "functional SSM changed the timing")
    expect(f["functional"]["streams_agree"], "SSM streams disagree")


def test_kv_slots_wait():
    first = run_json("--no-db", "--prompt", "64", "--generate", "64")
    slots = int(first["kv_slots"])
    with tempfile.TemporaryDirectory() as tmp:
        db = os.path.join(tmp, "w.sqlite")
        j = run_json("--db", db, "--prompt", "64", "--generate", "64", "--streams", str(slots + 2))
        expect(j["max_in_flight"] == slots, f"in flight {j['max_in_flight']} vs {slots} slots")
        con = sqlite3.connect(db)
        seqs = con.execute("SELECT seq, admit_ns, first_token_ns, done_ns, ttft_ns FROM sequences ORDER BY seq").fetchall()
        early, late = seqs[:slots], seqs[slots:]
        first_done = min(s[3] for s in early)
        expect(all(s[1] < first_done - 1000 for s in early), f"first {slots} not admitted at once: {early}")
        for s in late:
            # it waited for a slot: admitted only when an earlier sequence finished
            # (slot freed at its last sample, before its completion crossed PCIe)
            expect(s[1] >= first_done - 1000, f"seq {s[0]} admitted at {s[1]} before a slot was free ({first_done})")
            expect(s[4] > s[1] and s[4] > max(e[4] for e in early), f"seq {s[0]} TTFT {s[4]} lacks the wait")
        expect(j["tokens"] == (slots + 2) * 64, "tokens lost")


# Energy sums are checked to float rounding, not to a loose threshold. Each side is a sum of
# rounded terms in its own order: a unit's energy_j adds one charge per item, energy_j adds the
# units' and the static energy, the by-event figures multiply exactly summed counts once. Adding
# n similar terms in sequence drifts by up to about n x 2^-53 of the sum in the worst case and far
# less in practice: measured here, at most 3.7e-14 (the tiny chip's embedding unit under the
# power limit, about 1,700 equal charges) and 2.7e-14 for hc1-class's 300-record demo eval (its
# head); the demo at 2,000 records reached 1.7e-13. The runs are deterministic (test
# determinism), so 1e-12 is a fixed margin of over 25x on what they give, and any real term is far
# above it: the smallest in these runs (the embedding ROM's reads) is 2e-7 of the total.
ENERGY_REL = 1e-12

# what each unit_stats event column costs, by process table key (fJ; the host link's pJ)
EVENT_FJ = {"rom_bits": ("rom_read_fj_per_bit",), "cell_macs": ("lane_cell_mac_fj",),
            "attn_macs": ("attention_mac_fj",), "kv_read_bits": ("sram_read_fj_per_bit",),
            "kv_write_bits": ("sram_write_fj_per_bit",), "state_read_bits": ("sram_read_fj_per_bit",),
            "state_write_bits": ("sram_write_fj_per_bit",), "vector_ops": ("vector_op_fj",),
            "link_bit_mm": ("wire_fj_per_bit_mm",), "host_bits": ("host_pj_per_bit",),
            "register_bit_cycles": ("register_fj_per_bit_cycle", "clock_network_fj_per_bit_cycle")}
DYNAMIC_KINDS = ("rom_reads", "lane_adds", "registers", "clock_network", "vector", "attention_macs", "sram",
                 "links", "host")
STATIC_KINDS = ("leakage", "clock_ungated", "board")


def same_j(a, b, what):
    """a == b to float rounding (ENERGY_REL)."""
    expect(abs(a - b) <= ENERGY_REL * max(abs(a), abs(b)),
           f"{what}: {a!r} J vs {b!r} J (relative {abs(a - b) / max(abs(a), abs(b), 1e-300):.3g})")


def energy_sums(label, j, db):
    """A run's or an eval's energies against each other: the kinds of energy_by_event_j add up to
    energy_j (and, for run, its dynamic kinds to dynamic_j, energy_by_unit_j to energy_j and, with
    no power limit, its static kinds to static_w x the run's time); from its database (db), each
    unit's energy_j is its event counts x the process table's energies / the card's VR efficiency,
    the units add up to the dynamic kinds, and tokens (run: sequences; eval: records) plus
    unattributed_j add up to energy_j, each sequence's or record's tokens to its own."""
    con = sqlite3.connect(db)
    (command, summary, chip, proc), = con.execute("SELECT command, summary, chip_config, process_config FROM runs")
    cur = con.execute("SELECT * FROM unit_stats")
    cols = [d[0] for d in cur.description]
    units = [dict(zip(cols, r)) for r in cur.fetchall()]
    toks = {}
    for seq, e in con.execute("SELECT seq, energy_j FROM tokens"):
        toks.setdefault(seq, []).append(e)
    parts = con.execute("SELECT seq, energy_j FROM sequences" if command == "run" else
                        "SELECT record, energy_j FROM records WHERE status = 'done'").fetchall()
    con.close()
    ev, total = j["energy_by_event_j"], j["energy_j"]
    expect(set(ev) == set(DYNAMIC_KINDS + STATIC_KINDS), f"{label}: energy_by_event_j kinds {sorted(ev)}")
    expect(total > 0 and all(v >= 0 for v in ev.values()), f"{label}: energies {total} {ev}")
    expect(json.loads(summary)["energy_j"] == total, f"{label}: runs.summary's energy_j is not the JSON's")
    same_j(math.fsum(ev.values()), total, f"{label}: the kinds of energy_by_event_j vs energy_j")
    dynamic = math.fsum(ev[k] for k in DYNAMIC_KINDS)
    if command == "run":
        same_j(dynamic, j["dynamic_j"], f"{label}: energy_by_event_j's dynamic kinds vs dynamic_j")
        same_j(math.fsum(ev[k] for k in STATIC_KINDS), total - j["dynamic_j"], f"{label}: static kinds vs energy_j - dynamic_j")
        by_unit = j["energy_by_unit_j"]
        same_j(math.fsum(v for k, v in by_unit.items() if k != "static"), j["dynamic_j"], f"{label}: energy_by_unit_j vs dynamic_j")
        same_j(math.fsum(by_unit.values()), total, f"{label}: energy_by_unit_j vs energy_j")
        if j["power_limit"] is None:
            same_j(math.fsum(ev[k] for k in STATIC_KINDS), j["static_w"] * j["cycles"] / j["clock_hz"],
                   f"{label}: static kinds vs static_w x time")
    chip, proc = json.loads(chip), json.loads(proc)
    val = lambda x: x["value"] if isinstance(x, dict) else x
    fj = {col: math.fsum(val(proc["energy"][k]) for k in keys) * (1e3 if col == "host_bits" else 1)
          for col, keys in EVENT_FJ.items()}
    vr = val(chip["card"]["vr_efficiency"])
    expect(len(units) > 4, f"{label}: {len(units)} unit_stats rows")
    for u in units:  # per unit: its own events at the process table's prices
        want = math.fsum(u[c] * fj[c] for c in EVENT_FJ) * 1e-15 / vr
        if want == 0:
            expect(u["energy_j"] == 0, f"{label}: {u['unit']} has energy {u['energy_j']} J and no events")
        else:
            same_j(u["energy_j"], want, f"{label}: {u['unit']}'s energy_j vs its events")
    same_j(math.fsum(u["energy_j"] for u in units), dynamic, f"{label}: unit_stats vs energy_by_event_j's dynamic kinds")
    expect(len(parts) > 0 and set(toks) == {s for s, _ in parts}, f"{label}: tokens rows for {sorted(toks)[:5]}...")
    for s, e in parts:
        same_j(math.fsum(toks[s]), e, f"{label}: {command} {s}'s tokens vs its energy_j")
    what = "sequences" if command == "run" else "records"
    same_j(math.fsum(e for _, e in parts) + j["unattributed_j"], total, f"{label}: Σ {what} + unattributed_j vs energy_j")
    same_j(math.fsum(e for es in toks.values() for e in es) + j["unattributed_j"], total,
           f"{label}: Σ tokens + unattributed_j vs energy_j")


def test_energy_balance():
    """energy_sums over dense, MoE and SSM models on the test chip and the shipped chips, with
    and without a (throttling) power limit, clock gating off, the cycle fidelity, two tokens per
    ROM read, and eval (the tiny chip, and hc1-class's demo with and without throttling)."""
    runs = [("tiny", [*TINY, "--prompt", "30", "--generate", "40", "--streams", "3"]),
            ("tiny, 14 W limit", [*TINY, "--prompt", "8", "--generate", "100", "--streams", "16", "--set", "card.power_limit_w=14"]),
            ("tiny, clock_gating none", [*TINY, "--prompt", "30", "--generate", "20", "--streams", "2", "--set", "clock_gating=none"]),
            ("tiny, clock_gating none, 14 W limit", [*TINY, "--prompt", "8", "--generate", "60", "--streams", "16",
                                                     "--set", "clock_gating=none", "--set", "card.power_limit_w=14"]),
            ("tiny, cycle fidelity", [*TINY, "--prompt", "24", "--generate", "12", "--streams", "4", "--fidelity", "cycle"]),
            ("tiny, 2 tokens per read", [*TINY, "--prompt", "24", "--generate", "12", "--streams", "8",
                                         "--set", "tile.lanes.tokens_per_read=2"]),
            ("tiny MoE", [*MOE, "--prompt", "8", "--generate", "40", "--streams", "4"]),
            ("tiny SSM", [*SSM, "--prompt", "8", "--generate", "40", "--streams", "4"]),
            ("hc1-class", ["--prompt", "64", "--generate", "16", "--streams", "2"]),
            ("olmoe-1b-7b-class", ["--chip", "olmoe-1b-7b-class", "--model", "olmoe-1b-7b", "--prompt", "64", "--generate", "16", "--streams", "2"]),
            ("falcon-mamba-7b-class", ["--chip", "falcon-mamba-7b-class", "--model", "falcon-mamba-7b", "--prompt", "64", "--generate", "16", "--streams", "2"])]
    with tempfile.TemporaryDirectory() as tmp:
        for k, (label, args) in enumerate(runs):
            db = os.path.join(tmp, f"r{k}.sqlite")
            j = run_json("--db", db, *args)
            expect((j["power_limit"] is not None and j["power_limit"]["throttled_s"] > 0) == ("limit" in label),
                   f"{label}: power limit {j['power_limit'] and j['power_limit']['throttled_s']}")
            expect(0 < j["unattributed_j"] < j["energy_j"], f"{label}: unattributed energy out of range")
            energy_sums(label, j, db)
        data = os.path.join(tmp, "d.csv")
        write_csv(data, [f"R{i},record {i} {'z' * (i % 13)}" for i in range(40)] + ["bad,row,with,too,many"])
        tiny_eval = [*TINY, "--data", data, "--rule", "Is it fine?", "--max-new-tokens", "3", "--no-compare"]
        evals = [("eval tiny", tiny_eval), ("eval tiny, 13 W limit", [*tiny_eval, "--set", "card.power_limit_w=13"]),
                 ("eval hc1-class demo", ["--no-compare", "--records", "300"]),
                 ("eval hc1-class demo, 150 W limit", ["--no-compare", "--records", "300", "--set", "card.power_limit_w=150"])]
        for k, (label, args) in enumerate(evals):
            db = os.path.join(tmp, f"e{k}.sqlite")
            j = eval_json("--db", db, *args)[0]
            expect((j["power_limit"] is not None and j["power_limit"]["throttled_s"] > 0) == ("limit" in label),
                   f"{label}: power limit {j['power_limit'] and j['power_limit']['throttled_s']}")
            energy_sums(label, j, db)


# ---- overrides -------------------------------------------------------------

def test_set_override():
    a = run_json("--no-db", "--prompt", "16", "--generate", "8")
    b = run_json("--no-db", "--prompt", "16", "--generate", "8", "--set", "tile.lanes.count=88064",
                 "--set", "tile.rom.banks=288", "--set", "tile.rom.rows=2560")
    expect(b["decode_tokens_per_s"] < 0.7 * a["decode_tokens_per_s"], "halving lanes did not slow decode")
    same_cycles(b, "override")
    c = run_json("--no-db", "--prompt", "16", "--generate", "8", "--set", "process.leakage.sram_w_per_mm2=0")
    expect(c["static_w"] < a["static_w"], "process override had no effect")
    expect_error(["run", "--no-db", "--set", "tile.lanes.nope=3"], "hc1-class.json", "tile.lanes.nope", "no such key")


# ---- ROM images ----------------------------------------------------------

BLOCK = {"int3": lambda g: (g, 2 + g * 3 // 8), "int6": lambda g: (g, 2 + g * 6 // 8),
         "bf16": lambda g: (1, 2), "f16": lambda g: (1, 2), "f32": lambda g: (1, 4),
         "q8_0": lambda g: (32, 34), "q4_0": lambda g: (32, 18), "mxfp4": lambda g: (32, 17),
         "nvfp4": lambda g: (16, 9), "q3_k": lambda g: (256, 110), "q6_k": lambda g: (256, 210)}


def recipe_bits(model, recipe):
    """Total bits of a model under a recipe, from config.json and the recipe alone."""
    with open(os.path.join(MODELS, "llm", model, "config.json")) as f:
        cfg = json.load(f)
    with open(os.path.join(MODELS, "recipes", recipe + ".json")) as f:
        rules = json.load(f)["rules"]
    H, F, V, L = cfg["hidden_size"], cfg["intermediate_size"], cfg["vocab_size"], cfg["num_hidden_layers"]
    hd = cfg.get("head_dim", H // cfg["num_attention_heads"])
    Q, KV = cfg["num_attention_heads"] * hd, cfg["num_key_value_heads"] * hd
    tied = cfg.get("tie_word_embeddings", False)
    tensors = [("lm_head" if tied else "embed", -1, V, H)]
    for l in range(L):
        tensors += [("attn_norm", l, 1, H), ("attn_q", l, Q, H), ("attn_k", l, KV, H), ("attn_v", l, KV, H),
                    ("attn_o", l, H, Q), ("ffn_norm", l, 1, H), ("ffn_gate", l, F, H), ("ffn_up", l, F, H),
                    ("ffn_down", l, H, F)]
    tensors.append(("out_norm", -1, 1, H))
    if not tied:
        tensors.append(("lm_head", -1, V, H))
    total = 0
    for role, layer, rows, cols in tensors:
        for r in rules:
            m = r["match"]
            roles = m.get("role")
            if roles is not None and role not in (roles if isinstance(roles, list) else [roles]):
                continue
            if "layers" in m and not (m["layers"][0] <= layer <= m["layers"][1]):
                continue
            elems, nbytes = BLOCK[r["format"]](r.get("group"))
            total += rows * (cols // elems) * nbytes * 8
            break
    return total


def build_tiny(tmp, recipe="hc1-mix", *extra):
    out = os.path.join(tmp, recipe + ".rom")
    run("rom", "build", *TINY, "--recipe", recipe, "--synthetic", "42", "-o", out, *extra)
    return out


def test_rom_inspect_totals():
    with tempfile.TemporaryDirectory() as tmp:
        for recipe in ["hc1-mix", "fp4"]:
            out = build_tiny(tmp, recipe)
            j = json.loads(run("rom", "inspect", out, "--json").stdout)
            want = recipe_bits("tiny-llama", recipe)
            expect(j["bits"] == want, f"{recipe}: inspect says {j['bits']} bits, recipe arithmetic {want}")
            expect(sum(u["bits"] for u in j["units"]) == want, f"{recipe}: unit bits do not add up")
            expect(j["rom_bits_used"] >= want, "rows in use hold fewer bits than the tensors")
            expect(all(0 < u["bank_fill_min"] <= u["bank_fill_max"] <= 1 for u in j["units"]), "bank fill")
            p = run("rom", "verify", out)
            expect("ok" in p.stdout, "verify of a fresh image failed")
        # the ROM too small for a recipe is an error naming the chip key
        expect_error(["rom", "build", *TINY, "--recipe", "fp4", "--synthetic", "1", "--set",
                      "head.lm_rom.rows=32", "-o", os.path.join(tmp, "x.rom")], "tiny-chip.json",
                     "'head.lm_rom.rows'", "fp4")
        expect(not os.path.exists(os.path.join(tmp, "x.rom")), "a failed build left a file")


def test_rom_run_moves_area_energy():
    with tempfile.TemporaryDirectory() as tmp:
        base = ["--no-db", *TINY, "--prompt", "16", "--generate", "16"]
        plain = run_json(*base)
        mix = build_tiny(tmp, "hc1-mix")
        fp4 = build_tiny(tmp, "fp4")
        a = run_json(*base, "--rom", mix)
        b = run_json(*base, "--rom", fp4)
        used = lambda f: json.loads(run("rom", "inspect", f, "--json").stdout)["rom_bits_used"]
        # area: the image's rows in use replace the geometry's capacity
        rom_mm2 = lambda j: j["area"]["rom"]["mm2"]
        expect(abs(rom_mm2(a) / rom_mm2(b) - used(mix) / used(fp4)) < 1e-9, "ROM area not proportional to image bits")
        expect(rom_mm2(a) < rom_mm2(plain), "hc1-mix image did not shrink the ROM below its capacity")
        expect(b["area_mm2"] > a["area_mm2"], "fp4 image (more bits) is not larger")
        # energy: more ROM bits read per token with fp4 (4.25 vs 3.25 bits/weight)
        expect(b["energy_by_unit_j"]["tiles"] > a["energy_by_unit_j"]["tiles"], "fp4 reads no more ROM energy")
        same_cycles(a, "with hc1-mix image")
        same_cycles(b, "with fp4 image")
        # an image made for another model is refused
        expect_error(["run", "--no-db", "--rom", mix], mix, "another model")


def test_recipe_timing():
    """run --recipe R times the model in R's formats as a ROM image built with R holds them: the same
    cycles, energy (by event and by unit) and area as run --rom with that image, for three recipes
    (f32 on a taller ROM); the recipes differ from each other; the output names the formats timed; a
    functional run quantizing --synthetic weights by R times the same as timing mode with R; a recipe
    the ROM cannot hold is refused naming it; --recipe with --rom is a usage error."""
    with tempfile.TemporaryDirectory() as tmp:
        base = ["--no-db", *TINY, "--prompt", "16", "--generate", "8"]
        plain = run_json(*base)
        expect(plain["weight_formats"]["from"] == "chip", f"no recipe: {plain['weight_formats']}")
        got = {}
        for recipe, extra in (("hc1-mix", []), ("fp4", []), ("f32", ["--set", "tile.rom.rows=400", "--set",
                                                                   "head.embed_rom.rows=1024", "--set", "head.lm_rom.rows=129"])):
            img = build_tiny(tmp, recipe, *extra)
            a = run_json(*base, "--recipe", recipe, *extra)
            b = run_json(*base, "--rom", img, *extra)
            expect(a["weight_formats"]["from"] == "recipe" and f"recipe {recipe} (" in a["weight_formats"]["name"],
                   f"{recipe}: {a['weight_formats']}")
            expect(b["weight_formats"] == {"from": "rom", "name": "ROM image " + img}, f"{b['weight_formats']}")
            for k in ("cycles", "energy_j", "energy_by_event_j", "energy_by_unit_j", "area_mm2", "area"):
                expect(a[k] == b[k], f"{recipe}: {k}: --recipe {a[k]} --rom {b[k]}")
            got[recipe] = a
            if recipe == "fp4":
                f = run_json(*base, "--recipe", recipe, "--mode", "functional", "--synthetic", "3")
                for k in ("cycles", "energy_j", "area_mm2"):
                    expect(f[k] == a[k], f"functional {k}: {f[k]}, timing {a[k]}")
        # FP4 elements take two 3-bit cells, f32 eleven: more lane cycles; more ROM bits read
        expect(got["fp4"]["cycles"] > got["hc1-mix"]["cycles"] and got["f32"]["cycles"] > got["fp4"]["cycles"],
               f"cycles {[got[r]['cycles'] for r in got]}")
        rom_j = lambda j: j["energy_by_event_j"]["rom_reads"]
        expect(rom_j(got["hc1-mix"]) < rom_j(got["fp4"]) < rom_j(got["f32"]), f"ROM energy {[rom_j(got[r]) for r in got]}")
        p = run("run", *base)
        expect("weight formats timed: chip weights.*" in p.stdout, p.stdout)
        expect_error(["run", *base, "--recipe", "f32"], "rom.rows", "cannot hold", "recipe f32")
        expect_error(["run", *base, "--recipe", "fp4", "--rom", os.path.join(tmp, "fp4.rom")], "--recipe", "--rom",
                     code=2)


def test_rom_build_output_not_a_file():
    """rom build writes beside its -o path and renames over it, so it refuses a path that exists and
    is not a regular file (a folder, a FIFO or a device) instead of replacing it, and leaves no
    .tmp behind; a regular file is replaced."""
    with tempfile.TemporaryDirectory() as tmp:
        build = ["rom", "build", "--model", "tiny-llama", "--chip", os.path.join(DATA, "tiny-chip.json"), "--synthetic", "1"]
        folder, fifo = os.path.join(tmp, "out"), os.path.join(tmp, "pipe")
        os.mkdir(folder)
        os.mkfifo(fifo)
        for path in (folder, fifo):
            expect_error([*build, "-o", path], path, "not a regular file")
            expect(not os.path.exists(path + ".tmp"), f"{path}.tmp left behind")
        expect(os.path.isdir(folder) and stat.S_ISFIFO(os.stat(fifo).st_mode), "a non-file output was replaced")
        rom = os.path.join(tmp, "t.rom")
        with open(rom, "w") as f:
            f.write("old")
        run(*build, "-o", rom)
        run("rom", "verify", rom)


def test_rom_corruption():
    with tempfile.TemporaryDirectory() as tmp:
        out = build_tiny(tmp)
        data = bytearray(open(out, "rb").read())
        import struct
        ioff, ilen = struct.unpack_from("<QQ", data, 40)
        nu, nt, nb = struct.unpack_from("<III", data, ioff)
        rec = ioff + 16 + nu * 32 + nt * 152 + 5 * 48  # bank record 5: tile 0 bank 5
        unit, bank, used, raw, comp, off = struct.unpack_from("<IIQQQQ", data, rec)
        expect((unit, bank) == (0, 5), f"bank record 5 is unit {unit} bank {bank}")
        bad = bytearray(data)
        bad[off + comp // 2] ^= 0x5A
        path = os.path.join(tmp, "flip.rom")
        open(path, "wb").write(bad)
        want = expect_error(["rom", "verify", path], "tile 0 bank 5", "CRC-32").split(" (1 of ")[0]
        # run --rom refuses it in timing mode as in functional mode, with rom verify's message
        funct = ["run", "--no-db", *TINY, "--rom", path, "--prompt", "4", "--generate", "2"]
        for cmd in (funct, funct + ["--mode", "functional"]):
            err = expect_error(cmd, path, "tile 0 bank 5", "CRC-32 mismatch")
            expect(err.split(": ", 1)[1] == want.split(": ", 1)[1], f"{cmd}: {err!r}, rom verify: {want!r}")
        # truncated: fails on open, for every command
        path = os.path.join(tmp, "trunc.rom")
        open(path, "wb").write(data[: len(data) // 2])
        for cmd in (["rom", "verify", path], ["rom", "inspect", path], ["run", "--no-db", *TINY, "--rom", path]):
            expect_error(cmd, path, "truncated")
        open(path, "wb").write(data[:40])
        expect_error(["rom", "inspect", path], "truncated")
        # header damage and foreign files
        hdr = bytearray(data)
        hdr[20] ^= 1
        open(path, "wb").write(hdr)
        expect_error(["rom", "inspect", path], "header CRC-32")
        open(path, "wb").write(b"GGUF" + bytes(100))
        expect_error(["rom", "verify", path], "not a ROM image")
        expect_error(["rom", "inspect", os.path.join(tmp, "missing.rom")], "cannot open")


def write_tiny_safetensors(path, bad_tensor=None):
    """tiny-llama as one F32 safetensors file; bad_tensor gets half its columns."""
    with open(os.path.join(MODELS, "llm", "tiny-llama", "config.json")) as f:
        cfg = json.load(f)
    H, F, V, L = cfg["hidden_size"], cfg["intermediate_size"], cfg["vocab_size"], cfg["num_hidden_layers"]
    hd = H // cfg["num_attention_heads"]
    Q, KV = cfg["num_attention_heads"] * hd, cfg["num_key_value_heads"] * hd
    shapes = [("model.embed_tokens.weight", [V, H])]
    for l in range(L):
        p = f"model.layers.{l}."
        shapes += [(p + "input_layernorm.weight", [H]), (p + "self_attn.q_proj.weight", [Q, H]),
                   (p + "self_attn.k_proj.weight", [KV, H]), (p + "self_attn.v_proj.weight", [KV, H]),
                   (p + "self_attn.o_proj.weight", [H, Q]), (p + "post_attention_layernorm.weight", [H]),
                   (p + "mlp.gate_proj.weight", [F, H]), (p + "mlp.up_proj.weight", [F, H]),
                   (p + "mlp.down_proj.weight", [H, F])]
    shapes += [("model.norm.weight", [H]), ("lm_head.weight", [V, H])]
    tensors = {}
    for name, shape in shapes:
        if name == bad_tensor:
            shape = shape[:-1] + [shape[-1] // 2]
        n = 1
        for d in shape:
            n *= d
        tensors[name] = (shape, (((i * 7919) % 2001 - 1000) * 2e-5 for i in range(n)))
    write_st(path, tensors)


def struct_pack_u64(v):
    import struct
    return struct.pack("<Q", v)


def test_rom_from_weights():
    with tempfile.TemporaryDirectory() as tmp:
        st = os.path.join(tmp, "model.safetensors")
        write_tiny_safetensors(st)
        out = os.path.join(tmp, "w.rom")
        p = run("rom", "build", *TINY, "--weights", tmp, "-o", out)
        expect("weights from" in p.stdout, p.stdout)
        expect("ok" in run("rom", "verify", out).stdout, "verify")
        j = json.loads(run("rom", "inspect", out, "--json").stdout)
        expect(j["bits"] == recipe_bits("tiny-llama", "hc1-mix"), "bits of a real-weights image")
        # a shape that disagrees with config.json: clear error naming both files
        write_tiny_safetensors(st, bad_tensor="model.layers.2.mlp.up_proj.weight")
        expect_error(["rom", "build", *TINY, "--weights", st, "-o", out + "2"], st,
                     "model.layers.2.mlp.up_proj.weight has shape [768, 128]", "config.json")
        expect_error(["rom", "build", *TINY, "--weights", st, "--synthetic", "1", "-o", out], "one of", code=2)
        expect_error(["rom", "build", *TINY, "--weights", os.path.join(tmp, "none.gguf"), "-o", out], "cannot open")


# ---- rule evaluation -------------------------------------------------------

def write_csv(path, rows, header=("id", "text")):
    with open(path, "w", newline="") as f:
        f.write(",".join(header) + "\n")
        for r in rows:
            f.write(r + "\n")


def put_file(folder, name, body):
    """Write body (str or bytes) to folder/name and return the path."""
    p = os.path.join(folder, name)
    with open(p, "wb" if isinstance(body, bytes) else "w") as f:
        f.write(body)
    return p


def eval_json(*args):
    p = run("eval", "--json", *args)
    return json.loads(p.stdout), p.stderr


def test_eval_json_keys():
    j, err = eval_json("--no-db", "--records", "300", "--no-compare")
    for k in ["records_done", "records_skipped", "batch_ns", "first_100_ns", "record_latency_ns", "tokens_per_s",
              "watts", "joules_per_record", "prefill_token_passes", "rule_tokens", "token_counts_estimated",
              "sim_wall_s"]:
        expect(k in j, f"missing {k}")
    expect(set(j["record_latency_ns"]) >= {"p50", "p95", "p99"}, "latency percentiles")
    rl = j["record_latency_ns"]
    expect(0 < rl["p50"] <= rl["p95"] <= rl["p99"], f"percentiles {rl}")
    expect(j["records_done"] == 300 and j["records_skipped"] == 0, "demo records")
    expect(0 < j["first_100_ns"] < j["batch_ns"], "first 100 before the end")
    # with a vocabulary (scripts/fetch-vocab) counts are exact; without, flagged as estimates
    expect(j["token_counts_estimated"] == (j["vocab"] == ""), f"estimate flag {j['token_counts_estimated']} vs vocab {j['vocab']!r}")
    expect(("estimated" in err) == j["token_counts_estimated"], f"warning and flag disagree: {err!r}")
    expect("Flag if merchant category" in j["rule"], "demo rule")


def test_eval_prefix_sharing():
    with tempfile.TemporaryDirectory() as tmp:
        data = os.path.join(tmp, "d.csv")
        write_csv(data, [f"R{i},record number {i} with some text {'x' * (i % 17)}" for i in range(60)])
        base = ["--no-db", *TINY, "--data", data, "--rule", "Say FLAG if the text is longer than ten words, else OK."]
        on, _ = eval_json(*base, "--no-compare")
        off, _ = eval_json(*base, "--no-prefix-sharing")
        n, rt = on["records_done"], on["rule_tokens"]
        expect(n == 60 and rt > 1, f"records {n}, rule tokens {rt}")
        expect(off["prefill_token_passes"] - on["prefill_token_passes"] == (n - 1) * rt,
               f"passes {off['prefill_token_passes']} - {on['prefill_token_passes']} != {(n - 1) * rt}")
        expect(on["batch_ns"] < off["batch_ns"], f"sharing not faster: {on['batch_ns']} vs {off['batch_ns']}")
        expect(on["prefix_sharing"]["kv_slots_saved"] > 0, "no KV slots saved")
        # the built-in comparison run reports the same savings
        cmp, _ = eval_json(*base)
        ps = cmp["prefix_sharing"]
        expect(ps["prefill_token_passes_saved"] == (n - 1) * rt, f"reported passes saved {ps}")
        expect(ps["batch_ns_without"] == off["batch_ns"] and ps["time_saved_ns"] > 0, f"reported time saved {ps}")


def test_eval_token_rows():
    """eval logs one tokens row per output token, keyed by its record (tokens.seq = records.record):
    indices 0..n-1, the first timed from the record's submission and arriving at its first_token_ns,
    the last at its done_ns, energies summing to the record's; skipped records have none."""
    with tempfile.TemporaryDirectory() as tmp:
        data, db = os.path.join(tmp, "d.csv"), os.path.join(tmp, "e.sqlite")
        write_csv(data, [f"R{i},record {i} {'z' * (i % 13)}" for i in range(40)] + ["bad,row,with,too,many"])
        eval_json("--db", db, *TINY, "--data", data, "--rule", "Is it fine?", "--max-new-tokens", "3", "--no-compare")
        check_token_rows(db, 41, 40)


def check_token_rows(db, n_recs, skipped):
    """eval's tokens rows against its records: indices, arrivals, latencies and energies."""
    if True:
        con = sqlite3.connect(db)
        recs = {r[0]: r[1:] for r in con.execute(
            "SELECT record, status, output_tokens, submit_ns, first_token_ns, done_ns, energy_j FROM records")}
        toks = {}
        for seq, idx, t, lat, j in con.execute("SELECT seq, idx, t_ns, latency_ns, energy_j FROM tokens ORDER BY seq, idx"):
            toks.setdefault(seq, []).append((idx, t, lat, j))
        con.close()
        expect(len(recs) == n_recs and recs[skipped][0] == "skipped" and skipped not in toks, "the skipped record has token rows")
        for rec, (status, n, submit, first, done, energy) in recs.items():
            if status != "done":
                continue
            ts = toks[rec]
            expect([t[0] for t in ts] == list(range(n)) and n == 3, f"record {rec}: indices {[t[0] for t in ts]}")
            expect(abs(ts[0][1] - first) < 1e-6 and abs(ts[-1][1] - done) < 1e-6, f"record {rec}: arrivals {ts[0][1]}..{ts[-1][1]} vs {first}..{done}")
            expect(abs(ts[0][2] - (first - submit)) < 1e-6, f"record {rec}: first latency {ts[0][2]} vs {first - submit}")
            expect(all(abs(ts[k][2] - (ts[k][1] - ts[k - 1][1])) < 1e-6 for k in range(1, n)), f"record {rec}: latencies")
            expect(abs(sum(t[3] for t in ts) - energy) <= 1e-12 * max(1.0, energy), f"record {rec}: energy {ts} vs {energy}")


def test_power_limit():
    """card.power_limit_w below the full-load power: the clock steps down by card.clock_step_hz in
    the windows that would exceed it, so every window's average power is at or below the limit,
    the same cycles take longer, and tokens, records and energies stay consistent. A limit at or
    below the static power is refused."""
    base = ["--no-db", *TINY, "--prompt", "8", "--generate", "100", "--streams", "16"]
    free = run_json(*base)
    expect(free["power_limit"] is None, "tiny-chip has no limit")
    with tempfile.TemporaryDirectory() as tmp:
        db = os.path.join(tmp, "p.sqlite")
        capped = run_json(*base[1:], "--db", db, "--set", "card.power_limit_w=14")
        p = capped["power_limit"]
        expect(free["watts"] > 14.5, f"the unlimited run draws {free['watts']} W")
        expect(capped["cycles"] == free["cycles"], "a power limit changed the cycles")
        expect(max(p["window_w"]) <= 14 * (1 + 1e-9), f"a window above the limit: {max(p['window_w'])} W")
        expect(capped["watts"] <= 14 * (1 + 1e-9) and p["throttled_s"] > 0, f"{capped['watts']} W, throttled {p['throttled_s']} s")
        expect(capped["tokens_per_s"] < 0.99 * free["tokens_per_s"], "throttled but no slower")
        steps = (1e9 - p["min_clock_hz"]) / 15e6
        expect(p["effective_clock_hz"] < 1e9 and abs(steps - round(steps)) < 1e-6, f"clock {p['min_clock_hz']} not a 15 MHz step down")
        con = sqlite3.connect(db)
        tok_j, last = con.execute("SELECT SUM(energy_j), MAX(t_ns) FROM tokens").fetchone()
        con.close()
        expect(abs(tok_j + capped["unattributed_j"] - capped["energy_j"]) <= 1e-9 * capped["energy_j"],
               f"tokens {tok_j} J + unattributed {capped['unattributed_j']} J != {capped['energy_j']} J")
        expect(abs(last - capped["cycles"] / p["effective_clock_hz"] * 1e9) < 1e-3, "the last token is not at the run's end")
        # a run that ends exactly on a window's edge (203,933 cycles = 47 windows of 4,339) keeps every sequence
        db2 = os.path.join(tmp, "edge.sqlite")
        edge = run_json(*base[1:], "--db", db2, "--set", "card.power_limit_w=14", "--set", "card.power_window_us=4.339")
        con = sqlite3.connect(db2)
        n, seq_j = con.execute("SELECT COUNT(*), SUM(energy_j) FROM sequences").fetchone()
        con.close()
        expect(edge["cycles"] == 47 * 4339 and n == 16, f"{edge['cycles']} cycles, {n} of 16 sequences logged")
        expect(abs(seq_j + edge["unattributed_j"] - edge["energy_j"]) <= 1e-9 * edge["energy_j"], "sequence energies")
        # eval: its records and tokens rows under a limit, and the demo on hc1-class
        data, edb = os.path.join(tmp, "d.csv"), os.path.join(tmp, "e.sqlite")
        write_csv(data, [f"R{i},record {i} {'z' * (i % 13)}" for i in range(40)] + ["bad,row,with,too,many"])
        args = [*TINY, "--data", data, "--rule", "Is it fine?", "--max-new-tokens", "3", "--no-compare"]
        open_e = eval_json("--no-db", *args)[0]
        capped_e = eval_json("--db", edb, *args, "--set", f"card.power_limit_w={0.9 * open_e['watts']}")[0]
        expect(capped_e["batch_ns"] > open_e["batch_ns"] and max(capped_e["power_limit"]["window_w"]) <= 0.9 * open_e["watts"] * (1 + 1e-9),
               f"eval: {capped_e['batch_ns']} ns vs {open_e['batch_ns']}, windows {capped_e['power_limit']['window_w']}")
        check_token_rows(edb, 41, 40)
    demo = ["--no-db", "--no-compare", "--records", "2000"]
    hc1 = eval_json(*demo)[0]
    expect(hc1["power_limit"]["throttled_s"] == 0, "hc1-class's 200 W limit engaged on the demo")
    slow = eval_json(*demo, "--set", "card.power_limit_w=150")[0]
    expect(slow["batch_ns"] > 1.1 * hc1["batch_ns"] and max(slow["power_limit"]["window_w"]) <= 150 * (1 + 1e-9),
           f"demo at 150 W: {slow['batch_ns']} ns vs {hc1['batch_ns']}, windows {slow['power_limit']['window_w']}")
    expect_error(["run", *base, "--set", "card.power_limit_w=5"], "tiny-chip.json", "card.power_limit_w",
                 "at or below the card's static power")


def test_eval_bom_and_empty_jsonl():
    """A UTF-8 byte-order mark before a CSV header is not part of the first column's name (its
    {field:id} still renders, the token counts equal the file without it); two JSON objects on one
    JSONL line are a bad record, not the first kept; a FIFO is refused at once instead of hanging; an
    empty .jsonl is an error like an empty .csv."""
    with tempfile.TemporaryDirectory() as tmp:
        tpl = os.path.join(tmp, "t.txt")
        with open(tpl, "w") as f:
            f.write("{rule} Check {field:id}\n")
        counts = {}
        for name, head in (("bom", b"\xef\xbb\xbf"), ("plain", b"")):
            data, db = os.path.join(tmp, name + ".csv"), os.path.join(tmp, name + ".sqlite")
            with open(data, "wb") as f:
                f.write(head + b"id,text\n12345,a\n67890,b\n")
            eval_json("--db", db, "--no-compare", *TINY, "--data", data, "--rule", "x", "--template", tpl)
            con = sqlite3.connect(db)
            counts[name] = con.execute("SELECT prompt_tokens, key FROM records ORDER BY record").fetchall()
            con.close()
        expect(counts["bom"] == counts["plain"], f"BOM changed the records: {counts}")
        fifo = os.path.join(tmp, "f.csv")  # read twice (batch and comparison): refused, never waited on
        os.mkfifo(fifo)
        p = subprocess.run([ETCHSIM, "eval", "--no-db", "--data", fifo, "--rule", "x"], capture_output=True, text=True,
                           timeout=60)
        expect(p.returncode == 1 and "not a regular file" in p.stderr, f"FIFO data: {p.returncode} {p.stderr!r}")
        two = os.path.join(tmp, "two.jsonl")  # a second object on a line is a bad record, not dropped
        with open(two, "w") as f:
            f.write('{"id": 1}\n{"id": 2}{"id": 3}\n{"id": 4}  \n')
        j, _ = eval_json("--no-db", "--no-compare", *TINY, "--data", two, "--rule", "x")
        expect(j["records_done"] == 2 and j["records_skipped"] == 1, f"two objects on a line: {j['records_done']} done")
        for ext in (".jsonl", ".csv"):
            empty = os.path.join(tmp, "empty" + ext)
            open(empty, "w").close()
            expect_error(["eval", "--no-db", *TINY, "--data", empty, "--rule", "x"], "empty" + ext, "empty file")


def test_eval_uniform_batch():
    """Against the analytical model on a uniform batch: batch time is at least the busiest
    resource's occupancy and at most the time of tiles taking items one at a time plus one
    pipeline fill; KV is never exceeded."""
    with tempfile.TemporaryDirectory() as tmp:
        data = os.path.join(tmp, "u.csv")
        write_csv(data, [f"R{i:05d},{'y' * 120}" for i in range(300)])
        # tokens_per_read 4: tiles group waiting decode tokens; the bound counts a token at its share of a pass
        for extra in ([*TINY], ["--policy", "spf", *TINY], [*TINY, "--set", "tile.lanes.tokens_per_read=4"], []):
            j, _ = eval_json("--no-db", "--no-compare", "--data", data, "--rule", "Is it fine?", *extra)
            a = j["analytic"]
            expect(a["busy_ns"] <= j["batch_ns"] <= a["upper_ns"],
                   f"{extra}: batch {j['batch_ns']} outside [{a['busy_ns']}, {a['upper_ns']}]")
            expect(j["kv_max_used"] <= j["kv_positions"], "KV positions exceeded")
            expect(j["max_in_flight"] <= j["prefix_sharing"]["kv_slots_with"], "more in flight than KV slots")


def test_eval_bad_bytes():
    """Bytes that would lose or mislabel records: a header with invalid UTF-8 (the first record would
    become the header) and a CR-only file (no records, exit 0) are errors naming the file and line; a
    NUL byte in a CSV field or a JSONL line, or a lone carriage return inside a record, skips that
    record with its reason instead of truncating it."""
    args = ["--no-compare", *TINY, "--rule", "Is it fine?"]
    with tempfile.TemporaryDirectory() as tmp:
        data = lambda name, body: put_file(tmp, name, body)
        expect_error(["eval", "--no-db", *args, "--data", data("h.csv", b"id,te\xffxt\n1,a\n2,b\n")],
                     "h.csv: line 1: the header line has invalid UTF-8")
        expect_error(["eval", "--no-db", *args, "--data", data("cr.csv", b"id,text\r1,a\r2,b\r")],
                     "cr.csv: line 1", "CR-only line endings")
        for name, body, bad in (("n.csv", b"id,text\n1,he\x00llo\n2,b\n3,c\n", "a NUL byte"),
                                ("r.csv", b"id,text\n1,a\r2,b\n3,c\n4,d\n", "carriage return without a line feed"),
                                ("n.jsonl", b'{"id":"1","text":"he\x00llo"}\n{"id":"2"}\n{"id":"3"}\n', "a NUL byte")):
            db = os.path.join(tmp, name + ".sqlite")
            run("eval", "--db", db, *args, "--data", data(name, body))
            con = sqlite3.connect(db)
            rows = con.execute("SELECT record, status, reason FROM records ORDER BY record").fetchall()
            con.close()
            expect(len(rows) == 3 and rows[0][1] == "skipped" and bad in rows[0][2] and all(r[1] == "done" for r in rows[1:]),
                   f"{name}: {rows}")


def test_eval_bad_records():
    with tempfile.TemporaryDirectory() as tmp:
        data = os.path.join(tmp, "bad.csv")
        rows = [b"id,merchant,amount",
                b"T1,FreshMart,12.50",
                b'T2,"Joe\'s, ""Market""",3.10',                 # quoted comma and quotes: fine
                b"T3,only two",                                   # wrong column count
                b'T4,"unbalanced,5.00',                           # unbalanced quote
                b"T5,Caf\xc3\xa9,4.00",                         # UTF-8: fine
                b"T6,Bad\xff\xfeBytes,1.00",                    # invalid UTF-8
                b"T7," + b"z" * 40000 + b",9.99",                 # longer than the context window
                b'T8,"multi\nline",2.00',                        # quoted line break: fine
                b"T9,Last,1.00"]
        with open(data, "wb") as f:
            f.write(b"\n".join(rows) + b"\n")
        db = os.path.join(tmp, "e.sqlite")
        j, _ = eval_json("--db", db, "--no-compare", "--data", data, "--rule", "Flag large amounts.")
        expect(j["records_done"] == 5 and j["records_skipped"] == 4, f"done {j['records_done']} skipped {j['records_skipped']}")
        con = sqlite3.connect(db)
        got = dict(con.execute("SELECT key, status FROM records WHERE status='done'").fetchall())
        expect(set(got) == {"T1", "T2", "T5", "T8", "T9"}, f"done records {got}")
        reasons = [r[0] for r in con.execute("SELECT reason FROM records WHERE status='skipped' ORDER BY record")]
        for needle in ["fields, the header has 3", "unbalanced quote", "invalid UTF-8", "context window"]:
            expect(any(needle in r for r in reasons), f"no skip reason with {needle!r}: {reasons}")
        row = con.execute("SELECT prompt_tokens, output_tokens, submit_ns, first_token_ns, done_ns, energy_j, "
                          "tokens_estimated FROM records WHERE key='T1'").fetchone()
        expect(row[1] == 4 and 0 <= row[2] < row[3] <= row[4] and row[5] > 0, f"T1 row {row}")
        expect(row[6] == (1 if j["token_counts_estimated"] else 0), f"tokens_estimated {row[6]}")
        expect(con.execute("SELECT status FROM runs").fetchone()[0] == "complete", "run not complete")
        # JSONL: a malformed line is skipped, the rest are read
        jl = os.path.join(tmp, "d.jsonl")
        with open(jl, "w") as f:
            f.write('{"id": "A", "amount": 5}\n{"id": "B", amount: 6}\n[1, 2]\n{"id": "C", "nested": {"x": 1}}\n')
        j, _ = eval_json("--no-db", "--no-compare", "--data", jl, "--rule", "Flag it.")
        expect(j["records_done"] == 2 and j["records_skipped"] == 2, f"jsonl {j['records_done']}/{j['records_skipped']}")


def test_eval_policy():
    """Shortest prompt first: with KV room for few sequences, short records are
    submitted before long ones; first come first served keeps file order."""
    with tempfile.TemporaryDirectory() as tmp:
        data = os.path.join(tmp, "mix.csv")
        write_csv(data, [f"R{i:03d},{('long text ' * 40) if i % 2 else 'short'}" for i in range(80)])
        small = ["--set", "kv.bytes_per_tile=40000", "--set", "kv.slot_context=300"]  # 312 positions: a few sequences
        res = {}
        for pol in ("fcfs", "spf"):
            db = os.path.join(tmp, pol + ".sqlite")
            j, _ = eval_json("--db", db, "--no-compare", *TINY, *small, "--data", data, "--rule", "Flag?",
                             "--policy", pol)
            expect(j["records_done"] == 80 and j["kv_max_used"] <= j["kv_positions"], f"{pol}: {j['kv_max_used']}")
            con = sqlite3.connect(db)
            rows = con.execute("SELECT record, prompt_tokens, submit_ns FROM records ORDER BY submit_ns, record").fetchall()
            res[pol] = rows
        order = lambda rows: [r[0] for r in rows]
        expect(order(res["fcfs"]) == sorted(order(res["fcfs"])), "FCFS did not submit in file order")
        spf = res["spf"]
        short = [i for i, r in enumerate(spf) if r[1] < 30]
        expect(len(short) == 40 and max(short[:-5]) < 45, f"SPF did not put short prompts first: {short}")


def test_eval_token_estimate():
    """tiny-llama has no vocabulary: counts are estimated, and flagged so in
    the output, on stderr and in SQLite."""
    with tempfile.TemporaryDirectory() as tmp:
        data = os.path.join(tmp, "d.csv")
        write_csv(data, [f"R{i},{'word ' * i}" for i in range(1, 9)])
        db = os.path.join(tmp, "t.sqlite")
        p = run("eval", "--db", db, "--no-compare", *TINY, "--data", data, "--rule", "Twelve bytes")
        expect("ESTIMATED" in p.stdout and "warning" in p.stderr and "estimated" in p.stderr, p.stdout + p.stderr)
        # impossible to miss: said before the first figure, and on every line whose figure follows from the counts
        lines = p.stdout.splitlines()
        expect(lines[1].strip().startswith("ESTIMATED:"), f"the estimate is not said first: {lines[:3]}")
        for label in ("batch time", "first 100 results", "per-record latency", "tokens/s", "power "):
            row = [l for l in lines if l.strip().startswith(label)]
            expect(row and row[0].endswith("[ESTIMATED]"), f"{label!r} not marked estimated: {row}")
        con = sqlite3.connect(db)
        expect({r[0] for r in con.execute("SELECT tokens_estimated FROM records")} == {1}, "records not flagged")
        summ = json.loads(con.execute("SELECT summary FROM runs").fetchone()[0])
        expect(summ["token_counts_estimated"] is True and summ["rule_tokens"] > 0, "run summary not flagged")
        # the estimate: 1 token per 4 UTF-8 bytes of the rule part ("Twelve bytes\n\nRecord:\n" = 23 bytes -> 6)
        expect(summ["rule_tokens"] == 6, f"rule tokens {summ['rule_tokens']}")
        # with a vocabulary given explicitly, counts are exact
        vocab = os.path.join(MODELS, "llm", "llama-3.1-8b", "tokenizer.tiktoken")
        if os.path.exists(vocab):
            j, err = eval_json("--no-db", "--no-compare", "--data", data, "--rule", "Twelve bytes", "--vocab", vocab)
            expect(j["token_counts_estimated"] is False and "warning" not in err, "vocab given, still estimated")
            p = run("eval", "--no-db", "--no-compare", "--data", data, "--rule", "Twelve bytes", "--vocab", vocab)
            expect("ESTIMATED" not in p.stdout, f"real counts marked estimated: {p.stdout}")
            expect(j["rule_tokens"] == 1 + 6, f"BOS + 'Twelve bytes\\n\\nRecord:\\n' = {j['rule_tokens']}")
        expect_error(["eval", "--no-db", "--data", data, "--rule", "x", "--vocab", os.path.join(tmp, "none")], "cannot open")


def test_eval_errors():
    with tempfile.TemporaryDirectory() as tmp:
        missing = os.path.join(tmp, "none.csv")
        expect_error(["eval", "--no-db", "--rule", "x", "--data", missing], missing, "cannot open")
        data = os.path.join(tmp, "d.csv")
        write_csv(data, ["R1,hello"])
        expect_error(["eval", "--no-db", "--rule", "   ", "--data", data], "rule is empty")
        rf = os.path.join(tmp, "rule.txt")
        open(rf, "w").write("\n\n")
        expect_error(["eval", "--no-db", "--rule-file", rf, "--data", data], rf, "rule is empty")
        expect_error(["eval", "--no-db", "--data", data], "needs a rule")
        expect_error(["eval", "--no-db", "--rule", "x", "--data", os.path.join(tmp, "d.txt")], "expected a .csv or .jsonl")
        t = os.path.join(tmp, "t.txt")
        open(t, "w").write("{record}\n{rule}\n")
        expect_error(["eval", "--no-db", "--rule", "x", "--data", data, "--template", t], t, "{rule} must come before")
        expect_error(["eval", "--max-new-tokens", "0"], "--max-new-tokens", code=2)


# ---- errors ----------------------------------------------------------------

def test_option_rules():
    """Every command reads its options the same way (sim/cli/cli_opts.c over getopt_long): whole numbers
    are digits only and in range, a valued option given twice is an error unless repeatable, an
    unknown option and a missing value are named; each a usage error with exit 2."""
    numbers = [(["run", "--streams", "+5"], "--streams", "'+5'"), (["run", "--prompt", " 5"], "--prompt", "' 5'"),
               (["area", "--position", "-1"], "--position", "'-1'"), (["eval", "--records", "5x"], "--records", "'5x'"),
               (["rom", "build", "-o", "x.rom", "--threads", "2x"], "--threads", "'2x'"),
               (["sweep", "--jobs", "1.0", "--grid", "g", "--db", "d"], "--jobs", "'1.0'"),
               (["budget", "check", "--run", "-1", "--db", "d", "--budgets", "b"], "--run", "'-1'"),
               (["compare", "--prompt", "0x10"], "--prompt", "'0x10'"), (["infer", "--generate", "+1"], "--generate", "'+1'"),
               (["dataset", "demo", "-o", "x.csv", "--records", "5e2"], "--records", "'5e2'")]
    for args, opt, given in numbers:
        expect_error(args, opt, "expects a whole number", given, code=2)
    for args in (["run", "--prompt", "3", "--prompt", "4"], ["eval", "--data", "a", "--data", "b"],
                 ["chip", "derive", "--model", "a", "--model", "b"], ["sweep", "--grid", "a", "--grid", "b"]):
        expect_error(args, f"{args[-2]} given twice", code=2)
    for cmd in (["run"], ["area"], ["eval"], ["rom", "build"], ["rom", "inspect"], ["infer"], ["chip", "derive"],
                ["compare"], ["sweep"], ["budget", "check"], ["dataset", "demo"]):
        expect_error([*cmd, "--bogus"], "unknown option --bogus", "--help", code=2)
    expect_error(["run", "--chip"], "--chip needs a value", code=2)
    expect_error(["dataset", "demo"], "etchsim dataset: demo: -o FILE.csv is required", "etchsim dataset --help", code=2)
    expect_error(["dataset", "sample"], "etchsim dataset: expected 'demo', got sample", code=2)
    expect_error(["run", "--no-db", "--prompt=8", "--generate=2", "--set", "clock_hz=1e9", "--set"], "--set needs a value", code=2)
    run("run", "--no-db", "--prompt=8", "--generate=2", "--json", "--json")  # name=value; a flag may repeat


def test_err_strict_json_and_set():
    """A JSON file with a key twice, or a NUL byte inside, is an error naming the file and key (not the
    first value silently); --set values are read whole: 1024abc and 0x10 are not numbers."""
    with tempfile.TemporaryDirectory() as tmp:
        with open(os.path.join(MODELS, "chips", "hc1-class.json")) as f:
            text = f.read()
        dup = os.path.join(tmp, "dup.json")
        with open(dup, "w") as f:  # an early clock_hz of 5 GHz, then the real one
            f.write(text.replace("{", '{"clock_hz": 5e9, ', 1))
        expect_error(["run", "--no-db", "--chip", dup], "dup.json", "'clock_hz' appears twice")
        nested = os.path.join(tmp, "nested.json")
        with open(nested, "w") as f:
            f.write(text.replace('"tile": {', '"tile": {"items_in_flight": 9, ', 1))
        expect_error(["area", "--chip", nested], "'tile.items_in_flight' appears twice")
        nul = os.path.join(tmp, "nul.json")
        with open(nul, "w") as f:
            f.write(text + "\0garbage")
        expect_error(["area", "--chip", nul], "nul.json", "NUL byte")
    expect_error(["run", "--no-db", "--set", "tile.lanes.count=1024abc"], "tile.lanes.count", '"1024abc"')
    expect_error(["run", "--no-db", "--set", "clock_hz=0x10"], "clock_hz", '"0x10"')


def test_err_overflow():
    """In-range values whose products pass 64 bits are refused with the keys named, not a crash
    (SIGFPE) or a wrapped result: a sequence's KV of 2^64 bits; simulated time past what SystemC's
    64-bit picoseconds count."""
    with tempfile.TemporaryDirectory() as tmp:
        with open(os.path.join(MODELS, "llm", "tiny-llama", "config.json")) as f:
            cfg = json.load(f)
        cfg.update(num_attention_heads=4096, num_key_value_heads=4096, head_dim=65536, num_hidden_layers=64)
        with open(os.path.join(tmp, "config.json"), "w") as f:
            json.dump(cfg, f)
        big = ["--set", "tile.rom.banks=1099511627776", "--set", "tile.rom.rows=1099511627776",
               "--set", "head.lm_rom.rows=1099511627776", "--set", "head.embed_rom.rows=1099511627776"]
        for cmd in (["run", "--no-db", "--prompt", "8", "--generate", "2"], ["area"]):
            expect_error([*cmd, "--model", tmp, "--set", "card.power_limit_w=0", "--set", "kv.element_bits=32",
                          "--set", "kv.element_format=fp32", "--set", "kv.slot_context=16777216",
                          "--set", "tile.layers_per_tile=64", *big], "kv.slot_context", "beyond the 2^62 bits")
    expect_error(["run", "--no-db", "--set", "card.power_limit_w=0", "--set", "clock_hz=1e6", "--set", "tile.lanes.count=1",
                  "--set", "tile.lanes.cell_bits=1", "--set", "tile.rom.banks=1", "--set", "tile.rom.rows=1099511627776",
                  "--set", "tile.rom.row_bits=1"], "simulated time would pass", "SystemC")


def test_err_messages_say_what():
    """Errors say what is wrong: a text file given as --db is not an SQLite database (not a question
    about permissions); a folder given as a ROM image or any file is a folder (not 'truncated' or
    'expected a file of at most N bytes')."""
    with tempfile.TemporaryDirectory() as tmp:
        txt = os.path.join(tmp, "notes.txt")
        with open(txt, "w") as f:
            f.write("hello\n")
        err = expect_error(["run", "--db", txt, "--prompt", "8", "--generate", "2"], "notes.txt", "not an SQLite database")
        expect("writable" not in err, err)
        with open(txt) as f:
            expect(f.read() == "hello\n", "the text file was changed")
        other = os.path.join(tmp, "other.sqlite")  # another program's database is left as it was
        con = sqlite3.connect(other)
        con.execute("CREATE TABLE users(id INTEGER)")
        con.commit()
        con.close()
        expect_error(["run", "--db", other, "--prompt", "8", "--generate", "2"], "other.sqlite", "another program")
        con = sqlite3.connect(other)
        names = [r[0] for r in con.execute("SELECT name FROM sqlite_master")]
        version, = con.execute("PRAGMA user_version").fetchone()
        con.close()
        expect(names == ["users"] and version == 0, f"the other database changed: {names}, version {version}")
        err = expect_error(["rom", "inspect", tmp], "is a folder", "ROM image")
        expect("truncated" not in err, err)
        for args in (["eval", "--no-db", "--rule-file", tmp], ["sweep", "--grid", tmp, "--db", os.path.join(tmp, "s.sqlite")]):
            err = expect_error(args, f"{tmp}: is a folder; expected a file", code=2 if args[0] == "sweep" else 1)
            expect("at most" not in err, err)


# etchsim's schema 3 (before unit_stats.register_bit_cycles and runs.error), as it shipped
SCHEMA_3 = """CREATE TABLE runs( id INTEGER PRIMARY KEY, started_utc TEXT NOT NULL, finished_utc TEXT,
 status TEXT NOT NULL CHECK(status IN ('running','complete')), version TEXT NOT NULL, command TEXT NOT NULL,
 chip TEXT NOT NULL, model TEXT NOT NULL, prompt_tokens INTEGER, gen_tokens INTEGER, streams INTEGER,
 cycles REAL, chip_config TEXT, process_config TEXT, summary TEXT);
CREATE TABLE sequences( run_id INTEGER NOT NULL REFERENCES runs(id), seq INTEGER NOT NULL, prompt_tokens INTEGER,
 gen_tokens INTEGER, submit_ns REAL, admit_ns REAL, first_token_ns REAL, done_ns REAL, ttft_ns REAL, energy_j REAL,
 PRIMARY KEY(run_id, seq));
CREATE TABLE tokens( run_id INTEGER NOT NULL REFERENCES runs(id), seq INTEGER NOT NULL, idx INTEGER NOT NULL,
 t_ns REAL, latency_ns REAL, energy_j REAL, PRIMARY KEY(run_id, seq, idx));
CREATE TABLE unit_stats( run_id INTEGER NOT NULL REFERENCES runs(id), unit TEXT NOT NULL, items INTEGER,
 tokens INTEGER, busy_cycles INTEGER, utilization REAL, energy_j REAL, rom_bits REAL, cell_macs REAL,
 attn_macs REAL, kv_read_bits REAL, kv_write_bits REAL, vector_ops REAL, link_bit_mm REAL, host_bits REAL,
 area_mm2 REAL, state_read_bits REAL, state_write_bits REAL, PRIMARY KEY(run_id, unit));
CREATE TABLE records( run_id INTEGER NOT NULL REFERENCES runs(id), record INTEGER NOT NULL, line INTEGER, key TEXT,
 status TEXT NOT NULL CHECK(status IN ('done','skipped')), reason TEXT, prompt_tokens INTEGER, output_tokens INTEGER,
 submit_ns REAL, first_token_ns REAL, done_ns REAL, energy_j REAL, tokens_estimated INTEGER, output_text TEXT,
 verdict TEXT, PRIMARY KEY(run_id, record));
CREATE TABLE sweep_points( point INTEGER PRIMARY KEY, params TEXT NOT NULL, run_id INTEGER REFERENCES runs(id),
 status TEXT NOT NULL CHECK(status IN ('done','failed')), error TEXT, wall_s REAL);
PRAGMA user_version = 3;"""


def test_db_schema_4():
    """A schema 3 database is migrated to 4 (and on to 5 and 6) on open: its runs kept as they were, runs.error and
    unit_stats.register_bit_cycles added; a run that fails inside the simulation is marked 'failed'
    with its error instead of staying 'running'."""
    with tempfile.TemporaryDirectory() as tmp:
        db = os.path.join(tmp, "old.sqlite")
        con = sqlite3.connect(db)
        con.executescript(SCHEMA_3)
        con.execute("INSERT INTO runs VALUES(1,'2026-01-01T00:00:00Z','2026-01-01T00:00:01Z','complete','0.1.0','run',"
                    "'hc1-class','llama-3.1-8b',8,2,1,123.0,'{}','{}','{\"watts\": 1}')")
        con.execute("INSERT INTO unit_stats(run_id, unit, busy_cycles) VALUES(1, 'tile0', 77)")
        con.commit()
        con.close()
        run("run", *TINY, "--prompt", "8", "--generate", "2", "--db", db)
        expect_error(["run", *TINY, "--prompt", "8", "--generate", "2", "--db", db, "--trace",
                      os.path.join(tmp, "no", "such", "t.json")], "cannot write the trace")
        con = sqlite3.connect(db)
        version, = con.execute("PRAGMA user_version").fetchone()
        rows = con.execute("SELECT id, status, cycles, summary, error FROM runs ORDER BY id").fetchall()
        old_unit = con.execute("SELECT busy_cycles, register_bit_cycles FROM unit_stats WHERE run_id = 1").fetchone()
        regs, = con.execute("SELECT SUM(register_bit_cycles) FROM unit_stats WHERE run_id = 2").fetchone()
        ok, = con.execute("PRAGMA integrity_check").fetchone()
        con.close()
        expect(version == 6 and ok == "ok", f"user_version {version}, integrity {ok}")  # 3 -> 4 -> 5 -> 6
        expect(rows[0] == (1, "complete", 123.0, '{"watts": 1}', None), f"the old run changed: {rows[0]}")
        expect(old_unit == (77, None), f"the old run's unit row changed: {old_unit}")
        expect(rows[1][1] == "complete" and regs > 0, f"new run: {rows[1][:2]}, register bit-cycles {regs}")
        expect(rows[2][1] == "failed" and "cannot write the trace" in rows[2][4], f"failed run: {rows[2]}")
        # an error after the simulation (the logits file) fails the run too, with its message
        expect_error(["run", *TINY, "--prompt", "8", "--generate", "2", "--db", db, "--mode", "functional", "--synthetic", "1",
                      "--logits", os.path.join(tmp, "no", "l.bin")], "cannot write")
        con = sqlite3.connect(db)
        last = con.execute("SELECT status, error FROM runs ORDER BY id DESC LIMIT 1").fetchone()
        con.close()
        expect(last[0] == "failed" and "cannot write" in last[1], f"logits failure: {last}")
        # two runs open one schema 3 database at once (held locked until both are waiting): one migrates it,
        # the other finds it migrated; both complete
        db2 = os.path.join(tmp, "old2.sqlite")
        con = sqlite3.connect(db2, isolation_level=None)
        con.executescript(SCHEMA_3)
        con.execute("BEGIN IMMEDIATE")
        procs = [subprocess.Popen([ETCHSIM, "run", *TINY, "--prompt", "8", "--generate", "2", "--db", db2],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True) for _ in range(2)]
        time.sleep(0.5)
        con.execute("COMMIT")
        con.close()
        errs = [p.communicate(timeout=120)[1] for p in procs]
        expect(all(p.returncode == 0 for p in procs), f"concurrent migration: {errs}")
        con = sqlite3.connect(db2)
        done = con.execute("SELECT COUNT(*) FROM runs WHERE status = 'complete'").fetchone()[0]
        version, = con.execute("PRAGMA user_version").fetchone()
        con.close()
        expect(done == 2 and version == 6, f"{done} complete runs, schema {version}")


def logged(db, pid):
    """Whether process pid has begun its run in database db (its runs row); a busy or missing file is not yet."""
    try:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=0.1)
        try:
            return con.execute("SELECT 1 FROM runs WHERE pid = ?", (pid,)).fetchone() is not None
        finally:
            con.close()
    except sqlite3.Error:
        return False


def test_db_crash_safety():
    """Runs and evals killed with SIGKILL at random moments, 20 times, into one database: it opens
    cleanly and passes PRAGMA integrity_check, every run completed before is intact, no killed run
    is complete, and `etchsim db check --mark-failed` marks the killed ones failed and removes what
    they streamed. A long eval commits its rows in chunks, so another run writing the same database
    meanwhile finishes before it does."""
    import random
    rnd = random.Random(7)
    with tempfile.TemporaryDirectory() as tmp:
        db = os.path.join(tmp, "k.sqlite")
        jobs = [["eval", "--no-compare"], ["run", "--streams", "64", "--prompt", "256", "--generate", "1024"]]
        done = {}
        killed = finished = 0
        killed_pids = set()
        for i in range(20):
            if i % 4 == 0:  # a run that completes, to be found intact afterwards
                j = run_json(*TINY, "--prompt", "8", "--generate", "4", "--db", db)
                con = sqlite3.connect(db)
                rid = con.execute("SELECT MAX(id) FROM runs").fetchone()[0]
                done[rid] = con.execute("SELECT COUNT(*), SUM(busy_cycles) FROM unit_stats WHERE run_id = ?", (rid,)).fetchone()
                con.close()
            p = subprocess.Popen([ETCHSIM, *jobs[i % 2], "--db", db], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            # kill it at a random moment after it has logged its run (not by the clock alone: a slow start, under
            # sanitizers on a loaded machine, would otherwise be killed before it wrote anything)
            deadline = time.monotonic() + 120
            while p.poll() is None and time.monotonic() < deadline and not logged(db, p.pid):
                time.sleep(0.02)
            time.sleep(rnd.uniform(0.0, 0.6))
            if p.poll() is None:
                p.kill()
                killed += 1
                killed_pids.add(p.pid)
            elif p.returncode == 0:
                finished += 1  # it ended before the kill: a complete run
            p.wait()
        con = sqlite3.connect(db)
        ok, = con.execute("PRAGMA integrity_check").fetchone()
        status = dict(con.execute("SELECT id, status FROM runs").fetchall())
        # a kill can land after a process committed its run as complete and before it exited: that
        # run is complete and whole, and is counted as such (runs.pid names the process)
        late = [r for r, in con.execute("SELECT id FROM runs WHERE status = 'complete' AND pid IN (%s)"
                                        % ",".join(map(str, killed_pids or {0})))]
        for rid in late:  # whole: its summary and its units' rows are there
            expect(con.execute("SELECT summary IS NOT NULL FROM runs WHERE id = ?", (rid,)).fetchone()[0] == 1
                   and con.execute("SELECT COUNT(*) FROM unit_stats WHERE run_id = ?", (rid,)).fetchone()[0] > 0,
                   f"run {rid}, killed after completing, is not whole")
        for rid, (n, busy) in done.items():
            expect(status[rid] == "complete" and con.execute(
                "SELECT COUNT(*), SUM(busy_cycles) FROM unit_stats WHERE run_id = ?", (rid,)).fetchone() == (n, busy),
                f"completed run {rid} changed")
        running = [r for r, s in status.items() if s == "running"]
        complete = [r for r, s in status.items() if s == "complete"]
        con.close()
        # every killed process had logged its run first: it is running (killed midway) or, killed late, complete
        expect(ok == "ok" and killed >= 10 and set(done) <= set(complete) and len(complete) == len(done) + finished + len(late)
               and len(running) + len(late) == killed and len(late) <= killed // 4,
               f"integrity {ok}, killed {killed}, running {running}, complete {complete}, killed after completing {late}")
        killed = len(running)
        p = run("db", "check", db, ok=False)
        expect(p.returncode == 1 and p.stdout.count(" dead") == killed, f"db check: {p.returncode} {p.stdout}")
        p = run("db", "check", db, "--mark-failed")
        con = sqlite3.connect(db)
        left = con.execute("SELECT COUNT(*) FROM records WHERE run_id IN (SELECT id FROM runs WHERE status = 'failed')").fetchone()[0]
        failed = con.execute("SELECT COUNT(*) FROM runs WHERE status = 'failed'").fetchone()[0]
        con.close()
        expect(failed == killed and left == 0, f"{failed} failed of {killed} killed, {left} records left")
        expect(run("db", "check", db).stdout.endswith("every run completed or failed\n"), "db check after marking")
        # two writers: a long eval streams while a short run writes the same database
        db2 = os.path.join(tmp, "two.sqlite")
        long_eval = subprocess.Popen([ETCHSIM, "eval", "--no-compare", "--db", db2], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, text=True)
        time.sleep(0.4)
        run("run", *TINY, "--prompt", "8", "--generate", "4", "--db", db2)
        expect(long_eval.poll() is None, "the short run waited for the whole eval")
        expect(long_eval.wait(timeout=120) == 0, f"eval: {long_eval.stderr.read()}")
        con = sqlite3.connect(db2)
        expect(con.execute("SELECT COUNT(*) FROM runs WHERE status = 'complete'").fetchone()[0] == 2, "both complete")
        con.close()
    expect_error(["db", "check", os.path.join(ROOT, "README.md")], "README.md", code=2)
    expect_error(["db", "check"], "expected a database", code=2)


def children_of(pid):
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    if int(f.read().rsplit(")", 1)[1].split()[1]) == pid:
                        out.append(int(d))
            except (OSError, IndexError, ValueError):
                pass
    return out


def test_killed_eval_leaves_no_orphan():
    """SIGKILL of eval also ends its comparison batch (a forked child), instead of leaving it
    running as an orphan."""
    tmp = tempfile.mkdtemp()
    data = os.path.join(tmp, "d.csv")
    run("dataset", "demo", "-o", data, "--records", "40000")  # a comparison batch of about 10 s
    p = subprocess.Popen([ETCHSIM, "eval", "--no-db", "--data", data, "--rule", "Flag it?"], stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
    deadline, kids = time.time() + 20, []
    while not kids and time.time() < deadline and p.poll() is None:
        kids = children_of(p.pid)
        time.sleep(0.02)
    expect(kids, "eval never forked its comparison batch")
    p.kill()
    p.wait()
    def running(k):  # exists and is not a zombie
        try:
            with open(f"/proc/{k}/stat") as f:
                return f.read().rsplit(")", 1)[1].split()[0] != "Z"
        except OSError:
            return False
    shutil.rmtree(tmp)
    deadline = time.time() + 3  # it dies with its parent, long before its batch would end
    while time.time() < deadline and any(running(k) for k in kids):
        time.sleep(0.05)
    alive = [k for k in kids if running(k)]
    for k in alive:  # do not leave it behind either way
        os.kill(k, signal.SIGKILL)
    expect(not alive, f"comparison batch {alive} still running after eval was killed")
    # the demo's dataset is removed from disk as soon as it is open: a killed demo eval leaves no folder
    import glob
    before = set(glob.glob("/tmp/etchsim-demo-*"))
    p = subprocess.Popen([ETCHSIM, "eval", "--no-db"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline, kids = time.time() + 20, []
    while not kids and time.time() < deadline and p.poll() is None:
        kids = children_of(p.pid)
        time.sleep(0.02)
    p.kill()
    p.wait()
    for k in kids:
        try:
            os.kill(k, signal.SIGKILL)
        except OSError:
            pass
    left = set(glob.glob("/tmp/etchsim-demo-*")) - before
    expect(not left, f"a killed demo eval left {sorted(left)}")


def test_err_missing_key():
    with tempfile.TemporaryDirectory() as tmp:
        path = chip_copy(tmp, lambda c: c["tile"]["lanes"].pop("count"))
        expect_error(["run", "--no-db", "--chip", path], path, "'tile.lanes.count'", "missing")


def test_err_malformed_json():
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "chip.json")
        with open(os.path.join(MODELS, "chips", "hc1-class.json")) as f:
            text = f.read()
        with open(path, "w") as f:
            f.write(text[: len(text) // 2])
        expect_error(["run", "--no-db", "--chip", path], path, "malformed JSON at line")
        # a key of the wrong type
        path = chip_copy(tmp, lambda c: c["link"].__setitem__("width_bits", "wide"))
        expect_error(["run", "--no-db", "--chip", path], path, "'link.width_bits'", '"wide"')


def test_err_zero_size():
    with tempfile.TemporaryDirectory() as tmp:
        path = chip_copy(tmp, lambda c: c["tile"]["rom"]["banks"].__setitem__("value", 0))
        expect_error(["run", "--no-db", "--chip", path], path, "'tile.rom.banks'", "got 0")
    expect_error(["area", "--set", "kv.bytes_per_tile=0"], "hc1-class.json", "'kv.bytes_per_tile'")


def test_err_negative_size():
    expect_error(["run", "--no-db", "--set", "tile.rom.row_bits=-1024"], "hc1-class.json",
                 "'tile.rom.row_bits'", "-1024")
    expect_error(["run", "--no-db", "--set", "clock_hz=-1e9"], "'clock_hz'")


def test_err_unknown_arch():
    bad = os.path.join(DATA, "bad-arch")
    expect_error(["run", "--no-db", "--model", bad], "bad-arch/config.json", "'architectures'",
                 "RwkvForCausalLM", "MambaForCausalLM")
    with tempfile.TemporaryDirectory() as tmp:
        with open(os.path.join(MODELS, "llm", "tiny-llama", "config.json")) as f:
            cfg = json.load(f)
        cfg["num_key_value_heads"] = 3
        with open(os.path.join(tmp, "config.json"), "w") as f:
            json.dump(cfg, f)
        expect_error(["run", "--no-db", "--model", tmp], "'num_key_value_heads'")


def test_err_rom_too_small():
    expect_error(["run", "--no-db", "--set", "tile.rom.rows=1000"], "hc1-class.json",
                 "'tile.rom.rows'", "cannot hold")
    expect_error(["area", "--set", "head.lm_rom.banks=16"], "'head.lm_rom.rows'", "LM head")


def test_err_unwritable_db():
    with tempfile.TemporaryDirectory() as tmp:
        missing = os.path.join(tmp, "no", "such", "dir", "x.sqlite")
        expect_error(["run", *TINY, "--prompt", "4", "--generate", "2", "--db", missing], missing)
        junk = os.path.join(tmp, "junk.sqlite")
        with open(junk, "wb") as f:
            f.write(b"this is not a database" * 100)
        expect_error(["run", *TINY, "--prompt", "4", "--generate", "2", "--db", junk], junk)
        with open(junk, "rb") as f:
            expect(f.read() == b"this is not a database" * 100, "a bad database file was modified")
        # a database locked by another writer: clear error, no crash
        locked = os.path.join(tmp, "locked.sqlite")
        run("run", *TINY, "--prompt", "4", "--generate", "2", "--db", locked)
        con = sqlite3.connect(locked, timeout=0)
        con.execute("BEGIN EXCLUSIVE")
        expect_error(["run", *TINY, "--prompt", "4", "--generate", "2", "--db", locked], locked, "locked")
        con.rollback()


def test_err_bad_option():
    expect_error(["run", "--frobnicate"], "unknown option", code=2)
    expect_error(["run", "--prompt", "0"], "--prompt", code=2)
    expect_error(["run", "--streams", "many"], "--streams", code=2)
    expect_error(["nonsense"], "unknown command", code=2)


def test_err_context_too_long():
    expect_error(["run", "--no-db", "--prompt", "2000", "--generate", "100"], "kv.slot_context")


# ---- functional execution on stories260K (needs ../shared/models) ----------

class Skip(Exception):
    pass


def stories():
    d = os.environ.get("ETCHSIM_TEST_MODELS") or os.environ.get("ETCHSIM_TEST_MODELS_DEFAULT", "")
    p = os.path.join(d, "stories260K.gguf")
    if not os.path.isfile(p):
        raise Skip(f"{p} not found (set ETCHSIM_TEST_MODELS to the folder holding stories260K.gguf)")
    return p


def fixtures():
    with open(os.path.join(DATA, "stories260K-fixtures.json")) as f:
        return json.load(f)


def gguf_read(path):
    """(metadata [(key, type, raw value bytes)], tensor-info bytes, data bytes, alignment) of a GGUF v3 file."""
    import struct
    b = open(path, "rb").read()
    pos = 24
    n_t, n_kv = struct.unpack_from("<QQ", b, 8)
    sizes = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}

    def skip(t, p):
        if t == 8:
            return p + 8 + struct.unpack_from("<Q", b, p)[0]
        if t == 9:
            et, n = struct.unpack_from("<IQ", b, p)
            p += 12
            if et in sizes:
                return p + n * sizes[et]
            for _ in range(n):
                p = skip(et, p)
            return p
        return p + sizes[t]
    kvs = []
    for _ in range(n_kv):
        klen = struct.unpack_from("<Q", b, pos)[0]
        key = b[pos + 8:pos + 8 + klen].decode()
        t = struct.unpack_from("<I", b, pos + 8 + klen)[0]
        v0 = pos + 12 + klen
        pos = skip(t, v0)
        kvs.append((key, t, b[v0:pos]))
    info0 = pos
    for _ in range(n_t):
        nlen = struct.unpack_from("<Q", b, pos)[0]
        pos += 8 + nlen
        nd = struct.unpack_from("<I", b, pos)[0]
        pos += 4 + 8 * nd + 4 + 8
    data0 = (pos + 31) // 32 * 32
    return kvs, n_t, b[info0:pos], b[data0:]


def gguf_write(path, kvs, n_t, info, data):
    import struct
    out = bytearray(b"GGUF" + struct.pack("<IQQ", 3, n_t, len(kvs)))
    for key, t, raw in kvs:
        k = key.encode()
        out += struct.pack("<Q", len(k)) + k + struct.pack("<I", t) + raw
    out += info
    out += b"\0" * ((-len(out)) % 32)
    out += data
    with open(path, "wb") as f:
        f.write(out)


def gguf_str(s):
    import struct
    b = s.encode()
    return struct.pack("<Q", len(b)) + b


def test_infer_stories():
    model = stories()
    fx = fixtures()
    for g in fx["generate"][:2]:
        with tempfile.TemporaryDirectory() as tmp:
            lf = os.path.join(tmp, "logits.json")
            n = len(g["output_ids"])
            j = json.loads(run("infer", "--model", model, "--text", g["text"], "--generate", str(n),
                               "--json", "--logits", lf).stdout)
            expect(j["prompt_ids"] == g["prompt_ids"], f"prompt ids {j['prompt_ids']}")
            expect(j["output_ids"] == g["output_ids"], f"output ids {j['output_ids']} != {g['output_ids']}")
            expect(j["output_text"].lstrip() == g["output_text"].lstrip(), f"text {j['output_text']!r}")
            rows = json.load(open(lf))
            expect(len(rows) == len(g["prompt_ids"]) + n - 1, f"{len(rows)} logit rows")
            seq = g["prompt_ids"] + g["output_ids"]
            for r in rows:
                expect(r["token"] == seq[r["pos"]], f"position {r['pos']} token {r['token']}")
                d = max(abs(a - b) for a, b in zip(r["logits"], g["logits"][r["pos"]]))
                expect(d <= 1e-4, f"position {r['pos']}: logits differ by {d}")
            expect(not os.path.exists(lf + ".tmp"), "temporary logits file left behind")
    p = run("infer", "--model", model, "--text", "Once upon a time", "--generate", "4")
    expect("output ids: 432 383 286 261" in p.stdout and "output text: , there was a" in p.stdout, p.stdout)


def test_rom_partial_blocks():
    """stories260K's FFN rows of 172 are zero-padded to whole blocks under every shipped recipe;
    the padding is counted in ROM bits and shown by rom inspect (hand counts below)."""
    model = stories()
    chip = os.path.join(DATA, "tiny-chip.json")
    # ffn_down: 64 rows of 172 in each of 5 layers; int3 g64 and mxfp4 (32) both pad 172 to 192
    want = {"hc1-mix": (5 * 64 * 20, 5 * 64 * 20 * (3 + 16 / 64)),
            "fp4": (5 * 64 * 20, 5 * 64 * 20 * (4 + 8 / 32))}
    with tempfile.TemporaryDirectory() as tmp:
        for recipe, (elems, bits) in want.items():
            rom = os.path.join(tmp, recipe + ".rom")
            run("rom", "build", "--model", model, "--chip", chip, "--recipe", recipe, "--weights", model, "-o", rom)
            j = json.loads(run("rom", "inspect", rom, "--json").stdout)
            expect(j["padding_elements"] == elems and abs(j["padding_bits"] - bits) < 1e-6,
                   f"{recipe}: padding {j['padding_elements']} elements {j['padding_bits']} bits, want {elems} {bits}")
            expect("padding: %d elements" % elems in run("rom", "inspect", rom).stdout, "text report")
            # the padding is part of the bits a run charges for
            r = json.loads(run("run", "--json", "--no-db", "--model", model, "--chip", chip, "--rom", rom,
                               "--prompt", "4", "--generate", "2").stdout)
            expect(r["tokens"] == 2, "run --rom on stories260K")


FP32_DATAPATH = ["--set", "tile.lanes.activation_format=fp32", "--set", "kv.element_bits=32",
                 "--set", "kv.element_format=fp32", "--set", "link.elem_bits=32"]
# the tiny chip's embedding and LM-head ROMs tall enough for a 1024-token vocabulary in f32 (timing follows
# the recipe, and a chip must hold its weights)
F32_HEAD_ROMS = ["--set", "head.embed_rom.rows=1024", "--set", "head.lm_rom.rows=256"]


def test_functional_run():
    """run --mode functional with f32 weights and an FP32 datapath reproduces llama.cpp's
    greedy tokens and its logits (within 1e-4) at every position, prompt included."""
    model = stories()
    g = fixtures()["generate"][0]
    chip = os.path.join(DATA, "tiny-chip.json")
    with tempfile.TemporaryDirectory() as tmp:
        lf = os.path.join(tmp, "l.json")
        n = len(g["output_ids"])
        j = json.loads(run("run", "--json", "--no-db", "--model", model, "--chip", chip, "--mode", "functional",
                           "--weights", model, "--recipe", "f32", "--text", g["text"], "--generate", str(n),
                           "--logits", lf, *FP32_DATAPATH).stdout)
        f = j["functional"]
        expect(j["mode"] == "functional" and j["prompt_tokens"] == len(g["prompt_ids"]), "mode and prompt size")
        expect(f["prompt_ids"] == g["prompt_ids"], f"prompt ids {f['prompt_ids']}")
        expect(f["output_ids"] == g["output_ids"], f"output ids {f['output_ids']} != {g['output_ids']}")
        expect(f["output_text"] == g["output_text"], f"text {f['output_text']!r}")
        rows = json.load(open(lf))
        expect([r["pos"] for r in rows] == list(range(len(g["prompt_ids"]) + n - 1)), "one logits row per position")
        for r in rows:
            d = max(abs(a - b) for a, b in zip(r["logits"], g["logits"][r["pos"]]))
            expect(d <= 1e-4, f"position {r['pos']}: logits differ from llama.cpp's by {d}")
        # the chip's own datapath (int8, hc1-mix) still produces a story
        j = json.loads(run("run", "--json", "--no-db", "--model", model, "--chip", chip, "--mode", "functional",
                           "--weights", model, "--text", g["text"], "--generate", "8").stdout)
        expect(len(j["functional"]["output_ids"]) == 8 and j["functional"]["output_text"], "hc1-mix run")


def test_functional_timing_invariance():
    """The same run in timing and functional mode gives the same cycles, energy and unit
    statistics (both timing the recipe the functional run quantizes by); every stream of identical
    prompts produces the same tokens."""
    model = stories()
    chip = os.path.join(DATA, "tiny-chip.json")
    base = ["--json", "--model", model, "--chip", chip, "--prompt", "40", "--generate", "12", "--streams", "9",
            "--set", "tile.lanes.tokens_per_read=4", "--recipe", "hc1-mix"]  # the formats functional mode quantizes to
    with tempfile.TemporaryDirectory() as tmp:
        out = {}
        for mode in ["timing", "functional"]:
            db = os.path.join(tmp, mode + ".sqlite")
            extra = ["--synthetic", "5"] if mode == "functional" else []
            out[mode] = json.loads(run("run", *base, "--mode", mode, "--db", db, *extra).stdout)
            con = sqlite3.connect(db)
            out[mode + "_units"] = con.execute("SELECT unit, items, tokens, busy_cycles, energy_j FROM unit_stats "
                                               "ORDER BY unit").fetchall()
            con.close()
        t, f = out["timing"], out["functional"]
        for k in ["cycles", "energy_j", "tokens", "ttft_ns", "stream0_cycles", "max_in_flight"]:
            expect(t[k] == f[k], f"{k}: timing {t[k]} functional {f[k]}")
        expect(out["timing_units"] == out["functional_units"], "unit statistics differ between modes")
        expect(f["functional"]["streams_agree"] and len(f["functional"]["output_ids"]) == 12, "streams disagree")


def test_err_functional():
    model = stories()
    chip = os.path.join(DATA, "tiny-chip.json")
    expect_error(["run", "--no-db", "--model", model, "--chip", chip, "--mode", "functional", "--prompt", "4"],
                 "functional mode needs weights", "--rom", "--synthetic")
    expect_error(["run", "--no-db", "--model", model, "--chip", chip, "--text", "hi"], "--mode functional", code=2)
    expect_error(["run", "--no-db", "--mode", "fun"], "--mode", code=2)
    with tempfile.TemporaryDirectory() as tmp:
        rom = os.path.join(tmp, "tiny.rom")
        run("rom", "build", "--model", "tiny-llama", "--chip", chip, "--synthetic", "1", "-o", rom)
        expect_error(["run", "--no-db", "--model", model, "--chip", chip, "--mode", "functional", "--rom", rom],
                     rom, "model")


def test_eval_functional():
    """eval --mode functional on stories260K: every record gets its output text and verdict,
    the label counts equal the database's, the outputs do not depend on prefix sharing, and
    the batch takes the same simulated time as in timing mode."""
    model = stories()
    chip = os.path.join(DATA, "tiny-chip.json")
    names = ["Lily", "Tom", "Max", "Sue", "Ben", "Anna", "Sam", "Mia", "Tim", "Zoe", "Leo", "Amy"]
    with tempfile.TemporaryDirectory() as tmp:
        data = os.path.join(tmp, "kids.csv")
        write_csv(data, [f"{i},{n} found a {['ball', 'dog', 'cake'][i % 3]} in the park" for i, n in enumerate(names)])
        base = ["eval", "--json", "--model", model, "--chip", chip, "--data", data, "--rule",
                "Tell a story about the child.", "--max-new-tokens", "10", "--labels", "the,a"]
        out = {}
        for name, extra in [("shared", []), ("plain", ["--no-prefix-sharing"])]:
            db = os.path.join(tmp, name + ".sqlite")
            j = json.loads(run(*base, *extra, "--mode", "functional", "--weights", model, "--db", db).stdout)
            con = sqlite3.connect(db)
            rows = con.execute("SELECT record, status, output_text, verdict FROM records ORDER BY record").fetchall()
            counts = dict(con.execute("SELECT verdict, COUNT(*) FROM records WHERE status='done' GROUP BY verdict"))
            con.close()
            expect(j["mode"] == "functional" and j["records_done"] == len(names), f"{name}: records {j['records_done']}")
            expect(sum(j["verdicts"].values()) == j["records_done"], f"{name}: verdicts {j['verdicts']}")
            expect({k: v for k, v in j["verdicts"].items() if v} == counts, f"{name}: JSON {j['verdicts']} != DB {counts}")
            expect(all(r[1] == "done" and r[2] is not None and r[3] in ("the", "a", "other") for r in rows),
                   f"{name}: rows {rows[:3]}")
            for r in rows:
                want = "the" if "the" in r[2] else "a" if "a" in r[2] else "other"
                expect(r[3] == want, f"record {r[0]}: verdict {r[3]} for {r[2]!r}")
            out[name] = (j, [r[2] for r in rows])
        expect(out["shared"][1] == out["plain"][1], "outputs depend on prefix sharing")
        t = json.loads(run(*base, "--no-db", "--recipe", "hc1-mix").stdout)  # the formats functional mode used
        expect(t["batch_ns"] == out["shared"][0]["batch_ns"] and t["energy_j"] == out["shared"][0]["energy_j"],
               "functional eval changed the timing")
        expect("verdicts" not in t, "timing mode reports verdicts")


def test_numerics():
    """The numerics study holds its documented figures (weights/README.md): each row's mean KL
    against the FP32 reference under 1.5x the measured value; f32 exact; int6 < 4-bit < int3."""
    model = stories()
    measured = {"f32": 0.0, "bf16": 0.00008, "int6/g64": 0.01021, "mxfp4": 0.29420, "int3/g64": 1.07534,
                "recipe hc1-mix": 0.74262, "recipe fp4": 0.22761, "recipe fp8": 0.00855, "act int8": 0.00132,
                "kv int8": 0.00162,
                "chip + hc1-mix": 0.75252}
    p = subprocess.run([os.environ["ETCHSIM_NUMERICS"], model, os.path.join(DATA, "tiny-chip.json"),
                        os.path.join(DATA, "numerics-text.txt"), "--json", "--only", ",".join(measured)],
                       capture_output=True, text=True, timeout=600)
    expect(p.returncode == 0, f"es_numerics: {p.stderr}")
    j = json.loads(p.stdout)
    rows = {r["name"]: r for r in j["rows"]}
    expect(j["text_tokens"] >= 2000 and set(rows) == set(measured), f"{j['text_tokens']} tokens, rows {list(rows)}")
    for name, kl in measured.items():
        expect(rows[name]["kl"] <= 1.5 * kl + 1e-7, f"{name}: KL {rows[name]['kl']:.5f} above 1.5 x {kl}")
    expect(rows["f32"]["top1"] == 1.0 and abs(rows["f32"]["ppl"] - j["reference_ppl"]) < 1e-4, "f32 is not exact")
    expect(rows["int6/g64"]["kl"] < rows["mxfp4"]["kl"] < rows["int3/g64"]["kl"], "format ordering")
    expect(rows["chip + hc1-mix"]["saturations"] == 0, "the 24-bit accumulator saturated")


def test_err_gguf():
    model = stories()
    kvs, n_t, info, data = gguf_read(model)
    with tempfile.TemporaryDirectory() as tmp:
        def variant(name, edit):
            path = os.path.join(tmp, name + ".gguf")
            gguf_write(path, edit(list(kvs)), n_t, info, data)
            return path
        arch = variant("mamba", lambda k: [(a, t, gguf_str("mamba") if a == "general.architecture" else v)
                                           for a, t, v in k])
        expect_error(["infer", "--model", arch, "--text", "x"], arch, "general.architecture", "mamba")
        expect_error(["area", "--model", arch], "general.architecture")
        nokey = variant("nokey", lambda k: [x for x in k if x[0] != "llama.block_count"])
        expect_error(["infer", "--model", nokey, "--text", "x"], nokey, "llama.block_count", "missing")
        expect_error(["run", "--model", nokey, "--no-db"], "llama.block_count")
        tok = variant("tok", lambda k: [(a, t, gguf_str("bert") if a == "tokenizer.ggml.model" else v)
                                        for a, t, v in k])
        expect_error(["infer", "--model", tok, "--text", "x"], tok, "tokenizer.ggml.model", "bert")
        # found by fuzzing: a signed "byte" read past the byte-token table
        byte = variant("byte", lambda k: [(a, t, v.replace(b"<0x00>", b"<0x-5>") if a == "tokenizer.ggml.tokens" else v)
                                          for a, t, v in k])
        expect_error(["infer", "--model", byte, "--text", "x"], byte, "token 3", "<0xXX>")
        expect_error(["infer", "--model", model], "--text", code=2)
        expect_error(["infer", "--model", model, "--text", "x", "--generate", "5x"], "--generate", code=2)
        expect_error(["infer", "--model", "tiny-llama", "--text", "x", "--vocab", model], "--weights")


# ---- bad inputs give an error, never a silent wrong answer (h/inputs) -------

def est(text):
    """The documented token estimate: one per 4 UTF-8 bytes, rounded up, at least 1."""
    return max(1, (len(text.encode()) + 3) // 4)


def eval_rows(tmp, data, *extra, rule="Flag it."):
    """Run eval (timing, tiny chip, estimated counts) into a fresh database; its JSON and its records rows
    (key, status, reason, prompt_tokens) in file order."""
    db = os.path.join(tmp, f"e{len(os.listdir(tmp))}.sqlite")
    p = run("eval", "--json", "--db", db, "--no-compare", *TINY, "--data", data, "--rule", rule, *extra)
    con = sqlite3.connect(db)
    rows = con.execute("SELECT key, status, reason, prompt_tokens FROM records ORDER BY record").fetchall()
    con.close()
    return json.loads(p.stdout), rows


def test_eval_long_quoted_field():
    """A quoted field over many lines is one field (no line limit); a record past 1 MiB is skipped as one
    bad record naming its lines, and reading goes on after it, never inside its quotes; a header past
    1 MiB is an error naming the file."""
    with tempfile.TemporaryDirectory() as tmp:
        # 100 lines in one quoted field, with a doubled quote: one record, whole
        field = "\n".join(f'line {i} says ""hi""' for i in range(100))
        data = os.path.join(tmp, "many.csv")
        with open(data, "w", newline="") as f:
            f.write(f'id,text\nA,ok\nB,"{field}"\nC,end\n')
        j, rows = eval_rows(tmp, data)
        expect([(r[0], r[1]) for r in rows] == [("A", "done"), ("B", "done"), ("C", "done")], f"rows {rows}")
        text = field.replace('""', '"')
        body = f"id: B\ntext: {text}\n\nAnswer FLAG or OK.\n"  # the default template after {record}
        expect(rows[1][3] == j["rule_tokens"] + est(body), f"B: {rows[1][3]} tokens, want {j['rule_tokens']} + {est(body)}")
        # a quoted field of 150,002 lines (1.5 MB) whose lines look like records
        data = os.path.join(tmp, "long.csv")
        with open(data, "w", newline="") as f:
            f.write('id,text\nA,ok\nB,"start\n' + "word,word\n" * 150000 + 'end"\nC,fine\nD,also\n')
        j, rows = eval_rows(tmp, data, "--records", "50")
        expect(j["records_done"] == 3 and j["records_skipped"] == 1, f"done {j['records_done']} skipped {j['records_skipped']}")
        expect([r[:2] for r in rows] == [("A", "done"), ("", "skipped"), ("C", "done"), ("D", "done")], f"rows {rows[:6]}")
        expect(rows[1][2] == "lines 3-150004: a record of more than 1048576 bytes (a quoted field over 150002 lines)",
               f"reason {rows[1][2]!r}")
        # the field's first line alone past 1 MiB
        data = os.path.join(tmp, "wide.csv")
        with open(data, "w", newline="") as f:
            f.write('id,text\nA,ok\nB,"' + "x" * 1200000 + '\nstill, quoted\nend"\nC,fine\n')
        j, rows = eval_rows(tmp, data)
        expect([r[:2] for r in rows] == [("A", "done"), ("", "skipped"), ("C", "done")], f"rows {rows}")
        expect(rows[1][2].startswith("lines 3-5: a record of more than 1048576 bytes"), f"reason {rows[1][2]!r}")
        # an unbalanced quote still costs only its own line, however far the file goes on
        data = os.path.join(tmp, "unbal.csv")
        with open(data, "w", newline="") as f:
            f.write('id,text\nA,"open\n' + "R,plain\n" * 120000)
        j, rows = eval_rows(tmp, data, "--records", "4")
        expect([r[:2] for r in rows] == [("", "skipped"), ("R", "done"), ("R", "done"), ("R", "done")]
               and rows[0][2] == "line 2: unbalanced quote", f"rows {rows}")
        # a header past 1 MiB: nothing after it can be read
        data = os.path.join(tmp, "head.csv")
        with open(data, "w", newline="") as f:
            f.write('id,"' + "h" * 1100000 + '"\nA,ok\n')
        expect_error(["eval", "--no-db", "--no-compare", *TINY, "--data", data, "--rule", "x"],
                     "head.csv: line 1: longer than 1048576 bytes, in the header line")


def test_eval_template_fields():
    """{field:NAME} naming a field the data lacks: a CSV header without it is an error naming the data,
    the field, the template and the header's fields; a JSONL record without it is skipped with that
    reason while the others render its value; when no record has it, an error. A {field: without its
    closing brace or with no name is an error naming the template."""
    with tempfile.TemporaryDirectory() as tmp:
        text = lambda name, body: put_file(tmp, name, body)
        tmpl = text("t.txt", "{rule}\nAmount: {field:amount}\n")
        csv = text("d.csv", "id,amt\n1,5\n2,6\n")
        expect_error(["eval", "--no-db", "--no-compare", *TINY, "--data", csv, "--rule", "x", "--template", tmpl],
                     "d.csv: the header has no field 'amount', which " + tmpl + "'s {field:amount} names (its fields: id, amt)")
        jl = text("d.jsonl", '{"id": "1", "amount": "12.50"}\n{"id": "2", "amt": "7"}\n{"id": "3", "amount": 99}\n')
        j, rows = eval_rows(tmp, jl, "--template", tmpl)
        expect([r[:2] for r in rows] == [("1", "done"), ("2", "skipped"), ("3", "done")], f"rows {rows}")
        expect(rows[1][2] == "line 2: no field 'amount' for the template's {field:amount} (the record has id, amt)",
               f"reason {rows[1][2]!r}")
        # the value itself goes in (a number as its JSON text): the record's tokens after the shared prefix
        expect(rows[0][3] == j["rule_tokens"] + est("12.50\n") and rows[2][3] == j["rule_tokens"] + est("99\n"),
               f"tokens {rows}, rule {j['rule_tokens']}")
        none = text("n.jsonl", '{"id": "1", "amt": "5"}\n{"id": "2"}\n')
        expect_error(["eval", "--no-db", "--no-compare", *TINY, "--data", none, "--rule", "x", "--template", tmpl],
                     "n.jsonl: no record has every field " + tmpl + " names", "line 1", "no field 'amount'", "id, amt")
        for body in ("{rule}\n{field:amount\n}\n", "{rule}\n{field:}\n"):
            t = text("bad.txt", body)
            expect_error(["eval", "--no-db", "--no-compare", *TINY, "--data", jl, "--rule", "x", "--template", t],
                         "bad.txt: '{field:", "expected {field:NAME}")


def test_text_inputs_nul():
    """A NUL byte in a text input (rule file, template, routing replay file, tiktoken vocabulary) is an
    error naming the file and the byte offset, not the end of its text; a template that is not UTF-8
    is refused as the rule is."""
    with tempfile.TemporaryDirectory() as tmp:
        data = lambda name, body: put_file(tmp, name, body)
        csv = data("d.csv", b"id,text\n1,hello\n")
        ev = ["eval", "--no-db", "--no-compare", *TINY, "--data", csv]
        expect_error([*ev, "--rule-file", data("rule.txt", b"Flag it\x00 if large")],
                     "rule.txt: a NUL byte at offset 7: expected a text file (the rule)")
        expect_error([*ev, "--rule", "x", "--template", data("t.txt", b"{rule}\n{record}\x00tail\n")],
                     "t.txt: a NUL byte at offset 15: expected a text file (the prompt template)")
        expect_error([*ev, "--rule", "x", "--template", data("u.txt", b"{rule}\n{record}\xff\n")],
                     "u.txt: the template is not valid UTF-8")
        rp = data("route.txt", b"3 7\n3 7\x00 9\n")
        expect_error(["run", "--no-db", *MOE, "--routing", "replay:" + rp], "route.txt: a NUL byte at offset 7")
        data("ok.txt", b"3 7\n" + b" " * 5000 + b"2 5\n")  # a line longer than any fixed buffer is one line
        r = run_json("--no-db", *MOE, "--prompt", "1", "--generate", "20", "--routing", "replay:" + os.path.join(tmp, "ok.txt"))
        expect([i for i, n in enumerate(r["moe"]["fired_by_expert"]) if n] == [2, 3, 5, 7], f"replay {r['moe']}")
        import base64
        lines = b"".join(base64.b64encode(bytes([b])) + b" %d\n" % b for b in range(256))
        vocab = data("v.tiktoken", lines)
        run(*ev, "--rule", "x", "--vocab", vocab)  # the clean vocabulary loads
        at = len(lines) + len(b"YWI= 256")
        bad = data("nul.tiktoken", lines + b"YWI= 256\x00 junk\n")
        expect_error([*ev, "--rule", "x", "--vocab", bad], f"nul.tiktoken: a NUL byte at offset {at}")


def test_help_examples():
    """Every key the help texts give as an example is one the program takes: sweep --help's keys and
    example grid (and README's) pass the grid's key check; budget --help's example metrics are in a
    run's summary; run --help's --set example runs."""
    with tempfile.TemporaryDirectory() as tmp:
        h = run("sweep", "--help").stdout.replace("\n", " ")
        listed = re.search(r"keys as for --set \(([^)]*)\)", h).group(1)
        keys = [k.strip() for k in re.split(r"[,;]", listed) if re.fullmatch(r"\s*[a-z0-9_.]+\s*", k) and k.strip(" .")]
        expect(len(keys) == 3, f"sweep --help lists {keys}")
        example = json.loads(re.search(r"Example: (\{.*?\})\s+options:", h).group(1))
        with open(os.path.join(ROOT, "README.md")) as f:
            readme = f.read()
        readme_grid = json.loads(re.search(r"### Sweeps.*?```json\n(.*?)```", readme, re.S).group(1))
        for i, grid in enumerate(({k: [1] for k in keys}, example, readme_grid)):
            g, out = os.path.join(tmp, f"g{i}.json"), os.path.join(tmp, f"s{i}.sqlite")
            with open(g, "w") as f:
                json.dump(grid, f)
            run("sweep", "--grid", g, "--db", out, "--emit", "parallel")  # the key check, no point run
        h = run("budget", "--help").stdout
        metrics = json.loads(re.search(r"Example: (\{.*?\}\})\n\n", h, re.S).group(1).replace("\n", " "))
        db = os.path.join(tmp, "r.sqlite")
        run("run", "--db", db, *TINY, "--prompt", "8", "--generate", "4")
        con = sqlite3.connect(db)
        summary = json.loads(con.execute("SELECT summary FROM runs").fetchone()[0])
        con.close()
        for m in metrics:
            node = summary
            for part in m.split("."):
                node = node.get(part) if isinstance(node, dict) else None
            expect(isinstance(node, (int, float)), f"budget --help metric {m} is not a number of the summary")
        setting = re.search(r"e\.g\. --set (\S+?);", run("run", "--help").stdout).group(1)
        run("run", "--no-db", "--set", setting, "--prompt", "8", "--generate", "2")


# ---- weights: non-finite weights and logits, tied tables, derived ROM sizes (issue 17) ----

def gguf_tensors(info, n_t):
    """{name: (GGUF type, dims innermost first, data offset)} from gguf_read's tensor-info bytes."""
    import struct
    out, pos = {}, 0
    for _ in range(n_t):
        nlen = struct.unpack_from("<Q", info, pos)[0]
        name = info[pos + 8:pos + 8 + nlen].decode()
        pos += 8 + nlen
        nd = struct.unpack_from("<I", info, pos)[0]
        dims = struct.unpack_from("<%dQ" % nd, info, pos + 4)
        pos += 4 + 8 * nd
        t, off = struct.unpack_from("<IQ", info, pos)
        pos += 12
        out[name] = (t, dims, off)
    return out


def stories_variant(path, floats):
    """stories260K.gguf (every tensor F32) with floats {(tensor, element): value} written over it."""
    import struct
    kvs, n_t, info, data = gguf_read(stories())
    ts, d = gguf_tensors(info, n_t), bytearray(data)
    for (name, k), v in floats.items():
        expect(ts[name][0] == 0, f"{name} is not F32")
        struct.pack_into("<f", d, ts[name][2] + 4 * k, v)
    gguf_write(path, kvs, n_t, info, bytes(d))
    return path


def rom_remake(src, dst, bank, version=None):
    """Copy the ROM image src to dst with each bank's payload replaced by bank(i, payload, stored) -> (payload,
    encoding or None to keep it), then every CRC-32 and offset made right again and, given `version`, the header's
    version set (layout: weights/es_rom.h)."""
    import struct
    import zlib
    b = open(src, "rb").read()
    ioff, ilen = struct.unpack_from("<QQ", b, 40)
    index = bytearray(b[ioff:ioff + ilen])
    nu, nt, nb = struct.unpack_from("<III", index, 0)
    at, payloads = 64, []
    for i in range(nb):
        rec = 16 + nu * 32 + nt * 152 + i * 48
        raw_bytes, comp, off = struct.unpack_from("<QQQ", index, rec + 16)
        stored = struct.unpack_from("<I", index, rec + 44)[0] == 1
        data, encoding = bank(i, b[off:off + comp], stored, raw_bytes)
        struct.pack_into("<QQI", index, rec + 24, len(data), at, zlib.crc32(data))
        if encoding is not None:
            struct.pack_into("<I", index, rec + 44, encoding)
        payloads.append(data)
        at += len(data)
    head = bytearray(b[:64])
    if version is not None:
        struct.pack_into("<I", head, 8, version)
    struct.pack_into("<QQI", head, 40, at, len(index), zlib.crc32(index))
    struct.pack_into("<I", head, 60, zlib.crc32(head[:60]))
    with open(dst, "wb") as f:
        f.write(head + b"".join(payloads) + index)


def rom_rewrite(src, dst, k, patch):
    """Copy the ROM image src to dst with bank k's payload (its rows: stored, or inflated when zlib) replaced by
    patch(payload), every CRC-32 and offset made right again (layout: weights/es_rom.h)."""
    import zlib

    def bank(i, data, stored, raw_bytes):
        if i != k:
            return data, None
        raw = patch(data if stored else zlib.decompress(data))
        expect(len(raw) == raw_bytes, "a patch must keep the payload's size")
        return (raw if stored else zlib.compress(raw)), None
    rom_remake(src, dst, bank)


def test_nonfinite_weights():
    """A NaN or infinite weight is refused by every reader (rom build, infer, functional run) naming
    the file, the tensor and the element's index; so is a finite weight the recipe's format cannot hold,
    and an image whose weights decode to NaN; a logit that overflows (finite weights, too large) is
    an error for --logits, never a bare nan in JSON, and leaves no file."""
    import struct
    model = stories()
    chip = os.path.join(DATA, "tiny-chip.json")
    with tempfile.TemporaryDirectory() as tmp:
        # blk.2.ffn_up.weight is [172, 64] (64 columns): element 1000 is row 15, column 40
        nan = stories_variant(os.path.join(tmp, "nan.gguf"), {("blk.2.ffn_up.weight", 1000): float("nan")})
        inf = stories_variant(os.path.join(tmp, "inf.gguf"), {("token_embd.weight", 64 * 511 + 63): float("-inf")})
        rom = os.path.join(tmp, "x.rom")
        for path, tensor, where, what in ((nan, "blk.2.ffn_up.weight", "element 1000 (row 15, column 40)", "NaN"),
                                          (inf, "token_embd.weight", "element 32767 (row 511, column 63)", "-infinity")):
            needles = (path + ": tensor " + tensor, where, "is " + what)
            expect_error(["infer", "--model", path, "--text", "Once upon", "--generate", "2"], *needles)
            expect_error(["rom", "build", "--model", path, "--chip", chip, "--weights", path, "-o", rom], *needles)
            expect_error(["run", "--no-db", "--model", path, "--chip", chip, "--mode", "functional", "--weights", path,
                          "--prompt", "4", "--generate", "2"], *needles)
            expect(not os.path.exists(rom), "a refused build left an image")
        # safetensors: the same check (tiny-llama, F32), the element index in the file's row-major order
        st = os.path.join(tmp, "model.safetensors")
        write_tiny_safetensors(st)
        raw = bytearray(open(st, "rb").read())
        hlen = struct.unpack_from("<Q", raw, 0)[0]
        hdr = json.loads(raw[8:8 + hlen])
        begin = hdr["model.layers.1.self_attn.v_proj.weight"]["data_offsets"][0]
        struct.pack_into("<f", raw, 8 + hlen + begin + 4 * 300, float("inf"))  # [64, 256]: row 1, column 44
        open(st, "wb").write(raw)
        expect_error(["rom", "build", *TINY, "--weights", st, "-o", rom], st,
                     "tensor model.layers.1.self_attn.v_proj.weight", "element 300 (row 1, column 44)", "+infinity")
        # a finite weight beyond the recipe's format (hc1-mix: int3 with an F16 scale per 64, so 1e6 needs a
        # scale of 1e6 / 3, past F16's 65504): refused when quantizing, by rom build and functional --weights
        wide = stories_variant(os.path.join(tmp, "wide.gguf"), {("blk.0.attn_q.weight", 64 * 5 + 7): 1e6})
        # (GGUF's row 5 of Q is the graph's row 6: head_dim 8, pairs (2i, 2i+1) -> halves (i, i+4))
        needles = ("tensor model.layers.0.self_attn.q_proj.weight: row 6, column 7: the weight 1e+06 is beyond what "
                   "int3 stores",)
        expect_error(["rom", "build", "--model", wide, "--chip", chip, "--weights", wide, "-o", rom], *needles)
        expect_error(["run", "--no-db", "--model", wide, "--chip", chip, "--mode", "functional", "--weights", wide,
                      "--prompt", "4", "--generate", "2"], *needles)
        # an image whose stored weights decode to NaN (its CRCs intact): functional mode refuses it
        run("rom", "build", "--model", model, "--chip", chip, "--weights", model, "--recipe", "f32", "-o", rom)
        bad = os.path.join(tmp, "nan.rom")
        rom_rewrite(rom, bad, 0, lambda raw: struct.pack("<f", float("nan")) + raw[4:])
        run("rom", "verify", bad)
        expect_error(["run", "--no-db", "--model", model, "--chip", chip, "--mode", "functional", "--rom", bad,
                      "--prompt", "4", "--generate", "2"], bad, "model.layers.0.input_layernorm.weight row 0: weight 0 is NaN")
        # finite weights whose logits overflow: the final norm's gains at 3e38 (F32 holds them; the LM head's
        # dot products exceed 3.4e38). --logits refuses, naming the position, and writes nothing
        big = stories_variant(os.path.join(tmp, "big.gguf"), {("output_norm.weight", i): 3e38 for i in range(64)})
        lf = os.path.join(tmp, "l.json")
        fp32 = ["--recipe", "f32", *FP32_DATAPATH]
        # no token is drawn from such logits either (it was token 0, silently): infer and functional run refuse
        # with or without --logits; infer's logits file names itself first, the chip names the sequence
        infer = ["infer", "--model", big, "--text", "Once upon", "--generate", "2"]
        frun = ["run", "--no-db", "--model", big, "--chip", chip, "--mode", "functional", "--weights", big,
                "--text", "Once upon", "--generate", "2", *fp32]
        for args, where in (([*infer, "--logits", lf], lf + ": position 0: "), (infer, "infer: position 2: "),
                            ([*frun, "--logits", lf], "sequence 0 position 0: "), (frun, "head: sequence 0 position 2: ")):
            err = expect_error(args, where + "the logit of token")
            expect(re.search(r"is (NaN|\+infinity|-infinity) \(the forward pass left the float range\)", err), err)
            expect(not os.path.exists(lf) and not os.path.exists(lf + ".tmp"), "a logits file was left")
        # the same weights within range: the logits file is plain JSON (json.load refuses NaN when told to)
        run("infer", "--model", model, "--text", "Once upon", "--generate", "2", "--logits", lf)
        rows = json.loads(open(lf).read(), parse_constant=lambda c: (_ for _ in ()).throw(AssertionError(c)))
        # BOS and 2 prompt tokens, 2 generated: 4 positions run
        expect(len(rows) == 4 and all(len(r["logits"]) == 512 for r in rows), f"{len(rows)} rows")


def write_st(path, tensors, metadata=None):
    """A safetensors file of F32 tensors {name: (shape, values)} with an optional __metadata__."""
    import array
    header, blobs, off = ({"__metadata__": metadata} if metadata else {}), [], 0
    for name, (shape, values) in tensors.items():
        raw = array.array("f", values).tobytes()
        header[name] = {"dtype": "F32", "shape": shape, "data_offsets": [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct_pack_u64(len(h)) + h + b"".join(blobs))


def test_tied_lm_head_only():
    """A tied model's table stored only as lm_head.weight (with safetensors' __metadata__ alias, or
    without), or only as model.embed_tokens.weight, gives the same image bit for bit; an untied
    model reads a missing table through an alias, and without one the error says what is there."""
    with open(os.path.join(MODELS, "llm", "tiny-llama", "config.json")) as f:
        cfg = json.load(f)
    H, F, V, L = cfg["hidden_size"], cfg["intermediate_size"], cfg["vocab_size"], cfg["num_hidden_layers"]
    hd = H // cfg["num_attention_heads"]
    Q, KV = cfg["num_attention_heads"] * hd, cfg["num_key_value_heads"] * hd
    shapes = {}
    for l in range(L):
        p = f"model.layers.{l}."
        shapes.update({p + "input_layernorm.weight": [H], p + "self_attn.q_proj.weight": [Q, H],
                       p + "self_attn.k_proj.weight": [KV, H], p + "self_attn.v_proj.weight": [KV, H],
                       p + "self_attn.o_proj.weight": [H, Q], p + "post_attention_layernorm.weight": [H],
                       p + "mlp.gate_proj.weight": [F, H], p + "mlp.up_proj.weight": [F, H],
                       p + "mlp.down_proj.weight": [H, F]})
    shapes["model.norm.weight"] = [H]

    def tensors(table_names):
        t = {}
        for i, (name, shape) in enumerate(shapes.items()):
            n = shape[0] * (shape[1] if len(shape) > 1 else 1)
            t[name] = (shape, [((k * 7919 + i * 31) % 2001 - 1000) * 2e-5 for k in range(n)])
        table = [((k * 104729) % 4001 - 2000) * 1e-5 for k in range(V * H)]  # distinct from every other tensor
        for name in table_names:
            t[name] = ([V, H], table)
        return t
    chip = os.path.join(DATA, "tiny-chip.json")
    with tempfile.TemporaryDirectory() as tmp:
        tied, untied = os.path.join(tmp, "tied"), os.path.join(tmp, "untied")
        for d, tie in ((tied, True), (untied, False)):
            os.mkdir(d)
            with open(os.path.join(d, "config.json"), "w") as f:
                json.dump(dict(cfg, tie_word_embeddings=tie), f)
        alias = {"format": "pt", "model.embed_tokens.weight": "lm_head.weight"}
        files = {"embed": (["model.embed_tokens.weight"], None), "head+alias": (["lm_head.weight"], alias),
                 "head": (["lm_head.weight"], None)}
        images = {}
        for label, (names, md) in files.items():
            st = os.path.join(tmp, label + ".safetensors")
            write_st(st, tensors(names), md)
            rom = os.path.join(tmp, label + ".rom")
            run("rom", "build", "--model", tied, "--chip", chip, "--weights", st, "--threads", "1", "-o", rom)
            images[label] = open(rom, "rb").read()
        expect(images["head+alias"] == images["embed"] and images["head"] == images["embed"],
               "an lm_head.weight-only file gives another image than the embed_tokens one")
        st = os.path.join(tmp, "head+alias.safetensors")
        j = run_json("--no-db", "--model", tied, "--chip", chip, "--mode", "functional", "--weights", st,
                     "--prompt", "4", "--generate", "3")
        expect(len(j["functional"]["output_ids"]) == 3, "functional run on the lm_head-only file")
        # untied: the alias names where the embedding is; both roles then read the one table
        rom = os.path.join(tmp, "u.rom")
        run("rom", "build", "--model", untied, "--chip", chip, "--weights", st, "-o", rom)
        st = os.path.join(tmp, "head.safetensors")
        expect_error(["rom", "build", "--model", untied, "--chip", chip, "--weights", st, "-o", rom + "2"], st,
                     "has no tensor for model.embed_tokens.weight, only lm_head.weight", "tie_word_embeddings")


def hand_rom_rows(tensors, recipe, row_bits):
    """ROM rows of tensors [(role, rows, cols)] under a recipe, each tensor from a fresh row of
    row_bits, each row zero-padded to whole blocks (the image layout, README 'ROM images')."""
    with open(os.path.join(MODELS, "recipes", recipe + ".json")) as f:
        rules = json.load(f)["rules"]
    total = 0
    for role, rows, cols in tensors:
        r = next(r for r in rules if role in r["match"].get("role", [role]))
        elems, nbytes = BLOCK[r["format"]](r.get("group"))
        bits = rows * -(-cols // elems) * nbytes * 8
        total += -(-bits // row_bits)
    return total


def test_derived_chip_fits():
    """chip derive sizes each ROM with the rows a ROM image takes (each tensor from a fresh row): a chip
    derived for stories260K holds it under the default recipe for run, rom build and run --rom; the
    rows equal a hand count from the GGUF shapes and hc1-mix; and one row fewer in any ROM fails both."""
    model = stories()
    kvs, n_t, info, _ = gguf_read(model)
    roles = {"attn_norm": "attn_norm", "attn_q": "attn_q", "attn_k": "attn_k", "attn_v": "attn_v",
             "attn_output": "attn_o", "ffn_norm": "ffn_norm", "ffn_gate": "ffn_gate", "ffn_up": "ffn_up",
             "ffn_down": "ffn_down"}
    tile, embed, head = [], [], []
    for name, (_, dims, _) in gguf_tensors(info, n_t).items():
        cols, rows = dims[0], dims[1] if len(dims) > 1 else 1
        if name.startswith("blk.0."):
            tile.append((roles[name.split(".")[2]], rows, cols))
        elif name == "token_embd.weight":
            embed.append(("embed", rows, cols))
        elif name in ("output.weight", "output_norm.weight"):
            head.append(("lm_head" if name == "output.weight" else "out_norm", rows, cols))
    expect(len(tile) == 9 and len(embed) == 1 and len(head) == 2, f"stories260K tensors {tile} {embed} {head}")
    with tempfile.TemporaryDirectory() as tmp:
        chip = os.path.join(tmp, "d.json")
        run("chip", "derive", "--model", model, "-o", chip)
        with open(chip) as f:
            c = json.load(f)
        got = {"tile.rom": c["tile"]["rom"], "head.embed_rom": c["head"]["embed_rom"], "head.lm_rom": c["head"]["lm_rom"]}
        for key, tensors in (("tile.rom", tile), ("head.embed_rom", embed), ("head.lm_rom", head)):
            g, banks = got[key], got[key]["banks"]["value"]
            want = -(-hand_rom_rows(tensors, "hc1-mix", g["row_bits"]["value"]) // banks)
            expect(g["rows"]["value"] == want, f"{key}.rows {g['rows']['value']}, hand count {want}")
        expect(got["tile.rom"]["rows"]["value"] == 157, "stories260K's layer takes 157 rows of 1024 bits")
        base = ["--model", model, "--chip", chip]
        rom = os.path.join(tmp, "s.rom")
        run("run", "--no-db", *base, "--prompt", "4", "--generate", "2")
        run("rom", "build", *base, "--weights", model, "-o", rom)
        j = run_json("--no-db", *base, "--rom", rom, "--mode", "functional", "--prompt", "4", "--generate", "2")
        expect(j["tokens"] == 2, "run --rom on the derived chip")
        for key in got:
            less = ["--set", f"{key}.rows={got[key]['rows']['value'] - 1}"]
            expect_error(["run", "--no-db", *base, *less], chip, f"'{key}.rows'", "cannot hold")
            expect_error(["rom", "build", *base, "--weights", model, "-o", rom, *less], chip, f"'{key}.rows'",
                         "cannot hold")


# ---- issue 17: clear messages, no leftovers (h/msgs) ------------------------

def popen_signals(args, **kw):
    """Popen with SIGINT, SIGTERM and SIGHUP at their defaults (a background shell ignores SIGINT)."""
    def dfl():
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_DFL)
    return subprocess.Popen(args, preexec_fn=dfl, **kw)


def readonly(folder):
    """A command prefix that runs etchsim with folder read-only: a read-only bind mount in a private
    user and mount namespace (works as root, where chmod does not stop writes), else, not as root,
    chmod. Returns (prefix, errno text of a write there)."""
    probe = subprocess.run(["unshare", "--user", "--map-root-user", "--mount", "true"], capture_output=True) \
        if shutil.which("unshare") else None
    if probe is not None and probe.returncode == 0:
        return (["unshare", "--user", "--map-root-user", "--mount", "sh", "-c",
                 'mount --bind -o ro "$0" "$0" && exec "$@"', folder], "Read-only file system")
    if os.geteuid() == 0:
        raise Skip("no user namespaces (unshare) and running as root: cannot make a read-only folder")
    for f in os.listdir(folder):
        os.chmod(os.path.join(folder, f), 0o444)
    os.chmod(folder, 0o555)
    return [], "Permission denied"


def test_err_readonly_db():
    """A valid database on a read-only mount: run says it cannot be written (not 'not an SQLite
    database'); db check and budget check still read it; --mark-failed says it cannot be written."""
    with tempfile.TemporaryDirectory() as tmp:
        ro = os.path.join(tmp, "ro")
        os.mkdir(ro)
        db, done = os.path.join(ro, "r.sqlite"), os.path.join(ro, "done.sqlite")
        run("run", *TINY, "--prompt", "4", "--generate", "2", "--db", db)
        run("run", *TINY, "--prompt", "4", "--generate", "2", "--db", done)
        con = sqlite3.connect(db)  # a run of an older etchsim that never finished: --mark-failed would fail it
        con.execute("UPDATE runs SET status = 'running', host = NULL, pid = NULL")
        con.commit()
        con.close()
        budgets = os.path.join(tmp, "b.json")
        with open(budgets, "w") as f:
            json.dump({"tokens_per_s": {"min": 1}}, f)
        with open(db, "rb") as f:
            before = f.read()
        prefix, why = readonly(ro)
        try:
            def under(*args):
                p = subprocess.run(prefix + [ETCHSIM, *args], capture_output=True, text=True, timeout=600)
                expect("not an SQLite database" not in p.stderr, f"{args}: {p.stderr}")
                return p
            p = under("run", *TINY, "--prompt", "4", "--generate", "2", "--db", db)
            expect(p.returncode == 1 and f"{db}: cannot be written ({why})" in p.stderr and p.stdout == "",
                   f"run into a read-only database: exit {p.returncode}: {p.stderr!r}")
            new = os.path.join(ro, "new.sqlite")
            p = under("run", *TINY, "--prompt", "4", "--generate", "2", "--db", new)
            expect(p.returncode == 1 and f"{new}: cannot be written: its folder {ro} is not writable ({why})" in p.stderr,
                   f"new database in a read-only folder: {p.stderr!r}")
            p = under("db", "check", db)
            expect(p.returncode == 1 and "integrity: ok" in p.stdout and "unknown (older etchsim)" in p.stdout,
                   f"db check of a read-only database: exit {p.returncode}: {p.stdout!r} {p.stderr!r}")
            p = under("db", "check", db, "--mark-failed")
            expect(p.returncode == 2 and f"{db}: cannot be written" in p.stderr, f"--mark-failed: {p.stderr!r}")
            p = under("budget", "check", "--db", done, "--budgets", budgets)
            expect(p.returncode == 0 and "all 1 limits hold" in p.stdout, f"budget check: {p.stdout!r} {p.stderr!r}")
        finally:
            os.chmod(ro, 0o755)
        with open(db, "rb") as f:
            expect(f.read() == before, "the read-only database changed")
        expect(sorted(os.listdir(ro)) == ["done.sqlite", "r.sqlite"], f"files left: {os.listdir(ro)}")


def test_err_empty_gguf():
    """An empty or truncated .gguf is a GGUF error naming the file, not a JSON one."""
    with tempfile.TemporaryDirectory() as tmp:
        empty = os.path.join(tmp, "empty.gguf")
        open(empty, "wb").close()
        for args in (["run", "--no-db", "--model", empty], ["infer", "--model", empty, "--text", "x"],
                     ["eval", "--no-db", *TINY, "--vocab", empty]):
            err = expect_error(args, f"{empty}: empty file (0 bytes); expected a GGUF file")
            expect("JSON" not in err, f"{args}: {err}")
        short = os.path.join(tmp, "short.gguf")
        with open(short, "wb") as f:
            f.write(b"GGUF" + struct_u32(3) + b"\0\0")  # 10 bytes: magic, version, a third of a count
        expect_error(["run", "--no-db", "--model", short], f"{short}: 10 bytes, too short for a GGUF file",
                     "header alone is 24 bytes")


def struct_u32(v):
    return v.to_bytes(4, "little")


def test_err_json_too_deep():
    """JSON nested past cJSON's 1,000 levels says so, with where; 1,000 levels still parse."""
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "chip.json")
        with open(os.path.join(MODELS, "chips", "hc1-class.json")) as f:
            chip = f.read().lstrip()[1:]  # hc1-class.json without its opening brace
        # the root object is level 1; 999 arrays make 1,000 levels: read, then refused as an unknown key
        with open(path, "w") as f:
            f.write('{"x":\n  ' + "[" * 999 + "]" * 999 + "," + chip)
        err = expect_error(["run", "--no-db", "--chip", path], path, "key 'x': not a chip key")
        expect("nested" not in err and "malformed" not in err, err)
        # 1,001 levels: the 1,000th array opens on line 2 at column 3 + 999
        with open(path, "w") as f:
            f.write('{"x": "[[[ in a string do not count", "y":\n  ' + "[" * 1000 + "]" * 1000 + "," + chip)
        expect_error(["run", "--no-db", "--chip", path],
                     f"{path}: JSON nested more than 1000 levels deep (the reader's limit) at line 2, column 1002")
        data = os.path.join(tmp, "d.jsonl")
        with open(data, "w") as f:
            f.write('{"id": 1}\n{"id": ' + "[" * 1000 + "]" * 1000 + "}\n")
        j = json.loads(run("eval", "--no-db", "--no-compare", *TINY, "--data", data, "--rule", "Fine?", "--json").stdout)
        expect(j["records_done"] == 1 and j["records_skipped"] == 1, f"records {j['records_done']}/{j['records_skipped']}")
        db = os.path.join(tmp, "e.sqlite")
        run("eval", "--no-compare", *TINY, "--data", data, "--rule", "Fine?", "--db", db)
        reason = sqlite3.connect(db).execute("SELECT reason FROM records WHERE status = 'skipped'").fetchone()[0]
        expect(reason == "line 2: JSON nested more than 1000 levels deep (the reader's limit)", reason)


def test_err_derive_names_inputs():
    """chip derive's errors about the derived chip name the model and the template, never the
    temporary file it loads the derived chip from, and leave no file beside the output."""
    with tempfile.TemporaryDirectory() as tmp:
        with open(os.path.join(MODELS, "llm", "tiny-llama", "config.json")) as f:
            cfg = json.load(f)
        cfg.update(hidden_size=1 << 24, intermediate_size=1 << 24, num_attention_heads=256,
                   num_key_value_heads=256, num_hidden_layers=2)
        huge = os.path.join(tmp, "huge")
        os.mkdir(huge)
        with open(os.path.join(huge, "config.json"), "w") as f:
            json.dump(cfg, f)
        out_dir = os.path.join(tmp, "out")
        os.mkdir(out_dir)
        out = os.path.join(out_dir, "c.json")
        hc1 = os.path.join(MODELS, "chips", "hc1-class.json")
        err = expect_error(["chip", "derive", "--model", huge, "-o", out],
                           f"the chip derived for huge ({huge}/config.json) from hc1-class (",
                           "hc1-class.json): key 'tile.lanes.count': expected an integer in [1, 1099511627776], got ")
        expect(".derive-" not in err and out not in err, err)
        expect(os.path.realpath(err.split(" from hc1-class (")[1].split(")")[0]) == os.path.realpath(hc1), err)
        expect(os.listdir(out_dir) == [], f"left {os.listdir(out_dir)}")


def test_one_token_decode():
    """With one generated token there is no decode interval: the decode rate and token latencies are
    null in JSON (and in the database's summary), '-' in the text; budget and compare say so."""
    with tempfile.TemporaryDirectory() as tmp:
        args = [*TINY, "--prompt", "8", "--generate", "1", "--streams", "2"]
        j = run_json("--no-db", *args)
        expect(j["decode_tokens_per_s"] is None and j["analytic_decode_tokens_per_s"] is None, "decode rates")
        expect(j["token_latency_ns"] == {"p50": None, "p99": None}, f"latencies {j['token_latency_ns']}")
        for k in ("stream0_cycles", "analytic_stream0_cycles"):
            expect(j[k]["decode_first"] is None and j[k]["decode_last"] is None and j[k]["decode_total"] == 0, f"{k} {j[k]}")
        expect(j["tokens"] == 2 and j["tokens_per_s"] > 0 and j["ttft_ns"] > 0, "the figures one token defines")
        two = run_json("--no-db", *TINY, "--prompt", "8", "--generate", "2", "--streams", "2")
        expect(two["decode_tokens_per_s"] > 0 and two["token_latency_ns"]["p50"] > 0, "two tokens: a decode rate")
        text = run("run", "--no-db", *args).stdout
        rows = {l[:30].strip(): l[30:].split() for l in text.splitlines()}
        expect(rows["decode tokens/s per stream"] == ["-", "-"], text)
        expect(rows["token latency p50, us"] == ["-", "-"] and rows["token latency p99, us"] == ["-"], text)
        expect("no decode interval" in text, text)
        db = os.path.join(tmp, "r.sqlite")
        run("run", *args, "--db", db)
        summary = json.loads(sqlite3.connect(db).execute("SELECT summary FROM runs").fetchone()[0])
        expect(summary["decode_tokens_per_s"] is None, "the database's summary")
        budgets = os.path.join(tmp, "b.json")
        with open(budgets, "w") as f:
            json.dump({"decode_tokens_per_s": {"min": 1}}, f)
        expect_error(["budget", "check", "--db", db, "--budgets", budgets], budgets, "'decode_tokens_per_s'",
                     "holds null there: the run does not define it", code=2)
        c = json.loads(run("compare", "--json", "--pair", f"tiny-llama:{TINY[1]}", "--prompt", "8", "--generate", "1").stdout)
        expect(c[0]["decode_tokens_per_s"] is None, f"compare {c}")
        # eval: one token per record; its figures are per record and stay numbers
        e = json.loads(run("eval", "--no-db", "--no-compare", "--records", "20", "--max-new-tokens", "1", "--json").stdout)
        expect(e["output_tokens"] == 20 and e["record_latency_ns"]["p50"] > 0 and e["tokens_per_s"] > 0, "eval")


def test_eval_records_summary():
    """eval --records N on the demo says N generated records, and the text summary the output tokens."""
    j = json.loads(run("eval", "--no-db", "--no-compare", "--records", "200", "--json").stdout)
    expect(j["data"] == "demo: 200 generated card transactions", j["data"])
    expect(j["records_done"] + j["records_skipped"] == 200 and j["output_tokens"] == 4 * j["records_done"],
           f"{j['records_done']} done, {j['records_skipped']} skipped, {j['output_tokens']} tokens")
    text = run("eval", "--no-db", "--no-compare", "--records", "200").stdout
    expect("  data: demo, 200 generated card transactions\n" in text, text)
    expect(re.search(r"tokens +%d output, \d+ rule tokens" % j["output_tokens"], text), text)
    j = json.loads(run("eval", "--no-db", "--no-compare", "--records", "20000", "--json").stdout)
    expect(j["data"] == "demo: 10,000 generated card transactions" and j["records_done"] + j["records_skipped"] == 10000,
           j["data"])


def test_rom_size_unit():
    """rom build and inspect give the image's size in a unit that fits it (here MB), not '0.000 GB'."""
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "t.rom")
        p = run("rom", "build", *TINY, "--recipe", "hc1-mix", "--synthetic", "42", "-o", out)
        size = os.path.getsize(out)
        expect(1e6 <= size < 1e9, f"tiny ROM of {size} bytes: the test expects MB")
        want = f"{size / 1e6:.1f} MB"
        expect(f", {want} file," in p.stdout and "GB" not in p.stdout, p.stdout)
        expect(run("rom", "inspect", out).stdout.splitlines()[0].endswith(f" banks, {want}"), "inspect")


def test_stopped_demo_leaves_nothing():
    """The demo dataset leaves no file however the command ends: eval's never has a name; dataset
    demo -o removes its FILE.tmp when stopped by SIGINT, SIGTERM or SIGHUP."""
    with tempfile.TemporaryDirectory() as tmp:
        private = os.path.join(tmp, "t")
        os.mkdir(private)
        env = dict(os.environ, TMPDIR=private)
        # watch the folder closely: the moment anything appears in it, kill eval
        p = popen_signals([ETCHSIM, "eval", "--no-db", "--no-compare"], env=env, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
        seen = []
        while p.poll() is None and not seen:
            seen = os.listdir(private)
        if seen:
            p.kill()
        p.wait()
        expect(not seen and p.returncode == 0, f"the demo eval made {seen} in $TMPDIR (exit {p.returncode})")
        for delay in (0, 0.002, 0.005, 0.01, 0.02, 0.05):
            for sig in (signal.SIGTERM, signal.SIGKILL):
                p = popen_signals([ETCHSIM, "eval", "--no-db"], env=env, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
                time.sleep(delay)
                p.send_signal(sig)
                p.wait()
                expect(os.listdir(private) == [], f"{sig.name} after {delay} s left {os.listdir(private)}")
        out = os.path.join(tmp, "d.csv")
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            p = popen_signals([ETCHSIM, "dataset", "demo", "-o", out, "--records", "5000000"],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            deadline = time.time() + 60
            while not os.path.exists(out + ".tmp") and time.time() < deadline and p.poll() is None:
                time.sleep(0.01)
            p.send_signal(sig)
            p.wait()
            expect(p.returncode == -sig, f"dataset demo after {sig.name}: exit {p.returncode}")
            expect(sorted(os.listdir(tmp)) == ["t"], f"dataset demo stopped by {sig.name} left {os.listdir(tmp)}")


def test_stopped_trace_leaves_nothing():
    """A traced run stopped by SIGINT, SIGTERM or SIGHUP removes FILE.json.tmp and ends by the signal."""
    with tempfile.TemporaryDirectory() as tmp:
        tr = os.path.join(tmp, "t.json")
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            p = popen_signals([ETCHSIM, "run", "--no-db", "--streams", "4", "--trace", tr],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            deadline = time.time() + 60
            while not os.path.exists(tr + ".tmp") and time.time() < deadline and p.poll() is None:
                time.sleep(0.01)
            expect(p.poll() is None, f"the run ended before it could be stopped: {p.returncode}")
            time.sleep(0.05)  # it is writing events
            p.send_signal(sig)
            p.wait()
            p.stderr.close()
            expect(p.returncode == -sig, f"{sig.name}: exit {p.returncode}")
            expect(os.listdir(tmp) == [], f"a run stopped by {sig.name} left {os.listdir(tmp)}")


def test_stopped_sweep_leaves_nothing():
    """A sweep stopped by a signal kills its points and removes OUT.sqlite.points; one killed by
    SIGKILL leaves the folder, which the next sweep into the same OUT removes once its owner is gone,
    and refuses while the owner runs or when it ran on another host."""
    with tempfile.TemporaryDirectory() as tmp:
        grid = {"chip": [os.path.join(DATA, "tiny-chip.json")], "model": ["tiny-llama"], "prompt": [8],
                "generate": [4], "streams": list(range(1, 41))}
        g, out = os.path.join(tmp, "g.json"), os.path.join(tmp, "s.sqlite")
        with open(g, "w") as f:
            json.dump(grid, f)
        pts = out + ".points"

        def start_and_wait():
            p = popen_signals([ETCHSIM, "sweep", "--grid", g, "--db", out, "--jobs", "2"],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            deadline = time.time() + 60
            while time.time() < deadline and p.poll() is None and not os.path.exists(os.path.join(pts, "1.log")):
                time.sleep(0.01)
            expect(p.poll() is None, f"the sweep ended before it could be stopped: {p.returncode}")
            return p
        for sig in (signal.SIGTERM, signal.SIGINT):
            p = start_and_wait()
            kids = children_of(p.pid)
            p.send_signal(sig)
            p.wait()
            expect(p.returncode == -sig, f"{sig.name}: exit {p.returncode}")
            expect(os.listdir(tmp) == ["g.json"], f"a sweep stopped by {sig.name} left {os.listdir(tmp)}")
            expect(not [k for k in kids if os.path.exists(f"/proc/{k}")], "a point outlived the sweep")
        p = start_and_wait()
        p.kill()
        p.wait()
        with open(os.path.join(pts, "owner")) as f:
            owner = f.read()
        expect(f" pid {p.pid} " in owner, f"owner file {owner!r}")
        deadline = time.time() + 10  # its points die with it (PR_SET_PDEATHSIG)
        while time.time() < deadline and children_of(p.pid):
            time.sleep(0.05)
        small = os.path.join(tmp, "g2.json")
        with open(small, "w") as f:
            json.dump(dict(grid, streams=[1, 2]), f)
        r = run("sweep", "--grid", small, "--db", out, "--jobs", "2")
        expect(f"removed {pts}, left by sweep process {p.pid} that is gone" in r.stderr, r.stderr)
        expect("2 points, 2 done" in r.stdout and sorted(os.listdir(tmp)) == ["g.json", "g2.json", "s.sqlite"],
               f"{r.stdout} {os.listdir(tmp)}")
        # an owner that runs (this test), or one on another host: refused, nothing removed
        out2 = os.path.join(tmp, "x.sqlite")
        os.mkdir(out2 + ".points")
        with open(f"/proc/{os.getpid()}/stat") as f:
            started = f.read().rsplit(")", 1)[1].split()[19]
        host = os.uname().nodename
        for text, needle in ((f"etchsim sweep host {host} pid {os.getpid()} started {started}\n",
                              f"in use by sweep process {os.getpid()}, still running"),
                             ("etchsim sweep host elsewhere.example pid 1 started 1\n", "left by a sweep on elsewhere.example")):
            with open(os.path.join(out2 + ".points", "owner"), "w") as f:
                f.write(text)
            expect_error(["sweep", "--grid", small, "--db", out2], out2 + ".points", needle, code=2)
            expect(os.listdir(out2 + ".points") == ["owner"] and not os.path.exists(out2), "a refused sweep changed files")



# ---- issue 18, h/tidy: outputs written whole or not at all (es_atomic) ----

def test_stopped_rom_build_leaves_nothing():
    """rom build writes FILE.tmp through es_atomic, registered for removal: a build stopped by SIGINT,
    SIGTERM or SIGHUP leaves neither FILE nor FILE.tmp and ends by the signal."""
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "big.rom")
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            p = popen_signals([ETCHSIM, "rom", "build", "--model", "llama-3.2-1b", "--chip", "hc1-class",
                               "--synthetic", "1", "--threads", "1", "-o", out],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            deadline = time.time() + 60
            while not os.path.exists(out + ".tmp") and time.time() < deadline and p.poll() is None:
                time.sleep(0.01)
            expect(p.poll() is None, f"the build ended before it could be stopped: {p.returncode}")
            p.send_signal(sig)
            p.wait()
            expect(p.returncode == -sig, f"rom build after {sig.name}: exit {p.returncode}")
            expect(os.listdir(tmp) == [], f"rom build stopped by {sig.name} left {os.listdir(tmp)}")

# ---- cost (issue 19 item 3): etchsim cost, run --json's "cost" ---------------------------------

def cost_inputs():
    """The cost keys' values as the shipped files give them (the oracle reads the files, not the code)."""
    def val(node, *path):
        for k in path:
            node = node[k]
        return node["value"] if isinstance(node, dict) else node
    with open(os.path.join(MODELS, "chips", "hc1-class.json")) as f:
        chip = json.load(f)
    with open(os.path.join(MODELS, "process", "n6.json")) as f:
        proc = json.load(f)
    with open(os.path.join(MODELS, "deploy", "us-industrial.json")) as f:
        dep = json.load(f)
    k = {n: val(proc, "cost", n) for n in ("wafer_usd", "wafer_diameter_mm", "edge_exclusion_mm",
                                           "defect_density_per_cm2", "yield_model", "clustering_alpha")}
    k.update({n: val(chip, "cost", n) for n in ("package_test_usd", "board_usd", "host_usd_per_card", "host_w_per_card")})
    k.update({n: val(dep, n) for n in ("electricity_usd_per_kwh", "pue", "lifetime_years", "utilization")})
    return k


def cost_by_hand(k, area, tps, watts, card=None):
    """Dollars per million tokens, line by line (README, Cost): returns the figures it derives."""
    d = k["wafer_diameter_mm"] - 2 * k["edge_exclusion_mm"]          # usable diameter, mm
    gross = math.floor(math.pi * (d / 2) ** 2 / area - math.pi * d / math.sqrt(2 * area))
    ad = area / 100 * k["defect_density_per_cm2"]                     # defects per die (area in cm2)
    y = {"poisson": math.exp(-ad), "murphy": ((1 - math.exp(-ad)) / ad) ** 2,
         "negative_binomial": (1 + ad / k["clustering_alpha"]) ** -k["clustering_alpha"]}[k["yield_model"]]
    die = k["wafer_usd"] / (gross * y)
    if card is None:
        card = die + k["package_test_usd"] + k["board_usd"]
    system = card + k["host_usd_per_card"]
    capex_s = system / (k["lifetime_years"] * 365.25 * 86400 * k["utilization"])
    energy_s = (watts + k["host_w_per_card"]) * k["pue"] * k["electricity_usd_per_kwh"] / 3.6e6
    return {"dies_per_wafer": gross, "yield": y, "die_usd": die, "card_usd": card, "system_usd": system,
            "capex_usd_per_s": capex_s, "energy_usd_per_s": energy_s,
            "usd_per_m_tokens": (capex_s + energy_s) / tps * 1e6}


def close(a, b, rel=1e-12):
    return abs(a - b) <= rel * max(abs(a), abs(b))


def test_cost_hc1_by_hand():
    """hc1-class's die, card and system cost and $/M tokens, derived here from the chip file, the
    process table and the deployment file, equal etchsim cost's and run --json's (to float rounding,
    1e-12 relative). The run's tokens/s, watts and die area are the simulation's inputs to cost."""
    k = cost_inputs()
    area = json.loads(run("area", "--json").stdout)["area_mm2"]
    r = run_json("--no-db")
    c = json.loads(run("cost", "--json").stdout)["cost"]
    expect(r["cost"] == c, "run --json's cost differs from etchsim cost's on the same run")
    want = cost_by_hand(k, area, r["tokens_per_s"], r["watts"])
    # 853.9 mm2 on 294 mm of usable wafer: pi 147^2 / 853.9 = 79.50, pi 294 / sqrt(1707.7) = 22.35, 57 dies
    expect(want["dies_per_wafer"] == 57 and c["die"]["dies_per_wafer"] == 57, f"dies per wafer {c['die']}")
    expect(c["card_from"] == "die" and c["deploy"] == "us-industrial", f"{c['card_from']} {c['deploy']}")
    expect(close(c["die"]["yield"], want["yield"]), f"yield {c['die']['yield']} against {want['yield']}")
    for key in ("die_usd",):
        expect(close(c["die"][key], want[key]), f"{key} {c['die'][key]} against {want[key]}")
    for key in ("card_usd", "system_usd", "capex_usd_per_s", "energy_usd_per_s", "usd_per_m_tokens"):
        expect(close(c[key], want[key]), f"{key} {c[key]} against {want[key]}")
    expect(close(c["capex_usd_per_m_tokens"] + c["energy_usd_per_m_tokens"], c["usd_per_m_tokens"]), "parts")
    expect(c["tokens_per_s"] == r["tokens_per_s"] and c["watts"] == r["watts"] and
           c["joules_per_token"] == r["joules_per_token"], "cost's run figures are not the run's")
    # the text table says the same
    out = run("cost").stdout
    expect(f"{want['usd_per_m_tokens']:.6f}" in out and "gross dies per wafer" in out and "57" in out, out)


def test_deploy_sourced():
    """Every number of a shipped deployment file carries a source, and a shipped deployment loads."""
    folder = os.path.join(MODELS, "deploy")
    names = [n for n in os.listdir(folder) if n.endswith(".json")]
    expect("us-industrial.json" in names, f"deployments {names}")
    for name in names:
        with open(os.path.join(folder, name)) as f:
            d = json.load(f)
        bad = [k for k, v in d.items() if isinstance(v, (int, float)) or
               (isinstance(v, dict) and isinstance(v.get("value"), (int, float)) and not v.get("source"))]
        expect(not bad, f"{name}: numbers without a source: {bad}")
        run("cost", "--deploy", os.path.join(folder, name), "--prompt", "8", "--generate", "2")


def test_cost_yield_models():
    """Poisson and Murphy yields (--set process.cost.yield_model) and a deployment set from the
    command line move the die cost and $/M tokens as the formulas worked here say."""
    k = cost_inputs()
    area = json.loads(run("area", "--json").stdout)["area_mm2"]
    wl = ("--prompt", "64", "--generate", "16", "--streams", "2")
    r = run_json("--no-db", *wl)
    for model in ("poisson", "murphy"):
        c = json.loads(run("cost", "--json", *wl, "--set", f"process.cost.yield_model={model}",
                           "--set", "deploy.utilization=0.5", "--set", "deploy.pue=1.3").stdout)["cost"]
        want = cost_by_hand(dict(k, yield_model=model, utilization=0.5, pue=1.3), area, r["tokens_per_s"], r["watts"])
        expect(c["die"]["yield_model"] == model and "clustering_alpha" not in c["die"], f"{c['die']}")
        for key, have in (("yield", c["die"]["yield"]), ("die_usd", c["die"]["die_usd"]),
                          ("usd_per_m_tokens", c["usd_per_m_tokens"])):
            expect(close(have, want[key]), f"{model}: {key} {have} against {want[key]}")
    # at 0.09 per cm2 on 8.54 cm2: Poisson < Murphy < negative binomial (alpha 3)
    ys = [json.loads(run("cost", "--json", *wl, "--set", f"process.cost.yield_model={m}").stdout)["cost"]["die"]["yield"]
          for m in ("poisson", "murphy", "negative_binomial")]
    expect(ys[0] < ys[1] < ys[2], f"yields {ys}")


def test_cost_card_price():
    """A chip that gives its card's price (cost.card_usd, as a bought GPU) takes it instead of the
    die-derived card cost; giving both is an error naming the key."""
    k = cost_inputs()
    with tempfile.TemporaryDirectory() as tmp:
        def gpu(c):
            c["cost"] = {"card_usd": {"value": 30000, "source": "test"}, "host_usd_per_card": {"value": 5000, "source": "test"},
                         "host_w_per_card": {"value": 100, "source": "test"}}
        path = chip_copy(tmp, gpu)
        wl = ("--chip", path, "--prompt", "64", "--generate", "16")
        r = run_json("--no-db", *wl)
        c = r["cost"]
        want = cost_by_hand(dict(k, host_usd_per_card=5000, host_w_per_card=100), r["area_mm2"], r["tokens_per_s"],
                            r["watts"], card=30000)
        expect(c["card_from"] == "card_usd" and c["die"] is None and c["card_usd"] == 30000 and c["system_usd"] == 35000,
               f"{c}")
        expect(close(c["usd_per_m_tokens"], want["usd_per_m_tokens"]), f"{c['usd_per_m_tokens']} against {want}")
        def both(c):
            gpu(c)
            c["cost"]["board_usd"] = {"value": 10, "source": "test"}
        expect_error(["cost", "--chip", chip_copy(tmp, both)], "key 'cost.board_usd'", "give it or the die's parts")


def test_err_cost_range():
    """A cost input out of its range is one error naming the file and the key: a negative wafer
    price, a clustering alpha of 0, a utilization above 1."""
    n6 = os.path.join(MODELS, "process", "n6.json")
    dep = os.path.join(MODELS, "deploy", "us-industrial.json")
    for args, where, key in ((["--set", "process.cost.wafer_usd=-1"], n6, "cost.wafer_usd"),
                             (["--set", "process.cost.clustering_alpha=0"], n6, "cost.clustering_alpha"),
                             (["--set", "deploy.utilization=1.5"], dep, "utilization")):
        for cmd in ("cost", "run"):
            err = expect_error([cmd, "--no-db" if cmd == "run" else "--json", *args], where, f"key '{key}'",
                               "expected a number in")
            expect(err.count("\n") == 0, f"more than one line: {err!r}")


def test_err_cost_yield_model():
    """An unknown yield model is one error naming the key and the models it accepts."""
    expect_error(["cost", "--set", "process.cost.yield_model=gamma"], "n6.json", "key 'cost.yield_model'",
                 'expected "poisson", "murphy" or "negative_binomial", got "gamma"')


def test_err_cost_missing():
    """No cost without its inputs: a chip without a cost section (etchsim cost refuses, run's cost is
    null and its summary says why), a die that does not fit the wafer, an unknown deployment or key."""
    tiny = (*TINY, "--prompt", "8", "--generate", "4")
    expect_error(["cost", *tiny], "tiny-chip.json", "no cost section")
    expect(run_json("--no-db", *tiny)["cost"] is None, "the tiny chip has a cost")
    expect("no cost section" in run("run", "--no-db", *tiny).stdout, "run's summary does not say why")
    expect_error(["cost", "--set", "process.cost.wafer_diameter_mm=25"], "does not fit on a 25 mm wafer")
    expect_error(["cost", "--deploy", "nosuch"], "--deploy nosuch")
    expect_error(["cost", "--set", "deploy.lifetime=5"], "us-industrial.json", "--set deploy.lifetime: no such key")
    with tempfile.TemporaryDirectory() as tmp:
        bad = os.path.join(tmp, "d.json")
        with open(os.path.join(MODELS, "deploy", "us-industrial.json")) as f:
            d = json.load(f)
        d["lifetime"] = 5
        with open(bad, "w") as f:
            json.dump(d, f)
        expect_error(["cost", "--deploy", bad], bad, "key 'lifetime'", "lifetime_years")


def test_db_schema_5():
    """Schema 5 adds the costs table: a schema 4 database gains it on open, its runs unchanged and
    without a costs row; a run whose summary has a cost writes one row equal to that cost; a run
    without one (the tiny chip) writes none; a sweep's merge copies the rows."""
    with tempfile.TemporaryDirectory() as tmp:
        db = os.path.join(tmp, "v4.sqlite")
        run("run", *TINY, "--prompt", "8", "--generate", "2", "--db", db)
        con = sqlite3.connect(db)  # back to schema 4 as it shipped: no costs table
        con.executescript("DROP TABLE costs; PRAGMA user_version = 4;")
        con.close()
        run("run", "--prompt", "16", "--generate", "4", "--db", db)
        con = sqlite3.connect(db)
        version, = con.execute("PRAGMA user_version").fetchone()
        rows = con.execute("SELECT run_id, deploy, card_from, die_usd, card_usd, system_usd, tokens_per_s, watts,"
                           " joules_per_token, capex_usd_per_m_tokens, energy_usd_per_m_tokens, usd_per_m_tokens"
                           " FROM costs ORDER BY run_id").fetchall()
        summary, = con.execute("SELECT summary FROM runs WHERE id = 2").fetchone()
        con.close()
        c = json.loads(summary)["cost"]
        want = (2, c["deploy"], c["card_from"], c["die"]["die_usd"], c["card_usd"], c["system_usd"], c["tokens_per_s"],
                c["watts"], c["joules_per_token"], c["capex_usd_per_m_tokens"], c["energy_usd_per_m_tokens"],
                c["usd_per_m_tokens"])
        expect(version == 6 and rows == [want], f"schema {version}, costs rows {rows} against {want}")
        grid = os.path.join(tmp, "g.json")
        with open(grid, "w") as f:
            json.dump({"prompt": [8], "generate": [2], "streams": [1, 2]}, f)
        out = os.path.join(tmp, "s.sqlite")
        run("sweep", "--grid", grid, "--db", out, "--jobs", "1")
        con = sqlite3.connect(out)
        n, = con.execute("SELECT COUNT(*) FROM costs JOIN runs ON runs.id = costs.run_id WHERE runs.status = 'complete'"
                         " AND costs.usd_per_m_tokens > 0").fetchone()
        con.close()
        expect(n == 2, f"{n} costs rows after the sweep's merge, want 2")


# ---- weight stores (issue 19: store.kind rom | sram | hbm) ------------------------------------

def drop_rom_keys(c):
    """A chip dict whose store.kind is sram or hbm loses tile.rom and head.*_rom (such a chip has no ROMs and
    refuses their keys); a ROM chip keeps them. Returns c."""
    if c.get("store", {}).get("kind", {}).get("value") in ("sram", "hbm"):
        c["tile"].pop("rom", None)
        c["head"].pop("embed_rom", None)
        c["head"].pop("lm_rom", None)
    return c


def tiny_store_chip(tmp, name, store, edit=None):
    """tests/data/tiny-chip.json with a store section (each key sourced), edited by edit(dict); its path."""
    with open(os.path.join(DATA, "tiny-chip.json")) as f:
        c = json.load(f)
    if store:
        c["store"] = {k: {"value": v, "source": "test fixture"} for k, v in store.items()}
    if edit:
        edit(c)
    drop_rom_keys(c)
    path = os.path.join(tmp, name + ".json")
    with open(path, "w") as f:
        json.dump(c, f)
    return path


def test_store_rom_to_sram_hbm():
    """Moving tiny-llama's weights from the tiny chip's ROMs to an SRAM store per tile and to an HBM store changes time,
    energy and area as the store's keys say, worked out by hand from the configs (nothing asked of the simulator).

    tiny-llama: hidden 256, ffn 768, 8 heads, 2 KV heads of 32 (k, v 64 rows), 4 layers (4 tiles), vocab 1024;
    weights int3 group 64 (a block of 64 = 64 x 3 bits + a 16-bit scale = 208 bits), attn_v and lm_head int6 (64 x 6
    + 16 = 400 bits), norms bf16 (256 x 16 = 4096 bits). Lane cells per token = elements x ceil(bits / cell_bits 3):
    int3 1, int6 2. Tile lanes 8192, head lanes 8192; tile ROM 64 banks x 1024 bits = 65536 bits/cycle, LM-head ROM
    65536, embedding ROM 8 x 1024 = 8192; ROM latency 2, lane pipeline 10.

      tensor   rows x cols   bits              lane cycles   ROM cycles      store cycles (1024 bits/cycle)
      q        256 x 256     256x4x208=212992  65536/8192=8  ceil(/65536)=4  208
      k         64 x 256     53248             2             1               52
      v (int6)  64 x 256     64x4x400=102400   32768/8192=4  2               100
      o        256 x 256     212992            8             4               208
      gate     768 x 256     638976            24            10              624
      up       768 x 256     638976            24            10              624
      down     256 x 768     256x12x208=638976 24            10              624
      a layer: lanes 94 (ROM-bound nowhere), store 2440 = 2498560 bits / 1024, 7 matrix products
      LM head 1024 x 256 int6: 1638400 bits, 524288 cells / 8192 = 64 cycles; store 1600
      embedding row: 4 x 208 = 832 bits: ROM ceil(832 / 8192) = 1, store ceil(832 / 1024) = 1

    A decode step (one token) on a store of latency L, against the ROMs (latency 2):
      per layer (2440 - 94) + 7 x (L - 2); LM head (1600 - 64) + (L - 2); embedding 1 - 1 + (L - 2).
      HBM (1 stack of 1024 bits/cycle, L 20): 4 x (2346 + 126) + (1536 + 18) + 18 = 11460
      SRAM per tile (2 ports of 512 bits, L 5): 4 x (2346 + 21) + (1536 + 3) + 3 = 11010
    The 8-token prompt (one chunk, one pass per token: tokens_per_read 1) on HBM: 4 x (8 x (2440 - 94) + 7 x 18) +
      embedding (ceil(8 x 832 / 1024) + 20) - (ceil(8 x 832 / 8192) + 2) = 27 - 3 + LM head 1554 = 75576 + 24 + 1554 = 77154.
    Weight bits read, prompt 8 and 4 generated (11 tokens through the tiles, 4 through the LM head, 11 embedding
      rows): 11 x 4 x 2498560 + 4 x 1638400 + 11 x 832 = 116499392, x read_fj_per_bit / VR efficiency 0.9.
    Area: an SRAM store of C bytes per tile and one for the head = 5 x 8 C bits x 0.027 um2 / 0.7 (n6.json), x 6
      transistors, x 0.0155 W/mm2 leakage; no ROM; HBM: no die area for weights at all."""
    common = ["--model", "tiny-llama", "--prompt", "8", "--generate", "4", "--no-db"]
    with tempfile.TemporaryDirectory() as tmp:
        hbm = tiny_store_chip(tmp, "hbm", {"kind": "hbm", "capacity_bytes": 2000000, "ports": 1, "bits_per_cycle": 1024,
                                           "latency_cycles": 20, "read_fj_per_bit": 3900, "static_w": 15})
        sram = tiny_store_chip(tmp, "sram", {"kind": "sram", "scope": "tile", "capacity_bytes": 400000, "ports": 2,
                                             "bits_per_cycle": 512, "latency_cycles": 5, "read_fj_per_bit": 20})
        rom = run_json("--chip", os.path.join(DATA, "tiny-chip.json"), *common)
        h = run_json("--chip", hbm, *common)
        s = run_json("--chip", sram, *common)
        for label, j, step in (("hbm", h, 11460), ("sram", s, 11010)):
            same_cycles(j, label)
            r, x = rom["stream0_cycles"], j["stream0_cycles"]
            for k in ("decode_first", "decode_last"):
                expect(x[k] - r[k] == step, f"{label}: {k} {x[k]} - ROM's {r[k]} = {x[k] - r[k]}, by hand {step}")
            expect(x["decode_total"] - r["decode_total"] == 3 * step, f"{label}: decode_total")
        expect(h["stream0_cycles"]["ttft"] - rom["stream0_cycles"]["ttft"] == 77154,
               f"hbm ttft {h['stream0_cycles']['ttft']} - ROM {rom['stream0_cycles']['ttft']}, by hand 77154")
        bits = 11 * 4 * 2498560 + 4 * 1638400 + 11 * 832
        for label, j, fj in (("hbm", h, 3900), ("sram", s, 20)):
            ev = j["energy_by_event_j"]
            expect(abs(ev["store_reads"] - bits * fj * 1e-15 / 0.9) <= 1e-12 * ev["store_reads"],
                   f"{label}: store_reads {ev['store_reads']}, by hand {bits * fj * 1e-15 / 0.9}")
            expect(ev["rom_reads"] == 0 and j["area"]["rom"]["mm2"] == 0, f"{label}: ROM energy or area left")
        expect("store_reads" not in rom["energy_by_event_j"] and "store_static" not in rom["energy_by_event_j"] and
               "weight_sram" not in rom["area"], "a ROM chip's outputs gained store keys")
        secs = h["cycles"] / h["clock_hz"]
        expect(abs(h["energy_by_event_j"]["store_static"] - 15 * secs) <= 1e-12 * 15 * secs, "hbm: store_static")
        expect("weight_sram" not in h["area"] and "store_static" not in s["energy_by_event_j"], "hbm area / sram static")
        for k in ("kv_sram", "lanes", "vector", "attention", "sampler", "control", "io"):
            expect(h["area"][k] == rom["area"][k], f"hbm: area {k} moved")
        w = s["area"]["weight_sram"]
        mm2 = 5 * 8 * 400000 * 0.027 / 0.7 * 1e-6
        expect(abs(w["mm2"] - mm2) <= 1e-12 * mm2 and w["transistors"] == 5 * 8 * 400000 * 6 and
               abs(w["leakage_w"] - mm2 * 0.0155) <= 1e-12 * mm2 * 0.0155, f"sram: weight_sram {w}, by hand {mm2} mm2")
        expect(abs(s["area_mm2"] - (rom["area_mm2"] - rom["area"]["rom"]["mm2"] + mm2)) <= 1e-9 * s["area_mm2"],
               f"sram: die area {s['area_mm2']}")



def gpu_like(c, bits_per_cycle):
    """The tiny chip as a machine that runs every layer on one set of units: one tile of all 4 layers, 1024 lanes of
    16-bit cells shared by the tokens of a pass (tensor units), up to 16 tokens per pass, BF16 weights in an HBM store
    of 2 stacks of bits_per_cycle, latency 20."""
    c["tile"]["layers_per_tile"]["value"] = 4
    lanes = c["tile"]["lanes"]
    lanes["count"]["value"] = 1024
    lanes["cell_bits"]["value"] = 16
    lanes["tokens_per_read"]["value"] = 16
    lanes["shared_by_tokens"] = {"value": True, "source": "test fixture: tensor units"}
    c["head"]["lanes"]["count"]["value"] = 1024
    c["scheduler"]["prefill_chunk"]["value"] = 16
    c["weights"] = {"default": {"format": {"value": "bf16", "source": "test fixture"}}}
    c["store"] = {k: {"value": v, "source": "test fixture"} for k, v in
                  {"kind": "hbm", "capacity_bytes": 8000000, "ports": 2, "bits_per_cycle": bits_per_cycle,
                   "latency_cycles": 20, "read_fj_per_bit": 3900, "static_w": 15}.items()}


def test_store_crossover():
    """A GPU-like chip (gpu_like: one tile of every layer, lanes shared by a pass's tokens, weights in HBM) is
    memory-bound at batch 1 and compute-bound from the batch where arithmetic intensity says: a pass of k tokens over
    a BF16 tensor of E elements takes max(k E / 1024 lane cycles, 16 E / 2048 store cycles), equal at
    k* = lanes 1024 x 16 bits / (2 stacks x 1024 bits) = 8. Against the same chip with a store too fast to matter
    (2 x 2^20 bits per cycle: at most 2 cycles a tensor, below its lanes' 16 k at least), one prompt of k tokens
    (one chunk, one pass, uncontended: the simulation's cycles are the analytical model's) takes longer by, by hand:
      layers  sum over 4 x (q 65536, k 16384, v 16384, o 65536, gate, up, down 196608 each = 753664 elements) of
              E / 128 - k E / 1024 while k < 8: 3014656 x (8 - k) / 1024 = 2944 (8 - k); 0 from k = 8 on
      LM head (1 token, 1024 x 256 = 262144 elements): 262144 x 16 / 2048 = 2048 against its lanes' 256: 1792
      embedding (k rows of 256 x 16 bits): ceil(4096 k / 2048) = 2k against 1: 2k - 1
    At batch 1 (a decode step) it is memory-bound: the slow chip's step = the weight bits a token reads
    (4 x 753664 x 16 + 262144 x 16 + one 4096-bit row = 52432896) / 2048 = 25602, plus the same overheads as the
    fast chip's step less its lanes' 4 x 753664 / 1024 + 256 = 3200 cycles and its 1-cycle row."""
    with tempfile.TemporaryDirectory() as tmp:
        slow = tiny_store_chip(tmp, "slow", None, lambda c: gpu_like(c, 1024))
        fast = tiny_store_chip(tmp, "fast", None, lambda c: gpu_like(c, 1 << 20))
        layer_part = {}
        for k in range(1, 13):
            args = ["--model", "tiny-llama", "--prompt", str(k), "--generate", "2", "--no-db"]
            a, b = run_json("--chip", slow, *args), run_json("--chip", fast, *args)
            same_cycles(a, f"slow, batch {k}")
            same_cycles(b, f"fast, batch {k}")
            d = a["stream0_cycles"]["ttft"] - b["stream0_cycles"]["ttft"]
            want = 2944 * max(0, 8 - k) + 1792 + (2 * k - 1)
            expect(d == want, f"batch {k}: the prompt takes {d} cycles longer on the slow store, by hand {want}")
            layer_part[k] = d - 1792 - (2 * k - 1)
            if k == 1:
                # saturated, the one store is the bottleneck: per token 4 x 753664 x 16 / 2048 = 23552 cycles of the
                # layers' weights once per 16 tokens (1472), the LM head's 2048, an embedding row's 2: 3522 cycles
                sat = a["analytic_saturated_tokens_per_s"]
                expect(abs(sat - 1e9 / 3522) <= 1e-9 * sat, f"saturated {sat} tokens/s, by hand 1e9 / 3522")
                step_a, step_b = a["stream0_cycles"]["decode_first"], b["stream0_cycles"]["decode_first"]
                expect(step_a - 52432896 // 2048 == step_b - 3201,
                       f"batch 1: step {step_a} is not bits / bandwidth 25602 + the overheads {step_b - 3201}")
        crossover = min(k for k, v in layer_part.items() if v == 0)
        expect(crossover == 1024 * 16 // (2 * 1024), f"compute-bound from batch {crossover}, arithmetic intensity 8")
        expect(all(layer_part[k] > 0 for k in range(1, crossover)), f"memory-bound below the crossover: {layer_part}")


def test_err_store():
    """Bad stores: one line naming the chip file and the key."""
    good = {"kind": "hbm", "capacity_bytes": 2000000, "ports": 1, "bits_per_cycle": 1024, "latency_cycles": 20,
            "read_fj_per_bit": 3900, "static_w": 15}
    cases = [  # (store edits, what the error says)
        ({"capacity_bytes": 1000000}, ["key 'store.capacity_bytes'", "the HBM store cannot hold the model",
                                       "the model needs 12521472 bits", "holds 1000000 bytes"]),
        ({"kind": "sram", "scope": "tile", "static_w": None, "capacity_bytes": 300000},
         ["key 'store.capacity_bytes'", "the SRAM store cannot hold the model", "tile 0 needs 2506752 bits",
          "holds 300000 bytes per tile"]),
        ({"bits_per_cycle": 0}, ["key 'store.bits_per_cycle'", "expected an integer in [1,", "got 0"]),
        ({"ports": 0}, ["key 'store.ports'", "got 0"]),
        ({"kind": "flash"}, ["key 'store.kind'", 'expected "rom", "sram" or "hbm", got "flash"']),
        ({"kind": "sram"}, ["key 'store.static_w'", "is for hbm"]),
        ({"scope": "tile"}, ["key 'store.scope'", "an hbm store is off the die", 'got "tile"']),
        ({"latency_cycles": None}, ["key 'store.latency_cycles' is missing", "store.kind hbm"]),
        ({"kind": "rom"}, ["key 'store.capacity_bytes'", "a ROM store takes its geometry from tile.rom"]),
        ({"kind": "sram", "static_w": None, "scope": "die"}, ["key 'store.scope'", 'expected "tile" or "chip", got "die"']),
    ]
    with tempfile.TemporaryDirectory() as tmp:
        for edits, needles in cases:
            st = dict(good)
            for k, v in edits.items():
                if v is None:
                    st.pop(k)
                else:
                    st[k] = v
            path = tiny_store_chip(tmp, "bad", st)
            err = expect_error(["run", "--chip", path, "--model", "tiny-llama", "--no-db"], path, *needles)
            expect(err.count("\n") == 0, f"{edits}: more than one line: {err!r}")
        # what lays weights out in ROMs refuses a chip that keeps them elsewhere: a ROM image, chip derive
        hbm = tiny_store_chip(tmp, "hbm", good)
        out = os.path.join(tmp, "x.rom")
        expect_error(["rom", "build", "--model", "tiny-llama", "--chip", hbm, "--synthetic", "3", "-o", out], hbm,
                     "key 'store.kind'", "a ROM image lays the weights out in the chip's ROMs", "keeps them in HBM")
        expect(not os.path.exists(out) and not os.path.exists(out + ".tmp"), "rom build left a file")
        expect_error(["chip", "derive", "--model", "tiny-llama", "--like", hbm, "-o", os.path.join(tmp, "d.json")],
                     hbm, "key 'store.kind'", "chip derive sizes a chip's ROMs")
        moe = tiny_store_chip(tmp, "moe", good)
        expect_error(["run", "--chip", moe, "--model", os.path.join(DATA, "tiny-moe"), "--no-db"], moe,
                     "key 'store.kind'", "is a mixture of experts")



def test_store_shared():
    """A chip-scope store is one server the tiles and the head book, as a KV group's ports are: a prompt of two
    8-token chunks, whose chunks would overlap in the tiles (chunk 2 in tile 0 while chunk 1 is in tile 1), waits for
    it. Every matrix product of the tiny chip on a 1024-bit-per-cycle store is store-bound (test_store_rom_to_sram_hbm:
    a layer's lanes 94 cycles a token, its weights 2440), so the store is busy whenever a tile's lanes are, and the
    prompt cannot finish before the store has streamed all of it: 16 tokens x 4 layers x 2440 + the embedding rows
    (2 chunks x ceil(8 x 832 / 1024) = 7) + the LM head's 1600 = 157774 cycles; the analytical model, which lets the
    chunks overlap, says less. The same store per tile (each tile its own) does overlap them: the analytical cycles."""
    st = {"capacity_bytes": 2000000, "ports": 1, "bits_per_cycle": 1024, "latency_cycles": 20, "read_fj_per_bit": 50}
    args = ["--model", "tiny-llama", "--prompt", "16", "--generate", "2", "--no-db"]
    with tempfile.TemporaryDirectory() as tmp:
        hbm = tiny_store_chip(tmp, "chip", {"kind": "hbm", **st})
        tile = run_json("--chip", tiny_store_chip(tmp, "tile", {"kind": "sram", "scope": "tile", **st}), *args)
        for fidelity in ("transaction", "cycle"):  # the cycle fidelity's lanes take the store as they issue
            chip = run_json("--chip", hbm, *args, "--fidelity", fidelity)
            t, a = chip["stream0_cycles"]["ttft"], chip["analytic_stream0_cycles"]["ttft"]
            expect(t >= 16 * 4 * 2440 + 14 + 1600 > a,
                   f"chip scope, {fidelity}: prompt {t} cycles, the store's work 157774, analytic {a}")
        same_cycles(tile, "tile scope")
        one = run_json("--chip", hbm, "--model", "tiny-llama", "--prompt", "8", "--generate", "4", "--no-db",
                       "--fidelity", "cycle")
        same_cycles(one, "chip scope, one chunk, cycle fidelity")



def test_store_hc1_class():
    """hc1-class's weights (Llama-3.1-8B) moved from its ROMs to an HBM store (5 stacks of 5360 bits per 1 GHz cycle:
    26800 bits, 3.35 TB/s, latency 400) and to one SRAM store for the chip (64 ports of 4096 bits, latency 10): a
    decode step changes, by hand from the chip file and the model's dimensions (hidden 4096, ffn 14336, 8 KV heads of
    128, 32 layers, vocab 128256), by the sum over its matrix products of
    max(lane cycles, store cycles) - max(lane cycles, ROM cycles) + (store latency - ROM latency 2), where lane cycles
    = ceil(cells / lanes), a ROM's cycles ceil(bits / (banks x 1024)) and a store's ceil(bits / (ports x
    bits_per_cycle)); bits at int3 (208 bits a block of 64), attn_v and lm_head int6 (400), cells 1 or 2 per weight;
    and the embedding row's ceil(13312 / bandwidth) + latency against the embedding ROM's. HBM is memory-bound: its
    step less its weight bits per token / 26800 is the ROM step's overheads (the step less its lane cycles and the
    embedding row's ROM cycle). The energy of the weights read is bits x fJ per bit / VR efficiency 0.9; the SRAM's
    area capacity x 8 x 0.027 um2 / 0.7."""
    with open(os.path.join(MODELS, "chips", "hc1-class.json")) as f:
        hc1 = json.load(f)
    val = lambda x: x["value"] if isinstance(x, dict) else x
    lanes, head_lanes = val(hc1["tile"]["lanes"]["count"]), val(hc1["head"]["lanes"]["count"])
    rom_bw = val(hc1["tile"]["rom"]["banks"]) * 1024
    lm_bw, emb_bw = val(hc1["head"]["lm_rom"]["banks"]) * 1024, val(hc1["head"]["embed_rom"]["banks"]) * 1024
    cdiv = lambda a, b: -(-a // b)
    H, F, KV, L, V = 4096, 14336, 8 * 128, 32, 128256
    # (rows, cols, bits per block of 64, cells per weight) of a layer's matrix products
    layer = [(H, H, 208, 1), (KV, H, 208, 1), (KV, H, 400, 2), (H, H, 208, 1), (F, H, 208, 1), (F, H, 208, 1),
             (H, F, 208, 1)]
    lm = (V, H, 400, 2)
    bits = lambda t: t[0] * (t[1] // 64) * t[2]
    cells = lambda t: t[0] * t[1] * t[3]
    row = (H // 64) * 208  # an embedding row: 13312 bits

    def delta(bw, lat):
        d = L * sum(max(cdiv(cells(t), lanes), cdiv(bits(t), bw)) - max(cdiv(cells(t), lanes), cdiv(bits(t), rom_bw))
                    + lat - 2 for t in layer)
        d += max(cdiv(cells(lm), head_lanes), cdiv(bits(lm), bw)) - max(cdiv(cells(lm), head_lanes), cdiv(bits(lm), lm_bw)) + lat - 2
        return d + cdiv(row, bw) - cdiv(row, emb_bw) + lat - 2

    stores = {"hbm": ({"kind": "hbm", "capacity_bytes": 80 * 10**9, "ports": 5, "bits_per_cycle": 5360,
                       "latency_cycles": 400, "read_fj_per_bit": 3900, "static_w": 60}, 26800, 400, 3900),
              "sram": ({"kind": "sram", "scope": "chip", "capacity_bytes": 5 * 10**9, "ports": 64,
                        "bits_per_cycle": 4096, "latency_cycles": 10, "read_fj_per_bit": 20}, 64 * 4096, 10, 20)}
    args = ["--prompt", "1", "--generate", "2", "--no-db"]
    rom = run_json(*args)
    step_rom = rom["stream0_cycles"]["decode_first"]
    with tempfile.TemporaryDirectory() as tmp:
        for name, (st, bw, lat, fj) in stores.items():
            path = os.path.join(tmp, name + ".json")
            with open(path, "w") as f:
                json.dump(drop_rom_keys(json.loads(json.dumps(dict(hc1, store={k: {"value": v, "source": "test fixture"}
                                                                                 for k, v in st.items()})))), f)
            j = run_json("--chip", path, *args)
            same_cycles(j, f"hc1-class, {name}")
            step = j["stream0_cycles"]["decode_first"]
            expect(step - step_rom == delta(bw, lat), f"{name}: step {step} - ROM's {step_rom} = {step - step_rom}, "
                   f"by hand {delta(bw, lat)}")
            # one prompt token and one decode token through the tiles, two through the LM head, two rows
            read = 2 * L * sum(bits(t) for t in layer) + 2 * bits(lm) + 2 * row
            got = j["energy_by_event_j"]["store_reads"]
            expect(abs(got - read * fj * 1e-15 / 0.9) <= 1e-12 * got, f"{name}: store_reads {got}")
            if name == "hbm":
                per_token = L * sum(bits(t) for t in layer) + bits(lm) + row
                lanes_rom = L * sum(cdiv(cells(t), lanes) for t in layer) + cdiv(cells(lm), head_lanes) + cdiv(row, emb_bw)
                over = step - per_token / bw
                expect(over > 0 and abs(over - (step_rom - lanes_rom + 7 * L * (lat - 2) + 2 * (lat - 2))) < 7 * L + 2,
                       f"hbm: step {step} is not weight bits / bandwidth {per_token / bw:.0f} + the ROM step's overheads")
            else:
                mm2 = 5 * 10**9 * 8 * 0.027 / 0.7 * 1e-6
                expect(abs(j["area"]["weight_sram"]["mm2"] - mm2) <= 1e-9 * mm2 and j["area"]["rom"]["mm2"] == 0,
                       f"sram: weight_sram {j['area']['weight_sram']['mm2']} mm2, by hand {mm2}")


# ---- compare beside baselines (issue 19 item 4: compare at load, cost, where the time goes) ----

def test_compare_load_cost():
    """etchsim compare's new figures are the runs' own: each row's one-user TTFT, watts and $/M tokens, and at load
    (--streams 4) tokens/s in all and per user, TTFT, watts, J/token and $/M tokens, equal a single run's JSON; the
    oracle derives the same from other figures of that JSON (tokens / simulated seconds, energy / tokens, the cost's
    capex and energy dollars per second over tokens/s). A chip without cost inputs (the GPU-like HBM tiny chip) shows
    n/a with the reason the run gives."""
    hbm = os.path.join(DATA, "tiny-chip-hbm.json")
    size = ["--prompt", "64", "--generate", "16"]
    args = ["compare", "--pair", f"tiny-llama:{hbm}", "--pair", "llama-3.1-8b:hc1-class", *size, "--streams", "4",
            "--eval-prompt", "100", "--eval-generate", "4"]
    rows = json.loads(run(*args, "--json").stdout)
    expect([r["chip"] for r in rows] == [hbm, "hc1-class"], f"rows {[r['chip'] for r in rows]}")
    for r in rows:
        one = run_json("--no-db", "--model", r["model"], "--chip", r["chip"], *size)
        load = run_json("--no-db", "--model", r["model"], "--chip", r["chip"], *size, "--streams", "4")
        secs = load["cycles"] / load["clock_hz"]
        expect(load["streams"] == 4 and r["load_streams"] == 4, f"{r['chip']}: streams {r['load_streams']}")
        for k, got, src, derived in (
                ("ttft_ns", r["ttft_ns"], one["ttft_ns"], None),
                ("watts", r["watts"], one["watts"], one["energy_j"] * one["clock_hz"] / one["cycles"]),
                ("load_tokens_per_s", r["load_tokens_per_s"], load["tokens_per_s"], load["tokens"] / secs),
                ("load_tokens_per_s_per_user", r["load_tokens_per_s_per_user"], load["decode_tokens_per_s"], None),
                ("load_ttft_ns", r["load_ttft_ns"], load["ttft_ns"], None),
                ("load_watts", r["load_watts"], load["watts"], load["energy_j"] / secs),
                ("load_joules_per_token", r["load_joules_per_token"], load["joules_per_token"],
                 load["energy_j"] / load["tokens"])):
            expect(got == src, f"{r['chip']}: {k} {got} != the run's {src}")
            expect(derived is None or close(got, derived, 1e-9), f"{r['chip']}: {k} {got}, from the run {derived}")
        expect(r["busy_fraction"] == one["busy_fraction"] and r["load_busy_fraction"] == load["busy_fraction"],
               f"{r['chip']}: busy fractions {r['busy_fraction']} {r['load_busy_fraction']}")
        for key, j in (("usd_per_m_tokens", one), ("load_usd_per_m_tokens", load)):
            c = j["cost"]
            if c is None:
                expect(r[key] is None, f"{r['chip']}: {key} {r[key]} without cost inputs")
            else:
                want = (c["capex_usd_per_s"] + c["energy_usd_per_s"]) / j["tokens_per_s"] * 1e6
                expect(r[key] == c["usd_per_m_tokens"] and close(r[key], want, 1e-9),
                       f"{r['chip']}: {key} {r[key]}, the run's {c['usd_per_m_tokens']}, by its parts {want}")
    h, g = rows
    expect(h["usd_per_m_tokens"] is None and h["load_usd_per_m_tokens"] is None and g["cost_unknown"] is None and
           g["load_usd_per_m_tokens"] > 0, f"cost: {h['load_usd_per_m_tokens']} {g['cost_unknown']}")
    why = h["cost_unknown"]
    expect(isinstance(why, str) and why.startswith(hbm + ": no cost section") and "cost.card_usd" in why,
           f"cost_unknown {why!r}")
    text = run(*args).stdout
    line = next((ln for ln in text.splitlines() if ln.startswith("tiny-llama") and "n/a" in ln), "")
    expect(line.split()[9:11] == ["n/a", "n/a"], f"the HBM chip's $/M columns: {line!r}")
    expect(f"$/M n/a: {why}" in text, f"the reason beneath the table: {text[-600:]!r}")


def test_compare_busy_by_hand():
    """compare's time breakdown for the tiny chip with its weights in one HBM store (1 stack of 1024 bits a cycle,
    latency 20; test_store_rom_to_sram_hbm derives its tensors' bits), 8 in / 4 out, one user: 11 tokens go through
    each of the 4 tiles (8 prompt, 3 fed back), the LM head samples 4, the embedding reads 8 rows in one chunk and 3.
      store: each matrix product holds it ceil(bits / 1024) cycles a token: a layer 2440, the LM head 1600, 8
             embedding rows ceil(8 x 832 / 1024) = 7, one row 1: 11 x 4 x 2440 + 4 x 1600 + 7 + 3 x 1 = 113770 cycles
      lanes: every matrix product is store-bound (a layer's lanes 94 cycles a token against 2440), so each tile's
             lanes are booked 11 x 2440 = 26840 cycles (latency and pipeline depth are not lane occupancy)
    each over the run's cycles; attention and links: the database's unit_stats busy cycles of tileN.attention and
    linkN, averaged over the units, over the cycles. Every fraction lies in [0, 1]; the ROM chip has no store figure."""
    with tempfile.TemporaryDirectory() as tmp:
        hbm = tiny_store_chip(tmp, "hbm", {"kind": "hbm", "capacity_bytes": 2000000, "ports": 1, "bits_per_cycle": 1024,
                                           "latency_cycles": 20, "read_fj_per_bit": 3900, "static_w": 15})
        rom = os.path.join(DATA, "tiny-chip.json")
        rows = json.loads(run("compare", "--pair", f"tiny-llama:{hbm}", "--pair", f"tiny-llama:{rom}", "--prompt", "8",
                              "--generate", "4", "--streams", "3", "--eval-prompt", "8", "--eval-generate", "4",
                              "--json").stdout)
        db = os.path.join(tmp, "r.sqlite")
        j = run_json("--db", db, "--chip", hbm, "--model", "tiny-llama", "--prompt", "8", "--generate", "4")
        cyc = j["cycles"]
        con = sqlite3.connect(db)
        units = dict(con.execute("SELECT unit, busy_cycles FROM unit_stats").fetchall())
        con.close()
        attn = [v for k, v in units.items() if k.endswith(".attention")]
        links = [v for k, v in units.items() if k.startswith("link")]
        bf = rows[0]["busy_fraction"]
        want = {"store": 113770 / cyc, "lanes": 26840 / cyc, "attention": sum(attn) / len(attn) / cyc,
                "links": sum(links) / len(links) / cyc}
        expect(len(attn) == 4 and len(links) == 5, f"units {sorted(units)}")
        for k, v in want.items():
            expect(close(bf[k], v), f"busy_fraction.{k} {bf[k]}, by hand {v}")
        expect(bf["store"] > 0.9 and bf["lanes"] < 0.25, f"the HBM chip is not memory-bound: {bf}")
        for r in rows:
            for key in ("busy_fraction", "load_busy_fraction"):
                for k, v in r[key].items():
                    expect(v is None or 0 <= v <= 1, f"{r['chip']}: {key}.{k} = {v} outside [0, 1]")
        expect(rows[1]["busy_fraction"]["store"] is None and rows[1]["busy_fraction"]["lanes"] > 0,
               f"ROM chip: {rows[1]['busy_fraction']}")


def test_plot_compare():
    """scripts/plot --compare draws compare.png from `etchsim compare --json`: tokens/s per user against $/M tokens
    (the machine without cost inputs named, not placed) and the busy fractions at load as labelled grouped bars
    (n/a where the store figure is null), one legend naming each machine; a file that is not compare's rows is one
    error naming it."""
    plot = os.path.join(ROOT, "scripts", "plot")
    hbm = os.path.join(DATA, "tiny-chip-hbm.json")
    with tempfile.TemporaryDirectory() as tmp:
        rows_path = os.path.join(tmp, "c.json")
        with open(rows_path, "w") as f:
            f.write(run("compare", "--pair", f"tiny-llama:{hbm}", "--pair", "llama-3.1-8b:hc1-class", "--prompt", "32",
                        "--generate", "8", "--streams", "4", "--eval-prompt", "32", "--eval-generate", "4", "--json").stdout)
        rows = json.load(open(rows_path))
        p = subprocess.run([plot, "--compare", rows_path, "--describe"], capture_output=True, text=True)
        expect(p.returncode == 0 and sorted(os.listdir(os.path.join(tmp, "c-plots"))) == ["compare.png"],
               f"compare plot: {p.stderr}")
        d = json.loads(p.stdout)["compare.png"]
        names = ["tiny-llama on tiny-chip-hbm.json", "llama-3.1-8b on hc1-class"]
        expect(d["legend"] == names, f"legend {d['legend']}")
        expect(d["xlabels"] == ["tokens/s per user (one user, decode)"] and
               d["ylabels"] == ["$ per million tokens at 4 users", "busy, % of the run at load"], f"labels {d}")
        expect(d["xdata"] == [[rows[1]["decode_tokens_per_s"]] * 2], f"only hc1-class is placed: {d['xdata']}")
        expect(d["texts"][:2] == [" llama-3.1-8b", "not placed, no cost inputs ($/M n/a):\ntiny-llama on tiny-chip-hbm.json"],
               f"the point's label and the unplaced machine: {d['texts'][:2]}")
        bf = [r["load_busy_fraction"] for r in rows]
        want = [f"{100 * b[k]:.0f}" if b[k] is not None else "n/a" for b in bf
                for k in ("store", "lanes", "attention", "links")]  # a row's bars, then the next row's
        expect(bf[1]["store"] is None and want[4] == "n/a", f"hc1-class's ROM has no store figure: {bf[1]}")
        expect(d["texts"][2:] == want, f"bar labels {d['texts'][2:]}, want {want}")
        bad = os.path.join(tmp, "bad.json")
        with open(bad, "w") as f:
            json.dump([{"model": "x"}], f)
        p = subprocess.run([plot, "--compare", bad], capture_output=True, text=True)
        expect(p.returncode == 1 and p.stderr.strip() == f"plot: {bad}: not an `etchsim compare --json` file "
               "(\"row 0 has no 'chip'\")", f"bad file: {p.stderr!r}")

# ---- GPU baselines (issue 19, h/gpu: h100-class, h200-class, b200-class) ----------------------

def test_gpu_no_rom_keys():
    """A chip whose weights are in SRAM or HBM has no ROMs: tile.rom.* and head.*_rom.* may be left out (the shipped
    store fixtures have none and run), and each one given is refused by name in one line; a ROM chip still needs them."""
    hbm = os.path.join(DATA, "tiny-chip-hbm.json")
    with open(hbm) as f:
        base = json.load(f)
    expect("rom" not in base["tile"] and "lm_rom" not in base["head"], "the HBM fixture still has ROM keys")
    run("run", "--chip", hbm, "--model", "tiny-llama", "--prompt", "4", "--generate", "2", "--no-db")
    rom_keys = [("tile", "rom", "banks", 64), ("head", "embed_rom", "rows", 160), ("head", "lm_rom", "read_latency_cycles", 2)]
    with tempfile.TemporaryDirectory() as tmp:
        for kind in ("hbm", "sram"):
            for sec, rom, key, v in rom_keys:
                c = json.loads(json.dumps(base))
                if kind == "sram":
                    c["store"]["kind"]["value"] = "sram"
                    c["store"]["scope"] = {"value": "tile", "source": "test fixture"}
                    c["store"].pop("static_w")
                c[sec][rom] = {key: {"value": v, "source": "test fixture"}}
                path = os.path.join(tmp, "c.json")
                with open(path, "w") as f:
                    json.dump(c, f)
                err = expect_error(["run", "--chip", path, "--model", "tiny-llama", "--no-db"], path,
                                   f"key '{sec}.{rom}.{key}'", f"store.kind {kind}, not in ROM", "leave them out")
                expect(err.count("\n") == 0, f"{kind} {key}: more than one line: {err!r}")
        with open(os.path.join(DATA, "tiny-chip.json")) as f:
            c = json.load(f)
        del c["tile"]["rom"]["banks"]
        path = os.path.join(tmp, "rom.json")
        with open(path, "w") as f:
            json.dump(c, f)
        expect_error(["run", "--chip", path, "--model", "tiny-llama", "--no-db"], path, "tile.rom.banks", "missing")


def test_gpu_head_batch():
    """head.lanes.tokens_per_read: the tokens waiting at the head share one pass over the LM head's weights, as a
    tile's do. tests/data/tiny-chip-hbm.json (one tile of all 4 layers, BF16 weights in HBM, 16 tokens a pass) with
    one item in flight and FIFOs of 16: 8 streams of a 1-token prompt and 1 token generated. The first prompt enters
    the tile alone; the other 7 arrive while its pass over 4 x 753664 weights (>= 23552 store cycles) runs, so the
    tile makes 2 passes. The head then reads the LM head (1024 x 256 BF16 = 4194304 bits) once per token with
    tokens_per_read 1 (8 reads), once per pass with 16 (2 reads). Weight bits read, by hand:
      2 x 4 x 753664 x 16 + reads x 4194304 + 8 embedding rows x 4096, each x 3900 fJ / VR efficiency 0.9.
    A head pass of several tokens needs lanes shared by them: refused otherwise."""
    with open(os.path.join(DATA, "tiny-chip-hbm.json")) as f:
        base = json.load(f)
    args = ["--model", "tiny-llama", "--prompt", "1", "--generate", "1", "--streams", "8", "--no-db",
            "--set", "scheduler.fifo_depth=16", "--set", "tile.items_in_flight=1"]
    with tempfile.TemporaryDirectory() as tmp:
        got = {}
        for tpr, reads in ((1, 8), (16, 2)):
            c = json.loads(json.dumps(base))
            c["head"]["lanes"]["tokens_per_read"] = {"value": tpr, "source": "test fixture"}
            path = os.path.join(tmp, f"h{tpr}.json")
            with open(path, "w") as f:
                json.dump(c, f)
            j = run_json("--chip", path, *args)
            bits = 2 * 4 * 753664 * 16 + reads * 4194304 + 8 * 4096
            e = j["energy_by_event_j"]["store_reads"]
            want = bits * 3900e-15 / 0.9
            expect(abs(e - want) <= 1e-12 * want, f"head tokens_per_read {tpr}: store_reads {e} J, by hand {want}")
            got[tpr] = j["cycles"]
        expect(got[16] < got[1], f"one pass over the LM head is not faster: {got}")
        c = json.loads(json.dumps(base))
        c["head"]["lanes"]["tokens_per_read"] = {"value": 4, "source": "test fixture"}
        c["tile"]["lanes"]["shared_by_tokens"]["value"] = False
        path = os.path.join(tmp, "bad.json")
        with open(path, "w") as f:
            json.dump(c, f)
        expect_error(["run", "--chip", path, "--model", "tiny-llama", "--no-db"], path,
                     "key 'head.lanes.tokens_per_read'", "tile.lanes.shared_by_tokens true")


def h100_variant(tmp, name, edit):
    """models/chips/h100-class.json edited by edit(dict); its path."""
    with open(os.path.join(MODELS, "chips", "h100-class.json")) as f:
        c = json.load(f)
    edit(c)
    path = os.path.join(tmp, name + ".json")
    with open(path, "w") as f:
        json.dump(c, f)
    return path


def h100_numbers():
    """From the chip file: BF16 MACs a cycle (lane cells over the ceil(16 / cell_bits) cells a BF16 weight takes),
    HBM bits a cycle (stacks x bits_per_cycle), clock."""
    with open(os.path.join(MODELS, "chips", "h100-class.json")) as f:
        c = json.load(f)
    st, ln = c["store"], c["tile"]["lanes"]
    cells = -(-16 // ln["cell_bits"]["value"])
    expect(ln["count"]["value"] % cells == 0, "h100-class: lane cells not a whole number of BF16 MACs")
    return ln["count"]["value"] // cells, st["ports"]["value"] * st["bits_per_cycle"]["value"], c["clock_hz"]["value"]


# Llama-3.1-8B's matrix products a layer: elements (hidden 4096, ffn 14336, 8 KV heads of 128), and the LM head's.
L8B_LAYER = [4096 * 4096, 1024 * 4096, 1024 * 4096, 4096 * 4096, 14336 * 4096, 14336 * 4096, 4096 * 14336]
L8B_LM = 128256 * 4096


def l8b_shapes():
    """Llama-3.1-8B's shapes from models/llm/llama-3.1-8b/config.json: hidden, the layers, the elements of a layer's 7
    matrix products (q, k, v, o, gate, up, down), the LM head's, the vocabulary, the FFN width, and the K and V
    elements a position a layer (kv_heads x head_dim each)."""
    with open(os.path.join(MODELS, "llm", "llama-3.1-8b", "config.json")) as f:
        m = json.load(f)
    H, F, V = m["hidden_size"], m["intermediate_size"], m["vocab_size"]
    kv = m["num_key_value_heads"] * (H // m["num_attention_heads"])
    prods = [H * H, kv * H, kv * H, H * H, F * H, F * H, H * F]
    return H, m["num_hidden_layers"], prods, H * V, V, F, 2 * kv


def h100_step_by_hand(p, tp=1, link=None):
    """h100-class's decode step (its input token at position p, so p + 1 positions of context), Llama-3.1-8B BF16, by
    hand from h100-class.json and the model's config.json: (weight store cycles, KV store cycles, overheads by name).
    tp > 1: one of tp chips splitting each layer's matrices (link: the system file's "link" dict), each product, the
    LM head's rows, the KV heads, RoPE's, SiLU's and the sampler's widths a tp-th; plus the ring all-reduces.
    Each matrix product streams its 16-bit weights at the HBM's ports x bits_per_cycle (its lane cycles, E / lanes, are
    fewer: checked), the embedding row likewise; each layer's attention writes the token's K and V and reads its
    context at the same bits a cycle (a position's scoring, 1 / positions_per_cycle, is shorter: checked)."""
    with open(os.path.join(MODELS, "chips", "h100-class.json")) as f:
        c = json.load(f)
    v = lambda *ks: functools.reduce(lambda d, k: d[k], ks, c)["value"]
    cdiv = lambda a, b: -(-a // b)
    H, L, prods, lm, V, F, kv_elems = l8b_shapes()
    if tp > 1:  # the shard: q, k, v, gate, up a tp-th of their rows, o and down of their columns
        prods, lm, V, F, kv_elems = [e // tp for e in prods], cdiv(V, tp) * H, cdiv(V, tp), F // tp, kv_elems // tp
    bw = v("store", "ports") * v("store", "bits_per_cycle")
    lanes, wbits, kvb = v("tile", "lanes", "count"), 16, kv_elems * v("kv", "element_bits")
    expect(all(cdiv(wbits * e, bw) > cdiv(e, lanes) for e in prods + [lm]), "a product is not memory-bound")
    expect(kvb * v("tile", "attention", "positions_per_cycle") >= bw, "scoring a position outlasts reading it")
    weights = L * sum(cdiv(wbits * e, bw) for e in prods) + cdiv(wbits * lm, bw) + cdiv(wbits * H, bw)
    kv = L * (cdiv(kvb, bw) + cdiv((p + 1) * kvb, bw))
    vw, vl = v("tile", "vector", "elems_per_cycle"), v("tile", "vector", "latency_cycles")
    vec = lambda elems, passes: passes * cdiv(elems, vw) + vl
    lw, ll = v("link", "width_bits"), v("link", "latency_cycles")
    over = {
        "HBM latency, each product and the embedding row": (L * 7 + 2) * v("store", "latency_cycles"),
        "lane pipeline depth, each product": (L * 7 + 1) * v("tile", "lanes", "pipeline_depth"),
        "attention latency, each layer": L * v("tile", "attention", "latency_cycles"),
        # two RMSNorms (2 passes), RoPE over q and k, two residual adds, SiLU(gate) x up: each its passes + latency
        "vector unit, each layer": L * (2 * vec(H, 2) + vec(H // tp + kv_elems // 2, 1) + 2 * vec(H, 1) + vec(F, 1)),
        "head: final RMSNorm and sampler": vec(H, 2) + cdiv(V, v("head", "sampler", "elems_per_cycle")) +
                                            v("head", "sampler", "latency_cycles"),
        "links: the token id, then 2 activation hops": cdiv(v("link", "token_id_bits"), lw) + ll +
                                                       2 * (cdiv(H * v("link", "elem_bits"), lw) + ll),
    }
    if tp > 1:  # a ring all-reduce of N bits: 2 (tp - 1) / tp x N over the card link, then 2 (tp - 1) latencies
        f = c["clock_hz"]["value"]
        ring = lambda n: math.ceil(cdiv(2 * (tp - 1) * n, tp) / link["bandwidth_bits_per_s"] * f) + \
            2 * (tp - 1) * math.ceil(link["latency_ns"] * f / 1e9)
        over["all-reduces: after o and down each layer, the embedding row"] = (2 * L + 1) * ring(H * v("link", "elem_bits"))
        over["all-reduce: the sampler's best score and id (64 bits)"] = ring(64)
    return weights, kv, over


def test_gpu_h100_memory_bound():
    """h100-class, Llama-3.1-8B BF16, one stream: a decode step is memory-bound. Its time per token is, by hand from
    h100-class.json and the model's config.json (h100_step_by_hand): the weight bits a token reads (16 x 7,504,662,528:
    every layer's 7 products, the LM head, one embedding row) and the KV bits it writes (2 x 8 x 128 x 16 a layer) and
    reads (its context, the same a position a layer), over the HBM's 5 x 2929 = 14645 bits a cycle (ceiled per
    product, per attention's write and read: within 290 cycles of the exact quotient), plus the named overheads
    (HBM latency and lane depth per product, attention latency, vector work, the head's norm and sampler, links:
    177,131 cycles, about 2 %). The simulated step equals it exactly, at a context of 2 and of 2001 positions, and the
    analytical model gives the same cycles; the KV's share of the HBM time grows with the context (0.003 % at 2
    positions, 1.7 % at 2001); the TTFT is left out (a prompt of several chunks: the simulation's is 720 cycles over
    the analytic flow shop's at 2000 tokens, with or without the KV in the store). The HBM's busy cycles over the
    whole run are the weights' and the KV's (kv.in_store: they share its bandwidth), by hand: two passes over the
    layers per prompt chunk of 256 and for the decode step, the LM head twice, each chunk's and the fed-back token's
    embedding rows, and every chunk's and step's KV written and read."""
    _, bw, clock = h100_numbers()
    cdiv = lambda a, b: -(-a // b)
    H, L, prods, lm, _, _, kv_elems = l8b_shapes()
    kvb = kv_elems * 16
    share = {}
    for prompt in (1, 2000):
        j = run_json("--chip", "h100-class", "--prompt", str(prompt), "--generate", "2", "--no-db")
        same_cycles(j, f"h100-class, prompt {prompt}", keys=("decode_first", "decode_last", "decode_total"))
        weights, kv, over = h100_step_by_hand(prompt)
        step = j["stream0_cycles"]["decode_first"]
        want = weights + kv + sum(over.values())
        expect(step == want, f"prompt {prompt}: step {step} cycles, by hand {want} = weights {weights} + KV {kv} + {over}")
        exact = (16 * (L * sum(prods) + lm + H) + L * (prompt + 2) * kvb) / bw
        expect(0 <= weights + kv - exact < L * 7 + 2 + 2 * L, f"store cycles {weights + kv} against bits / bandwidth {exact}")
        expect(0 < sum(over.values()) < 0.03 * step, f"overheads {over} of a {step}-cycle step")
        expect(abs(1e3 / j["decode_tokens_per_s"] - step / clock * 1e3) < 1e-6, f"decode {j['decode_tokens_per_s']} tok/s")
        # the HBM's busy cycles: prefill chunks of 256 (one pass each), the decode step, and their KV
        chunks = [(p, min(256, prompt - p)) for p in range(0, prompt, 256)] + [(prompt, 1)]
        layers = L * sum(cdiv(16 * e, bw) for e in prods)
        busy = len(chunks) * layers + 2 * cdiv(16 * lm, bw) + sum(cdiv(n * 16 * H, bw) for _, n in chunks)
        busy += L * sum(cdiv(n * kvb, bw) + sum(cdiv(x * kvb, bw) for x in range(p + 1, p + n + 1)) for p, n in chunks)
        got = round(j["busy_fraction"]["store"] * j["cycles"])
        expect(got == busy, f"prompt {prompt}: the HBM busy {got} cycles, by hand {busy} (weights and KV)")
        share[prompt] = kv / (weights + kv)
    expect(share[1] < 1e-4 < 0.015 < share[2000], f"the KV's share of the HBM time: {share}")


def test_gpu_h100_crossover():
    """h100-class: a pass of k tokens over a BF16 tensor of E elements takes max(k E / 270336 lane cycles,
    16 E / 14645 HBM cycles): memory-bound while k < k* = 270336 x 16 / 14645 = 295.35, compute-bound from k = 296
    (arithmetic intensity: k MACs per 2-byte weight against 989 TFLOPS / 3.35 TB/s). One prompt of k tokens (one
    chunk, one pass: 512 tokens a pass here) takes longer than on the fast-HBM chip by, by hand,
    32 x sum over the layer's products of max(0, ceil(16 E / 14645) - ceil(k E / 270336)) (+ the LM head, the
    embedding rows and the prompt's KV written and read at the HBM's bandwidth (kv.in_store), the same whatever k's
    pass) -- zero from k = 296. So 64 users' decode (64 tokens a pass) is still
    memory-bound on the weights, by the ratio (64 < 295)."""
    lanes, bw, _ = h100_numbers()
    cdiv = lambda a, b: -(-a // b)
    kstar = lanes * 16 / bw

    def wide(c):
        c["tile"]["lanes"]["tokens_per_read"]["value"] = 512
        c["head"]["lanes"]["tokens_per_read"]["value"] = 512
        c["scheduler"]["prefill_chunk"]["value"] = 512

    def fast(c):
        wide(c)
        c["store"]["bits_per_cycle"]["value"] = 1 << 20

    with tempfile.TemporaryDirectory() as tmp:
        slow_p, fast_p = h100_variant(tmp, "slow", wide), h100_variant(tmp, "fast", fast)
        layer = {}
        for k in (1, 64, 295, 296, 400):
            args = ["--prompt", str(k), "--generate", "2", "--no-db"]
            a, b = run_json("--chip", slow_p, *args), run_json("--chip", fast_p, *args)
            same_cycles(a, f"h100 k={k}")
            d = a["stream0_cycles"]["ttft"] - b["stream0_cycles"]["ttft"]
            rest = (cdiv(16 * L8B_LM, bw) - cdiv(L8B_LM, lanes)) + (cdiv(k * 4096 * 16, bw) - cdiv(k * 4096 * 16, (1 << 20) * 5))
            # kv.in_store: the prompt's K and V (32768 bits a position a layer) written and read at the HBM's bits a
            # cycle; on the fast chip written at its own, and scoring (33 positions a cycle) outlasts reading
            kvb, fbw = 2 * 8 * 128 * 16, (1 << 20) * 5
            rest += 32 * (cdiv(k * kvb, bw) + sum(cdiv(x * kvb, bw) for x in range(1, k + 1)) -
                          cdiv(k * kvb, fbw) - sum(cdiv(x, 33) for x in range(1, k + 1)))
            want = 32 * sum(max(0, cdiv(16 * e, bw) - cdiv(k * e, lanes)) for e in L8B_LAYER)
            expect(d - rest == want, f"k={k}: the prompt takes {d} cycles longer, by hand {want} + {rest}")
            layer[k] = want
    expect(layer[295] > 0 and layer[296] == 0 and layer[400] == 0 and 295 < kstar < 296,
           f"crossover: {layer}, arithmetic intensity {kstar}")
    expect(layer[64] > 0 and layer[1] > layer[64], f"64 users are memory-bound: {layer}")


def test_gpu_kv_in_store():
    """kv.in_store: the KV cache in the HBM store takes no die area or leakage and its bits are charged at
    store.read_fj_per_bit, and streams at the store's bits a cycle. tests/data/tiny-chip-hbm.json, tiny-llama (2 KV heads of 32, 8-bit KV: 1024 bits a position
    a layer, 4 layers), prompt 8 and 4 generated: 11 positions written (8 prompt, 3 decode), and read: the prompt's
    1 + ... + 8 = 36 and the decode steps' 9 + 10 + 11 = 30; (36 + 30 + 11) x 4 x 1024 bits x 3900 fJ / VR 0.9. Refused
    without an HBM store, and when the KV does not fit in it."""
    with open(os.path.join(DATA, "tiny-chip-hbm.json")) as f:
        base = json.load(f)
    args = ["--model", "tiny-llama", "--prompt", "8", "--generate", "4", "--no-db"]
    with tempfile.TemporaryDirectory() as tmp:
        def chip(name, edit):
            c = json.loads(json.dumps(base))
            edit(c)
            path = os.path.join(tmp, name + ".json")
            with open(path, "w") as f:
                json.dump(c, f)
            return path
        def on(c):  # the KV then streams from the store: no KV SRAM geometry
            c["kv"].update(in_store={"value": True, "source": "test fixture"})
            del c["kv"]["banks"], c["kv"]["word_bits"]
        a = run_json("--chip", os.path.join(DATA, "tiny-chip-hbm.json"), *args)
        b = run_json("--chip", chip("in", on), *args)
        want = (36 + 30 + 11) * 4 * 1024 * 3900e-15 / 0.9
        got = b["energy_by_event_j"]["sram"]
        expect(abs(got - want) <= 1e-12 * want, f"KV in HBM: {got} J, by hand {want}")
        expect(a["area"]["kv_sram"]["mm2"] > 0 and b["area"]["kv_sram"]["mm2"] == 0 and
               b["area"]["kv_sram"]["leakage_w"] == 0, f"KV area {a['area']['kv_sram']} -> {b['area']['kv_sram']}")
        expect(abs(a["area_mm2"] - b["area_mm2"] - a["area"]["kv_sram"]["mm2"]) <= 1e-9 * a["area_mm2"], "die area")
        # one stream: as fast as a KV SRAM streaming at the store's 2 x 1024 bits a cycle
        same_bw = run_json("--chip", chip("same", lambda c: (c["kv"]["banks"].update(value=2),
                                                             c["kv"]["word_bits"].update(value=1024))), *args)
        expect(same_bw["stream0_cycles"] == b["stream0_cycles"], "kv.in_store: not the store's bandwidth")
        def sram(c):
            on(c)
            c["store"]["kind"]["value"] = "sram"
            c["store"].pop("static_w")
        p = chip("sram", sram)
        expect_error(["run", "--chip", p, *args], p, "key 'kv.in_store'", "store.kind hbm", "not sram")
        def big(c):
            on(c)
            c["kv"]["bytes_per_tile"]["value"] = 9000000
        p = chip("big", big)
        expect_error(["run", "--chip", p, *args], p, "key 'kv.bytes_per_tile'", "exceeds store.capacity_bytes 8000000")


def test_gpu_sync_step():
    """tile.sync_step: a pass starts only once every token the tile passed on is back, as a GPU's decode step, so a
    batch stays one group. tests/data/tiny-chip-hbm.json with the head serving 16 tokens a pass, one item in flight,
    FIFOs of 16; 8 streams of a 1-token prompt, 20 tokens each. The first prompt (A) enters alone; the other 7 (B)
    arrive during its pass. Without sync_step the tile starts B's pass as soon as A's leaves and the two groups
    alternate for good: 20 passes each, 40. With it the tile waits for A's token, and A's decode token and B's 7
    prompts make one pass of 8 from then on: A's prompt pass, then 20 passes (B's 20 tokens; A's other 19 in the
    first 19 of them): 21. Weight bits read, by hand: passes x (4 x 753664 x 16 + the LM head's 4194304) + 160
    embedding rows (8 prompts + 8 x 19 fed back) x 4096, each x 3900 fJ / VR efficiency 0.9."""
    with open(os.path.join(DATA, "tiny-chip-hbm.json")) as f:
        base = json.load(f)
    args = ["--model", "tiny-llama", "--prompt", "1", "--generate", "20", "--streams", "8", "--no-db",
            "--set", "scheduler.fifo_depth=16", "--set", "tile.items_in_flight=1"]
    with tempfile.TemporaryDirectory() as tmp:
        got = {}
        for sync, passes in ((False, 40), (True, 21)):
            c = json.loads(json.dumps(base))
            c["head"]["lanes"]["tokens_per_read"] = {"value": 16, "source": "test fixture"}
            c["tile"]["sync_step"] = {"value": sync, "source": "test fixture"}
            path = os.path.join(tmp, f"s{int(sync)}.json")
            with open(path, "w") as f:
                json.dump(c, f)
            j = run_json("--chip", path, *args)
            want = (passes * (4 * 753664 * 16 + 4194304) + 160 * 4096) * 3900e-15 / 0.9
            e = j["energy_by_event_j"]["store_reads"]
            expect(abs(e - want) <= 1e-12 * want, f"sync_step {sync}: store_reads {e} J, by hand {passes} passes {want}")
            got[sync] = j["decode_tokens_per_s"]
        expect(got[True] > got[False], f"one group is not faster: {got}")



# cost: inputs left at 0
def test_cost_zero_inputs_noted():
    """etchsim cost says when a board or host priced at 0 leaves the figure a lower bound, and not otherwise."""
    base = ["cost", "--prompt", "16", "--generate", "4"]
    out = run(*base).stdout
    expect("priced at 0, so not counted: board (cost.board_usd), host (cost.host_usd_per_card)" in out and
           "lower bound" in out, f"no note of the zero inputs: {out}")
    out = run(*base, "--set", "cost.board_usd=100", "--set", "cost.host_usd_per_card=1000").stdout
    expect("priced at 0" not in out, f"a note with every input priced: {out}")


# systems of chips (issue 20): --system, card links, per-chip statistics
SYSTEM_X2 = os.path.join(DATA, "systems", "tiny-x2.json")


def test_system_split_functional():
    """stories260K over two tiny-test chips (layers 0-2, 3-4) gives the tokens and logits of one chip, each decode
    step longer by the two card-link hops that replace two on-die hops, derived here from the files' numbers."""
    s = stories()
    with tempfile.TemporaryDirectory() as tmp:
        base = ["--model", s, *FP32_DATAPATH, *F32_HEAD_ROMS, "--mode", "functional", "--weights", s,
                "--recipe", "f32", "--prompt", "12", "--generate", "8", "--no-db"]
        one = run_json(*base, "--chip", os.path.join(DATA, "tiny-chip.json"), "--logits", os.path.join(tmp, "a.bin"))
        two = run_json(*base, "--system", SYSTEM_X2, "--logits", os.path.join(tmp, "b.bin"))
        expect(one["functional"]["output_ids"] == two["functional"]["output_ids"],
               f"tokens differ: {one['functional']['output_ids']} vs {two['functional']['output_ids']}")
        a, b = open(os.path.join(tmp, "a.bin"), "rb").read(), open(os.path.join(tmp, "b.bin"), "rb").read()
        expect(len(a) > 0 and a == b, f"logits differ ({len(a)} and {len(b)} bytes)")
    chip = json.load(open(os.path.join(DATA, "tiny-chip.json")))
    sysf = json.load(open(SYSTEM_X2))
    val = lambda x: x["value"] if isinstance(x, dict) else x
    f = val(chip["clock_hz"])
    width, lat = val(chip["link"]["width_bits"]), val(chip["link"]["latency_cycles"])
    tok_bits, act_bits = val(chip["link"]["token_id_bits"]), 64 * 32  # hidden 64 at link.elem_bits 32 (the set)
    bw, card_ns = val(sysf["link"]["bandwidth_bits_per_s"]), val(sysf["link"]["latency_ns"])
    on_die = lambda bits: -(-bits // width) + lat
    card = lambda bits: math.ceil(bits / bw * f) + math.ceil(card_ns * f / 1e9)
    # the split replaces tile 2 -> tile 3 and the head -> embed feedback, each an on-die hop, by card links
    delta = card(act_bits) + card(tok_bits) - on_die(act_bits) - on_die(tok_bits)
    expect(delta == 2202, f"by hand {delta}")
    for k in ("decode_first", "decode_last"):
        d = two["stream0_cycles"][k] - one["stream0_cycles"][k]
        expect(d == delta, f"{k}: the split adds {d} cycles a step, by hand {delta}")
        expect(two["analytic_stream0_cycles"][k] == two["stream0_cycles"][k],
               f"{k}: analytic {two['analytic_stream0_cycles'][k]} vs simulated {two['stream0_cycles'][k]}")
    links = {l["unit"]: l for l in two["system"]["links"]}
    expect(set(links) == {"c0_card", "c1_card_feedback"}, f"links {sorted(links)}")
    expect(links["c0_card"]["tokens"] == 12 + 7 and links["c1_card_feedback"]["tokens"] == 7,
           f"tokens over the links: {links}")
    chips = two["system"]["chips"]
    expect([c["layers"] for c in chips] == [[0, 2], [3, 4]], f"layers {chips}")
    expect(abs(sum(c["area_mm2"] for c in chips) - two["area_mm2"]) < 1e-9, "the system's area is its chips'")
    # the card links' energy: bits moved x 10 pJ / VR efficiency
    vr = val(chip["card"]["vr_efficiency"])
    want = ((12 + 7) * act_bits + 7 * tok_bits) * 10e-12 / vr
    got = two["energy_by_event_j"]["card_links"]
    expect(abs(got - want) <= 1e-9 * want, f"card link energy {got}, by hand {want}")


def test_system_db_per_chip():
    """A system run logs every chip's units (prefixed c0_, c1_) and the card links in unit_stats."""
    with tempfile.TemporaryDirectory() as tmp:
        db = os.path.join(tmp, "s.sqlite")
        five = os.path.join(tmp, "five")
        os.mkdir(five)
        cfg = json.load(open(os.path.join(MODELS, "llm", "tiny-llama", "config.json")))
        cfg["num_hidden_layers"] = 5
        json.dump(cfg, open(os.path.join(five, "config.json"), "w"))
        run("run", "--system", SYSTEM_X2, "--model", five, "--prompt", "8", "--generate", "4", "--streams", "2",
            "--db", db)
        con = sqlite3.connect(db)
        names = {r[0]: r[1] for r in con.execute("SELECT unit, busy_cycles FROM unit_stats")}
        chip = con.execute("SELECT chip FROM runs").fetchone()[0]
        con.close()
        expect(chip == "tiny-x2", f"runs.chip {chip}")
        for n in ("c0_tile0.lanes", "c0_tile2.lanes", "c1_tile0.lanes", "c1_tile1.lanes", "c0_embed", "c1_head",
                  "c0_card", "c1_card_feedback"):
            expect(n in names, f"unit {n} missing: {sorted(names)}")
        expect("c1_tile2.lanes" not in names and "c0_head" not in names, f"units: {sorted(names)}")
        expect(names["c0_card"] > 0, "the card link was never busy")


def test_err_system():
    """Bad systems: one line naming the file and key, exit 1; --system with --chip is a usage error."""
    expect_error(["run", "--system", SYSTEM_X2, "--prompt", "8", "--generate", "2", "--no-db"],
                 "tiny-x2.json", "chips[1].layers", "tiny-llama has 4 layers")
    with tempfile.TemporaryDirectory() as tmp:
        sysf = json.load(open(SYSTEM_X2))
        sysf["chips"] = [{"chip": os.path.join(DATA, "tiny-chip.json"), "layers": [0, 1]},
                         {"chip": os.path.join(DATA, "tiny-chip.json"), "layers": [3, 3]}]
        p = os.path.join(tmp, "gap.json")
        json.dump(sysf, open(p, "w"))
        expect_error(["run", "--system", p, "--prompt", "8", "--generate", "2", "--no-db"],
                     "gap.json", "chips[1].layers", "layers 2..2", "on no chip")
        sysf["chips"][1]["layers"] = [1, 3]
        json.dump(sysf, open(p, "w"))
        expect_error(["run", "--system", p, "--prompt", "8", "--generate", "2", "--no-db"],
                     "chips[1].layers", "layers 1..1 are on chips[0] too")
        sysf["chips"][1]["layers"] = [2, 3]
        sysf["link"]["bandwidth_bits_per_s"] = 0
        json.dump(sysf, open(p, "w"))
        expect_error(["run", "--system", p, "--prompt", "8", "--generate", "2", "--no-db"],
                     "link.bandwidth_bits_per_s", "above 0")
    with tempfile.TemporaryDirectory() as tmp:  # a stage of two chips splitting experts holding an end of the model
        sysf = json.load(open(SYSTEM_X2))
        sysf["link"]["topology"] = "all_to_all"
        moe = os.path.join(DATA, "tiny-moe")
        chip = os.path.join(DATA, "tiny-chip.json")
        sysf["chips"] = [{"chip": chip, "layers": [0, 3], "experts": [0, 7]},
                         {"chip": chip, "layers": [0, 3], "experts": [8, 15]}]
        p = os.path.join(tmp, "ep.json")
        json.dump(sysf, open(p, "w"))
        expect_error(["run", "--system", p, "--model", moe, "--prompt", "8", "--generate", "2", "--no-db"],
                     "tiny-chip.json", "expert-parallel stage", "layers 0..3", "embedding table", "not modelled")
    expect_error(["run", "--system", SYSTEM_X2, "--chip", "hc1-class"], "--system or --chip", code=2)

# ---- wafer-class baseline (issue 19 item 2: a wafer-scale part, weights in on-die SRAM) ----------
def wafer_chip():
    """models/chips/wafer-class.json as a dict, and a function giving a key's value ("tile.lanes.count")."""
    with open(os.path.join(MODELS, "chips", "wafer-class.json")) as f:
        c = json.load(f)

    def val(key):
        node = c
        for k in key.split("."):
            node = node[k]
        return node["value"] if isinstance(node, dict) else node
    return c, val


def wafer_step_by_hand(val, ctx):
    """A Llama-3.1-8B BF16 decode step on wafer-class for a token whose context holds ctx positions, in cycles, from
    the chip file's numbers and the model's dimensions (hidden 4096, ffn 14336, 8 KV heads of 128, 32 layers, vocab
    128256, untied), composed as the README's 'What a run simulates' says: the token id back over a link, its
    embedding row from the head region's store, a link into each of the 8 regions and one to the head, each layer's
    ops in turn, then the head's RMSNorm, LM head and argmax. A product of E BF16 weights takes max(ceil(E / lanes),
    ceil(16 E / store bits a cycle)) + the store's latency + the lanes' pipeline depth (the fabric's hops); an
    element-wise op of e elements ceil(e / width) a pass + the vector latency; attention writes the token's K and V
    (32768 bits) over the KV port, then scores ctx positions at 97 a cycle (its reads, ctx x 32768 bits over 17 M bits
    a cycle, take less), + its latency. Returns (step, latency part, lane part, store part)."""
    cdiv = lambda a, b: -(-a // b)
    lanes, hlanes = val("tile.lanes.count"), val("head.lanes.count")
    bw = val("store.ports") * val("store.bits_per_cycle")
    plat = val("store.latency_cycles") + val("tile.lanes.pipeline_depth")
    V, Lv = val("tile.vector.elems_per_cycle"), val("tile.vector.latency_cycles")
    W, Ll = val("link.width_bits"), val("link.latency_cycles")
    pb = val("kv.banks") * val("kv.word_bits") // val("kv.ports")
    ppc, La = val("tile.attention.positions_per_cycle"), val("tile.attention.latency_cycles")
    tiles = 32 // val("tile.layers_per_tile")
    expect(32768 * ppc < pb, "the KV reads would bound attention: the oracle below does not hold")
    vec = lambda e, passes=1: passes * cdiv(e, V) + Lv
    lane = lambda e, n: cdiv(e, n)
    store = lambda e: cdiv(16 * e, bw)
    layer_vec = 2 * vec(4096, 2) + vec(4096 + 1024) + 2 * vec(4096) + vec(14336)
    attn = cdiv(32768, pb) + La + cdiv(ctx, ppc)
    layer = layer_vec + attn + sum(max(lane(e, lanes), store(e)) + plat for e in L8B_LAYER)
    head = vec(4096, 2) + max(lane(L8B_LM, hlanes), store(L8B_LM)) + plat + \
        cdiv(128256, val("head.sampler.elems_per_cycle")) + val("head.sampler.latency_cycles")
    links = (cdiv(32, W) + Ll) + (tiles + 1) * (cdiv(4096 * 16, W) + Ll)
    embed = cdiv(4096 * 16, bw) + val("store.latency_cycles")
    step = links + embed + 32 * layer + head
    latency = (2 + tiles) * Ll + val("store.latency_cycles") + 32 * (7 * plat + 6 * Lv + La) + plat + Lv + \
        val("head.sampler.latency_cycles")
    lane_part = 32 * sum(lane(e, lanes) for e in L8B_LAYER) + lane(L8B_LM, hlanes)
    store_part = 32 * sum(store(e) for e in L8B_LAYER) + store(L8B_LM) + cdiv(4096 * 16, bw)
    return step, latency, lane_part, store_part


def test_wafer_class_one_user():
    """wafer-class, Llama-3.1-8B BF16, one user: each decode step is wafer_step_by_hand's cycles from the chip file
    (237,414 at the first step of a 1-token prompt, context 2; one more cycle of attention per 97 positions), and
    the step is latency-bound, as wafer-class.md says: the fabric's hops (the products' pipeline depth, the vector,
    attention and argmax latencies, the links) are over 90 % of it (95.7 %); the lanes' MACs 4.0 % and the regions' SRAM
    stores, whose bits of a product stream inside its lane cycles (16 E / 16,969,697 < E / 800,000), 3.0 %."""
    c, val = wafer_chip()
    for prompt in (1, 1000):
        j = run_json("--chip", "wafer-class", "--prompt", str(prompt), "--generate", "3", "--no-db")
        same_cycles(j, f"wafer-class, prompt {prompt}")
        for k, ctx in (("decode_first", prompt + 1), ("decode_last", prompt + 2)):
            want, latency, lane_part, store_part = wafer_step_by_hand(val, ctx)
            got = j["stream0_cycles"][k]
            expect(got == want, f"prompt {prompt}: {k} {got} cycles, by hand {want}")
        expect(latency > 0.9 * want and lane_part < 0.05 * want and store_part < lane_part,
               f"not latency-bound: step {want}, latencies {latency}, lanes {lane_part}, store {store_part}")
        ms = j["stream0_cycles"]["decode_first"] / val("clock_hz") * 1e3
        expect(abs(1e3 / j["decode_tokens_per_s"] - ms) < 1e-3 * ms,
               f"{j['decode_tokens_per_s']} tokens/s is not one step of {ms} ms")
    expect(wafer_step_by_hand(val, 2)[0] == 237414, "the docstring's step moved")


def test_wafer_class_users():
    """wafer-class serves 8 and 64 users of 1k/1k: every user is served (1024 tokens each), its KV SRAM holds the
    64 users (a region's 2,715,200,000 bytes over 4 layers x 32768 bits a position = 165,722 positions, 80 slots of
    2048), no user is faster than the one-user step, and 64 users give more tokens/s than 8 (micro-batches of
    tile.lanes.tokens_per_read 3 fill the pipeline of regions)."""
    _, val = wafer_chip()
    one = run_json("--chip", "wafer-class", "--no-db")
    positions = val("kv.bytes_per_tile") * 8 // (val("tile.layers_per_tile") * 32768)
    expect(one["kv_positions"] == positions and one["kv_slots"] == positions // 2048 >= 64,
           f"KV: {one['kv_positions']} positions, {one['kv_slots']} slots; by hand {positions}, {positions // 2048}")
    rates = {}
    for users in (8, 64):
        j = run_json("--chip", "wafer-class", "--streams", str(users), "--no-db")
        expect(j["streams"] == users and j["tokens"] == users * 1024, f"{users} users: {j['streams']}, {j['tokens']} tokens")
        expect(0 < j["decode_tokens_per_s"] <= one["decode_tokens_per_s"] * (1 + 1e-9),
               f"{users} users: {j['decode_tokens_per_s']} tokens/s a user, one user {one['decode_tokens_per_s']}")
        rates[users] = j["tokens_per_s"]
    expect(rates[64] > 2 * rates[8] > 2 * one["tokens_per_s"], f"tokens/s: 1 user {one['tokens_per_s']}, {rates}")


def test_wafer_class_store_holds():
    """wafer-class's per-region SRAM stores hold Llama-3.1-8B in BF16: the head region's embedding, LM head
    (128256 x 4096 each) and final norm need 2,101,354,496 bytes, a layer region's 4 layers 4 x 436,224,000, both
    within store.capacity_bytes; the area counts 9 such stores (8 regions and the head) at n6's 0.027 um2 a bit / 0.7.
    One byte less than the head needs is one clear error naming the key."""
    c, val = wafer_chip()
    cap = val("store.capacity_bytes")
    head = (2 * 128256 * 4096 + 4096) * 2
    layer = (sum(L8B_LAYER) + 2 * 4096) * 2
    expect(head == 2101354496 and 4 * layer <= head <= cap, f"head {head}, 4 layers {4 * layer}, store {cap}")
    a = run_json("--chip", "wafer-class", "--prompt", "4", "--generate", "2", "--no-db")
    mm2 = 9 * cap * 8 * 0.027 / 0.7 * 1e-6
    w = a["area"]["weight_sram"]
    expect(abs(w["mm2"] - mm2) <= 1e-9 * mm2 and w["transistors"] == 9 * cap * 8 * 6, f"weight_sram {w}, by hand {mm2}")
    with tempfile.TemporaryDirectory() as tmp:
        c["store"]["capacity_bytes"]["value"] = head - 1
        path = os.path.join(tmp, "small.json")
        with open(path, "w") as f:
            json.dump(c, f)
        err = expect_error(["run", "--chip", path, "--no-db"], path, "key 'store.capacity_bytes'",
                           "the SRAM store cannot hold the model", "the head needs 16810835968 bits (2101354496 bytes)",
                           f"holds {head - 1} bytes per tile")
        expect(err.count("\n") == 0, f"more than one line: {err!r}")


# fp8 weights (issue 19 item 2): the FP8 recipe on h100-class, 8-bit lane cells, tile.lanes.cell_mac_fj
def llama8b_weight_bytes(proj_bytes, other_bytes):
    """Bytes of Llama-3.1-8B's weights one decode token streams from the store, by hand from config.json: the
    projections of the 32 blocks at proj_bytes a weight, the LM head and the 65 RMSNorm vectors at other_bytes (the
    embedding table gives one row a token: left out, as in both runs alike)."""
    with open(os.path.join(MODELS, "llm", "llama-3.1-8b", "config.json")) as f:
        c = json.load(f)
    H, F, L, V = c["hidden_size"], c["intermediate_size"], c["num_hidden_layers"], c["vocab_size"]
    kv = c["num_key_value_heads"] * H // c["num_attention_heads"]
    proj = L * (H * H + 2 * kv * H + H * H + 3 * F * H)  # q, k, v, o, gate, up, down: 6,979,321,856
    return proj * proj_bytes + (V * H + (2 * L + 1) * H) * other_bytes, proj


def test_fp8_h100_memory_bound():
    """h100-class decodes Llama-3.1-8B at 1 user faster in FP8 (models/recipes/fp8.json) than in BF16 by what the
    bytes say: both runs stream their weights from HBM, so the token time falls by exactly the bytes FP8 saves over
    the HBM bandwidth (the overheads and the BF16 KV cache are the same in both) and the speed-up is the ratio of
    the bytes to within those overheads; with the HBM out of the way, the tensor cores' 8-bit cells give FP8 twice
    BF16's rate (baselines-sources.md s1: 1,979 against 989 dense TFLOPS)."""
    base = ["--no-db", "--model", "llama-3.1-8b", "--chip", "h100-class", "--prompt", "16", "--generate", "64"]
    j = {r: run_json(*base, "--recipe", r) for r in ("bf16", "fp8")}
    expect(j["fp8"]["weight_formats"]["name"].startswith("recipe fp8 "), f"formats timed: {j['fp8']['weight_formats']}")
    bw = 5 * 2929 / 8 * 1.83e9  # store.ports x store.bits_per_cycle / 8 bytes a cycle x clock_hz: 3.35 TB/s
    b16, proj = llama8b_weight_bytes(2, 2)
    b8, _ = llama8b_weight_bytes(1, 2)
    t16, t8 = (1e-9 * j[r]["stream_ns_per_token"] for r in ("bf16", "fp8"))
    # memory-bound: each token takes its bytes over the bandwidth and a few per cent of overheads
    for r, t, b in (("bf16", t16, b16), ("fp8", t8, b8)):
        expect(b / bw <= t <= 1.05 * b / bw, f"{r}: {t * 1e3:.4f} ms a token, its weights {b / bw * 1e3:.4f} ms at 3.35 TB/s")
    saved = (b16 - b8) / bw  # proj bytes over the bandwidth: 2.0834 ms
    expect(abs((t16 - t8) - saved) <= 1e-3 * saved, f"FP8 saves {(t16 - t8) * 1e3:.5f} ms a token, its bytes {saved * 1e3:.5f} ms")
    ratio = j["fp8"]["decode_tokens_per_s"] / j["bf16"]["decode_tokens_per_s"]
    expect(abs(ratio - b16 / b8) <= 0.03 * b16 / b8, f"FP8 {ratio:.4f}x BF16's tokens/s, the bytes say {b16 / b8:.4f}x")
    # the compute rate: a 1024-token prompt with the HBM 300x faster, so the lanes bound every pass: the tile's lane
    # cycles are the tokens' projection weights over the 540,672 8-bit cells a cycle, a BF16 weight taking 2 cells
    fast = ["--no-db", "--model", "llama-3.1-8b", "--chip", "h100-class", "--prompt", "1024", "--generate", "1",
            "--set", "store.bits_per_cycle=1000000"]
    for r, cells in (("fp8", 1), ("bf16", 2)):
        k = run_json(*fast, "--recipe", r)
        lane = k["busy_fraction"]["lanes"] * k["cycles"]
        want = 1024 * proj * cells / 540672
        expect(abs(lane - want) <= 2e-3 * want, f"{r}: lanes busy {lane:.0f} cycles, by hand {want:.0f}")


def test_fp8_lane_cells_keep_bf16():
    """h100-class's 8-bit lane cells (a BF16 weight in 2) give a BF16 run what its 16-bit cells gave: the same
    cycles, energy and area as the chip with 270,336 16-bit cells at the process's 7.7 fJ a cell-MAC, 8 register
    bits and 12,000 transistors a cell (the figures h100-class had before FP8)."""
    base = ["--no-db", "--model", "llama-3.1-8b", "--chip", "h100-class", "--prompt", "32", "--generate", "16",
            "--streams", "4"]
    old = ["--set", "tile.lanes.count=270336", "--set", "tile.lanes.cell_bits=16", "--set", "head.lanes.count=270336",
           "--set", "tile.lanes.cell_mac_fj=7.7", "--set", "tile.lanes.register_bits_per_cell=8",
           "--set", "area.lane_transistors=12000"]
    a, b = run_json(*base), run_json(*base, *old)
    for k in ["cycles", "energy_j", "joules_per_token", "watts", "area_mm2", "transistors", "ttft_ns"]:
        expect(a[k] == b[k], f"{k}: 8-bit cells {a[k]}, 16-bit cells {b[k]}")
    expect(a["energy_by_event_j"] == b["energy_by_event_j"], f"{a['energy_by_event_j']} != {b['energy_by_event_j']}")


def test_lane_cell_mac_fj():
    """tile.lanes.cell_mac_fj replaces the process table's energy.lane_cell_mac_fj for the chip's lane cells (and
    nothing else); without it the process's applies; out of range it is an error naming the key."""
    base = ["--no-db", "--model", "llama-3.1-8b", "--prompt", "16", "--generate", "8"]
    with open(os.path.join(MODELS, "chips", "h100-class.json")) as f:
        chip = json.load(f)
    del chip["tile"]["lanes"]["cell_mac_fj"]
    with tempfile.TemporaryDirectory() as tmp:
        bare = os.path.join(tmp, "no-cell-mac.json")
        with open(bare, "w") as f:
            json.dump(chip, f)
        a = run_json(*base, "--chip", bare)  # the process's 7.7 fJ (models/process/n6.json)
        b = run_json(*base, "--chip", "h100-class")  # 3.85 fJ
        c = run_json(*base, "--chip", "h100-class", "--set", "tile.lanes.cell_mac_fj=23.1")
        ea, eb, ec = a["energy_by_event_j"], b["energy_by_event_j"], c["energy_by_event_j"]
        expect(ea["lane_adds"] > 0 and abs(eb["lane_adds"] - ea["lane_adds"] / 2) <= 1e-12 * ea["lane_adds"] and
               abs(ec["lane_adds"] - 3 * ea["lane_adds"]) <= 1e-12 * ec["lane_adds"],
               f"lane adds {ea['lane_adds']} J at 7.7 fJ, {eb['lane_adds']} at 3.85, {ec['lane_adds']} at 23.1")
        expect(all(ea[k] == eb[k] == ec[k] for k in ea if k != "lane_adds"), "another energy moved")
        expect(a["cycles"] == b["cycles"] == c["cycles"], "timing moved")
    expect_error(["run", *base, "--chip", "h100-class", "--set", "tile.lanes.cell_mac_fj=0"], "h100-class.json",
                 "tile.lanes.cell_mac_fj")



def test_fp8_rom_image():
    """An fp8 ROM image of stories260K holds a byte a projection weight and its tensor's scale: rom inspect counts
    8 bits a weight for fp8 (16 for the BF16 rest), and a functional run from the image gives the logits, tokens
    and cycles of the same weights quantized in memory (--weights --recipe fp8)."""
    model = stories()
    chip = os.path.join(DATA, "tiny-chip.json")
    with tempfile.TemporaryDirectory() as tmp:
        rom = os.path.join(tmp, "fp8.rom")
        run("rom", "build", "--model", model, "--chip", chip, "--recipe", "fp8", "--weights", model, "-o", rom)
        j = json.loads(run("rom", "inspect", rom, "--json").stdout)
        # stories260K: 5 layers of q, k, v, o (64 x 64 with 4 of 8 KV heads: k, v 32 x 64), gate, up (172 x 64), down
        proj = 5 * (64 * 64 + 2 * 32 * 64 + 64 * 64 + 3 * 172 * 64)
        rest = 2 * 512 * 64 + 11 * 64  # the embedding table, the LM head (512 x 64 each) and 11 norms, BF16
        expect(j["bits"] == 8 * proj + 16 * rest, f"image bits {j['bits']}, by hand {8 * proj + 16 * rest}")
        base = ["run", "--json", "--no-db", "--model", model, "--chip", chip, "--mode", "functional", "--text",
                "Once upon a time", "--generate", "6", *FP32_DATAPATH]
        out = {}
        for name, src in (("rom", ["--rom", rom]), ("memory", ["--weights", model, "--recipe", "fp8"])):
            lf = os.path.join(tmp, name + ".json")
            r = json.loads(run(*base, *src, "--logits", lf).stdout)
            out[name] = (r["functional"]["output_ids"], r["cycles"], json.load(open(lf)))
        expect(out["rom"] == out["memory"], f"the image's run differs: {out['rom'][:2]} != {out['memory'][:2]}")
# adapters in SRAM (issue 20 item 4)
def _adapter_oracle(rank, roles):
    """By hand, from llama-3.1-8b's config.json and hc1-class's kv.* and tile.* keys: the adapter's bytes per tile,
    the KV bytes, positions and slots left, and its cycles per layer of one token (not the simulator's formulas)."""
    with open(os.path.join(MODELS, "llm", "llama-3.1-8b", "config.json")) as f:
        m = json.load(f)
    with open(os.path.join(MODELS, "chips", "hc1-class.json")) as f:
        c = json.load(f)
    kv = {k: v["value"] for k, v in c["kv"].items()}
    hid, heads, kvh = m["hidden_size"], m["num_attention_heads"], m["num_key_value_heads"]
    hd = hid // heads
    shape = {"q": (heads * hd, hid), "k": (kvh * hd, hid), "v": (kvh * hd, hid), "o": (hid, heads * hd)}  # (out, in)
    eb, word = kv["element_bits"], kv["word_bits"]
    words = lambda elems: -(-elems * eb // word) * word  # each matrix from a fresh word
    bits = {r: words(rank * shape[r][1]) + words(shape[r][0] * rank) for r in roles}
    per_tile = sum(bits.values()) // 8  # one layer per tile
    pos_bytes = 2 * kvh * hd * eb // 8
    kv_bytes = kv["bytes_per_tile"]
    vec = c["tile"]["vector"]
    port_bits = kv["banks"] * kv["word_bits"] // kv["ports"]
    cyc = sum(max(-(-rank * sum(shape[r]) // vec["elems_per_cycle"]["value"]), -(-bits[r] // port_bits)) +
              vec["latency_cycles"]["value"] for r in roles)
    return dict(per_tile=per_tile, total=per_tile * m["num_hidden_layers"], layers=m["num_hidden_layers"],
                left=kv_bytes - per_tile, positions=(kv_bytes - per_tile) // pos_bytes,
                positions_without=kv_bytes // pos_bytes, slot_bytes=pos_bytes * kv["slot_context"],
                slots=(kv_bytes - per_tile) // (pos_bytes * kv["slot_context"]),
                slots_without=kv_bytes // (pos_bytes * kv["slot_context"]), layer_cycles=cyc,
                read_bits=8 * per_tile * m["num_hidden_layers"], macs=rank * sum(sum(shape[r]) for r in roles))


def test_adapter_sram_kv():
    """Rank 16 on q and v, llama-3.1-8b on hc1-class: the SRAM the adapter takes and the KV slots it costs, exactly,
    in run --json and the summary; the run's KV capacity is the smaller one."""
    o = _adapter_oracle(16, ("q", "v"))
    expect(o["per_tile"] == 212992 and o["slots"] == 4 and o["slots_without"] == 5, f"oracle itself: {o}")
    j = run_json("--no-db", "--prompt", "1024", "--generate", "1024", "--adapter-rank", "16", "--adapter-roles", "q,v")
    a = j["adapter"]
    want = {"tensors": o["layers"] * 2, "rank": 16, "roles": "q,v", "alpha": 16, "scale": 1, "element_bits": 8, "bytes_per_tile": o["per_tile"],
            "bytes": o["total"], "kv_bytes_per_tile_left": o["left"], "kv_positions": o["positions"],
            "kv_positions_without": o["positions_without"], "kv_slots": o["slots"],
            "kv_slots_without": o["slots_without"], "kv_slots_lost": o["slots_without"] - o["slots"]}
    expect(a == want, f"adapter {a}, by hand {want}")
    expect(j["kv_slots"] == o["positions"] // 2048, f"kv_slots {j['kv_slots']}, by hand {o['positions'] // 2048}")
    expect("adapter" not in run_json("--no-db", "--prompt", "8", "--generate", "2"), "an adapter key without one")
    out = run("run", "--no-db", "--prompt", "8", "--generate", "2", "--adapter-rank", "16", "--adapter-roles", "q,v").stdout
    line = (f"adapter rank 16 on q,v: {o['per_tile']} bytes per tile in the KV SRAM ({o['total']} in all); KV slots of "
            f"2048 positions {o['slots_without']} -> {o['slots']} ({o['slots_without'] - o['slots']} lost), "
            f"positions {o['positions_without']} -> {o['positions']}")
    expect(line in out, f"summary lacks {line!r}: {out}")


def test_adapter_time_energy():
    """The adapter's cost in a token's time (its multiply-adds on the vector unit, or its A and B over the KV port,
    whichever is longer, plus the unit's latency, per adapted projection and layer) and in energy (KV SRAM reads at
    sram_read_fj_per_bit, a vector op per multiply-add), against a run without it."""
    o = _adapter_oracle(16, ("q", "v"))
    args = ("--no-db", "--prompt", "1", "--generate", "2")
    base = run_json(*args)
    ad = run_json(*args, "--adapter-rank", "16", "--adapter-roles", "q,v")
    for k in ("stream0_cycles", "analytic_stream0_cycles"):
        d = ad[k]["decode_first"] - base[k]["decode_first"]
        expect(d == o["layers"] * o["layer_cycles"], f"{k}: decode step {d} cycles longer, by hand "
               f"{o['layers']} x {o['layer_cycles']}")
    with open(os.path.join(MODELS, "process", "n6.json")) as f:
        p = json.load(f)["energy"]
    vr = 0.9  # hc1-class card.vr_efficiency
    tokens = 2  # the prompt token and the first generated one pass the layers; one pass each
    e0, e1 = base["energy_by_event_j"], ad["energy_by_event_j"]
    want_sram = tokens * o["read_bits"] * p["sram_read_fj_per_bit"]["value"] * 1e-15 / vr
    want_vec = tokens * o["layers"] * o["macs"] * p["vector_op_fj"]["value"] * 1e-15 / vr
    for key, want in (("sram", want_sram), ("vector", want_vec)):
        d = e1[key] - e0[key]
        expect(abs(d - want) <= 1e-9 * want, f"{key}: {d} J more, by hand {want}")


def test_adapter_errors():
    """Bad adapters: one that leaves no KV slot (the key and the sizes), an unknown role, rank 0, a rank without
    roles, a role the model lacks."""
    expect_error(["run", "--no-db", "--adapter-rank", "16", "--adapter-roles", "q,v", "--set",
                  "kv.bytes_per_tile=4300000"],
                 "key 'kv.bytes_per_tile'", "rank 16 on q,v", "takes 212992 bytes of tile 0's KV SRAM of 4300000 bytes",
                 "leaving 4087008 bytes, less than one KV slot of 4194304 bytes")
    expect_error(["run", "--no-db", "--adapter-rank", "16", "--adapter-roles", "q,x"],
                 "--adapter-roles: unknown role 'x' in 'q,x'", "q, k, v, o, gate, up, down")
    expect_error(["run", "--no-db", "--adapter-rank", "0", "--adapter-roles", "q"],
                 "--adapter-rank expects a whole number from 1 to 65536, got '0'", code=2)
    expect_error(["run", "--no-db", "--adapter-rank", "4"], "--adapter-rank and --adapter-roles go together", code=2)


def test_adapter_eval():
    """eval takes the same adapter and reports the same placement; its KV capacity is the smaller one."""
    o = _adapter_oracle(16, ("q", "v"))
    p = run("eval", "--no-db", "--json", "--records", "20", "--no-compare", "--adapter-rank", "16", "--adapter-roles",
            "q,v")
    j = json.loads(p.stdout)
    a = j["adapter"]
    got = (a["bytes_per_tile"], a["kv_positions"], a["kv_slots"], a["kv_slots_lost"])
    want = (o["per_tile"], o["positions"], o["slots"], o["slots_without"] - o["slots"])
    expect(got == want, f"eval adapter {got}, by hand {want}")
    expect_error(["eval", "--no-db", "--adapter-roles", "q"], "--adapter-rank and --adapter-roles go together", code=2)


# stories260K's projections (out, in) and their Hugging Face module names, for adapters the tests write
STORIES_PROJ = {"q": ("self_attn.q_proj", 64, 64), "k": ("self_attn.k_proj", 32, 64), "v": ("self_attn.v_proj", 32, 64),
                "o": ("self_attn.o_proj", 64, 64), "gate": ("mlp.gate_proj", 172, 64), "up": ("mlp.up_proj", 172, 64),
                "down": ("mlp.down_proj", 64, 172)}


def _lora_values(rank, roles, layers, seed, zero_b):
    """{(layer, role): (A rows, B rows)}: A rank x in and B out x rank, uniform in +-0.5 (B all 0 with zero_b)."""
    import random
    rnd = random.Random(seed)
    v = {}
    for l in layers:
        for r in roles:
            _, out, inp = STORIES_PROJ[r]
            a = [[rnd.uniform(-0.5, 0.5) for _ in range(inp)] for _ in range(rank)]
            b = [[0.0 if zero_b else rnd.uniform(-0.5, 0.5) for _ in range(rank)] for _ in range(out)]
            v[(l, r)] = (a, b)
    return v


def _write_peft(folder, rank, alpha, values, shape_of=None):
    """PEFT's adapter_model.safetensors (8-byte header length, JSON header, raw F32 data) and adapter_config.json."""
    import struct
    header, data = {}, bytearray()
    for (l, r), (a, b) in sorted(values.items()):
        for kind, rows in (("A", a), ("B", b)):
            name = f"base_model.model.model.layers.{l}.{STORIES_PROJ[r][0]}.lora_{kind}.weight"
            flat = [x for row in rows for x in row]
            shape = (shape_of or {}).get(name, [len(rows), len(rows[0])])
            header[name] = {"dtype": "F32", "shape": shape, "data_offsets": [len(data), len(data) + 4 * len(flat)]}
            data += struct.pack(f"<{len(flat)}f", *flat)
    h = json.dumps(header).encode()
    h += b" " * ((-len(h)) % 8)
    path = os.path.join(folder, "adapter_model.safetensors")
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + data)
    with open(os.path.join(folder, "adapter_config.json"), "w") as f:
        json.dump({"peft_type": "LORA", "r": rank, "lora_alpha": alpha,
                   "target_modules": sorted({STORIES_PROJ[r][0].split(".")[1] for _, r in values})}, f)
    return path


def _write_gguf_lora(path, alpha, values):
    """llama.cpp's GGUF LoRA: general.type adapter, adapter.lora.alpha, blk.N.attn_q.weight.lora_a (ne [in, r]) and
    .lora_b (ne [r, out]); Q and K rows of B in Meta's order (pairs), as llama.cpp's converter writes them."""
    import struct
    gg = {"q": "attn_q", "k": "attn_k", "v": "attn_v", "o": "attn_output", "gate": "ffn_gate", "up": "ffn_up",
          "down": "ffn_down"}
    kvs = [("general.architecture", 8, gguf_str("llama")), ("general.type", 8, gguf_str("adapter")),
           ("adapter.type", 8, gguf_str("lora")), ("adapter.lora.alpha", 6, struct.pack("<f", alpha))]
    info, data, n_t = bytearray(), bytearray(), 0
    for (l, r), (a, b) in sorted(values.items()):
        if r in ("q", "k"):  # graph row i + j*half (halves) is file row 2i + j within each head of 8
            b = [b[h * 8 + (k % 2) * 4 + k // 2] for h in range(len(b) // 8) for k in range(8)]
        for suffix, rows in (("lora_a", a), ("lora_b", b)):
            name = f"blk.{l}.{gg[r]}.weight.{suffix}".encode()
            flat = [x for row in rows for x in row]
            info += struct.pack("<Q", len(name)) + name + struct.pack("<IQQIQ", 2, len(rows[0]), len(rows), 0, len(data))
            data += struct.pack(f"<{len(flat)}f", *flat)
            data += b"\0" * ((-len(data)) % 32)
            n_t += 1
    gguf_write(path, kvs, n_t, bytes(info), bytes(data))


def _func_logits(tmp, tag, *extra, infer=False):
    """stories260K's logits at every position of "Once upon a time" + 4 tokens: the chip's functional mode with f32
    weights and an FP32 datapath, or (infer) the FP32 reference."""
    model = stories()
    lf = os.path.join(tmp, tag + ".json")
    if infer:
        run("infer", "--model", model, "--text", "Once upon a time", "--generate", "4", "--ignore-eos", "--logits", lf,
            *extra)
    else:
        run("run", "--json", "--no-db", "--model", model, "--chip", os.path.join(DATA, "tiny-chip.json"), "--mode",
            "functional", "--weights", model, "--recipe", "f32", "--text", "Once upon a time", "--generate", "4",
            "--logits", lf, *FP32_DATAPATH, *extra)
    return json.load(open(lf))


def _max_diff(ra, rb):
    expect([r["pos"] for r in ra] == [r["pos"] for r in rb], "not the same positions")
    return max(max(abs(x - y) for x, y in zip(a["logits"], b["logits"])) for a, b in zip(ra, rb))


def test_adapter_functional_zero_b():
    """A LoRA adapter whose B is 0 (PEFT's initial state) leaves functional mode's logits exactly as they are."""
    with tempfile.TemporaryDirectory() as tmp:
        path = _write_peft(tmp, 4, 8, _lora_values(4, ("q", "v"), range(5), 1, zero_b=True))
        base = _func_logits(tmp, "base")
        ad = _func_logits(tmp, "ad", "--adapter", path)
        expect(len(base) == 8 and _max_diff(base, ad) == 0.0, f"B = 0 moved the logits by {_max_diff(base, ad)}")


def test_adapter_functional_reference():
    """A random rank-4 adapter on q, v and down (PEFT safetensors): functional mode's logits equal the FP32
    reference's with the same adapter within 1e-4 and differ from the unadapted ones; the same adapter as a GGUF
    LoRA (B's q rows in Meta's order) gives the same logits; run --json reports the file's placement."""
    with tempfile.TemporaryDirectory() as tmp:
        vals = _lora_values(4, ("q", "v", "down"), range(5), 7, zero_b=False)
        path = _write_peft(tmp, 4, 8, vals)
        ad = _func_logits(tmp, "ad", "--adapter", path)
        ref = _func_logits(tmp, "ref", "--adapter", path, infer=True)
        d = _max_diff(ad, ref)
        expect(d <= 1e-4, f"adapted datapath differs from the adapted reference by {d}")
        base = _func_logits(tmp, "base")
        expect(_max_diff(ad, base) > 0.1, f"the adapter moved the logits by only {_max_diff(ad, base)}")
        ref0 = _func_logits(tmp, "ref0", infer=True)
        expect(_max_diff(ref, ref0) > 0.1, "the reference ignored the adapter")
        gpath = os.path.join(tmp, "lora.gguf")
        _write_gguf_lora(gpath, 8, vals)
        g = _func_logits(tmp, "g", "--adapter", gpath)
        expect(_max_diff(g, ad) <= 1e-6, f"the GGUF adapter differs from the PEFT one by {_max_diff(g, ad)}")
        expect(_max_diff(_func_logits(tmp, "dir", "--adapter", tmp), ad) == 0.0, "PEFT's folder is not its file")
        j = run_json("--no-db", "--model", stories(), "--chip", os.path.join(DATA, "tiny-chip.json"), "--prompt", "4",
                     "--generate", "2", "--adapter", path)
        # per layer: q 4x64 + 64x4, v 4x64 + 32x4, down 4x172 + 64x4 elements at the tiny chip's 8-bit KV elements,
        # each matrix from a fresh 256-bit word; one layer per tile
        words = lambda n: -(-n * 8 // 256) * 256 // 8
        per_tile = sum(words(4 * i) + words(o * 4) for o, i in ((64, 64), (32, 64), (64, 172)))
        a = j["adapter"]
        expect((a["rank"], a["roles"], a["alpha"], a["bytes_per_tile"], a["file"]) == (4, "q,v,down", 8, per_tile, path),
               f"adapter {a}, by hand per tile {per_tile}")


def test_adapter_file_errors():
    """Bad adapter files: a shape that does not match the model (the tensor, expected and found), a GGUF that is not
    an adapter, no adapter_config.json, --adapter with --adapter-rank."""
    model = stories()
    chip = os.path.join(DATA, "tiny-chip.json")
    with tempfile.TemporaryDirectory() as tmp:
        bad = "base_model.model.model.layers.2.self_attn.v_proj.lora_B.weight"
        vals = _lora_values(4, ("v",), range(5), 3, zero_b=False)
        vals[(2, "v")] = (vals[(2, "v")][0], [[0.1] * 4] * 64)  # B with 64 rows, v_proj has 32 outputs
        path = _write_peft(tmp, 4, 8, vals)
        for cmd in (["run", "--model", model, "--chip", chip, "--no-db"], ["infer", "--model", model, "--text", "a"]):
            expect_error([*cmd, "--adapter", path], path, f"tensor {bad}: expected shape [32, 4]",
                         "model.layers.2.self_attn.v_proj.weight", "found [64, 4]")
        os.remove(os.path.join(tmp, "adapter_config.json"))
        expect_error(["run", "--model", model, "--chip", chip, "--no-db", "--adapter", path], "adapter_config.json")
        expect_error(["run", "--model", model, "--chip", chip, "--no-db", "--adapter", model],
                     "key 'general.type': expected \"adapter\"")
        expect_error(["run", "--no-db", "--adapter", path, "--adapter-rank", "4", "--adapter-roles", "q"],
                     "give --adapter FILE or --adapter-rank and --adapter-roles, not both", code=2)


def test_adapter_eval_functional():
    """eval --mode functional applies --adapter to every record: with B = 0 each record's output is the unadapted
    one; a random adapter changes some, and the batch takes longer (the adapter's cycles)."""
    model = stories()
    chip = os.path.join(DATA, "tiny-chip.json")
    with tempfile.TemporaryDirectory() as tmp:
        data = os.path.join(tmp, "kids.csv")
        write_csv(data, [f"{i},{n} found a ball in the park" for i, n in enumerate(["Lily", "Tom", "Max", "Sue"])])
        os.mkdir(os.path.join(tmp, "zero"))
        os.mkdir(os.path.join(tmp, "rand"))
        zero = _write_peft(os.path.join(tmp, "zero"), 4, 8, _lora_values(4, ("q", "v"), range(5), 1, zero_b=True))
        rand = _write_peft(os.path.join(tmp, "rand"), 4, 8, _lora_values(4, ("q", "v"), range(5), 5, zero_b=False))
        got = {}
        for name, extra in (("none", []), ("zero", ["--adapter", zero]), ("rand", ["--adapter", rand])):
            db = os.path.join(tmp, name + ".sqlite")
            j = json.loads(run("eval", "--json", "--model", model, "--chip", chip, "--data", data, "--rule",
                               "Tell a story.", "--max-new-tokens", "8", "--no-compare", "--mode", "functional",
                               "--weights", model, "--db", db, *extra).stdout)
            con = sqlite3.connect(db)
            texts = [r[0] for r in con.execute("SELECT output_text FROM records ORDER BY record")]
            con.close()
            got[name] = (texts, j["batch_ns"])
        expect(len(got["none"][0]) == 4 and got["zero"][0] == got["none"][0], f"B = 0 changed outputs: {got}")
        expect(got["rand"][0] != got["none"][0], f"a random adapter changed no output: {got}")
        expect(got["zero"][1] > got["none"][1], f"the adapter took no time: {got}")
# ---- h/hbmkv: the KV cache in the HBM store shares its bandwidth with the weights (issue 19) ----------------

def test_kv_store_shared():
    """kv.in_store: every KV read and write books the chip's HBM store for its bits over the store's ports x
    bits_per_cycle, in turn with the weights' streams. tests/data/tiny-chip-hbm.json (6 items in flight) with its store
    at 2 x 8192 bits a cycle (so the cycle fidelity's run is short) and the KV in the store, against the same chip with
    its KV in an SRAM streaming as fast (kv.banks 2 x kv.word_bits 8192), tiny-llama (2 KV heads of 32, 8-bit KV: 1024
    bits a position a layer, 4 layers), 3 streams of a 64-token prompt (chunks of 16) and 8 tokens, one token a pass
    (tile.lanes.tokens_per_read 1, so items overlap in the tile). The store is busier by the KV's cycles, by hand a
    stream a layer: each chunk's K and V written, ceil(16 x 1024 / 16384), and each of its positions' context read,
    ceil(ctx x 1024 / 16384) for ctx 1..64; then the 7 decode steps' write, ceil(1024 / 16384), and read, ctx 65..71:
    2472 cycles. The same in the cycle fidelity (its issue stage books the store as the transaction fidelity does).
    One stream alone takes the SRAM chip's cycles; 3 take longer in both fidelities, as a KV read now waits for a
    weight stream and the reverse. The analytical saturated rate (the store the slowest unit, at 2 x 1024 bits a
    cycle) adds each token's KV cycles at the middle of generation to the store's. kv.banks or kv.word_bits given with
    kv.in_store: refused by name."""
    with open(os.path.join(DATA, "tiny-chip-hbm.json")) as f:
        base = json.load(f)
    base["store"]["bits_per_cycle"]["value"] = 8192
    with open(os.path.join(MODELS, "llm", "tiny-llama", "config.json")) as f:
        m = json.load(f)
    cdiv = lambda a, b: -(-a // b)
    bw = base["store"]["ports"]["value"] * base["store"]["bits_per_cycle"]["value"]
    kvb = 2 * m["num_key_value_heads"] * (m["hidden_size"] // m["num_attention_heads"]) * base["kv"]["element_bits"]["value"]
    prompt, gen, streams, chunk = 64, 8, 3, base["scheduler"]["prefill_chunk"]["value"]
    items = [(p, min(chunk, prompt - p)) for p in range(0, prompt, chunk)] + [(prompt + g, 1) for g in range(gen - 1)]
    kv = streams * m["num_hidden_layers"] * sum(cdiv(n * kvb, bw) + sum(cdiv(x * kvb, bw) for x in range(p + 1, p + n + 1))
                                                for p, n in items)
    expect(kv == 2472, f"by hand: {kv}")

    def in_store(c):
        c["kv"]["in_store"] = {"value": True, "source": "test fixture"}
        del c["kv"]["banks"], c["kv"]["word_bits"]

    def sram(c):
        c["kv"]["banks"]["value"], c["kv"]["word_bits"]["value"] = 2, 8192

    args = ["--model", "tiny-llama", "--no-db", "--prompt", str(prompt), "--generate", str(gen)]
    busy = lambda j: round(j["busy_fraction"]["store"] * j["cycles"])
    with tempfile.TemporaryDirectory() as tmp:
        paths = {}
        for name, edit in (("in_store", in_store), ("sram", sram)):
            c = json.loads(json.dumps(base))
            edit(c)
            paths[name] = os.path.join(tmp, name + ".json")
            with open(paths[name], "w") as f:
                json.dump(c, f)
        one = {k: run_json("--chip", p, *args) for k, p in paths.items()}
        expect(one["in_store"]["cycles"] == one["sram"]["cycles"], f"one stream: {one['in_store']['cycles']} cycles "
               f"with the KV in the store, {one['sram']['cycles']} in an SRAM as fast")
        load = args + ["--streams", str(streams), "--set", "tile.lanes.tokens_per_read=1"]
        for fid in ("transaction", "cycle"):
            a = run_json("--chip", paths["in_store"], *load, "--fidelity", fid)
            b = run_json("--chip", paths["sram"], *load, "--fidelity", fid)
            expect(busy(a) - busy(b) == kv, f"{fid}: the store busy {busy(a)} cycles against {busy(b)}: "
                   f"{busy(a) - busy(b)} more, by hand the KV's {kv}")
            expect(a["cycles"] > b["cycles"], f"{fid}: {streams} streams take {a['cycles']} cycles with the KV in the "
                   f"store, {b['cycles']} with it in an SRAM as fast: no contention")
        # the analytical saturated rate: the store is the slowest unit at its own 2 x 1024 bits a cycle (--set); per
        # token it streams a layer pass's weights over 16 tokens, the LM head's, an embedding row, and with kv.in_store
        # the token's KV at the middle of generation (its position 68: written, and 69 positions read)
        H, F = m["hidden_size"], m["intermediate_size"]
        kvh = kvb // base["kv"]["element_bits"]["value"]  # K and V elements a position a layer
        layer = 2 * H * H + 2 * kvh // 2 * H + 3 * F * H
        bw0 = 2 * 1024
        weights = cdiv(m["num_hidden_layers"] * layer * 16, bw0) / 16 + cdiv(m["vocab_size"] * H * 16, bw0) + cdiv(H * 16, bw0)
        kv_mid = m["num_hidden_layers"] * (cdiv(kvb, bw0) + cdiv(69 * kvb, bw0))
        for name, want in (("in_store", weights + kv_mid), ("sram", weights)):
            j = run_json("--chip", paths[name], *args, "--set", "store.bits_per_cycle=1024",
                         *(["--set", "kv.word_bits=1024"] if name == "sram" else []))
            got = 1e9 / j["analytic_saturated_tokens_per_s"]
            expect(abs(got - want) < 1e-6, f"{name}: the analytical saturated rate's {got} cycles a token, by hand {want}")
        for key in ("banks", "word_bits"):
            c = json.loads(json.dumps(base))
            c["kv"]["in_store"] = {"value": True, "source": "test fixture"}
            del c["kv"]["banks" if key == "word_bits" else "word_bits"]
            p = os.path.join(tmp, "bad.json")
            with open(p, "w") as f:
                json.dump(c, f)
            err = expect_error(["run", "--chip", p, *args], p, f"key 'kv.{key}'", "with kv.in_store",
                               "store.ports x store.bits_per_cycle", "leave them out")
            expect(err.count("\n") == 0, f"more than one line: {err!r}")


def h100_sync_step_by_hand(ctxs, tp=1, link=None):
    """h100-class, Llama-3.1-8B BF16: one synchronous decode step (tile.sync_step) of len(ctxs) sequences, each
    reading ctxs[i] positions of context, by hand from h100-class.json and the model's config.json: the sampled tokens'
    ids cross the link to the embedding (one item each: 1 cycle + 2 latency) and each row is read from the HBM in turn
    (ceil(4096 x 16 / 14645) + 732 latency), the last hops to the tile (4096 x 16 / 4096 + 2); then one pass of the S
    tokens over the 32 layers: each product max(ceil(S E / lanes), ceil(16 E / 14645)) + HBM latency + lane depth, the
    vector ops on S tokens, attention once per sequence (its K and V written, its context read, at the HBM's bits a
    cycle, + latency); the group hops to the head in one go (16 S + 2); the head's pass: RMSNorm, LM head, sampler.
    tp > 1: one of tp chips splitting each layer's matrices (h100_step_by_hand), each embedding row followed by a ring
    all-reduce of its hidden vector, each layer's o and down by one of the S tokens' vectors, the sampler by one of
    S x 64 bits."""
    with open(os.path.join(MODELS, "chips", "h100-class.json")) as f:
        c = json.load(f)
    v = lambda *ks: functools.reduce(lambda d, k: d[k], ks, c)["value"]
    cdiv = lambda a, b: -(-a // b)
    H, L, prods, lm, V, F, kv_elems = l8b_shapes()
    ring = lambda bits: 0
    if tp > 1:  # the shard, and a ring all-reduce of `bits`: 2 (tp - 1) / tp of them over the link, 2 (tp - 1) latencies
        prods, lm, V, F, kv_elems = [e // tp for e in prods], cdiv(V, tp) * H, cdiv(V, tp), F // tp, kv_elems // tp
        f = c["clock_hz"]["value"]
        ring = lambda bits: math.ceil(cdiv(2 * (tp - 1) * bits, tp) / link["bandwidth_bits_per_s"] * f) + \
            2 * (tp - 1) * math.ceil(link["latency_ns"] * f / 1e9)
    S, bw, lanes, kvb = len(ctxs), v("store", "ports") * v("store", "bits_per_cycle"), v("tile", "lanes", "count"), kv_elems * 16
    lat, dep = v("store", "latency_cycles"), v("tile", "lanes", "pipeline_depth")
    vw, vl = v("tile", "vector", "elems_per_cycle"), v("tile", "vector", "latency_cycles")
    vec = lambda elems, passes: passes * cdiv(elems, vw) + vl
    mv = lambda e: max(cdiv(S * e, lanes), cdiv(16 * e, bw)) + lat + dep
    lw, ll = v("link", "width_bits"), v("link", "latency_cycles")
    hop = lambda n: cdiv(n * H * v("link", "elem_bits"), lw) + ll
    embed = cdiv(16 * H, bw) + lat + ring(H * 16)
    t = cdiv(v("link", "token_id_bits"), lw) + ll + S * embed + hop(1)  # the embedding the slowest stage
    attn = sum(cdiv(kvb, bw) + v("tile", "attention", "latency_cycles") + cdiv(x * kvb, bw) for x in ctxs)
    t += L * (2 * vec(S * H, 2) + sum(mv(e) for e in prods) + vec(S * (H // tp + kv_elems // 2), 1) + attn +
              2 * vec(S * H, 1) + vec(S * F, 1) + 2 * ring(S * H * 16))
    return t + hop(S) + vec(S * H, 2) + mv(lm) + cdiv(S * V, v("head", "sampler", "elems_per_cycle")) + \
        v("head", "sampler", "latency_cycles") + ring(S * 64)


def test_gpu_sync_step_analytic():
    """tile.sync_step (h100-class): a step carries every sequence and starts only once the last token of the one before
    is back, so its units do not overlap and the step of S sequences is one serial chain (h100_sync_step_by_hand; for
    one sequence it is h100_step_by_hand's step). The simulation's steps equal it exactly: 64 and 200 streams of a
    1-token prompt (stream 0 one position ahead of the others, which joined its second pass), and the last step of 64
    streams of 1k in / 1k out (all at 2047 positions: 9.76 ms, 6,557 tok/s). The analytical model's knee is the most
    sequences a step carries, min(KV slots: 63e9 x 8 / (32768 x 32 x 2048) = 234, tokens_per_read 256), and its
    saturated rate that many over the same chain at the middle of generation (1,537 positions): 12,404 tok/s, where
    it overlapped the head with the tile and assumed 256 tokens a pass (12,937; 12,868 with the KV in the store)."""
    _, _, clock = h100_numbers()
    w, kv, over = h100_step_by_hand(100)
    expect(h100_sync_step_by_hand([101]) == w + kv + sum(over.values()), "one sequence: not the single-stream step")
    for streams in (64, 200):
        j = run_json("--chip", "h100-class", "--prompt", "1", "--generate", "8", "--streams", str(streams), "--no-db")
        want = h100_sync_step_by_hand([8] + [7] * (streams - 1))
        expect(j["stream0_cycles"]["decode_last"] == want, f"{streams} streams: the last step "
               f"{j['stream0_cycles']['decode_last']} cycles, by hand {want}")
    j = run_json("--chip", "h100-class", "--streams", "64", "--no-db")
    want = h100_sync_step_by_hand([2047] * 64)
    expect(j["stream0_cycles"]["decode_last"] == want, f"1k/1k, 64 streams: the last step "
           f"{j['stream0_cycles']['decode_last']} cycles, by hand {want}")
    slots = 63000000000 * 8 // (2 * 8 * 128 * 16 * 32) // 2048
    expect(j["kv_slots"] == slots == 234 and j["analytic_knee_streams"] == min(slots, 256),
           f"knee {j['analytic_knee_streams']}, KV slots {j['kv_slots']}, by hand {slots}")
    sat = 234 / h100_sync_step_by_hand([1537] * 234) * clock
    got = j["analytic_saturated_tokens_per_s"]
    expect(abs(got - sat) <= 1e-9 * sat, f"analytic saturated {got} tok/s, by hand {sat}")

# ---- baselines in eval, sweep and compare; HBM cost; the store's unit row (issue 19, items 2-4) ------

def chip_cost(name):
    """A shipped chip's cost.* values and its store's, from its file (the oracle reads the files)."""
    with open(os.path.join(MODELS, "chips", name + ".json")) as f:
        c = json.load(f)
    k = {n: v["value"] for n, v in c.get("cost", {}).items()}
    k["capacity_bytes"] = c.get("store", {}).get("capacity_bytes", {}).get("value")
    return k


def test_eval_baseline_cost():
    """eval runs on h100-class in BF16 with 1 and 8 records in flight (8 at once), and its JSON, its
    text and its database carry the run's cost object: the card's list price from the chip file, the
    batch's own tokens/s and watts, and $/M tokens derived here line by line; --set deploy.* moves it;
    a chip without cost inputs gives null and says why."""
    k = dict(cost_inputs(), **{n: v for n, v in chip_cost("h100-class").items() if n != "capacity_bytes"})
    with tempfile.TemporaryDirectory() as tmp:
        db = os.path.join(tmp, "e.sqlite")
        for n in (1, 8):
            j = json.loads(run("eval", "--chip", "h100-class", "--recipe", "bf16", "--records", str(n), "--db", db,
                               "--no-compare", "--json").stdout)
            expect(j["records_done"] == n and j["max_in_flight"] == n and j["weight_formats"]["from"] == "recipe",
                   f"{n} records: done {j['records_done']}, in flight {j['max_in_flight']}, {j['weight_formats']}")
            c = j["cost"]
            expect(c["card_from"] == "card_usd" and c["die"] is None and c["card_usd"] == k["card_usd"], f"{c}")
            expect(close(c["tokens_per_s"], j["tokens_per_s"]) and c["watts"] == j["watts"] and
                   close(c["joules_per_token"], j["energy_j"] / j["output_tokens"]), f"{c} against the batch's figures")
            want = cost_by_hand(k, 1.0, j["tokens_per_s"], j["watts"], card=k["card_usd"])
            for key in ("system_usd", "capex_usd_per_s", "energy_usd_per_s", "usd_per_m_tokens"):
                expect(close(c[key], want[key]), f"{n} records: {key} {c[key]} against {want[key]}")
        con = sqlite3.connect(db)
        rows = con.execute("SELECT runs.command, costs.card_from, costs.usd_per_m_tokens, runs.summary FROM costs"
                           " JOIN runs ON runs.id = costs.run_id ORDER BY run_id").fetchall()
        con.close()
        expect(len(rows) == 2 and all(r[0] == "eval" and r[1] == "card_usd" and
                                      r[2] == json.loads(r[3])["cost"]["usd_per_m_tokens"] for r in rows),
               f"costs rows {[r[:3] for r in rows]}")
    half = json.loads(run("eval", "--chip", "h100-class", "--recipe", "bf16", "--records", "1", "--no-db",
                          "--no-compare", "--json", "--set", "deploy.utilization=0.5").stdout)["cost"]
    # capex per second is the system's price over its serving seconds: half the utilization, twice the rate
    expect(half["utilization"] == 0.5 and close(half["capex_usd_per_s"], 2 * want["capex_usd_per_s"]), f"{half}")
    out = run("eval", "--chip", "h100-class", "--recipe", "bf16", "--records", "1", "--no-db", "--no-compare").stdout
    expect(re.search(r"\$ per million tokens +[0-9.]+ \(deployment us-industrial", out), out)
    t = json.loads(run("eval", *TINY, "--records", "2", "--no-db", "--no-compare", "--json").stdout)
    expect(t["cost"] is None and "no cost section" in t["cost_unknown"], f"{t.get('cost')} {t.get('cost_unknown')}")
    expect_error(["eval", "--records", "1", "--no-db", "--set", "deploy.utilization=2"], "us-industrial.json",
                 "key 'utilization'")


def test_sweep_baselines():
    """A sweep over chip [hc1-class, h100-class] (each with its recipe: a zip axis) x streams [1, 8] at one
    deployment utilization (a deploy.* grid key) runs and merges: four points done, each merged run the
    chip, recipe and streams its params name, its cost at utilization 0.5 (the h100's capex per second
    its list price over half of five Julian years), and a costs row equal to its summary's; a misspelt
    deploy key is refused before any point runs, naming the nearest."""
    k = chip_cost("h100-class")
    dep = cost_inputs()
    with tempfile.TemporaryDirectory() as tmp:
        grid = os.path.join(tmp, "g.json")
        with open(grid, "w") as f:
            json.dump({"prompt": [32], "generate": [8], "streams": [1, 8], "deploy.utilization": [0.5],
                       "zip": [{"chip": ["hc1-class", "h100-class"], "recipe": ["hc1-mix", "bf16"]}]}, f)
        out = os.path.join(tmp, "s.sqlite")
        run("sweep", "--grid", grid, "--db", out, "--jobs", "2")
        con = sqlite3.connect(out)
        rows = con.execute("SELECT p.params, p.status, r.chip, r.streams, r.summary, c.card_from, c.usd_per_m_tokens,"
                           " (SELECT COUNT(*) FROM unit_stats u WHERE u.run_id = r.id) FROM sweep_points p"
                           " JOIN runs r ON r.id = p.run_id JOIN costs c ON c.run_id = r.id ORDER BY p.point").fetchall()
        con.close()
        expect(len(rows) == 4, f"{len(rows)} merged points with a run and a cost, want 4")
        seen = set()
        for params, status, chip, streams, summary, card_from, usd, units in rows:
            p, j = json.loads(params), json.loads(summary)
            seen.add((chip, streams))
            expect(status == "done" and p["chip"] == chip and p["streams"] == streams == j["tokens"] // 8 and
                   units > 0, f"{params}: {status} {chip} {streams} tokens {j['tokens']} units {units}")
            expect(j["weight_formats"]["from"] == "recipe" and f"recipe {p['recipe']} (" in j["weight_formats"]["name"],
                   f"{params}: {j['weight_formats']}")
            c = j["cost"]
            expect(c["utilization"] == 0.5 and usd == c["usd_per_m_tokens"], f"{params}: {c}")
            if chip == "h100-class":
                want = k["card_usd"] / (dep["lifetime_years"] * 365.25 * 86400 * 0.5)
                expect(card_from == "card_usd" and close(c["capex_usd_per_s"], want), f"{c} against capex {want}")
            else:
                expect(card_from == "die", f"{chip}: {card_from}")
        expect(seen == {(c, s) for c in ("hc1-class", "h100-class") for s in (1, 8)}, f"points {seen}")
        with open(grid, "w") as f:
            json.dump({"deploy.utilisation": [0.5]}, f)
        expect_error(["sweep", "--grid", grid, "--db", os.path.join(tmp, "t.sqlite")], "key 'deploy.utilisation'",
                     "did you mean 'deploy.utilization'", code=2)


def test_compare_baselines():
    """compare --baselines: hc1-class beside h100-, h200-, b200- and wafer-class on one workload (Llama-3.1-8B),
    each in its recipe (bf16, bf16, fp4, bf16); every figure of a row equals a single run of that chip with
    that recipe (b200-class's fp4 differs from its own NVFP4 weights.*, so the recipe is seen to reach the
    runs); a --pair may name a recipe too, and a pair without its model or chip is a usage error."""
    wl = ("--prompt", "64", "--generate", "16")
    rows = json.loads(run("compare", "--baselines", "--json", *wl, "--streams", "4").stdout)
    got = [(r["model"], r["chip"], r.get("recipe")) for r in rows]
    expect(got == [("llama-3.1-8b", "hc1-class", None), ("llama-3.1-8b", "h100-class", "bf16"),
                   ("llama-3.1-8b", "h200-class", "bf16"), ("llama-3.1-8b", "b200-class", "fp4"),
                   ("llama-3.1-8b", "wafer-class", "bf16")], f"rows {got}")
    for r in rows[1:]:
        one = run_json("--no-db", "--chip", r["chip"], "--recipe", r["recipe"], *wl)
        load = run_json("--no-db", "--chip", r["chip"], "--recipe", r["recipe"], *wl, "--streams", "4")
        for k, src in (("decode_tokens_per_s", one["decode_tokens_per_s"]), ("ttft_ns", one["ttft_ns"]),
                       ("watts", one["watts"]), ("usd_per_m_tokens", one["cost"]["usd_per_m_tokens"]),
                       ("area_mm2", one["area_mm2"]), ("load_tokens_per_s", load["tokens_per_s"]),
                       ("load_usd_per_m_tokens", load["cost"]["usd_per_m_tokens"]),
                       ("load_busy_fraction", load["busy_fraction"])):
            expect(r[k] == src, f"{r['chip']}:{r['recipe']}: {k} {r[k]} != single run {src}")
        expect(one["weight_formats"]["from"] == "recipe", f"{r['chip']}: {one['weight_formats']}")
    own = run_json("--no-db", "--chip", "b200-class", *wl)
    expect(own["decode_tokens_per_s"] != rows[3]["decode_tokens_per_s"], "b200-class's row is not timed in fp4")
    out = run("compare", "--baselines", *wl, "--streams", "4").stdout
    expect("h100-class:bf16" in out and "b200-class:fp4" in out and "$/M load" in out, out)
    pair = json.loads(run("compare", "--json", *wl, "--pair", "llama-3.1-8b:h100-class:bf16").stdout)
    expect(len(pair) == 1 and pair[0]["recipe"] == "bf16" and pair[0]["decode_tokens_per_s"] ==
           rows[1]["decode_tokens_per_s"], f"{pair}")
    for bad in ("llama-3.1-8b:", ":hc1-class"):
        expect_error(["compare", "--pair", bad], "--pair expects MODEL:CHIP or MODEL:CHIP:RECIPE", code=2)


HBM_USD_PER_GB = {"value": 15, "range": [7, 18],
                  "source": "models/chips/baselines-sources.md s7: HBM at ~$15 per GB (H100/HBM3e estimates, $15-18); "
                            "range $7 (DRAMeXchange spot, Oct 2023, LLMCompass cost_model.py) to $18"}


def test_cost_hbm_by_hand():
    """An HBM-store chip priced from its die (tests/data/tiny-chip-hbm.json with package, board and host
    inputs and cost.hbm_usd_per_gb, its store at 16 GB): its card is the die + package and test + board +
    the stacks at $/GB x store.capacity_bytes / 1e9, and its $/M tokens follows, derived here line by line;
    the text table names the HBM line. The key is refused on a ROM chip and beside cost.card_usd, and an
    HBM chip priced from its die without it cannot be priced: etchsim cost's error, run's null cost, name it."""
    k = cost_inputs()
    with tempfile.TemporaryDirectory() as tmp:
        with open(os.path.join(DATA, "tiny-chip-hbm.json")) as f:
            c = json.load(f)
        c["store"]["capacity_bytes"]["value"] = 16000000000
        c["cost"] = {"package_test_usd": {"value": 21, "source": "test"}, "board_usd": {"value": 100, "source": "test"},
                     "host_usd_per_card": {"value": 2000, "source": "test"},
                     "host_w_per_card": {"value": 40, "source": "test"}, "hbm_usd_per_gb": HBM_USD_PER_GB}
        path = os.path.join(tmp, "hbm.json")
        with open(path, "w") as f:
            json.dump(c, f)
        wl = ("--chip", path, "--model", "tiny-llama", "--prompt", "32", "--generate", "8")
        r = run_json("--no-db", *wl)
        got = json.loads(run("cost", "--json", *wl).stdout)["cost"]
        expect(got == r["cost"], "run --json's cost differs from etchsim cost's")
        hbm = 15 * 16000000000 / 1e9                                   # $240: 16 GB at $15
        die = cost_by_hand(k, r["area_mm2"], r["tokens_per_s"], r["watts"])["die_usd"]
        want = cost_by_hand(dict(k, host_usd_per_card=2000, host_w_per_card=40), r["area_mm2"], r["tokens_per_s"],
                            r["watts"], card=die + 21 + 100 + hbm)
        d = got["die"]
        expect(got["card_from"] == "die" and d["hbm_gb"] == 16 and d["hbm_usd_per_gb"] == 15 and d["hbm_usd"] == hbm,
               f"{d}")
        for key in ("card_usd", "system_usd", "capex_usd_per_s", "energy_usd_per_s", "usd_per_m_tokens"):
            expect(close(got[key], want[key]), f"{key} {got[key]} against {want[key]}")
        out = run("cost", *wl).stdout
        expect(re.search(r"HBM stacks, \$ +240\.00 +\(16\.000 GB of store\.capacity_bytes x 15\.00", out), out)
        del c["cost"]["hbm_usd_per_gb"]
        with open(path, "w") as f:
            json.dump(c, f)
        expect_error(["cost", *wl], path, "key 'cost.hbm_usd_per_gb' is missing")
        r = run_json("--no-db", *wl)  # run is not refused: its cost is not known, and it says why
        expect(r["cost"] is None and "key 'cost.hbm_usd_per_gb' is missing" in r["cost_unknown"], f"{r['cost_unknown']}")
        def rom_hbm(h):
            h["cost"]["hbm_usd_per_gb"] = HBM_USD_PER_GB
        expect_error(["cost", "--chip", chip_copy(tmp, rom_hbm)], "chip.json", "key 'cost.hbm_usd_per_gb'",
                     "the weights are in ROM (store.kind), not in HBM")
        with open(os.path.join(MODELS, "chips", "h100-class.json")) as f:
            g = json.load(f)
        g["cost"]["hbm_usd_per_gb"] = HBM_USD_PER_GB
        gpath = os.path.join(tmp, "gpu.json")
        with open(gpath, "w") as f:
            json.dump(g, f)
        expect_error(["cost", "--chip", gpath], gpath, "key 'cost.hbm_usd_per_gb'", "includes its HBM")


def test_db_store_unit():
    """Schema 6: h100-class's HBM weight store is a unit_stats row of its own, 'store': one user, a prompt
    of 1 and 4 tokens is 4 passes over the weights, each reading every layer's q, k, v, o, gate, up and down
    matrices and the LM head in BF16 (16 bits, no scales), and one embedding row per token: its bits read
    and its busy cycles (each matrix's bits over the 5 stacks x 2929 bits a cycle, rounded up) are derived
    here from the model's config and the chip file; they equal busy_fraction.store x cycles and the tiles',
    head's and embedding's store_read_bits summed; its energy and area are 0 (the readers' and no unit's).
    A ROM chip has no store row. A schema 5 database gains the column on open, its rows NULL there. The KV
    cache is in the HBM too (kv.in_store): its writes and context reads add their cycles to the store's."""
    with open(os.path.join(MODELS, "llm", "llama-3.1-8b", "config.json")) as f:
        m = json.load(f)
    with open(os.path.join(MODELS, "chips", "h100-class.json")) as f:
        st = json.load(f)["store"]
    d, ff, L, V = m["hidden_size"], m["intermediate_size"], m["num_hidden_layers"], m["vocab_size"]
    kvd = d // m["num_attention_heads"] * m["num_key_value_heads"]
    per_cycle = st["ports"]["value"] * st["bits_per_cycle"]["value"]        # 5 x 2929 bits
    mats = [d * d, kvd * d, kvd * d, d * d, ff * d, ff * d, ff * d]            # q, k, v, o, gate, up, down
    passes = 4
    bits = passes * (L * sum(mats) * 16 + V * d * 16 + d * 16)
    busy = passes * (L * sum(math.ceil(x * 16 / per_cycle) for x in mats) + math.ceil(V * d * 16 / per_cycle) +
                     math.ceil(d * 16 / per_cycle))
    # kv.in_store: each token's K and V written (2 x kvd x 16 bits a layer) and its context read (positions 0..t),
    # each its own booking on the store, rounded up
    kv_pos = 2 * kvd * 16
    busy += L * sum(math.ceil(kv_pos / per_cycle) + math.ceil((t + 1) * kv_pos / per_cycle) for t in range(passes))
    with tempfile.TemporaryDirectory() as tmp:
        db = os.path.join(tmp, "s.sqlite")
        con = sqlite3.connect(db)  # a schema 5 database as it shipped: unit_stats without store_read_bits
        con.executescript("CREATE TABLE runs(id INTEGER PRIMARY KEY, started_utc TEXT NOT NULL, finished_utc TEXT,"
                          " status TEXT NOT NULL, version TEXT NOT NULL, command TEXT NOT NULL, chip TEXT NOT NULL,"
                          " model TEXT NOT NULL, prompt_tokens INTEGER, gen_tokens INTEGER, streams INTEGER, cycles REAL,"
                          " chip_config TEXT, process_config TEXT, summary TEXT, error TEXT, host TEXT, pid INTEGER);"
                          "CREATE TABLE unit_stats(run_id INTEGER NOT NULL, unit TEXT NOT NULL, items INTEGER,"
                          " tokens INTEGER, busy_cycles INTEGER, utilization REAL, energy_j REAL, rom_bits REAL,"
                          " cell_macs REAL, attn_macs REAL, kv_read_bits REAL, kv_write_bits REAL, vector_ops REAL,"
                          " link_bit_mm REAL, host_bits REAL, area_mm2 REAL, state_read_bits REAL,"
                          " state_write_bits REAL, register_bit_cycles REAL, PRIMARY KEY(run_id, unit));"
                          "INSERT INTO runs(id, started_utc, status, version, command, chip, model)"
                          " VALUES(1, 'x', 'complete', 'old', 'run', 'c', 'm');"
                          "INSERT INTO unit_stats(run_id, unit, busy_cycles) VALUES(1, 'tile0', 5);"
                          "PRAGMA user_version = 5;")
        con.close()
        j = run_json("--chip", "h100-class", "--prompt", "1", "--generate", str(passes), "--db", db)
        run("run", "--prompt", "8", "--generate", "2", "--db", db)
        con = sqlite3.connect(db)
        con.row_factory = sqlite3.Row
        version, = con.execute("PRAGMA user_version").fetchone()
        old = con.execute("SELECT busy_cycles, store_read_bits FROM unit_stats WHERE run_id = 1").fetchone()
        rows = {r["unit"]: r for r in con.execute("SELECT * FROM unit_stats WHERE run_id = 2")}
        rom = [r[0] for r in con.execute("SELECT unit FROM unit_stats WHERE run_id = 3 AND unit = 'store'")]
        con.close()
    expect(version == 6 and tuple(old) == (5, None), f"schema {version}, the old row {tuple(old)}")
    s_ = rows["store"]
    expect(s_["store_read_bits"] == bits, f"store bits {s_['store_read_bits']} against {bits} by hand")
    expect(s_["busy_cycles"] == busy, f"store busy {s_['busy_cycles']} against {busy} by hand")
    expect(abs(s_["busy_cycles"] - j["busy_fraction"]["store"] * j["cycles"]) < 1e-6 * busy and
           s_["utilization"] == j["busy_fraction"]["store"], f"{dict(s_)} against busy_fraction {j['busy_fraction']}")
    readers = sum(r["store_read_bits"] for u, r in rows.items() if u != "store")
    expect(readers == bits and s_["energy_j"] == 0 and s_["area_mm2"] == 0 and s_["rom_bits"] == 0,
           f"readers' bits {readers}, store row {dict(s_)}")
    expect(rom == [], "a ROM chip's run has a store row")


# ---- h/split: chip derive --split, the fewest chips of a template's area holding a model (issue 20 item 2) ----

def split_hand_count(template, model, role_format=None, layer_fn=None, detail=None):
    """Chips of the template's area that a model needs, by hand from ROM density: the model's bits in the chip
    file's weights.* formats (scales included) over the ROM bits one chip of the template's area holds after its
    other parts. Reads only the chip, process, model and lane-synthesis files. Returns (N, the area, the layers).
    role_format(role): (format, group) instead of the chip's; layer_fn(bits, cfg): a layer's bits instead of a
    dense Llama layer's. detail (a dict): gets, as ROM bits with their lane cells, what one chip holds ("chip"), a
    layer with its units and one sequence's KV ("layer"), and what the first and the last chip hold beyond
    their layers ("first": the embedding table, a vector unit and control; "last": the final norm, LM head,
    a vector unit, control and the sampler)."""
    def v(n):
        return n["value"] if isinstance(n, dict) and "value" in n else n
    with open(os.path.join(MODELS, "chips", template + ".json")) as f:
        chip = json.load(f)
    with open(os.path.join(MODELS, "process", v(chip["process"]) + ".json")) as f:
        proc = json.load(f)
    with open(os.path.join(ROOT, "rtl-ref", v(chip["area"]["lane_rtl"]) + ".json")) as f:
        synth = json.load(f)
    with open(os.path.join(MODELS, "llm", model, "config.json")) as f:
        cfg = json.load(f)
    w = chip["weights"]

    def bits(role, rows, cols):
        if role_format:
            elems, nbytes = BLOCK[role_format(role)[0]](role_format(role)[1])
        else:
            r = w["roles"].get(role, w["default"])
            elems, nbytes = BLOCK[v(r["format"])](v(r.get("group", w["default"]["group"])))
        return rows * -(-cols // elems) * nbytes * 8
    H, F, V, L = cfg["hidden_size"], cfg["intermediate_size"], cfg["vocab_size"], cfg["num_hidden_layers"]
    hd = cfg.get("head_dim", H // cfg["num_attention_heads"])
    Q, KV = cfg["num_attention_heads"] * hd, cfg["num_key_value_heads"] * hd
    layer = (bits("attn_norm", 1, H) + bits("attn_q", Q, H) + bits("attn_k", KV, H) + bits("attn_v", KV, H) +
             bits("attn_o", H, Q) + bits("ffn_norm", 1, H) + bits("ffn_gate", F, H) + bits("ffn_up", F, H) +
             bits("ffn_down", H, F)) if layer_fn is None else layer_fn(bits, cfg)
    embed, head = bits("embed", V, H), bits("lm_head", V, H) + bits("out_norm", 1, H)
    # densities: um2 per ROM bit (a select cell holds cell_bits), per SRAM bit; transistors per um2 of logic
    pv = lambda k: v(proc[k])
    t, hdr, a, kv = chip["tile"], chip["head"], chip["area"], chip["kv"]
    cell_bits = v(t["lanes"]["cell_bits"])
    rom_bit = pv("rom_cell_um2") / pv("rom_array_efficiency") / cell_bits
    sram_bit = pv("sram_bitcell_um2") / pv("sram_array_efficiency")
    tr_um2 = pv("logic_mtr_per_mm2") * pv("logic_utilization")
    lane_tr = next(c["transistors_per_lane_cell"] for c in synth["lane_cells"] if c["cell_bits"] == cell_bits)
    rom = lambda r: v(r["banks"]) * v(r["rows"]) * v(r["row_bits"])
    vec = v(t["vector"]["elems_per_cycle"]) * v(a["vector_transistors_per_elem"])
    attn = v(t["attention"]["positions_per_cycle"]) * v(a["attention_transistors_per_position"])
    ctrl = v(a["control_transistors_per_tile"])
    sampler = v(hdr["sampler"]["elems_per_cycle"]) * v(a["sampler_transistors_per_elem"])
    io = v(a["io_mm2"]) * 1e6
    # the template's own area: its geometry holding llama-3.1-8b (32 layers)
    tiles8 = 32
    area = ((tiles8 * rom(t["rom"]) + rom(hdr["embed_rom"]) + rom(hdr["lm_rom"])) * rom_bit +
            tiles8 * v(kv["bytes_per_tile"]) * 8 * sram_bit +
            ((tiles8 * v(t["lanes"]["count"]) + v(hdr["lanes"]["count"])) * lane_tr + (tiles8 + 1) * (vec + ctrl) +
             tiles8 * attn + sampler) / tr_um2 + io)
    # a ROM bit with its lane cells (at the template's lane cells per ROM bit, the tile's or the head's)
    per_bit = rom_bit + v(t["lanes"]["count"]) / rom(t["rom"]) * lane_tr / tr_um2
    head_bit = rom_bit + v(hdr["lanes"]["count"]) / rom(hdr["lm_rom"]) * lane_tr / tr_um2
    # the other parts, as ROM bits they displace: each layer's vector unit, attention engine, control and one
    # sequence's KV (slot_context positions of K and V); the two ends' vector unit, control and the sampler
    kv_min = v(kv["slot_context"]) * 2 * KV * v(kv["element_bits"]) * sram_bit
    other = L * ((vec + ctrl + attn) / tr_um2 + kv_min) + (2 * (vec + ctrl) + sampler) / tr_um2
    model_bits = L * layer + embed * rom_bit / per_bit + head * head_bit / per_bit + other / per_bit
    chip_bits = (area - io) / per_bit  # what one chip holds after its I/O
    if detail is not None:
        detail.update(chip=chip_bits, layer=layer + ((vec + ctrl + attn) / tr_um2 + kv_min) / per_bit,
                      first=embed * rom_bit / per_bit + (vec + ctrl) / tr_um2 / per_bit,
                      last=head * head_bit / per_bit + (vec + ctrl + sampler) / tr_um2 / per_bit)
    return math.ceil(model_bits / chip_bits), area / 1e6, L, (L * layer + embed + head) / 1e9, model_bits / chip_bits


def split_system(path):
    with open(path) as f:
        return json.load(f)


def test_split_70b_card_count():
    """chip derive --split for Llama-3.1-70B from hc1-class writes the number of chips a hand count from ROM
    density gives (the model's 3/6-bit bits with scales over the ROM bits one chip of hc1-class's area holds after
    its other parts), each layer on exactly one chip in order, the ends holding the embedding table and the head;
    the shipped files are what the command writes."""
    n, area, L, gbit, ratio = split_hand_count("hc1-class", "llama-3.1-70b")
    expect(n == 6 and L == 80 and abs(gbit - 234.4816) < 1e-3 and 5.5 < ratio < 5.9,
           f"hand count: {n} chips ({ratio:.3f}) of {area:.3f} mm2 for {gbit:.4f} Gbit")
    with tempfile.TemporaryDirectory() as tmp:
        p = run("chip", "derive", "--model", "llama-3.1-70b", "--like", "hc1-class", "--split", "--name",
                "llama-3.1-70b-hc1", "-o", tmp)
        sys_path = os.path.join(tmp, "llama-3.1-70b-hc1.json")
        expect(f"wrote {sys_path}: llama-3.1-70b-hc1, {n} chips of {area:.1f} mm2" in p.stdout, p.stdout)
        s = split_system(sys_path)
        chips = s["chips"]
        expect(len(chips) == n, f"{len(chips)} chips written, {n} by hand")
        covered = [layer for c in chips for layer in range(c["layers"][0], c["layers"][1] + 1)]
        expect(covered == list(range(L)), f"layer ranges {[c['layers'] for c in chips]} do not cover 0..{L - 1} once")
        sizes = [c["layers"][1] - c["layers"][0] + 1 for c in chips]
        expect(max(sizes) - min(sizes) <= 3 and len(set(c["chip"] for c in chips[1:-1])) == 1,
               f"layers per chip {sizes}, middle chips {[c['chip'] for c in chips]}")
        link = s["link"]
        expect(link["bandwidth_bits_per_s"]["value"] == 64e9 * 8 and link["latency_ns"]["value"] == 500 and
               link["energy_pj_per_bit"]["value"] == 5 and "PCIe Gen5 x16" in link["bandwidth_bits_per_s"]["source"],
               f"the link is not hc1-class's host link: {link}")
        for c in chips:
            with open(os.path.join(tmp, c["chip"])) as f:
                made = json.load(f)
            with open(os.path.join(MODELS, "chips", c["chip"])) as f:
                shipped = json.load(f)
            expect(made == shipped, f"models/chips/{c['chip']} is not what chip derive --split writes")
        shipped = split_system(os.path.join(MODELS, "systems", "llama-3.1-70b-hc1.json"))
        expect([c["layers"] for c in shipped["chips"]] == [c["layers"] for c in chips] and
               [os.path.basename(c["chip"]) for c in shipped["chips"]] == [c["chip"] for c in chips] and
               shipped["link"] == s["link"], "models/systems/llama-3.1-70b-hc1.json is not what the command writes")
        # each chip of the system reaches, and does not pass, the area (area --json of each part on its slice)
        j = run_json("--no-db", "--system", sys_path, "--prompt", "8", "--generate", "2")
        for k, c in enumerate(j["system"]["chips"]):
            expect(abs(c["area_mm2"] - area) < 0.05 and c["kv_max_used"] > 0, f"chips[{k}]: {c}")


def test_split_small_runs():
    """--split of stories260K at 30 mm2 (hc1-class's template): the fewest chips, as the tile fits one layer and
    the ends their tables; the link as given on the command line, with that as its source; chips alike share a
    file; the system runs and gives the tokens of one chip holding the whole model (functional mode)."""
    model = stories()
    with tempfile.TemporaryDirectory() as tmp:
        p = run("chip", "derive", "--model", model, "--split", "--area", "30", "--name", "st", "-o", tmp,
                "--link-bw", "1e10", "--link-latency-ns", "2000", "--link-pj-per-bit", "7")
        s = split_system(os.path.join(tmp, "st.json"))
        layers = [c["layers"] for c in s["chips"]]
        # at most two layers a chip at 30 mm2, one beside the head: 2 + 2 + 1
        expect(layers == [[0, 1], [2, 3], [4, 4]], f"layers {layers}: {p.stdout}")
        covered = [x for a, b in layers for x in range(a, b + 1)]
        expect(covered == list(range(5)), f"layers {layers}")
        files = sorted(f for f in os.listdir(tmp) if f.startswith("st-part"))
        expect(files == [f"st-part{k}.json" for k in range(1, len(files) + 1)] and
               len(files) == len(set(c["chip"] for c in s["chips"])), f"files {files}, chips {s['chips']}")
        link = s["link"]
        expect(link["bandwidth_bits_per_s"] == {"value": 1e10, "source": "given: chip derive --split --link-bw 1e+10"}
               and link["latency_ns"]["value"] == 2000 and link["energy_pj_per_bit"]["value"] == 7, f"link {link}")
        # one chip holding it all: the default area
        one = os.path.join(tmp, "one")
        os.mkdir(one)
        run("chip", "derive", "--model", model, "--split", "--name", "one", "-o", one)
        o = split_system(os.path.join(one, "one.json"))
        expect([c["layers"] for c in o["chips"]] == [[0, 4]], f"at hc1-class's area: {o['chips']}")
        args = ["--no-db", "--mode", "functional", "--weights", model, "--prompt", "6", "--generate", "4"]
        a = run_json(*args, "--system", os.path.join(tmp, "st.json"))
        b = run_json(*args, "--system", os.path.join(one, "one.json"))
        ta, tb = a["functional"]["output_ids"], b["functional"]["output_ids"]
        expect(len(ta) == 4 and ta == tb and len(a["system"]["chips"]) == len(layers), f"split {ta} against one chip {tb}")


def test_split_errors():
    """chip derive --split refuses, each with one clear error: an area that cannot hold one layer with the head
    (naming the area each needs), an -o that is not a folder, --split without -o, a link option without --split."""
    with tempfile.TemporaryDirectory() as tmp:
        base = ["chip", "derive", "--model", "llama-3.1-70b", "--like", "hc1-class"]
        expect_error([*base, "--split", "--area", "150", "-o", tmp], "a chip of 150.0 mm2 derived from hc1-class "
                     "cannot hold even one layer of llama-3.1-70b with its final norm and LM head",
                     "needs 206.9 mm2 before any KV SRAM", "give a larger --area")
        f = os.path.join(tmp, "file.json")
        with open(f, "w") as fh:
            fh.write("{}")
        expect_error([*base, "--split", "-o", f], "-o expects an existing folder", f, code=2)
        expect_error([*base, "--split", "-o", os.path.join(tmp, "none")], "-o expects an existing folder", code=2)
        expect_error([*base, "--split"], "--split needs -o DIR", code=2)
        expect_error([*base, "--link-bw", "1e9", "-o", f], "needs --split", "--link-bw", code=2)
        expect_error([*base, "--split", "-o", tmp, "--name", "n" * 61], "--name " + "n" * 61, "at most 60 characters")
        expect(os.listdir(tmp) == ["file.json"], f"a refused split wrote {os.listdir(tmp)}")



def test_cost_system_sum():
    """A system's cost is its chips' summed (es_cost_compute is linear in each card's price and in watts): each chip's
    card from its own die area by hand (cost_by_hand), the system's capex from the cards and hosts, its energy from the
    run's card watts plus every card's host share, $/M from both; the text lists each chip and the sums."""
    k = cost_inputs()
    sysf = json.load(open(os.path.join(MODELS, "systems", "llama-3.1-70b-hc1.json")))
    n = len(sysf["chips"])
    for ch in sysf["chips"]:  # the derived parts keep hc1-class's cost inputs (the oracle's)
        part = json.load(open(os.path.join(MODELS, "systems", ch["chip"])))
        for key in ("package_test_usd", "board_usd", "host_usd_per_card", "host_w_per_card"):
            v = part["cost"][key]
            expect((v["value"] if isinstance(v, dict) else v) == k[key], f"{ch['chip']}: cost.{key}")
    r = run_json("--no-db", "--system", "llama-3.1-70b-hc1", "--prompt", "64", "--generate", "16")
    c = r["cost"]
    cards = [cost_by_hand(k, x["area_mm2"], 1, 0)["card_usd"] for x in r["system"]["chips"]]
    for got, want in zip((x["card_usd"] for x in r["system"]["chips"]), cards):
        expect(close(got, want), f"a chip's card {got}, by hand {want}")
    expect(len(cards) == n and close(c["card_usd"], sum(cards)), f"cards {c['card_usd']}, by hand {sum(cards)}")
    system = sum(cards) + n * k["host_usd_per_card"]
    capex = system / (k["lifetime_years"] * 365.25 * 86400 * k["utilization"])
    energy = (r["watts"] + n * k["host_w_per_card"]) * k["pue"] * k["electricity_usd_per_kwh"] / 3.6e6
    for key, want in (("system_usd", system), ("capex_usd_per_s", capex), ("energy_usd_per_s", energy),
                      ("usd_per_m_tokens", (capex + energy) / r["tokens_per_s"] * 1e6)):
        expect(close(c[key], want, 1e-9), f"{key} {c[key]}, by hand {want}")
    out = run("cost", "--system", "llama-3.1-70b-hc1", "--prompt", "64", "--generate", "16").stdout
    expect(f"({n} chips)" in out and out.count("llama-3.1-70b-hc1-part") == n and
           f"{(capex + energy) / r['tokens_per_s'] * 1e6:.6f}" in out, out)
# ---- systems in eval, sweep, compare, budget and area (issue 20 item 1: --system wherever --chip) ----------
def test_system_eval():
    """eval --system runs the records through the system's pipeline: its JSON gains run's "system" object (chips with
    their layers, the card links), "chip" is the system's name and "analytic" null (es_an_batch times one chip); the
    database's runs.chip is the system's name and unit_stats holds every chip's units, prefixed c0_, c1_. By hand: every
    token pass crosses chip 0's card link, the prefill passes and each record's max_new - 1 decode passes, and only the
    decode passes come back over chip 1's feedback link. The records, prompt tokens and outputs are one chip's."""
    s = stories()
    args = ["eval", "--model", s, "--records", "12", "--max-new-tokens", "3", "--no-compare"]
    with tempfile.TemporaryDirectory() as tmp:
        db = os.path.join(tmp, "e.sqlite")
        j = json.loads(run(*args, "--system", SYSTEM_X2, "--json", "--db", db).stdout)
        one = json.loads(run(*args, "--chip", os.path.join(DATA, "tiny-chip.json"), "--json", "--no-db").stdout)
        con = sqlite3.connect(db)
        chip, = con.execute("SELECT chip FROM runs").fetchone()
        units = {r[0] for r in con.execute("SELECT unit FROM unit_stats")}
        records, = con.execute("SELECT COUNT(*) FROM records WHERE status = 'done'").fetchone()
        con.close()
        text = run(*args, "--system", SYSTEM_X2, "--no-db").stdout
    expect(j["chip"] == "tiny-x2" and chip == "tiny-x2", f"chip {j['chip']}, runs.chip {chip}")
    expect(j["analytic"] is None and "analytic" in one, f"analytic {j['analytic']}")
    for k in ("records_done", "rule_tokens", "output_tokens", "prefill_token_passes"):
        expect(j[k] == one[k], f"{k}: system {j[k]}, one chip {one[k]}")
    expect(j["records_done"] == 12 and records == 12, f"{j['records_done']} records, {records} rows")
    sysj = j["system"]
    expect([c["layers"] for c in sysj["chips"]] == [[0, 2], [3, 4]] and sysj["name"] == "tiny-x2", f"system {sysj}")
    expect(all("card_usd" in c for c in sysj["chips"]), "no card_usd per chip")
    links = {l["unit"]: l["tokens"] for l in sysj["links"]}
    decode = 12 * (3 - 1)
    want = {"c0_card": j["prefill_token_passes"] + decode, "c1_card_feedback": decode}
    expect(links == want, f"link tokens {links}, by hand {want}")
    for u in ("c0_tile0.lanes", "c0_tile2.lanes", "c1_tile1.lanes", "c0_embed", "c1_head", "c0_card", "c1_card_feedback"):
        expect(u in units, f"unit {u} missing: {sorted(units)}")
    expect("c1_tile2.lanes" not in units and "c0_head" not in units, f"units {sorted(units)}")
    expect("on the system tiny-x2" in text and "system tiny-x2: 2 chips" in text and "link c0_card" in text,
           f"text report: {text}")
    # functional mode: each record's output through the two chips is the one chip's, token for token
    fargs = ["eval", "--model", s, *FP32_DATAPATH, *F32_HEAD_ROMS, "--mode", "functional", "--weights", s, "--recipe",
             "f32", "--records", "6", "--max-new-tokens", "3", "--no-compare"]
    outs = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, where in (("one", ["--chip", os.path.join(DATA, "tiny-chip.json")]), ("two", ["--system", SYSTEM_X2])):
            db = os.path.join(tmp, name + ".sqlite")
            run(*fargs, *where, "--db", db)
            con = sqlite3.connect(db)
            outs[name] = con.execute("SELECT record, output_text FROM records ORDER BY record").fetchall()
            con.close()
    expect(len(outs["one"]) == 6 and all(t for _, t in outs["one"]) and outs["one"] == outs["two"],
           f"outputs differ: {outs}")
    expect_error(["eval", "--system", SYSTEM_X2, "--chip", "hc1-class"], "--system or --chip", code=2)
    expect_error(["eval", "--system", SYSTEM_X2, "--rom", "x.rom"], "--rom with --system", code=2)


def test_system_sweep_link():
    """A sweep of the tiny system's card-link latency (grid keys system and system.link.latency_ns, passed to each point
    as --system and --set system.link.latency_ns=V): a decode step crosses two card links (chip 0 -> 1 and the feedback
    1 -> 0), each taking ceil(latency x clock) cycles of latency, so each point's step is the zero-latency point's plus
    2 x ceil(latency_ns x clock_hz / 1e9), by hand from the chip file's clock: 0, 502 and 4000 cycles at 1 GHz (250.5 ns
    rounds up to 251). Each point's summary says the link it ran. Grids that cannot run are refused before any point."""
    s = stories()
    chip = json.load(open(os.path.join(DATA, "tiny-chip.json")))
    f = chip["clock_hz"]["value"]
    lats = [0, 250.5, 2000]
    with tempfile.TemporaryDirectory() as tmp:
        grid = {"system": [SYSTEM_X2], "model": [s], "prompt": [8], "generate": [3], "system.link.latency_ns": lats}
        g, out = os.path.join(tmp, "g.json"), os.path.join(tmp, "s.sqlite")
        json.dump(grid, open(g, "w"))
        p = run("sweep", "--grid", g, "--db", out, "--jobs", "2")
        expect("3 points, 3 done, 0 failed" in p.stdout, p.stdout)
        rows = sweep_rows(out)
        steps = {}
        for r in rows.values():
            lat = r["params"]["system.link.latency_ns"]
            expect(r["summary"]["chip"] == "tiny-x2" and r["summary"]["system"]["link"]["latency_ns"] == lat,
                   f"point {r['params']}: {r['summary']['system']['link']}")
            steps[lat] = r["summary"]["stream0_cycles"]["decode_first"]
            expect(r["summary"]["stream0_cycles"]["decode_last"] == steps[lat], f"latency {lat}: steps differ")
        for lat in lats:
            want = 2 * math.ceil(lat * f / 1e9)
            expect(steps[lat] - steps[0] == want, f"latency {lat} ns: step {steps[lat]} - {steps[0]}, by hand {want}")
        expect(steps[2000] - steps[0] == 4000 and steps[250.5] - steps[0] == 502, f"steps {steps}")

        def bad(grid, *needles):
            path = os.path.join(tmp, "bad.json")
            json.dump(grid, open(path, "w"))
            expect_error(["sweep", "--grid", path, "--db", os.path.join(tmp, "x.sqlite")], *needles, code=2)
        bad({"chip": [os.path.join(DATA, "tiny-chip.json")], "system.link.latency_ns": [1, 2]},
            "bad.json", "key 'system.link.latency_ns'", "needs a 'system' key")
        bad({"system": [SYSTEM_X2], "chip": ["hc1-class"]}, "keys 'system' and 'chip'", "not both")
        bad({"system": [SYSTEM_X2], "system.link.latncy_ns": [1]}, "key 'system.link.latncy_ns'",
            "did you mean 'system.link.latency_ns'?")
        # each system loads, with each link value (as the points will take it), before any point runs
        bad({"system": [SYSTEM_X2], "system.link.latency_ns": [1, -5]}, "bad.json: key 'system.link.latency_ns'",
            "tiny-x2.json: key 'link.latency_ns'", "got -5")
        bad({"system": [SYSTEM_X2, os.path.join(tmp, "nosuch.json")], "prompt": [1]}, "bad.json: key 'system'",
            "nosuch.json", "no such file")
        expect(not os.path.exists(os.path.join(tmp, "x.sqlite.points")), "a refused grid left a points folder")
    # the override itself: checked as the file's own value, and only with a system
    base = ["run", "--model", s, "--prompt", "4", "--generate", "2", "--no-db"]
    expect_error([*base, "--system", SYSTEM_X2, "--set", "system.link.latency_ns=-5"], "tiny-x2.json",
                 "key 'link.latency_ns'", "got -5", "(--set system.link.latency_ns)")
    expect_error([*base, "--system", SYSTEM_X2, "--set", "system.link.bandwidth_bits_per_s=0"],
                 "key 'link.bandwidth_bits_per_s'", "above 0")
    expect_error([*base, "--system", SYSTEM_X2, "--set", "system.link.topology=all_to_all"],
                 "--set system.link.topology", "expected system.link.bandwidth_bits_per_s")
    expect_error([*base, "--chip", os.path.join(DATA, "tiny-chip.json"), "--set", "system.link.latency_ns=5"],
                 "--set system.link.latency_ns=5", "needs --system")


def test_system_compare():
    """compare --system-pair MODEL:SYSTEM puts a system's row beside a chip's: each figure is its `run --system --json`'s
    (decode tokens/s, area, J/token, at load), the row says "system": true and its chips, and its saturated tokens/s is
    null (the analytic model gives a system's decode step only); the chip row has no "system" key."""
    s = stories()
    sizes = ["--prompt", "16", "--generate", "8", "--streams", "2", "--eval-prompt", "8", "--eval-generate", "2"]
    tiny = os.path.join(DATA, "tiny-chip.json")
    rows = json.loads(run("compare", "--pair", f"{s}:{tiny}", "--system-pair", f"{s}:{SYSTEM_X2}", *sizes,
                          "--json").stdout)
    expect(len(rows) == 2 and rows[0]["chip"] == tiny and rows[1]["chip"] == SYSTEM_X2, f"rows {rows}")
    expect("system" not in rows[0] and rows[1]["system"] is True and rows[1]["chips"] == 2, f"rows {rows}")
    one = run_json("--system", SYSTEM_X2, "--model", s, "--prompt", "16", "--generate", "8", "--no-db")
    load = run_json("--system", SYSTEM_X2, "--model", s, "--prompt", "16", "--generate", "8", "--streams", "2",
                    "--no-db")
    r = rows[1]
    for k, v in (("decode_tokens_per_s", one["decode_tokens_per_s"]), ("area_mm2", one["area_mm2"]),
                 ("joules_per_token", one["joules_per_token"]), ("load_tokens_per_s", load["tokens_per_s"]),
                 ("sequences_1k", one["kv_slots"])):
        expect(r[k] == v, f"{k}: row {r[k]}, run --system {v}")
    expect(r["saturated_tokens_per_s"] is None and rows[0]["saturated_tokens_per_s"] > 0, f"saturated {rows}")
    text = run("compare", "--system-pair", f"{s}:{SYSTEM_X2}", *sizes).stdout
    expect(f"system:{SYSTEM_X2}" in text and "n/a" in text, f"text: {text}")
    expect_error(["compare", "--system-pair", "tiny-x2"], "--system-pair expects MODEL:SYSTEM", code=2)


def test_system_budget():
    """etchsim budget check reads a logged run's summary, so a system run's database works as a chip's: budgets on its
    figures and on each chip and link (a list's item by index: system.chips.1.kv_max_used) hold or fail by hand. One
    stream of 8 + 4 tokens: chip 1 holds 12 KV positions at most; chip 0's card link carries the 8 prompt tokens and
    3 decode passes, 11. A slower link (3000 ns, not 1000) lengthens the 1 GHz decode step by 2 x 2000 cycles: against
    the first run, decode tokens/s regresses by 1 - step / (step + 4000) (58.2 % here), over a 10 % limit."""
    s = stories()
    with tempfile.TemporaryDirectory() as tmp:
        db = os.path.join(tmp, "b.sqlite")
        args = ["run", "--system", SYSTEM_X2, "--model", s, "--prompt", "8", "--generate", "4", "--db", db]
        run(*args)
        run(*args, "--set", "system.link.latency_ns=3000")
        con = sqlite3.connect(db)
        step = json.loads(con.execute("SELECT summary FROM runs WHERE id = 1").fetchone()[0])["stream0_cycles"]["decode_first"]
        con.close()
        b = os.path.join(tmp, "b.json")

        def check(budgets, *extra, code=0):
            json.dump(budgets, open(b, "w"))
            p = run("budget", "check", "--db", db, "--budgets", b, *extra, ok=False)
            expect(p.returncode == code, f"{budgets}: exit {p.returncode}, want {code}: {p.stdout} {p.stderr}")
            return p
        ok = {"system.chips.1.kv_max_used": {"max": 12}, "system.links.0.tokens": {"min": 11, "max": 11},
              "system.links.1.tokens": {"max": 3}}
        p = check(ok, "--run", "1")
        expect("all 4 limits hold" in p.stdout and "run 1 (run)" in p.stdout, p.stdout)
        p = check({"system.chips.1.kv_max_used": {"max": 11}}, "--run", "1", code=1)
        expect("system.chips.1.kv_max_used" in p.stderr and "12" in p.stderr, p.stderr)
        regress = 100 * (1 - step / (step + 4000))
        p = check({"decode_tokens_per_s": {"max_regress_pct": 10}}, "--run", "2", "--baseline", "1", code=1)
        expect(f"{regress:.1f}" in p.stderr, f"regression by hand {regress:.2f} %: {p.stderr}")
        check({"decode_tokens_per_s": {"max_regress_pct": math.ceil(regress)}}, "--run", "2", "--baseline", "1")
        p = check({"system.links.x": {"max": 1}}, code=2)
        expect("holds a list of 2 there" in p.stderr and "index (0 to 1)" in p.stderr, p.stderr)


def test_system_area():
    """area --system: each chip's area holding its layers and their sum. By hand: each chip's KV SRAM is its layers x
    tiny-chip's kv.bytes_per_tile x 8 bits (3 and 2 layers, one tile each); each chip's area is the one the system's
    run reports for it, and the totals are the rows' sums."""
    s = stories()
    chip = json.load(open(os.path.join(DATA, "tiny-chip.json")))
    kv = chip["kv"]["bytes_per_tile"]["value"] * 8
    a = json.loads(run("area", "--system", SYSTEM_X2, "--model", s, "--json").stdout)
    r = run_json("--system", SYSTEM_X2, "--model", s, "--prompt", "4", "--generate", "2", "--no-db")
    chips = a["system"]["chips"]
    expect(a["chip"] == "tiny-x2" and [c["layers"] for c in chips] == [[0, 2], [3, 4]], f"area {a}")
    expect([c["kv_sram_bits"] for c in chips] == [3 * kv, 2 * kv], f"KV bits {[c['kv_sram_bits'] for c in chips]}")
    for k in range(2):
        expect(abs(chips[k]["area_mm2"] - r["system"]["chips"][k]["area_mm2"]) <= 1e-12 * chips[k]["area_mm2"],
               f"chip {k}: {chips[k]['area_mm2']} mm2, the run's {r['system']['chips'][k]['area_mm2']}")
        parts = sum(x["mm2"] for x in chips[k]["breakdown"].values())
        expect(abs(parts - chips[k]["area_mm2"]) <= 1e-9 * parts, f"chip {k}: breakdown {parts}")
    for k in ("area_mm2", "transistors", "leakage_w"):
        expect(abs(a[k] - sum(c[k] for c in chips)) <= 1e-12 * a[k], f"{k}: {a[k]} is not the chips' sum")
    text = run("area", "--system", SYSTEM_X2, "--model", s).stdout
    expect("the system tiny-x2 holding stories260K: 2 chips" in text and "0-2" in text and "3-4" in text, text)
    expect_error(["area", "--system", SYSTEM_X2, "--chip", "hc1-class"], "--system or --chip", code=2)
    expect_error(["area", "--system", SYSTEM_X2, "--position", "10"], "--position with --system", code=2)


def test_system_cost_named():
    """etchsim cost --system names the system (as run does), in its JSON's "chip" and its table's first line, and prices
    the system as its chips' cards summed: two tiny-test chips given card_usd 1000 cost 2000 (host parts at 0)."""
    s = stories()
    with tempfile.TemporaryDirectory() as tmp:
        c = json.load(open(os.path.join(DATA, "tiny-chip.json")))
        c["cost"] = {k: {"value": v, "source": "test fixture"} for k, v in
                     (("card_usd", 1000), ("host_usd_per_card", 0), ("host_w_per_card", 0))}
        json.dump(c, open(os.path.join(tmp, "tiny-chip.json"), "w"))
        sysf = json.load(open(SYSTEM_X2))
        os.mkdir(os.path.join(tmp, "s"))  # its chips, "../tiny-chip.json", resolve from tmp/s
        p = os.path.join(tmp, "s", "x2.json")
        json.dump(sysf, open(p, "w"))
        args = ["cost", "--system", p, "--model", s, "--prompt", "8", "--generate", "4"]
        j = json.loads(run(*args, "--json").stdout)
        text = run(*args).stdout
    expect(j["chip"] == "tiny-x2" and j["cost"]["card_usd"] == 2000 and j["cost"]["system_usd"] == 2000,
           f"chip {j['chip']}, cost {j['cost']}")
    expect(text.startswith("etchsim cost: stories260K on the system tiny-x2 (2 chips),"), text)
# ---- tensor parallelism (issue 20: a stage of T chips splitting each layer's matrices, es_system.h) ----------
def tp_system(tmp, tp, name="tp.json", model="llama-3.1-8b", chip="h100-class", layers=(0, 31)):
    """A system file of one stage of tp chips holding every layer (a card link of 3.6 Tbit/s, 2 us, 5 pJ/bit):
    its path and its link dict."""
    link = {"topology": "chain", "bandwidth_bits_per_s": 3.6e12, "latency_ns": 2000, "energy_pj_per_bit": 5}
    sysf = {"name": f"tp{tp}", "model": model, "link": link,
            "chips": [{"chip": chip, "layers": list(layers), "tensor_parallel": tp}]}
    p = os.path.join(tmp, name)
    json.dump(sysf, open(p, "w"))
    return p, link


def test_system_tensor_parallel_step():
    """Llama-3.1-8B BF16 on a stage of 2 and of 4 h100-class chips splitting each layer's matrices: the decode step
    equals, by hand from h100-class.json, the model's config.json and the system's link (h100_step_by_hand with tp),
    a tp-th of every product's and the LM head's weights, of the KV, RoPE, SiLU and sampler widths, plus 2 x 32 + 1
    ring all-reduces of the 4096 x 16-bit hidden vector (after o, after down, after the embedding row) and one of
    64 bits (the sampler's best score and id), each 2 (T - 1) / T x N bits over 3.6 Tbit/s plus 2 (T - 1) x 2 us;
    simulated and analytic alike. The stage counts T chips' area, board and HBM static power, and its card-link
    energy is T chips' bits: (2 x 32 + 1) x ceil(2 (T - 1) 65536 / T) + ceil(2 (T - 1) 64 / T) a token pass, two
    passes (the prompt's token and one decode step), x 5 pJ / VR efficiency."""
    c = json.load(open(os.path.join(MODELS, "chips", "h100-class.json")))
    v = lambda *ks: functools.reduce(lambda d, k: d[k], ks, c)["value"]
    one = run_json("--chip", "h100-class", "--model", "llama-3.1-8b", "--prompt", "1", "--generate", "2", "--no-db")
    steps = {}
    with tempfile.TemporaryDirectory() as tmp:
        for tp in (2, 4):
            p, link = tp_system(tmp, tp, f"tp{tp}.json")
            j = run_json("--system", p, "--prompt", "1", "--generate", "2", "--no-db")
            same_cycles(j, f"tp {tp}", keys=("decode_first", "decode_last", "decode_total"))
            weights, kv, over = h100_step_by_hand(1, tp, link)
            want = weights + kv + sum(over.values())
            step = steps[tp] = j["stream0_cycles"]["decode_first"]
            expect(step == want, f"tp {tp}: step {step} cycles, by hand {want} = weights {weights} + KV {kv} + {over}")
            expect(abs(j["area_mm2"] - tp * one["area_mm2"]) < 1e-6 * one["area_mm2"], f"tp {tp}: area {j['area_mm2']}")
            expect(abs(j["static_w"] - tp * one["static_w"]) < 1e-9 * one["static_w"],
                   f"tp {tp}: static {j['static_w']} W, {tp} x {one['static_w']}")
            chips = j["system"]["chips"]
            expect(len(chips) == 1 and chips[0]["tensor_parallel"] == tp and chips[0]["board_w"] == tp * v("card", "board_static_w"),
                   f"tp {tp}: chips {chips}")
            ring = lambda n: -(-2 * (tp - 1) * n // tp)
            bits = 2 * tp * ((2 * 32 + 1) * ring(4096 * 16) + ring(64))
            want_j = bits * 5e-12 / v("card", "vr_efficiency")
            got = j["energy_by_event_j"]["card_links"]
            expect(abs(got - want_j) < 1e-9 * want_j, f"tp {tp}: card-link energy {got} J, by hand {want_j}")
            links = {l["unit"]: l for l in j["system"]["links"]}
            expect(set(links) == {"ring"}, f"tp {tp}: links {links}")
    expect(steps[4] < steps[2] < one["stream0_cycles"]["decode_first"], f"steps {steps}, one chip {one['stream0_cycles']}")


def test_system_tensor_parallel_sync_step():
    """tile.sync_step (h100-class) on a stage of 4 chips splitting Llama-3.1-8B's matrices: the last synchronous step
    of 16 streams of a 1-token prompt equals, by hand (h100_sync_step_by_hand with tp 4), the serial chain with each
    embedding row's all-reduce, two all-reduces of the 16 tokens' hidden vectors a layer and the sampler's of 16 x 64
    bits."""
    with tempfile.TemporaryDirectory() as tmp:
        p, link = tp_system(tmp, 4)
        j = run_json("--system", p, "--prompt", "1", "--generate", "8", "--streams", "16", "--no-db")
    want = h100_sync_step_by_hand([8] + [7] * 15, 4, link)
    got = j["stream0_cycles"]["decode_last"]
    expect(got == want, f"16 streams, tp 4: the last step {got} cycles, by hand {want}")


def test_system_tensor_parallel_configs():
    """The shipped 70B systems run (their stores hold each shard: es_map refuses one that does not): the SRAM system
    is 336 lpu-class chips (40 stages of two layers, 8 chips each, 16 at the ends), the H100 ones 8 and 4; each
    stage's all-reduces are its ring unit; a decode step, simulated and analytic, alike. The 8-bit shard of two
    Llama-3.1-70B layers over 8 chips (by hand from config.json) fits the lpu-class store and over 4 would not."""
    for name, chips in (("llama-3.1-70b-lpu", 336), ("llama-3.1-70b-h100-tp8", 8), ("llama-3.1-70b-h100-tp4", 4)):
        j = run_json("--system", name, "--prompt", "8", "--generate", "3", "--no-db")
        same_cycles(j, name, keys=("decode_first", "decode_last"))
        tps = [c["tensor_parallel"] for c in j["system"]["chips"]]
        expect(sum(tps) == chips, f"{name}: {sum(tps)} chips, want {chips}")
        rings = [l for l in j["system"]["links"] if l["unit"].endswith("ring")]
        expect(len(rings) == len(tps), f"{name}: ring units {rings}")
    sysf = json.load(open(os.path.join(MODELS, "systems", "llama-3.1-70b-lpu.json")))
    expect([c["layers"] for c in sysf["chips"]] == [[a, a + 1] for a in range(0, 80, 2)] and
           [c["tensor_parallel"] for c in sysf["chips"]] == [16] + [8] * 38 + [16], "the lpu system's stages")
    m = json.load(open(os.path.join(MODELS, "llm", "llama-3.1-70b", "config.json")))
    H, F = m["hidden_size"], m["intermediate_size"]
    kv = m["num_key_value_heads"] * (H // m["num_attention_heads"])
    layer = 2 * H * H + 2 * kv * H + 3 * F * H  # q, o; k, v; gate, up, down: 8-bit, a byte each
    cap = json.load(open(os.path.join(MODELS, "chips", "lpu-class.json")))["store"]["capacity_bytes"]["value"]
    expect(2 * layer // 8 <= cap < 2 * layer // 4, f"two layers over 8: {2 * layer // 8} B, store {cap} B")


def test_err_system_tensor_parallel():
    """tensor_parallel: a bad count, a model whose heads do not divide, a stage also splitting experts, and
    functional mode or the cycle fidelity on a split stage: each one error naming the file and key, exit 1."""
    with tempfile.TemporaryDirectory() as tmp:
        p, _ = tp_system(tmp, 0, model="tiny-llama", chip=os.path.join(DATA, "tiny-chip.json"), layers=(0, 3))
        expect_error(["run", "--system", p, "--prompt", "8", "--generate", "2", "--no-db"],
                     "tp.json", "chips[0].tensor_parallel", "whole number of chips from 1 to 1024")
        p, _ = tp_system(tmp, 3, model="tiny-llama", chip=os.path.join(DATA, "tiny-chip.json"), layers=(0, 3))
        expect_error(["run", "--system", p, "--prompt", "8", "--generate", "2", "--no-db"],
                     "tp.json", "chips[0].tensor_parallel", "heads (8) and ffn (768) divide by 3", "does not divide")
        sysf = json.load(open(p))
        sysf["chips"][0]["tensor_parallel"] = 2
        sysf["chips"][0]["experts"] = [0, 3]
        json.dump(sysf, open(p, "w"))
        expect_error(["run", "--system", p, "--prompt", "8", "--generate", "2", "--no-db"],
                     "tp.json", "chips[0].tensor_parallel", "splitting experts")
    tp2 = os.path.join(DATA, "systems", "tiny-tp2.json")
    expect_error(["run", "--system", tp2, "--prompt", "8", "--generate", "2", "--no-db", "--fidelity", "cycle"],
                 "tiny-tp2.json", "chips[0].tensor_parallel", "drop --fidelity cycle")
    expect_error(["run", "--system", tp2, "--mode", "functional", "--synthetic", "1", "--prompt", "8", "--generate",
                  "2", "--no-db"], "tiny-tp2.json", "chips[0].tensor_parallel", "drop --mode functional")
# ---- h/tenants: several adapters at once, one per request (issue 20 item 4) ----------------------------------

def test_tenants_sram_kv():
    """K = 20 adapters of rank 16 on q and v, llama-3.1-8b on hc1-class, all held in each tile's KV SRAM at once: the
    bytes per tile and in all, the KV positions and slots left, by hand from the shapes (K x one adapter's, which
    _adapter_oracle works out from config.json and hc1-class's kv.* keys), in run --json and the summary line."""
    o = _adapter_oracle(16, ("q", "v"))
    k = 20
    per_tile = k * o["per_tile"]  # 20 x 212,992 = 4,259,840 bytes
    pos_bytes = o["slot_bytes"] // 2048  # one position of one layer: 2,048 bytes
    kv_bytes = o["left"] + o["per_tile"]  # kv.bytes_per_tile
    positions = (kv_bytes - per_tile) // pos_bytes
    slots = (kv_bytes - per_tile) // o["slot_bytes"]
    expect((per_tile, positions, slots) == (4259840, 8160, 3), f"oracle itself: {per_tile} {positions} {slots}")
    j = run_json("--no-db", "--prompt", "8", "--generate", "2", "--adapter-rank", "16", "--adapter-roles", "q,v",
                 "--adapter-count", str(k))
    a = j["adapter"]
    got = {x: a[x] for x in ("count", "tensors", "bytes_per_tile", "bytes", "kv_bytes_per_tile_left", "kv_positions",
                             "kv_positions_without", "kv_slots", "kv_slots_without", "kv_slots_lost")}
    want = {"count": k, "tensors": k * o["layers"] * 2, "bytes_per_tile": per_tile, "bytes": k * o["total"],
            "kv_bytes_per_tile_left": kv_bytes - per_tile, "kv_positions": positions,
            "kv_positions_without": o["positions_without"], "kv_slots": slots, "kv_slots_without": o["slots_without"],
            "kv_slots_lost": o["slots_without"] - slots}
    expect(got == want, f"adapters {got}, by hand {want}")
    ids = [x["id"] for x in a["adapters"]]
    each = {(x["rank"], x["roles"], x["bytes_per_tile"], x["bytes"]) for x in a["adapters"]}
    expect(ids == list(range(k)) and each == {(16, "q,v", o["per_tile"], o["total"])}, f"each adapter: {a['adapters'][:2]}")
    expect(j["kv_positions"] == positions, f"the run's KV capacity {j['kv_positions']}, by hand {positions}")
    out = run("run", "--no-db", "--prompt", "8", "--generate", "2", "--adapter-rank", "16", "--adapter-roles", "q,v",
              "--adapter-count", str(k)).stdout
    line = (f"{k} adapters: {per_tile} bytes per tile in the KV SRAM ({k * o['total']} in all); KV slots of 2048 "
            f"positions {o['slots_without']} -> {slots} ({o['slots_without'] - slots} lost), positions "
            f"{o['positions_without']} -> {positions}")
    expect(line in out, f"summary lacks {line!r}: {out}")
    # 99 of them leave 20,971,520 - 99 x 212,992 = 884,312 bytes, less than one slot of 4,194,304
    expect_error(["run", "--no-db", "--adapter-rank", "16", "--adapter-roles", "q,v", "--adapter-count", "99"],
                 "key 'kv.bytes_per_tile'", "the 99 adapters take 21086208 bytes of tile 0's KV SRAM of 20971520")


def test_tenants_time_per_stream():
    """Streams 0 and 2 use adapter 0 (rank 16 on q and v), streams 1 and 3 none (--adapter-of-stream 0,none), on
    hc1-class with a KV that holds one stream at a time (kv.slot_context 16; kv.bytes_per_tile: the adapter's 212,992
    bytes + 20 positions of 2,048 bytes), so each stream's decode steps run alone. Each adapted stream's decode step is
    longer by exactly the adapter step's cycles, by hand 32 layers x 432 (per projection max(multiply-adds / vector
    width, A and B words over the KV port) + the vector latency; _adapter_oracle); each stream without one takes
    exactly what a run without any adapter takes (its KV also holding one stream at a time)."""
    o = _adapter_oracle(16, ("q", "v"))
    expect(o["layers"] * o["layer_cycles"] == 13824, f"oracle itself: {o['layers']} x {o['layer_cycles']}")
    small = ["--prompt", "8", "--generate", "4", "--set", "kv.slot_context=16"]
    with tempfile.TemporaryDirectory() as tmp:
        def decode_steps(tag, *extra):  # per stream: (decode cycles per token, ttft cycles); hc1-class runs at 1 GHz
            db = os.path.join(tmp, tag + ".sqlite")
            j = json.loads(run("run", "--json", "--db", db, *small, *extra).stdout)
            expect(j["max_in_flight"] == 1 and j["clock_hz"] == 1e9, f"{tag}: {j['max_in_flight']} in flight")
            con = sqlite3.connect(db)
            rows = con.execute("SELECT seq, first_token_ns - admit_ns, done_ns - first_token_ns FROM sequences "
                               "ORDER BY seq").fetchall()
            con.close()
            return [(int(d) // 3, int(t)) for _, t, d in rows if d % 3 == 0], j
        mixed, j = decode_steps("mixed", "--streams", "4", "--adapter-rank", "16", "--adapter-roles", "q,v",
                                "--adapter-of-stream", "0,none", "--set", f"kv.bytes_per_tile={212992 + 20 * 2048}")
        plain, _ = decode_steps("plain", "--streams", "2", "--set", f"kv.bytes_per_tile={20 * 2048}")
    expect(len(mixed) == 4 and len(plain) == 2 and plain[0] == plain[1], f"mixed {mixed}, plain {plain}")
    base = plain[0][0]
    got = [m[0] for m in mixed]
    want = [base + 13824, base, base + 13824, base]
    expect(got == want, f"decode cycles per token {got}, by hand {want}")
    expect(mixed[1][1] == mixed[3][1] == plain[0][1], f"no adapter: ttft {mixed[1][1]} against {plain[0][1]}")
    expect(j["stream0_cycles"]["decode_first"] == base + 13824 == j["analytic_stream0_cycles"]["decode_first"],
           f"stream 0 (adapter 0): {j['stream0_cycles']} analytic {j['analytic_stream0_cycles']}")


def test_tenants_functional():
    """Two tenants on one chip: stories260K on the tiny chip, --adapter A --adapter B (PEFT files the test writes, both
    random, rank 4 and 2 on different roles) and three streams in flight together, stream i using --adapter-of-stream's
    entry. Stream 0 (the one whose logits are tapped) with adapter 0 matches the FP32 reference with A within 1e-4,
    with adapter 1 the reference with B, and with none equals the run without adapters exactly; the other streams
    carry the other adapters meanwhile."""
    with tempfile.TemporaryDirectory() as tmp:
        for d in ("a", "b"):
            os.mkdir(os.path.join(tmp, d))
        pa = _write_peft(os.path.join(tmp, "a"), 4, 8, _lora_values(4, ("q", "v", "down"), range(5), 7, zero_b=False))
        pb = _write_peft(os.path.join(tmp, "b"), 2, 3, _lora_values(2, ("k", "o", "up"), range(5), 11, zero_b=False))
        both = ["--adapter", pa, "--adapter", pb, "--streams", "3"]
        ra = _func_logits(tmp, "ra", "--adapter", pa, infer=True)
        rb = _func_logits(tmp, "rb", "--adapter", pb, infer=True)
        base = _func_logits(tmp, "base")
        s0a = _func_logits(tmp, "s0a", *both, "--adapter-of-stream", "0,1,none")
        s0b = _func_logits(tmp, "s0b", *both, "--adapter-of-stream", "1,none,0")
        s0n = _func_logits(tmp, "s0n", *both, "--adapter-of-stream", "none,0,1")
        expect(_max_diff(s0a, ra) <= 1e-4, f"adapter 0 differs from the reference with A by {_max_diff(s0a, ra)}")
        expect(_max_diff(s0b, rb) <= 1e-4, f"adapter 1 differs from the reference with B by {_max_diff(s0b, rb)}")
        expect(_max_diff(s0n, base) == 0.0, f"no adapter differs from the unadapted run by {_max_diff(s0n, base)}")
        expect(_max_diff(ra, rb) > 0.1 and _max_diff(s0a, base) > 0.1, "the two adapters do not differ")
        j = run_json("--no-db", "--model", stories(), "--chip", os.path.join(DATA, "tiny-chip.json"), "--prompt", "4",
                     "--generate", "2", *both)
        expect(j["max_in_flight"] == 3, f"{j['max_in_flight']} streams in flight, not 3")


def test_tenants_eval():
    """eval --adapter-field names each record's adapter: functional stories260K, two records with adapter 0, 1 and
    none (empty) in a CSV column left out of the prompt. Each record's output is the one a batch giving every record
    that adapter (or none) computes; the rule is not shared (its KV is one adapter's)."""
    model = stories()
    chip = os.path.join(DATA, "tiny-chip.json")
    with tempfile.TemporaryDirectory() as tmp:
        for d in ("a", "b"):
            os.mkdir(os.path.join(tmp, d))
        pa = _write_peft(os.path.join(tmp, "a"), 4, 8, _lora_values(4, ("q", "v"), range(5), 5, zero_b=False))
        pb = _write_peft(os.path.join(tmp, "b"), 4, 8, _lora_values(4, ("q", "v"), range(5), 9, zero_b=False))
        names = ["Lily", "Tom", "Max"]
        plain = os.path.join(tmp, "kids.csv")
        write_csv(plain, [f"{i},{n} found a ball" for i, n in enumerate(names)], header=("id", "name"))

        def outputs(tag, data, *extra):
            db = os.path.join(tmp, tag + ".sqlite")
            j = json.loads(run("eval", "--json", "--model", model, "--chip", chip, "--data", data, "--rule",
                               "Tell a story.", "--max-new-tokens", "6", "--no-compare", "--mode", "functional",
                               "--weights", model, "--db", db, *extra).stdout)
            con = sqlite3.connect(db)
            t = [r[0] for r in con.execute("SELECT output_text FROM records ORDER BY record")]
            con.close()
            return t, j
        want = [outputs("a", plain, "--adapter", pa, "--no-prefix-sharing")[0][0],
                outputs("b", plain, "--adapter", pb, "--no-prefix-sharing")[0][1],
                outputs("none", plain, "--no-prefix-sharing")[0][2]]
        mixed = os.path.join(tmp, "mixed.csv")
        write_csv(mixed, [f"{i},{n} found a ball,{t}" for i, (n, t) in enumerate(zip(names, ["0", "1", ""]))],
                  header=("id", "name", "tenant"))
        got, j = outputs("mixed", mixed, "--adapter", pa, "--adapter", pb, "--adapter-field", "tenant")
    expect(got == want, f"per-record adapters gave {got}, each adapter alone {want}")
    expect(len(set(want)) == 3, f"the adapters do not change the outputs: {want}")
    expect(j["prefix_sharing"]["enabled"] is False and j["adapter"]["count"] == 2, f"{j['prefix_sharing']} {j['adapter']}")


def test_tenants_errors():
    """Bad adapter ids: a dataset naming an adapter the chip does not hold (the file, the line, the field and what was
    expected), a value that is not an id, a CSV without the named column; --adapter-of-stream naming one; the options
    that need adapters."""
    with tempfile.TemporaryDirectory() as tmp:
        data = os.path.join(tmp, "d.csv")
        write_csv(data, ["0,hello,1", "1,world,2"], header=("id", "text", "tenant"))
        ev = ["eval", "--no-db", "--no-compare", "--data", data, "--rule", "Say OK.", "--adapter-rank", "4",
              "--adapter-roles", "q", "--adapter-count", "2", "--adapter-field", "tenant"]
        expect_error(ev, data, "line 3: field 'tenant' is '2': expected an adapter id from 0 to 1 (the chip holds 2)",
                     "'none' or empty")
        write_csv(data, ["0,hello,x1"], header=("id", "text", "tenant"))
        expect_error(ev, data, "line 2: field 'tenant' is 'x1': expected an adapter id from 0 to 1")
        write_csv(data, ["0,hello"])
        expect_error(ev, data, "the header has no field 'tenant', which --adapter-field names (its fields: id, text)")
        jl = os.path.join(tmp, "d.jsonl")
        with open(jl, "w") as f:
            f.write('{"text": "hello"}\n{"text": "world", "tenant": -1}\n')
        expect_error(ev[:4] + [jl] + ev[5:], jl, "line 2: field 'tenant' is '-1'")
    expect_error(["run", "--no-db", "--adapter-rank", "4", "--adapter-roles", "q", "--adapter-count", "2",
                  "--adapter-of-stream", "0,2"], "--adapter-of-stream: entry 2, '2', in '0,2': expected an adapter id "
                 "from 0 to 1 or 'none'")
    expect_error(["run", "--no-db", "--adapter-of-stream", "0"], "--adapter-of-stream needs adapters", code=2)
    expect_error(["run", "--no-db", "--adapter-count", "2"], "--adapter-count needs --adapter-rank", code=2)
    expect_error(["eval", "--no-db", "--adapter-field", "t"], "--adapter-field needs adapters", code=2)

def test_tenants_mixed_item():
    """A work item carrying two sequences of different adapters streams each one's A and B for its own tokens, one
    after the other, with one vector latency: hc1-class with tile.sync_step true and tile.lanes.tokens_per_read 2 (the
    two streams of a one-token prompt travel as one item of 2 tokens) and kv.banks 1 (a KV port of 1 x 1024 bits,
    so the adapter's A and B stream is the longer part), two adapters of rank 16 on q and v. By hand, per layer:
    q's A and B are 16 x 4096 + 4096 x 16 one-byte elements = 1,048,576 bits = 1024 port words and 16 x 8192
    multiply-adds a token = 256 cycles of the 512-wide vector unit; v's 16 x 4096 + 1024 x 16 = 640 words, 160
    cycles. One adapter for both tokens: the stream read once (tokens_per_read 2), max(512, 1024) + 8 + max(320, 640)
    + 8 = 1680 cycles; two adapters: 2 x 1024 + 2 x 640 + 2 x 8 = 3344; so stream 0's decode step grows by
    32 x 1680 over no adapter, and by 32 x 1664 more with the second stream on the other adapter; tile 0's vector
    unit is busy 4 items (the prompt and 3 decode passes) x 1664 cycles more with one adapter, and as much again
    with two."""
    with open(os.path.join(MODELS, "chips", "hc1-class.json")) as f:
        c = json.load(f)
    c["tile"]["sync_step"] = {"value": True, "source": "test: one item per step"}
    c["tile"]["lanes"]["tokens_per_read"]["value"] = 2
    c["kv"]["banks"]["value"] = 1
    got = {}
    with tempfile.TemporaryDirectory() as tmp:
        chip = os.path.join(tmp, "hc1-sync.json")
        with open(chip, "w") as f:
            json.dump(c, f)
        for aos in ("none", "0", "0,1"):
            db = os.path.join(tmp, aos + ".sqlite")
            j = json.loads(run("run", "--json", "--db", db, "--chip", chip, "--prompt", "1", "--generate", "4",
                               "--streams", "2", "--adapter-rank", "16", "--adapter-roles", "q,v", "--adapter-count",
                               "2", "--adapter-of-stream", aos).stdout)
            con = sqlite3.connect(db)
            busy, items, tokens = con.execute("SELECT busy_cycles, items, tokens FROM unit_stats WHERE unit = 'tile0'"
                                              ).fetchone()
            vec, = con.execute("SELECT busy_cycles FROM unit_stats WHERE unit = 'tile0.vector'").fetchone()
            con.close()
            expect((items, tokens) == (4, 8), f"{aos}: tile 0 took {items} items of {tokens} tokens, not 4 of 8")
            got[aos] = (j["stream0_cycles"]["decode_first"], vec)
    d_one = got["0"][0] - got["none"][0]
    d_two = got["0,1"][0] - got["0"][0]
    expect((d_one, d_two) == (32 * 1680, 32 * 1664), f"decode step +{d_one} and +{d_two}, by hand "
           f"{32 * 1680} and {32 * 1664}")
    v_one, v_two = got["0"][1] - got["none"][1], got["0,1"][1] - got["0"][1]
    expect((v_one, v_two) == (4 * 1664, 4 * 1664), f"tile 0's vector unit +{v_one}, +{v_two}, by hand {4 * 1664}")
# ---- gpt-oss (issue 20 item 3): GptOssForCausalLM on one die, and tiny-gpt-oss end to end ----------------------

def test_gpt_oss_one_die():
    """gpt-oss-120b does not fit one hc1-class die: run (--recipe fp4), area and chip derive each fail with one fit
    error naming the key; tiny-gpt-oss runs in timing and functional mode, its parameters counted by hand."""
    expect_error(["run", "--model", "gpt-oss-120b", "--chip", "hc1-class", "--recipe", "fp4", "--no-db"],
                 "hc1-class.json: key 'tile.rom.rows': ROM cannot hold the model: tile 0, attention partition needs",
                 "the ROM has 1280", "recipe fp4")
    expect_error(["area", "--model", "gpt-oss-120b", "--chip", "hc1-class"],
                 "key 'tile.rom.rows': ROM cannot hold the model: tile 0, expert 0 needs 19744 rows per bank")
    expect_error(["chip", "derive", "--model", "gpt-oss-120b"],
                 "gpt-oss-120b on hc1-class-derived tiles needs", "the derived chip exceeds --area")
    # tiny-gpt-oss (H 256, q 16 x 32 = 512, kv 2 x 32, 16 experts of 128, top 4, vocab 1024, 4 layers), by hand:
    # attention q 256x512 + 512, k and v 2 x (256x64 + 64), o 512x256 + 256, sinks 16, norm 256 = 296,080;
    # MoE norm 256 + router 16x256 + 16 + 16 x (gate/up 256x256 + 256 + down 256x128 + 256 = 98,816) = 1,585,424;
    # x 4 + embedding and LM head 2 x 1024 x 256 + 256 = 8,050,560; active: 4 x (296,080 + 256 + 4,096 + 16 +
    # 4 x 98,816) + 524,288 + 256 = 3,307,392
    common = ["--model", os.path.join(DATA, "tiny-gpt-oss"), "--chip", os.path.join(DATA, "tiny-chip.json"),
              "--set", "tile.rom.rows=128", "--prompt", "20", "--generate", "20", "--no-db"]
    t = run_json(*common)
    expect(t["moe"]["params"] == 8050560 and t["moe"]["active_params"] == 3307392, f"moe {t['moe']}")
    f = run_json(*common, "--mode", "functional", "--synthetic", "3")
    expect(f["mode"] == "functional" and len(f["functional"]["output_ids"]) == 20 and
           f["functional"]["streams_agree"], f"functional run {f['functional']}")



def test_system_energy_parts():
    """A system's energy by kind of event adds up to its energy, its static parts being all its chips' (each
    tensor-parallel stage's copies counted): board = the chips' board watts x the run's seconds."""
    for sysname in (os.path.join(DATA, "systems", "tiny-tp2.json"), "llama-3.1-70b-hc1", "llama-3.1-70b-h100-tp4"):
        j = run_json("--no-db", "--system", sysname, "--prompt", "32", "--generate", "8")
        e = j["energy_by_event_j"]
        expect(abs(sum(e.values()) - j["energy_j"]) <= 1e-9 * j["energy_j"],
               f"{sysname}: parts {sum(e.values())} J, run {j['energy_j']} J: {e}")
        board = sum(c["board_w"] for c in j["system"]["chips"]) * j["cycles"] / j["clock_hz"]
        expect(abs(e["board"] - board) <= 1e-9 * board, f"{sysname}: board {e['board']} J, by hand {board} J")


# systems of chips with their own clocks and power limits, and --vcd over them (issue 20, item 1)
def h100_halves_by_hand(p):
    """Llama-3.1-8B BF16 over two h100-class chips, layers 0-15 and 16-31, by hand from h100-class.json and the
    model's config.json as h100_step_by_hand (whose whole-chip step it must add up to): (A, B, act_bits, tok_bits),
    A the first chip's cycles of a decode step (the embedding row, its hop to the tile, 16 layers), B the second's
    (16 layers, the hop to the head, the head: LM head, final norm, sampler), each in its own chip's cycles."""
    with open(os.path.join(MODELS, "chips", "h100-class.json")) as f:
        c = json.load(f)
    v = lambda *ks: functools.reduce(lambda d, k: d[k], ks, c)["value"]
    cdiv = lambda a, b: -(-a // b)
    H, L, prods, lm, V, F, kv_elems = l8b_shapes()
    bw, kvb = v("store", "ports") * v("store", "bits_per_cycle"), kv_elems * v("kv", "element_bits")
    vw, vl = v("tile", "vector", "elems_per_cycle"), v("tile", "vector", "latency_cycles")
    vec = lambda elems, passes: passes * cdiv(elems, vw) + vl
    lw, ll, hbm, depth = v("link", "width_bits"), v("link", "latency_cycles"), v("store", "latency_cycles"), \
        v("tile", "lanes", "pipeline_depth")
    act_bits, tok_bits = H * v("link", "elem_bits"), v("link", "token_id_bits")
    hop = lambda bits: cdiv(bits, lw) + ll
    layer = sum(cdiv(16 * e, bw) for e in prods) + cdiv(kvb, bw) + cdiv((p + 1) * kvb, bw) + 7 * hbm + 7 * depth + \
        v("tile", "attention", "latency_cycles") + 2 * vec(H, 2) + vec(H + kv_elems // 2, 1) + 2 * vec(H, 1) + vec(F, 1)
    front = cdiv(16 * H, bw) + hbm + hop(act_bits)
    back = hop(act_bits) + cdiv(16 * lm, bw) + hbm + depth + vec(H, 2) + cdiv(V, v("head", "sampler", "elems_per_cycle")) + \
        v("head", "sampler", "latency_cycles")
    weights, kv, over = h100_step_by_hand(p)
    expect(front + L * layer + back + hop(tok_bits) == weights + kv + sum(over.values()),
           f"the halves {front} + {L} x {layer} + {back} + {hop(tok_bits)} miss the whole chip's step")
    return front + L // 2 * layer, L // 2 * layer + back, act_bits, tok_bits


def h100_pair(tmp, clocks, limits=(0, 0), link=None, sync=False):
    """A system file of Llama-3.1-8B over two h100-class chips (layers 0-15, 16-31) written into tmp, chip k a copy
    of h100-class.json at clocks[k] Hz with card.power_limit_w limits[k] and tile.sync_step sync; its path and its
    link dict."""
    link = link or {"topology": "chain", "bandwidth_bits_per_s": 1e11, "latency_ns": 1000, "energy_pj_per_bit": 5}
    chips = []
    for k, (f, w) in enumerate(zip(clocks, limits)):
        c = json.load(open(os.path.join(MODELS, "chips", "h100-class.json")))
        c["clock_hz"]["value"], c["card"]["power_limit_w"]["value"] = f, w
        c["tile"]["sync_step"]["value"] = sync
        path = os.path.join(tmp, f"h100-{k}.json")
        json.dump(c, open(path, "w"))
        chips.append({"chip": path, "layers": [16 * k, 16 * k + 15]})
    p = os.path.join(tmp, "pair.json")
    json.dump({"name": "h100-pair", "model": "llama-3.1-8b", "link": link, "chips": chips}, open(p, "w"))
    return p, link


def test_system_clocks():
    """Two h100-class chips holding Llama-3.1-8B's layers 0-15 and 16-31, the first at 2 GHz, the second at 1 GHz:
    each counts its own cycles (h100_halves_by_hand: A and B, the same at any clock), a card link its sender's
    (ceil(bits / 100 Gbit/s x f) + ceil(1000 ns x f)), and a hop to the slower chip starts on its next edge (every
    second edge of the first's). From the second chip's sample at time 0 (an edge of both), in the first chip's
    cycles: the token back, 2 x card_1GHz(16 bits); the first's A and its card_2GHz(4096 x 16 bits), rounded up to
    an even cycle; the second's 2 x B. Simulated and analytic both equal it; at one clock (2 GHz both) the step is
    A + B + both card links. The run's cycles count the first chip's clock (its decode rate: 2 steps / (their cycles /
    2 GHz)), each chip's JSON its own clock and cycles."""
    A, B, act, tok = h100_halves_by_hand(1)
    bw, ns = 1e11, 1000
    card = lambda bits, f: math.ceil(bits / bw * f) + math.ceil(ns * f / 1e9)
    with tempfile.TemporaryDirectory() as tmp:
        steps = {}
        for clocks in ((2e9, 2e9), (2e9, 1e9)):
            p, _ = h100_pair(tmp, clocks)
            j = run_json("--system", p, "--prompt", "1", "--generate", "3", "--no-db")
            if clocks[1] == clocks[0]:
                want = A + B + card(act, 2e9) + card(tok, 2e9)
            else:
                a = A + card(act, 2e9)
                want = 2 * card(tok, 1e9) + a + a % 2 + 2 * B
            sim, an = j["stream0_cycles"], j["analytic_stream0_cycles"]
            expect(sim["decode_first"] == want and an["decode_first"] == want,
                   f"clocks {clocks}: step simulated {sim['decode_first']}, analytic {an['decode_first']}, by hand {want}")
            expect(an["decode_total"] == sim["decode_total"], f"clocks {clocks}: decode {sim} vs analytic {an}")
            rate = 2 / (sim["decode_total"] / 2e9)  # two steps, in seconds at the first chip's clock
            expect(j["clock_hz"] == 2e9 and abs(j["decode_tokens_per_s"] - rate) <= 1e-9 * rate and
                   abs(j["analytic_decode_tokens_per_s"] - rate) <= 1e-9 * rate,
                   f"clocks {clocks}: {j['decode_tokens_per_s']} tok/s (analytic {j['analytic_decode_tokens_per_s']}), "
                   f"by hand {rate}, at {j['clock_hz']} Hz")
            chips = j["system"]["chips"]
            expect([c["clock_hz"] for c in chips] == list(clocks), f"chips' clocks {[c['clock_hz'] for c in chips]}")
            ratio = int(clocks[0] // clocks[1])
            expect(chips[0]["cycles"] == j["cycles"] and chips[1]["cycles"] == -(-j["cycles"] // ratio),
                   f"clocks {clocks}: chips' cycles {[c['cycles'] for c in chips]}, run {j['cycles']}")
            steps[clocks] = want
    expect(steps[(2e9, 1e9)] > steps[(2e9, 2e9)], f"steps {steps}")


def test_system_vcd():
    """--vcd on a system (tiny-x2, five layers): one file with each chip's signals under its prefix (c0_tile0_items
    .. c1_tile1_items, cK_kv_positions_held, whose peaks are system.chips[k].kv_max_used), the run's sequences in
    flight once, and each card link's work items sent (c0_card_items: the 8-token prompt chunk and 2 decode tokens;
    c1_card_feedback_items: the 2 fed-back tokens). The prompt chunk leaves chip 0 when c0_card_items first rises and
    chip 1's tile 0 takes it when it arrives, by hand: ceil(8 x 256 x 16 bits / 10 Gbit/s) + 1000 ns later (1 GHz)."""
    with tempfile.TemporaryDirectory() as tmp:
        five = os.path.join(tmp, "five")
        os.mkdir(five)
        cfg = json.load(open(os.path.join(MODELS, "llm", "tiny-llama", "config.json")))
        cfg["num_hidden_layers"] = 5
        json.dump(cfg, open(os.path.join(five, "config.json"), "w"))
        vcd = os.path.join(tmp, "s.vcd")
        j = run_json("--system", SYSTEM_X2, "--model", five, "--prompt", "8", "--generate", "3", "--no-db", "--vcd", vcd)
        sig = read_vcd(vcd)
    want = {"c0_tile0_items", "c0_tile1_items", "c0_tile2_items", "c0_card_items", "c0_kv_positions_held",
            "sequences_in_flight", "c1_tile0_items", "c1_tile1_items", "c1_card_feedback_items", "c1_kv_positions_held"}
    expect(set(sig) == want, f"signals {sorted(sig)}")
    peak = lambda n: max(v for _, v in sig[n])
    chips = j["system"]["chips"]
    expect([peak(f"c{k}_kv_positions_held") for k in (0, 1)] == [c["kv_max_used"] for c in chips] and
           peak("sequences_in_flight") == j["max_in_flight"] == 1, f"peaks against {chips}")
    expect(sig["c0_card_items"][-1][1] == 3 and sig["c1_card_feedback_items"][-1][1] == 2,
           f"card links {sig['c0_card_items']}, {sig['c1_card_feedback_items']}")
    chip = json.load(open(os.path.join(DATA, "tiny-chip.json")))
    bits = 8 * cfg["hidden_size"] * chip["link"]["elem_bits"]["value"]
    sent = next(t for t, v in sig["c0_card_items"] if v == 1)
    taken = next(t for t, v in sig["c1_tile0_items"] if v == 1)
    want_ps = (math.ceil(bits / 1e10 * 1e9) + 1000) * 1000
    expect(taken - sent == want_ps, f"the chunk sent at {sent} ps, taken at {taken} ps: {taken - sent}, by hand {want_ps}")


def test_system_sync_step():
    """tile.sync_step on a system (es_system.h): each chip steps its own batch, its first tile taking no new pass
    until the step's tokens that left its last tile for the head are back in its FIFO (or finished). Over two
    h100-class chips at 2 GHz holding Llama-3.1-8B's layers 0-15 and 16-31, the last step of 16 streams of a 1-token
    prompt is one chip's serial chain (h100_sync_step_by_hand, positions 8 and 7) with the on-die token hop replaced
    by the card link's (the token ids back, one item each, the first's ceil(16 / 100 Gbit/s x f) + 2000 cycles; the
    next pipeline behind the embedding rows) and the 16-token group's card hop between the chips (ceil(16 x 4096 x 16
    bits / 100 Gbit/s x f) + 2000). With tile.sync_step off the same batch is not one chain (the step differs)."""
    c = json.load(open(os.path.join(MODELS, "chips", "h100-class.json")))
    v = lambda *ks: functools.reduce(lambda d, k: d[k], ks, c)["value"]
    H, f = l8b_shapes()[0], 2e9
    card = lambda bits: math.ceil(bits / 1e11 * f) + math.ceil(1000 * f / 1e9)
    tok, act = v("link", "token_id_bits"), H * v("link", "elem_bits")
    want = h100_sync_step_by_hand([8] + [7] * 15) - (-(-tok // v("link", "width_bits")) + v("link", "latency_cycles")) + \
        card(tok) + card(16 * act)
    got = {}
    with tempfile.TemporaryDirectory() as tmp:
        for sync in (True, False):
            p, _ = h100_pair(tmp, (f, f), sync=sync)
            j = run_json("--system", p, "--prompt", "1", "--generate", "8", "--streams", "16", "--no-db")
            got[sync] = j["stream0_cycles"]["decode_last"]
            expect(j["tokens"] == 16 * 8, f"sync {sync}: {j['tokens']} tokens")
    expect(got[True] == want, f"16 streams over two chips: the last step {got[True]} cycles, by hand {want}")
    expect(got[False] != want, f"without tile.sync_step the step is the chain too: {got}")


# ---- gpt-oss-120b over hc1-class-derived chips in its MXFP4 format (issue 20 item 3; helper h/ep) ----------
def recipe_role_format(name):
    """role -> (format, group) of a recipe's first rule matching the role (a chip holds one format per role)."""
    with open(os.path.join(MODELS, "recipes", name + ".json")) as f:
        rules = json.load(f)["rules"]

    def fmt(role):
        for r in rules:
            roles = r["match"].get("role")
            if roles is None or role in (roles if isinstance(roles, list) else [roles]):
                return r["format"], r.get("group")
        raise AssertionError(f"recipe {name}: no rule for {role}")
    return fmt


def gpt_oss_layer_bits(bits, cfg):
    """One gpt-oss block's bits from config.json: attention with q, k, v, o biases and the sinks, the router and
    its bias, and each expert's gate, up, down with their biases (2F gate-up and H down)."""
    H, F, E = cfg["hidden_size"], cfg["intermediate_size"], cfg["num_local_experts"]
    hd, nh = cfg["head_dim"], cfg["num_attention_heads"]
    Q, KV = nh * hd, cfg["num_key_value_heads"] * hd
    attn = (bits("attn_norm", 1, H) + bits("attn_q", Q, H) + bits("bias", 1, Q) + bits("attn_k", KV, H) +
            bits("bias", 1, KV) + bits("attn_v", KV, H) + bits("bias", 1, KV) + bits("attn_o", H, Q) +
            bits("bias", 1, H) + bits("attn_sinks", 1, nh))
    moe = (bits("ffn_norm", 1, H) + bits("router", E, H) + bits("bias", 1, E) +
           E * (bits("ffn_gate", F, H) + bits("ffn_up", F, H) + bits("ffn_down", H, F) + bits("bias", 1, 2 * F) +
                bits("bias", 1, H)))
    return attn + moe


def test_split_gpt_oss_card_count():
    """chip derive --split --recipe fp4 for gpt-oss-120b from hc1-class writes the number of chips a hand count
    from ROM density gives: the model's bits under the fp4 recipe (MXFP4 at 4.25 bits, Q8_0 LM head, BF16 norms,
    biases and sinks) against what one chip of hc1-class's area holds, in whole layers: the first chip holds
    the embedding table, the last the LM head, so the caps per chip are (2, 3, 2) layers and 36 layers need
    2 + ceil(32 / 3) = 13 chips (the whole-model bound alone would say 12). The shipped files are what the
    command writes, and the system runs."""
    d = {}
    fmt = recipe_role_format("fp4")
    n, area, L, gbit, ratio = split_hand_count("hc1-class", "gpt-oss-120b", fmt, gpt_oss_layer_bits, d)
    expect(L == 36 and round(gbit * 1e9) == 499458972672 and 11.6 < ratio < 11.8 and n == 12,
           f"hand count: {gbit:.6f} Gbit, {ratio:.3f} chips' worth")
    cap_first = math.floor((d["chip"] - d["first"]) / d["layer"])
    cap_mid = math.floor(d["chip"] / d["layer"])
    cap_last = math.floor((d["chip"] - d["last"]) / d["layer"])
    want = 2 + math.ceil((L - cap_first - cap_last) / cap_mid)
    expect((cap_first, cap_mid, cap_last) == (2, 3, 2) and want == 13, f"caps {cap_first, cap_mid, cap_last}: {want}")
    with tempfile.TemporaryDirectory() as tmp:
        p = run("chip", "derive", "--model", "gpt-oss-120b", "--like", "hc1-class", "--recipe", "fp4", "--split",
                "--name", "gpt-oss-120b-hc1", "-o", tmp)
        sys_path = os.path.join(tmp, "gpt-oss-120b-hc1.json")
        expect(f"wrote {sys_path}: gpt-oss-120b-hc1, {want} chips of {area:.1f} mm2" in p.stdout, p.stdout)
        s = split_system(sys_path)
        chips = s["chips"]
        expect(f"at most {cap_first} layers with the embedding table, {cap_mid} in the middle, {cap_last} with the "
               "final norm" in s["description"], s["description"])
        covered = [layer for c in chips for layer in range(c["layers"][0], c["layers"][1] + 1)]
        expect(covered == list(range(L)), f"layer ranges {[c['layers'] for c in chips]}")
        for c in chips:
            with open(os.path.join(tmp, c["chip"])) as f:
                made = json.load(f)
            w = made["weights"]
            expect(w["default"]["format"]["value"] == "mxfp4" and w["roles"]["lm_head"]["format"]["value"] == "q8_0"
                   and w["roles"]["bias"]["format"]["value"] == "bf16" and "attn_v" not in w["roles"],
                   f"{c['chip']}: weights {w}")
            with open(os.path.join(MODELS, "chips", c["chip"])) as f:
                expect(made == json.load(f), f"models/chips/{c['chip']} is not what chip derive --split writes")
        shipped = split_system(os.path.join(MODELS, "systems", "gpt-oss-120b-hc1.json"))
        expect([c["layers"] for c in shipped["chips"]] == [c["layers"] for c in chips] and
               [os.path.basename(c["chip"]) for c in shipped["chips"]] == [c["chip"] for c in chips] and
               shipped["link"] == s["link"], "models/systems/gpt-oss-120b-hc1.json is not what the command writes")
    j = run_json("--no-db", "--system", "gpt-oss-120b-hc1", "--prompt", "16", "--generate", "4")
    expect(len(j["system"]["chips"]) == want and all(abs(c["area_mm2"] - area) < 0.05 for c in j["system"]["chips"]),
           f"{j['system']['chips']}")
    # a recipe whose first rule for a role holds only some layers cannot be one chip format per role
    with tempfile.TemporaryDirectory() as tmp:
        r = os.path.join(tmp, "layered.json")
        json.dump({"name": "layered", "rules": [{"match": {"role": "attn_q", "layers": [0, 3]}, "format": "int6",
                                                  "group": 64}, {"match": {}, "format": "mxfp4"}]}, open(r, "w"))
        expect_error(["chip", "derive", "--model", "gpt-oss-120b", "--recipe", r], "layered.json",
                     "rules[0].match.layers", "one format per role", "attn_q")


# ---- expert-parallel stages: chips splitting a layer's experts over all-to-all links (issue 20 item 1; h/ep) ------
SYSTEM_EP2 = os.path.join(DATA, "systems", "tiny-moe-ep2.json")


def ep_run(tmp, experts, *extra):
    """tiny-moe-ep2 (layers 1-2 on two chips, experts 0-7 and 8-15), 8 in / 4 out, every token routed to `experts`."""
    route = os.path.join(tmp, "route.txt")
    with open(route, "w") as f:
        f.write(" ".join(str(e) for e in experts) + "\n")
    return run_json("--no-db", "--system", SYSTEM_EP2, "--set", "tile.rom.rows=128", "--prompt", "8", "--generate",
                    "4", "--routing", "replay:" + route, *extra)


def test_ep_step_hand():
    """A token whose experts are on the other chip of its expert-parallel stage costs, per MoE layer, one dispatch
    and one combine of its hidden vector over the all-to-all link: by hand from the fixture's numbers,
    ceil(256 x 16 bits / 10 Gbit/s at 1 GHz) = 410 cycles plus 1000 ns of latency each way, 2 x 1410 = 2820
    cycles a layer, 5640 for the stage's two layers: the decode step with experts [8, 9] (both on chip 2, the
    sequence on chip 1) is 5640 cycles longer than with [0, 1] (both on chip 1), and so is [0, 8] (the local
    chain runs beside the remote one). The link energy: 11 tokens x 2 layers, each there and back, of 4096 bits at
    10 pJ/bit through the card's 0.9-efficient regulators. The analytic step adds the expected share of it:
    1 - (8 x 7) / (16 x 15) of 5640, rounded: 4324."""
    chip = json.load(open(os.path.join(DATA, "tiny-chip.json")))
    sysf = json.load(open(SYSTEM_EP2))
    moe = json.load(open(os.path.join(DATA, "tiny-moe", "config.json")))
    v = lambda n: n["value"] if isinstance(n, dict) else n
    clock, w, vr = v(chip["clock_hz"]), v(chip["link"]["elem_bits"]), v(chip["card"]["vr_efficiency"])
    bw, lat_ns, pj = (v(sysf["link"][k]) for k in ("bandwidth_bits_per_s", "latency_ns", "energy_pj_per_bit"))
    bits = moe["hidden_size"] * w
    occ = math.ceil(bits / bw * clock)
    lat = math.ceil(lat_ns * clock / 1e9)
    layers = sysf["chips"][1]["layers"][1] - sysf["chips"][1]["layers"][0] + 1
    trip = layers * 2 * (occ + lat)
    expect((bits, occ, lat, trip) == (4096, 410, 1000, 5640), f"hand: {bits} bits, {occ} + {lat} cycles, {trip}")
    with tempfile.TemporaryDirectory() as tmp:
        local, remote, mixed = ep_run(tmp, [0, 1]), ep_run(tmp, [8, 9]), ep_run(tmp, [0, 8])
    for k in ("decode_first", "decode_last"):
        a, b, c = (r["stream0_cycles"][k] for r in (local, remote, mixed))
        expect(b - a == trip and c - a == trip, f"{k}: local {a}, remote {b}, mixed {c} cycles; by hand +{trip}")
    a2a = {r: {l["unit"]: l for l in j["system"]["links"] if l["unit"].endswith("_a2a")}
           for r, j in (("local", local), ("remote", remote))}
    tokens = 8 + 4 - 1  # the prompt and every decode token but the last pass the stage
    expect(a2a["local"]["c1_a2a"]["tokens"] == 0 and a2a["remote"]["c1_a2a"]["tokens"] == tokens * layers and
           a2a["remote"]["c2_a2a"]["tokens"] == tokens * layers and a2a["remote"]["c2_a2a"]["to"] == 1 and
           a2a["remote"]["c2_a2a"]["to_last"] == 2, f"a2a links {a2a}")
    joules = 2 * tokens * layers * bits * pj * 1e-12 / vr
    got = remote["energy_by_event_j"]["card_links"] - local["energy_by_event_j"]["card_links"]
    expect(abs(got - joules) <= 1e-9 * joules, f"the all-to-all's energy {got} J, by hand {joules} J")
    share = 1 - (8 * 7) / (16 * 15)
    an = local["analytic_stream0_cycles"]["decode_first"]
    expect(an == local["stream0_cycles"]["decode_first"] + round(share * trip),
           f"analytic {an}, simulated without the all-to-all {local['stream0_cycles']['decode_first']}")
    # the sequences spread over the stage: four streams, two on each chip's KV
    j = run_json("--no-db", "--system", SYSTEM_EP2, "--set", "tile.rom.rows=128", "--prompt", "8", "--generate", "4",
                 "--streams", "4")
    kv = [c["kv_max_used"] for c in j["system"]["chips"]]
    expect(kv[1] == kv[2] == kv[0] // 2 and kv[0] == kv[3] > 0, f"KV held per chip {kv}")


def test_err_ep_stage():
    """What an expert-parallel stage cannot be, one error each: functional mode; the cycle fidelity; a stage
    holding an end of the model (test_err_system); and the split errors es_system_check names (tests/test_system.c
    2.11-2.15: layers shared on a dense model, a chain topology, an expert gap, an overlap, a short range)."""
    base = ["run", "--no-db", "--system", SYSTEM_EP2, "--set", "tile.rom.rows=128", "--prompt", "8", "--generate", "2"]
    expect_error(base + ["--mode", "functional", "--synthetic", "1"], "--functional", "expert-parallel stage",
                 "timing only")
    expect_error(base + ["--fidelity", "cycle"], "--fidelity cycle", "experts", "transaction fidelity")
    with tempfile.TemporaryDirectory() as tmp:
        sysf = json.load(open(SYSTEM_EP2))
        sysf["model"] = os.path.join(DATA, "tiny-moe")
        for i in range(4):
            sysf["chips"][i]["chip"] = os.path.join(DATA, "tiny-chip.json")
        p = os.path.join(tmp, "ep.json")
        sysf["chips"][2]["experts"] = [9, 15]
        json.dump(sysf, open(p, "w"))
        expect_error(base[:3] + [p] + base[4:], "ep.json", "chips[2].experts", "experts 8..8", "on no chip")
        sysf["chips"][2]["experts"] = [7, 15]
        json.dump(sysf, open(p, "w"))
        expect_error(base[:3] + [p] + base[4:], "ep.json", "chips[2].experts", "experts 7..7", "chips[1] too")
        sysf["chips"][2]["experts"] = [8, 15]
        sysf["model"] = "tiny-llama"
        json.dump(sysf, open(p, "w"))
        expect_error(base[:3] + [p] + base[4:6] + ["--prompt", "8", "--generate", "2"], "ep.json", "chips[2].layers",
                     "only a mixture of experts", "tiny-llama has none")


def test_split_gpt_oss_ep2():
    """chip derive --split --expert-parallel 2 for gpt-oss-120b (fp4, hc1-class's area): a middle chip holding half of
    each layer's experts holds, by hand from ROM density, 43.06 Gbit / 7.03 Gbit a layer (attention, router and 64
    experts with its units and one sequence's KV) = 6.13: 6 layers; the ends hold 2 each (as without experts split),
    so 36 layers take 2 + 2 x ceil(32 / 6) = 14 chips in stages of two, each pair splitting experts 0-63 and 64-127
    over all_to_all links. The shipped system is what the command writes, and it runs with the all-to-all carrying
    tokens and the analytic step within 0.5 % of the simulated one."""
    fmt = recipe_role_format("fp4")

    def half_layer(bits, cfg):
        H, F, E = cfg["hidden_size"], cfg["intermediate_size"], cfg["num_local_experts"]
        expert = (bits("ffn_gate", F, H) + bits("ffn_up", F, H) + bits("ffn_down", H, F) + bits("bias", 1, 2 * F) +
                  bits("bias", 1, H))
        return gpt_oss_layer_bits(bits, cfg) - (E // 2) * expert
    d = {}
    _, area, L, _, _ = split_hand_count("hc1-class", "gpt-oss-120b", fmt, half_layer, d)
    cap_mid = math.floor(d["chip"] / d["layer"])
    want = 2 + 2 * math.ceil((L - 2 - 2) / cap_mid)
    expect(cap_mid == 6 and want == 14, f"hand: {d['chip'] / d['layer']:.3f} layers a middle chip, {want} chips")
    with tempfile.TemporaryDirectory() as tmp:
        p = run("chip", "derive", "--model", "gpt-oss-120b", "--like", "hc1-class", "--recipe", "fp4", "--split",
                "--expert-parallel", "2", "--name", "gpt-oss-120b-hc1-ep2", "-o", tmp)
        sys_path = os.path.join(tmp, "gpt-oss-120b-hc1-ep2.json")
        expect(f"wrote {sys_path}: gpt-oss-120b-hc1-ep2, {want} chips of {area:.1f} mm2" in p.stdout, p.stdout)
        s = split_system(sys_path)
        chips = s["chips"]
        expect(s["link"]["topology"]["value"] == "all_to_all" and "each middle stage is 2 chips holding at most 6 "
               "layers" in s["description"], f"{s['link']['topology']}, {s['description']}")
        mid = chips[1:-1]
        expect(all(a["layers"] == b["layers"] and a["experts"] == [0, 63] and b["experts"] == [64, 127]
                   for a, b in zip(mid[0::2], mid[1::2])) and "experts" not in chips[0] and "experts" not in chips[-1],
               f"stages {[(c['layers'], c.get('experts')) for c in chips]}")
        covered = [layer for c in chips[:1] + mid[0::2] + chips[-1:] for layer in range(c["layers"][0], c["layers"][1] + 1)]
        expect(covered == list(range(L)), f"layer ranges {[c['layers'] for c in chips]}")
        for c in set(c["chip"] for c in chips):
            with open(os.path.join(tmp, c)) as f, open(os.path.join(MODELS, "chips", c)) as g:
                expect(json.load(f) == json.load(g), f"models/chips/{c} is not what chip derive --split writes")
        shipped = split_system(os.path.join(MODELS, "systems", "gpt-oss-120b-hc1-ep2.json"))
        expect([(c["layers"], c.get("experts")) for c in shipped["chips"]] == [(c["layers"], c.get("experts"))
                                                                              for c in chips] and
               shipped["link"] == s["link"], "models/systems/gpt-oss-120b-hc1-ep2.json is not what the command writes")
    j = run_json("--no-db", "--system", "gpt-oss-120b-hc1-ep2", "--prompt", "32", "--generate", "16")
    a2a = [l for l in j["system"]["links"] if l["unit"].endswith("_a2a")]
    expect(len(a2a) == 12 and all(l["tokens"] > 0 for l in a2a[0::2]), f"a2a links {a2a}")
    sim, an = j["decode_tokens_per_s"], j["analytic_decode_tokens_per_s"]
    expect(abs(sim - an) <= 0.005 * an, f"decode tokens/s: simulated {sim}, analytic {an}")
    expect_error(["chip", "derive", "--model", "llama-3.1-70b", "--split", "--expert-parallel", "2", "-o", "."],
                 "--expert-parallel 2", "llama-3.1-70b", "0 experts")
    expect_error(["chip", "derive", "--model", "gpt-oss-120b", "--expert-parallel", "2"], "needs --split",
                 "--expert-parallel", code=2)


# adapters on systems of chips (issue 20): each chip holds its own layers' A and B
def test_system_adapter_functional():
    """A rank-4 adapter on q, v and down of layers 1, 3 and 4 (PEFT safetensors) over stories260K split on two chips
    (layers 0-2, 3-4) gives exactly the tokens and logits of one chip with the same adapter, and not the unadapted
    ones; chip 0 holds layer 1's three adapted projections, chip 1 layers 3 and 4's six; each decode step is longer
    than without the adapter by as many cycles as on the one chip (the same layers adapted)."""
    s = stories()
    tiny = os.path.join(DATA, "tiny-chip.json")
    with tempfile.TemporaryDirectory() as tmp:
        path = _write_peft(tmp, 4, 8, _lora_values(4, ("q", "v", "down"), (1, 3, 4), 11, zero_b=False))
        base = ["--model", s, *FP32_DATAPATH, *F32_HEAD_ROMS, "--mode", "functional", "--weights", s,
                "--recipe", "f32", "--prompt", "12", "--generate", "8", "--no-db"]
        got = {}
        for name, where, ad in (("one", ["--chip", tiny], True), ("two", ["--system", SYSTEM_X2], True),
                                ("one0", ["--chip", tiny], False), ("two0", ["--system", SYSTEM_X2], False)):
            lf = os.path.join(tmp, name + ".bin")
            j = run_json(*base, *where, "--logits", lf, *(["--adapter", path] if ad else []))
            got[name] = (j, open(lf, "rb").read())
    (one, la), (two, lb), (one0, la0), (two0, lb0) = got["one"], got["two"], got["one0"], got["two0"]
    expect(one["functional"]["output_ids"] == two["functional"]["output_ids"],
           f"tokens differ: {one['functional']['output_ids']} vs {two['functional']['output_ids']}")
    expect(len(la) > 0 and la == lb, f"logits differ ({len(la)} and {len(lb)} bytes)")
    expect(lb != lb0 and la0 == lb0, "the system's logits ignored the adapter, or the unadapted split moved")
    for k in ("decode_first", "decode_last"):
        d1 = one["stream0_cycles"][k] - one0["stream0_cycles"][k]
        d2 = two["stream0_cycles"][k] - two0["stream0_cycles"][k]
        expect(d1 > 0 and d2 == d1, f"{k}: the adapter adds {d2} cycles a step on the system, {d1} on one chip")
        expect(two["analytic_stream0_cycles"][k] == two["stream0_cycles"][k],
               f"{k}: analytic {two['analytic_stream0_cycles'][k]} vs simulated {two['stream0_cycles'][k]}")
    chips = [c["adapter"] for c in two["system"]["chips"]]
    expect([c["tensors"] for c in chips] == [3, 6] and two["adapter"]["tensors"] == 9 == one["adapter"]["tensors"],
           f"tensors per chip {[c['tensors'] for c in chips]}, system {two['adapter']}")
    # per adapted layer: q 4x64 + 64x4, v 4x64 + 32x4, down 4x172 + 64x4 fp32 elements, each matrix from a fresh
    # 256-bit word; one layer per tile
    words = lambda n: -(-n * 32 // 256) * 256 // 8
    layer = sum(words(4 * i) + words(o * 4) for o, i in ((64, 64), (32, 64), (64, 172)))
    expect([(c["bytes_per_tile"], c["bytes"]) for c in chips] == [(layer, layer), (layer, 2 * layer)] and
           two["adapter"]["bytes"] == 3 * layer == one["adapter"]["bytes"], f"bytes per chip {chips}, by hand {layer}")


def test_system_adapter_sram_kv():
    """Rank 16 on q and v over the two-chip split of stories260K, timing: each chip's adapter SRAM (its own layers'
    A and B) and the KV slots it loses, derived here from tiny-chip.json and the model's shapes; the system's KV is the
    fewest any chip holds; run and eval report the same; the summary gives each chip's line."""
    s = stories()
    c = json.load(open(os.path.join(DATA, "tiny-chip.json")))
    kv = {k: v["value"] for k, v in c["kv"].items()}
    eb, word, kv_bytes, ctx = kv["element_bits"], kv["word_bits"], kv["bytes_per_tile"], kv["slot_context"]
    words = lambda n: -(-n * eb // word) * word // 8  # bytes: each matrix from a fresh word
    per_tile = sum(words(16 * inp) + words(out * 16) for _, out, inp in (STORIES_PROJ["q"], STORIES_PROJ["v"]))
    pos_bytes = 2 * 4 * 8 * eb // 8  # K and V of 4 KV heads of 8 dims, one layer per tile
    without, left = kv_bytes // pos_bytes, (kv_bytes - per_tile) // pos_bytes
    expect((per_tile, without, left, without // ctx, left // ctx) == (3584, 65536, 65480, 128, 127),
           f"oracle itself: {per_tile} {without} {left}")
    args = ["--model", s, "--adapter-rank", "16", "--adapter-roles", "q,v"]
    j = run_json("--no-db", "--system", SYSTEM_X2, "--prompt", "8", "--generate", "4", *args)
    for k, layers in enumerate((3, 2)):
        want = {"tensors": 2 * layers, "rank": 16, "roles": "q,v", "alpha": 16, "scale": 1, "element_bits": eb,
                "bytes_per_tile": per_tile, "bytes": per_tile * layers, "kv_bytes_per_tile_left": kv_bytes - per_tile,
                "kv_positions": left, "kv_positions_without": without, "kv_slots": left // ctx,
                "kv_slots_without": without // ctx, "kv_slots_lost": without // ctx - left // ctx}
        got = j["system"]["chips"][k]["adapter"]
        expect(got == want, f"chips[{k}].adapter {got}, by hand {want}")
        expect(j["system"]["chips"][k]["kv_positions"] == left, f"chips[{k}] KV positions")
    want = {"tensors": 10, "rank": 16, "roles": "q,v", "alpha": 16, "scale": 1, "bytes": 5 * per_tile,
            "kv_slots": left // ctx, "kv_slots_without": without // ctx, "kv_slots_lost": 1}
    expect(j["adapter"] == want and j["kv_positions"] == left, f"adapter {j['adapter']}, by hand {want}")
    out = run("run", "--no-db", "--system", SYSTEM_X2, "--prompt", "8", "--generate", "4", *args).stdout
    line = (f"adapter rank 16 on q,v: {5 * per_tile} bytes in the 2 chips' KV SRAM; KV slots, the fewest of any "
            f"chip, 128 -> 127 (1 lost); each chip's below")
    expect(line in out, f"summary lacks {line!r}: {out}")
    for k, layers in enumerate((3, 2)):
        line = (f"chip {k} adapter rank 16 on q,v: {per_tile} bytes per tile in the KV SRAM ({per_tile * layers} in "
                f"all); KV slots of {ctx} positions 128 -> 127 (1 lost), positions {without} -> {left}")
        expect(line in out, f"summary lacks {line!r}: {out}")
    e = json.loads(run("eval", "--no-db", "--json", "--records", "4", "--max-new-tokens", "2", "--no-compare",
                       "--system", SYSTEM_X2, *args).stdout)
    expect(e["adapter"] == want and [x["adapter"]["bytes"] for x in e["system"]["chips"]] == [3 * per_tile, 2 * per_tile],
           f"eval adapter {e['adapter']}, chips {[x.get('adapter') for x in e['system']['chips']]}")


def test_err_system_adapter():
    """An adapter that fits chip 0's KV SRAM but not chip 1's (a copy of the tiny chip with one KV slot and 1 kB
    more per tile): one error naming the system, chips[1] and its file, the key and the sizes; the same system
    without the adapter runs. A tensor-parallel stage refuses an adapter, naming its key."""
    s = stories()
    with tempfile.TemporaryDirectory() as tmp:
        c = json.load(open(os.path.join(DATA, "tiny-chip.json")))
        c["kv"]["bytes_per_tile"]["value"] = 32768 + 1024  # one slot of 512 positions x 64 bytes, and 1 kB
        c["name"] = "tiny-small-kv"
        small = os.path.join(tmp, "small.json")
        json.dump(c, open(small, "w"))
        sysf = json.load(open(SYSTEM_X2))
        sysf["chips"] = [{"chip": os.path.join(DATA, "tiny-chip.json"), "layers": [0, 2]},
                         {"chip": small, "layers": [3, 4]}]
        p = os.path.join(tmp, "mixed.json")
        json.dump(sysf, open(p, "w"))
        args = ["run", "--no-db", "--system", p, "--model", s, "--prompt", "8", "--generate", "2"]
        j = run_json(*args[1:])
        expect(j["system"]["chips"][1]["kv_positions"] == 33792 // 64, f"without the adapter {j['system']['chips']}")
        expect_error([*args, "--adapter-rank", "16", "--adapter-roles", "q,v"],
                     "mixed.json: chips[1] (layers 3..4 of", "small.json: key 'kv.bytes_per_tile'",
                     "the adapter (rank 16 on q,v) takes 3584 bytes of tile 0's KV SRAM of 33792 bytes",
                     "leaving 30208 bytes, less than one KV slot of 32768 bytes")
    expect_error(["run", "--no-db", "--system", os.path.join(DATA, "systems", "tiny-tp2.json"), "--prompt", "8",
                  "--generate", "2", "--adapter-rank", "4", "--adapter-roles", "q"],
                 "tiny-tp2.json", "tensor_parallel", "an adapter on a stage of 2 chips")


# the card link's budget for Llama-3.1-70B over six hc1-class-derived chips (README "The card link's budget")
def test_system_link_budget_70b():
    """The README's link budget, from the files' numbers: a token crosses len(chips) - 1 card links carrying the
    residual (hidden_size x link.elem_bits bits) and one carrying the sampled token back (link.token_id_bits); one
    user's decode tokens/s stays within 10 % of the ideal pipeline (a free link: 0 ns, 1e15 bit/s) while the links
    add at most ideal step / 0.9 - ideal step. The 1k/1k ideal step, the budget, its per-hop latency and bandwidth
    and the shipped link's cost are the README's figures; short runs (16 in / 8 out) just inside and just outside
    the budget, in latency alone and in bandwidth alone, land on the right side of 90 %, each step longer than the
    ideal by exactly the links' cycles worked out here (ceil(bits / bandwidth x clock) + ceil(latency x clock))."""
    val = lambda x: x["value"] if isinstance(x, dict) else x
    sysf = json.load(open(os.path.join(MODELS, "systems", "llama-3.1-70b-hc1.json")))
    chips = [json.load(open(os.path.normpath(os.path.join(MODELS, "systems", c["chip"])))) for c in sysf["chips"]]
    model = json.load(open(os.path.join(MODELS, "llm", val(sysf["model"]), "config.json")))
    expect(val(sysf["link"]["topology"]) == "chain", "a layer pipeline")
    links = {(val(c["link"]["elem_bits"]), val(c["link"]["token_id_bits"]), val(c["clock_hz"])) for c in chips}
    expect(len(links) == 1, f"the chips' link and clock figures differ: {links}")
    elem_bits, tok_bits, f = links.pop()
    act_bits = model["hidden_size"] * elem_bits
    hops = len(chips) - 1  # residual hops; plus one for the token back to the first chip
    expect((act_bits, hops) == (131072, 5), f"{act_bits} bits a hop, {hops} hops")
    cyc = lambda x: math.ceil(x - 1e-9)  # the simulator's ns_to_cycles: the next whole cycle

    def links_cycles(lat_ns, bw):  # a token's card-link cycles
        card = lambda bits: cyc(bits / bw * f) + cyc(lat_ns * f / 1e9)
        return hops * card(act_bits) + card(tok_bits)

    def step(prompt, gen, lat_ns, bw):  # one user's mean decode step, cycles, and decode tokens/s
        j = run_json("--no-db", "--system", "llama-3.1-70b-hc1", "--prompt", str(prompt), "--generate", str(gen),
                     "--set", f"system.link.latency_ns={lat_ns}", "--set", f"system.link.bandwidth_bits_per_s={bw}")
        return j["stream0_cycles"]["decode_total"] / (gen - 1), j["decode_tokens_per_s"]

    free = (0, 1e15)
    ideal, ideal_tps = step(1024, 1024, *free)
    budget = ideal / 0.9 - ideal  # cycles a token the links may add
    ns = lambda c: c * 1e9 / f
    expect(round(ns(ideal) / 1e3, 1) == 148.9 and round(ns(budget) / 1e3, 1) == 16.5,
           f"1k/1k ideal step {ns(ideal)} ns, budget {ns(budget)} ns (README: 148.9 and 16.5 us)")
    per_hop_us = ns(budget) / (hops + 1) / 1e3
    gbps = hops * act_bits / (ns(budget) / 1e9) / 1e9
    expect(round(per_hop_us, 2) == 2.76 and round(gbps, 1) == 39.6,
           f"budget a hop {per_hop_us} us, bandwidth {gbps} Gbit/s (README: 2.76 us, 39.6 Gbit/s)")
    shipped, shipped_tps = step(1024, 1024, val(sysf["link"]["latency_ns"]), val(sysf["link"]["bandwidth_bits_per_s"]))
    cost = links_cycles(val(sysf["link"]["latency_ns"]), val(sysf["link"]["bandwidth_bits_per_s"])) - links_cycles(*free)
    expect(abs(shipped - ideal - cost) < 1e-6 and round(1 - shipped_tps / ideal_tps, 3) == 0.028,
           f"shipped link: step {shipped} = ideal {ideal} + {cost} by hand; {1 - shipped_tps / ideal_tps} below ideal")
    # short runs: the ideal step of 16 in / 8 out, and its own budget
    ideal, ideal_tps = step(16, 8, *free)
    budget = ideal / 0.9 - ideal
    lat_edge = budget / (hops + 1) * 1e9 / f  # ns a hop at a free bandwidth
    bw_edge = hops * act_bits / (budget / f)  # bit/s at zero latency
    for lat_ns, bw, inside in ((math.floor(lat_edge), 1e15, True), (math.floor(lat_edge) + 1, 1e15, False),
                               (0, bw_edge * 1.01, True), (0, bw_edge * 0.99, False)):
        added = links_cycles(lat_ns, bw) - links_cycles(*free)
        expect((added <= budget) == inside, f"by hand: {added} cycles at {lat_ns} ns, {bw} bit/s, budget {budget}")
        got, tps = step(16, 8, lat_ns, bw)
        expect(abs(got - ideal - added) < 1e-6, f"{lat_ns} ns, {bw:.4g} bit/s: step {got}, by hand {ideal} + {added}")
        expect((tps >= 0.9 * ideal_tps) == inside,
               f"{lat_ns} ns, {bw:.4g} bit/s: {tps / ideal_tps:.5f} of the ideal, expected {'at least' if inside else 'under'} 0.9")


# ---- tokenizer settings from the file (issue 21: special tokens, add_bos_token, tokenizer.ggml.pre) ----

def gpt2_byte_chars():
    """GPT-2's byte-to-character map (bytes_to_unicode): printable Latin-1 bytes stand for themselves, the rest
    take the characters from U+0100 on, in byte order."""
    bs = list(range(0x21, 0x7F)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    cs, n = bs[:], 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in zip(bs, cs)}


def bpe_vocab_gguf(path, pre, add_bos=None):
    """A tiny gpt2-model vocabulary GGUF: the 256 bytes in GPT-2 form, "hi" (merge "h i"), <|eot_id|> (control)."""
    import struct
    char = gpt2_byte_chars()
    tokens = [char[b] for b in range(256)] + ["hi", "<|eot_id|>"]
    types = [1] * 257 + [3]
    arr = lambda et, items: struct.pack("<IQ", et, len(items)) + b"".join(items)
    kvs = [("tokenizer.ggml.model", 8, gguf_str("gpt2")), ("tokenizer.ggml.pre", 8, gguf_str(pre)),
           ("tokenizer.ggml.tokens", 9, arr(8, [gguf_str(t) for t in tokens])),
           ("tokenizer.ggml.token_type", 9, arr(5, [struct.pack("<i", t) for t in types])),
           ("tokenizer.ggml.merges", 9, arr(8, [gguf_str("h i")])),
           ("tokenizer.ggml.bos_token_id", 4, struct.pack("<I", 0x21)),
           ("tokenizer.ggml.eos_token_id", 4, struct.pack("<I", 257))]
    if add_bos is not None:
        kvs.append(("tokenizer.ggml.add_bos_token", 7, bytes([add_bos])))
    gguf_write(path, kvs, 0, b"", b"")
    return path


def test_tokenizer_file_settings():
    """eval's token counts follow the vocabulary file: a control token written in the rule is one token, BOS
    counts only when the file adds it (llama-bpe by default, gpt-2 not, add_bos_token overriding), and an
    unknown pre-tokenizer is one error naming the file, the key and the names known."""
    with tempfile.TemporaryDirectory() as tmp:
        tpl = os.path.join(tmp, "t.txt")
        with open(tpl, "w") as f:
            f.write("{rule}{record}")
        ev = ["--no-db", "--no-compare", "--records", "3", "--template", tpl]
        counts = {}
        for name, pre, add_bos in (("l3", "llama-bpe", None), ("g2", "gpt-2", None), ("g2b", "gpt-2", 1),
                                   ("l3n", "llama-bpe", 0)):
            v = bpe_vocab_gguf(os.path.join(tmp, name + ".gguf"), pre, add_bos)
            j, _ = eval_json(*ev, "--rule", "hi<|eot_id|>", "--vocab", v)
            counts[name] = j["rule_tokens"]
        # "hi" (one merge) + <|eot_id|> (one control token, not its 10 bytes), plus BOS where the file adds it
        expect(counts == {"l3": 3, "g2": 2, "g2b": 3, "l3n": 2}, f"rule tokens {counts}")
        bad = bpe_vocab_gguf(os.path.join(tmp, "qwen.gguf"), "qwen2")
        expect_error(["eval", *ev, "--rule", "x", "--vocab", bad], "qwen.gguf", "metadata 'tokenizer.ggml.pre'",
                     "unknown pre-tokenizer 'qwen2'", "known: llama-bpe, llama3, llama-v3, gpt-2, smollm")


def bpe_weights_gguf(path, ranks, pre):
    """scripts/lib/bpe-fixtures.mjs's vocabulary file for `pre` ("llama-bpe" or "gpt-2") with the random weights
    scripts/lib/bpe-weights-fixtures.mjs writes into it, rebuilt here from the tiktoken ranks (list of bytes):
    tokens in GPT-2 form, Llama 3.1's 256 special tokens (gpt-2: ChatML renames), merges derived from the ranks
    as Hugging Face's TikTokenConverter (bpe-fixtures.mjs checks they are the package's), splitmix64 weights."""
    import struct
    from array import array
    char = gpt2_byte_chars()
    form = lambda b: "".join(char[x] for x in b)
    named = ["<|begin_of_text|>", "<|end_of_text|>", "<|reserved_special_token_0|>", "<|reserved_special_token_1|>",
             "<|finetune_right_pad_id|>", "<|reserved_special_token_2|>", "<|start_header_id|>", "<|end_header_id|>",
             "<|eom_id|>", "<|eot_id|>", "<|python_tag|>"]
    specials = named + [f"<|reserved_special_token_{i - 8}|>" for i in range(11, 256)]
    types = [1] * len(ranks) + [3] * 256
    if pre == "gpt-2":
        specials[2], specials[3], specials[5], specials[12] = "<|im_start|>", "<|im_end|>", "<tool_call>", "<|im_start|>tool"
        types[len(ranks) + 5] = 4
    tokens = [form(b) for b in ranks] + specials
    rank = {b: i for i, b in enumerate(ranks)}
    merges = []
    for r, b in enumerate(ranks):
        local = sorted((rank[b[:i]], rank[b[i:]]) for i in range(1, len(b)) if b[:i] in rank and b[i:] in rank)
        merges += [tokens[a] + " " + tokens[c] for a, c in local]
    u32 = lambda v: struct.pack("<I", v)
    arr = lambda et, items: struct.pack("<IQ", et, len(items)) + b"".join(items)
    kvs = [("general.architecture", 8, gguf_str("llama")), ("llama.context_length", 4, u32(64)),
           ("llama.embedding_length", 4, u32(8)), ("llama.block_count", 4, u32(1)),
           ("llama.feed_forward_length", 4, u32(16)), ("llama.attention.head_count", 4, u32(1)),
           ("llama.attention.layer_norm_rms_epsilon", 6, struct.pack("<f", 1e-5)),
           ("tokenizer.ggml.model", 8, gguf_str("gpt2")), ("tokenizer.ggml.pre", 8, gguf_str(pre)),
           ("tokenizer.ggml.tokens", 9, arr(8, [gguf_str(t) for t in tokens])),
           ("tokenizer.ggml.token_type", 9, arr(5, [struct.pack("<i", t) for t in types])),
           ("tokenizer.ggml.merges", 9, arr(8, [gguf_str(m) for m in merges])),
           ("tokenizer.ggml.bos_token_id", 4, u32(128000)),
           ("tokenizer.ggml.eos_token_id", 4, u32(128009 if pre == "llama-bpe" else 128001))]
    if pre == "gpt-2":
        kvs.append(("tokenizer.ggml.add_bos_token", 7, b"\x01"))
    kvs += [("llama.attention.head_count_kv", 4, u32(1)), ("llama.rope.dimension_count", 4, u32(8)),
            ("llama.vocab_size", 4, u32(len(tokens)))]
    shapes = [("token_embd.weight", [8, len(tokens)]), ("output_norm.weight", [8]), ("blk.0.attn_norm.weight", [8]),
              ("blk.0.attn_q.weight", [8, 8]), ("blk.0.attn_k.weight", [8, 8]), ("blk.0.attn_v.weight", [8, 8]),
              ("blk.0.attn_output.weight", [8, 8]), ("blk.0.ffn_norm.weight", [8]), ("blk.0.ffn_gate.weight", [8, 16]),
              ("blk.0.ffn_up.weight", [8, 16]), ("blk.0.ffn_down.weight", [16, 8])]
    M, st = (1 << 64) - 1, 0x2026120600000021
    info, data = b"", b""
    for name, ne in shapes:
        count = 1
        for d in ne:
            count *= d
        vals = array("f")
        for _ in range(count):
            st = (st + 0x9E3779B97F4A7C15) & M
            z = ((st ^ (st >> 30)) * 0xBF58476D1CE4E5B9) & M
            z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M
            d = (((z ^ (z >> 31)) >> 40) / 16777216 * 2 - 1)
            vals.append(1 + 0.2 * d if "norm" in name else 0.5 * d)
        k = name.encode()
        info += struct.pack("<Q", len(k)) + k + struct.pack("<I", len(ne)) + b"".join(struct.pack("<Q", d) for d in ne)
        info += struct.pack("<IQ", 0, len(data))
        data += vals.tobytes() + b"\0" * (-len(vals.tobytes()) % 32)
    gguf_write(path, kvs, len(shapes), info, data)


def test_bpe_random_weights():
    """Greedy tokens equal and logits within 1e-4 of llama.cpp's (tests/data/bpe-weights-fixtures.json) on the
    Llama 3 vocabulary with random small F32 weights, as Llama 3.1 instruct (llama-bpe) and as ChatML (gpt-2,
    add_bos_token true): the chat prompt's ids with its control tokens parsed and BOS once, then 8 greedy tokens."""
    import base64
    vocab = os.path.join(MODELS, "llm", "llama-3.1-8b", "tokenizer.tiktoken")
    if not os.path.exists(vocab):
        raise Skip("no tokenizer.tiktoken (run scripts/fetch-vocab)")
    with open(vocab, "rb") as f:
        ranks = [base64.b64decode(line.split()[0]) for line in f]
    with open(os.path.join(DATA, "bpe-weights-fixtures.json")) as f:
        fx = json.load(f)
    with tempfile.TemporaryDirectory() as tmp:
        for r in fx["runs"]:
            model = os.path.join(tmp, r["pre"] + ".gguf")
            bpe_weights_gguf(model, ranks, r["pre"])
            text = r["prompt"]
            if text.startswith("<|begin_of_text|>"):  # etchsim adds BOS, as the file says
                text = text[len("<|begin_of_text|>"):]
            lf = os.path.join(tmp, "logits.json")
            j = json.loads(run("infer", "--model", model, "--text", text, "--generate", "8", "--json", "--logits", lf).stdout)
            expect(j["prompt_ids"] == r["prompt_ids"], f"{r['pre']}: prompt ids {j['prompt_ids']} != {r['prompt_ids']}")
            expect(j["output_ids"] == r["output_ids"], f"{r['pre']}: greedy {j['output_ids']} != {r['output_ids']}")
            with open(lf) as f:
                lg = json.load(f)
            n, worst = len(r["prompt_ids"]), 0.0
            for k, s in enumerate(r["steps"]):
                row = lg[n - 1 + k]["logits"]
                worst = max([worst] + [abs(row[t] - v) for t, v in s["top"]] +
                            [abs(row[i * 4099] - v) for i, v in enumerate(s["sampled"])])
            expect(worst <= 1e-4, f"{r['pre']}: logits differ from llama.cpp's by up to {worst}")


# --- issue 21: chat templates (--chat) and verdicts that stop at the end of the answer (--stop-at-eos) ---

def llama3_vocab():
    v = os.path.join(MODELS, "llm", "llama-3.1-8b", "tokenizer.tiktoken")
    if not os.path.isfile(v):
        raise Skip(f"{v} absent (run scripts/fetch-vocab)")
    return v


def gguf_tokens(kvs):
    """tokenizer.ggml.tokens of gguf_read's metadata, as a list of str."""
    import struct
    raw = next(r for k, t, r in kvs if k == "tokenizer.ggml.tokens")
    n, p, out = struct.unpack_from("<IQ", raw, 0)[1], 12, []
    for _ in range(n):
        ln = struct.unpack_from("<Q", raw, p)[0]
        out.append(raw[p + 8:p + 8 + ln].decode())
        p += 8 + ln
    return out


def gguf_tokens_raw(toks):
    import struct
    b = struct.pack("<IQ", 8, len(toks))
    for x in toks:
        b += gguf_str(x)
    return b


def stories_meta(path, edit, add=()):
    """stories260K.gguf with metadata values replaced (edit: {key: raw bytes}) and added (add: [(key, type, raw)])."""
    kvs, n_t, info, data = gguf_read(stories())
    kvs = [(k, t, edit.get(k, r)) for k, t, r in kvs] + list(add)
    gguf_write(path, kvs, n_t, info, data)
    return path


def test_eval_chat_demo():
    """The demo in the Llama 3.1 chat format by default (the Llama 3 vocabulary has one): its shared prefix is the 45
    tokens test_chat derives by hand (BOS, the system turn with its Cutting Knowledge Date lines, the user header and
    the rule), not the plain template's 16 (BOS and the rule), and every record gains the 5 tokens after its text
    (<|eot_id|>, the assistant's header, "\n\n"); --no-chat gives the plain template's figures."""
    llama3_vocab()
    chat = json.loads(run("eval", "--json", "--no-db", "--records", "40").stdout)
    plain = json.loads(run("eval", "--json", "--no-db", "--records", "40", "--no-chat").stdout)
    same = json.loads(run("eval", "--json", "--no-db", "--records", "40", "--chat").stdout)
    expect(chat["chat"] == "llama-3.1" and plain["chat"] is None, f"chat {chat['chat']}, plain {plain['chat']}")
    expect(chat["rule_tokens"] == 45 and plain["rule_tokens"] == 16, f"prefix {chat['rule_tokens']} / {plain['rule_tokens']}")
    expect(abs(chat["record_tokens_mean"] - plain["record_tokens_mean"] - 5) < 1e-9,
           f"records {chat['record_tokens_mean']} vs {plain['record_tokens_mean']}")
    expect(same["batch_ns"] == chat["batch_ns"] and same["rule_tokens"] == 45, "--chat is the demo's default")
    n = chat["records_done"]
    # without sharing every record prefills its whole prompt; with it, the prefix once and each record's suffix
    expect(chat["prefill_token_passes"] == 45 + round(n * chat["record_tokens_mean"]) and
           chat["prefix_sharing"]["prefill_token_passes_without"] == round(n * (45 + chat["record_tokens_mean"])),
           f"passes {chat['prefill_token_passes']}, without {chat['prefix_sharing']}")
    expect(chat["batch_ns"] > plain["batch_ns"], f"a longer prompt takes longer: {chat['batch_ns']} vs {plain['batch_ns']}")
    expect_error(["eval", "--chat", "--no-chat"], "--chat or --no-chat", code=2)


def test_chat_errors():
    """--chat on a model without a chat format (stories260K has no tokenizer.chat_template), on a template of no known
    family, on a Llama 3 template whose tokens the vocabulary lacks, a template placeholder the data lacks, and
    run --chat without --text: each one error naming what is wrong."""
    model = stories()
    chip = os.path.join(DATA, "tiny-chip.json")
    with tempfile.TemporaryDirectory() as tmp:
        data = os.path.join(tmp, "d.csv")
        write_csv(data, ["1,a red ball", "2,a blue cup"])
        ev = ["eval", "--no-db", "--model", model, "--chip", chip, "--data", data, "--rule", "Is it red?"]
        expect_error([*ev, "--vocab", model, "--chat"], "stories260K.gguf", "no metadata 'tokenizer.chat_template'",
                     "no chat format")
        expect_error(["infer", "--model", model, "--text", "hi", "--chat"], "no metadata 'tokenizer.chat_template'")
        odd = stories_meta(os.path.join(tmp, "odd.gguf"), {}, [("tokenizer.chat_template", 8, gguf_str(
            "{% for m in messages %}[{{ m.role }}] {{ m.content }}{% endfor %}"))])
        expect_error([*ev, "--vocab", odd, "--chat"], "odd.gguf", "'tokenizer.chat_template'", "not known here",
                     "[{{ m.role }}]", "Llama 3", "ChatML")
        l3 = stories_meta(os.path.join(tmp, "l3.gguf"), {}, [("tokenizer.chat_template", 8, gguf_str(
            "{{ '<|start_header_id|>' + m.role + '<|end_header_id|>\\n\\n' + m.content + '<|eot_id|>' }}"))])
        expect_error(["infer", "--model", l3, "--text", "hi", "--chat"], "l3.gguf", "llama-3 chat format",
                     "<|start_header_id|>")
        tmpl = put_file(tmp, "t.txt", "{rule}\n{field:colour}\n")
        expect_error([*ev, "--vocab", model, "--template", tmpl, "--no-chat"], "d.csv", "no field 'colour'")
        expect_error(["run", *TINY, "--mode", "functional", "--synthetic", "1", "--chat"], "give --text", code=2)
        expect_error([*ev, "--stop-at-eos"], "--stop-at-eos needs --mode functional", code=2)


def test_chat_chatml_ids():
    """A GGUF whose chat template is ChatML with a default system message written in it: infer --chat's (and
    run --chat's) prompt ids are <|im_start|>, "system\nYou are a helpful assistant.", <|im_end|>, "\n", <|im_start|>, "user\n" + the text,
    <|im_end|>, "\n", <|im_start|>, "assistant\n" -- the control tokens by their ids in the file, each text encoded
    on its own (as infer encodes plain text, less its BOS); and eval --chat's shared prefix is the same start."""
    kvs, _, _, _ = gguf_read(stories())
    toks = gguf_tokens(kvs)
    start, end = 500, 501  # two rare pieces become the control tokens
    toks[start], toks[end] = "<|im_start|>", "<|im_end|>"
    tmpl = ("{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
            "{{ '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}{% endif %}"
            "{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}"
            "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}")
    with tempfile.TemporaryDirectory() as tmp:
        m = stories_meta(os.path.join(tmp, "chatml.gguf"), {"tokenizer.ggml.tokens": gguf_tokens_raw(toks)},
                         [("tokenizer.chat_template", 8, gguf_str(tmpl))])

        def ids(text, chat=False):
            j = json.loads(run("infer", "--model", m, "--text", text, "--generate", "1", "--json",
                               *(["--chat"] if chat else [])).stdout)
            return j["prompt_ids"]
        plain = lambda t: ids(t)[1:]  # less BOS
        text = " Tom has a red ball. "
        want = ([start] + plain("system\nYou are a helpful assistant.") + [end] + plain("\n") + [start] +
                plain("user\n" + text) + [end] + plain("\n") + [start] + plain("assistant\n"))
        got = ids(text, chat=True)
        expect(got == want, f"chatml ids {got}, by hand {want}")
        r = json.loads(run("run", "--json", "--no-db", "--model", m, "--chip", os.path.join(DATA, "tiny-chip.json"),
                           "--mode", "functional", "--weights", m, "--text", text, "--chat", "--generate", "2").stdout)
        expect(r["functional"]["prompt_ids"] == want and r["prompt_tokens"] == len(want),
               f"run --chat ids {r['functional']['prompt_ids']}, by hand {want}")
        data = os.path.join(tmp, "d.csv")
        write_csv(data, ["1,a red ball"])
        j = json.loads(run("eval", "--json", "--no-db", "--model", m, "--chip", os.path.join(DATA, "tiny-chip.json"),
                           "--vocab", m, "--data", data, "--rule", "Is it red?", "--chat").stdout)
        pre = [start] + plain("system\nYou are a helpful assistant.") + [end] + plain("\n") + [start] + \
            plain("user\nIs it red?\n\nRecord:\n")
        expect(j["chat"] == "chatml" and j["rule_tokens"] == len(pre), f"eval prefix {j['rule_tokens']}, by hand {len(pre)}")


def test_verdict_stops_at_eos():
    """The verdict reads the output up to its first end-of-generation token. stories260K answers two of the demo's
    first three records '"Hey!" is ...': with --labels is,Hey the whole output says 'is' (the first label). Make '!'
    (id 443) the end-of-sequence token: those answers end after "Hey, so they count as Hey, although the text after
    the end still holds 'is' -- as an answer OK, then <|eot_id|>, then FLAG counts OK. Generation stays fixed-length
    (the same time and tokens) unless --stop-at-eos, which ends those two records at their '!', earlier; on the
    unchanged model (no EOS among the tokens generated) --stop-at-eos changes nothing."""
    model = stories()
    chip = os.path.join(DATA, "tiny-chip.json")
    with tempfile.TemporaryDirectory() as tmp:
        toks = gguf_tokens(gguf_read(model)[0])
        expect(toks[443] == "!", f"token 443 is {toks[443]!r}")
        import struct
        bang = stories_meta(os.path.join(tmp, "bang.gguf"), {"tokenizer.ggml.eos_token_id": struct.pack("<I", 443)})

        def ev(m, *extra):
            db = os.path.join(tmp, f"e{len(os.listdir(tmp))}.sqlite")
            j = json.loads(run("eval", "--json", "--db", db, "--model", m, "--chip", chip, "--mode", "functional",
                               "--weights", m, "--vocab", m, "--records", "3", "--max-new-tokens", "8",
                               "--labels", "is,Hey", *extra).stdout)
            con = sqlite3.connect(db)
            rows = con.execute("SELECT output_text, verdict, output_tokens FROM records ORDER BY record").fetchall()
            con.close()
            return j, rows
        base, brows = ev(model)
        expect(base["verdicts"] == {"is": 2, "Hey": 0, "other": 1}, f"stories260K's verdicts {base['verdicts']}")
        cut, crows = ev(bang)
        expect(cut["verdicts"] == {"is": 0, "Hey": 2, "other": 1}, f"cut at '!': {cut['verdicts']}")
        expect([r[0] for r in crows] == [r[0] for r in brows] and sum("!" in r[0] and " is" in r[0] for r in crows) == 2,
               f"the same outputs, 'is' after the end: {crows}")
        expect(cut["batch_ns"] == base["batch_ns"] and cut["output_tokens"] == base["output_tokens"] == 24,
               f"fixed length: {cut['batch_ns']} vs {base['batch_ns']}")
        stop, srows = ev(bang, "--stop-at-eos")
        n_out = [r[2] for r in srows]
        expect(stop["stop_at_eos"] and stop["verdicts"] == cut["verdicts"], f"--stop-at-eos verdicts {stop['verdicts']}")
        expect(n_out[0] == 8 and all(2 <= k < 8 for k in n_out[1:]) and stop["output_tokens"] == sum(n_out),
               f"records stop at their own end: {n_out}, {stop['output_tokens']}")
        expect(all(r[0].endswith("!") for r in srows[1:]), f"each ends at its '!': {srows}")
        expect(stop["batch_ns"] < cut["batch_ns"], f"--stop-at-eos: {stop['batch_ns']} ns, fixed {cut['batch_ns']} ns")
        same, _ = ev(model, "--stop-at-eos")
        expect(same["batch_ns"] == base["batch_ns"] and same["output_tokens"] == 24,
               f"no EOS produced: {same['batch_ns']} vs {base['batch_ns']}")



# --- issue 22: functional mode at the memory limit (packed weights, threads)

def test_functional_threads():
    """run --mode functional --threads N: 1 and 2 host threads give the same tokens and the same logits at
    every position, bit for bit (rows split whole between threads); --threads outside functional mode and out of
    range are refused by name."""
    model = stories()
    chip = os.path.join(DATA, "tiny-chip.json")
    with tempfile.TemporaryDirectory() as tmp:
        out = []
        for t in ("1", "2"):
            lf = os.path.join(tmp, f"l{t}.json")
            j = json.loads(run("run", "--json", "--no-db", "--model", model, "--chip", chip, "--mode", "functional",
                               "--synthetic", "5", "--prompt", "12", "--generate", "6", "--threads", t,
                               "--logits", lf).stdout)
            out.append((j["functional"]["output_ids"], open(lf).read()))
        expect(len(out[0][0]) == 6 and out[0] == out[1], f"threads 1 and 2 differ: {out[0][0]} {out[1][0]}")
    expect_error(("run", "--no-db", "--model", model, "--chip", chip, "--threads", "2"),
                 "--threads need --mode functional", code=2)
    expect_error(("run", "--no-db", "--model", model, "--chip", chip, "--mode", "functional", "--synthetic", "5",
                  "--threads", "0"), "--threads", code=2)


# ---- expert-parallel stages with clocks, tile.sync_step, adapters, eval, the KV bound (issue 20; h/ep20) ----
def ep_expert_chain_by_hand():
    """One routed expert's chain (gate, up, SiLU x up, down) for one token on a chip of tiny-moe-ep2's stage holding 8
    of the 16 experts, in its cycles, from tiny-chip.json and tiny-moe's config: each expert's partition has the share
    of layer 0's lane cells its gate, up and down hold (attention, router and 8 experts; int3 a cell an element, int6
    two), floor(lanes x share) lanes and floor(banks x share) ROM banks; a matvec takes its cells over its lanes or its
    bits (3.25 a weight: a 16-bit scale per 64) over its banks' rows, whichever is longer, plus the ROM's read latency
    and the lanes' pipeline; the SiLU x up ceil(F / vector width) plus the vector latency."""
    chip = json.load(open(os.path.join(DATA, "tiny-chip.json")))
    moe = json.load(open(os.path.join(DATA, "tiny-moe", "config.json")))
    v = lambda n: n["value"] if isinstance(n, dict) else n
    H, F, E = moe["hidden_size"], moe["intermediate_size"], moe["num_experts"]
    KV = moe["num_key_value_heads"] * (H // moe["num_attention_heads"])
    w = chip["weights"]
    bits = lambda role: {"int3": 3, "int6": 6}[v((w["roles"].get(role) or w["default"])["format"])]
    cb = v(chip["tile"]["lanes"]["cell_bits"])
    cells = lambda role, r, c: r * c * -(-bits(role) // cb)
    expert = cells("ffn_gate", F, H) + cells("ffn_up", F, H) + cells("ffn_down", H, F)
    total = (cells("attn_q", H, H) + cells("attn_k", KV, H) + cells("attn_v", KV, H) + cells("attn_o", H, H) +
             cells("router", E, H) + (E // 2) * expert)
    lanes = v(chip["tile"]["lanes"]["count"]) * expert // total
    banks = v(chip["tile"]["rom"]["banks"]) * expert // total
    lat = v(chip["tile"]["rom"]["read_latency_cycles"]) + v(chip["tile"]["lanes"]["pipeline_depth"])
    row_bits = v(chip["tile"]["rom"]["row_bits"])
    mv = lambda role, r, c: max(-(-cells(role, r, c) // lanes),
                                -(-(r * c * bits(role) + r * c // 64 * 16) // (banks * row_bits))) + lat
    vec = -(-F // v(chip["tile"]["vector"]["elems_per_cycle"])) + v(chip["tile"]["vector"]["latency_cycles"])
    return mv("ffn_gate", F, H) + mv("ffn_up", F, H) + vec + mv("ffn_down", H, F)


def ep_system(tmp, name, chips):
    """tiny-moe-ep2 with each of its four chips' files given (tiny-chip.json, or a copy of it with `clock_hz` and
    `tile.sync_step` set): the path of the system file written in tmp."""
    base = json.load(open(os.path.join(DATA, "tiny-chip.json")))
    sysf = json.load(open(SYSTEM_EP2))
    sysf["model"] = os.path.join(DATA, "tiny-moe")
    for k, (hz, sync) in enumerate(chips):
        c = json.loads(json.dumps(base))
        c["name"] = f"tiny-{k}"
        c["clock_hz"] = {"value": hz, "source": "test fixture"}
        c["tile"]["sync_step"] = {"value": sync, "source": "test fixture"}
        path = os.path.join(tmp, f"{name}-chip{k}.json")
        json.dump(c, open(path, "w"))
        sysf["chips"][k]["chip"] = path
    p = os.path.join(tmp, name + ".json")
    json.dump(sysf, open(p, "w"))
    return p


def ep_route(tmp, experts):
    path = os.path.join(tmp, "route-" + "-".join(map(str, experts)) + ".txt")
    with open(path, "w") as f:
        f.write(" ".join(map(str, experts)) + "\n")
    return "replay:" + path


def test_ep_clocks_hand():
    """An expert-parallel stage whose chips have different clocks: chip 1 (holding the sequence) at 1 GHz, chip 2 at
    2 GHz. Each chip counts its own cycles and the all-to-all converts between clocks as a card link does: per MoE
    layer, a token whose experts are both on chip 2 costs chip 1's dispatch (ceil(4096 bits / 10 Gbit/s x 1 GHz) =
    410 + 1000 cycles), then on chip 2's clock the expert chain (ep_expert_chain_by_hand: 180 cycles) and chip 2's
    combine (ceil(4096 / 10 Gbit/s x 2 GHz) = 820 + 2000 cycles), back on chip 1's clock (its first edge at or after:
    ceil(x / 2)), instead of the 180-cycle chain on chip 1: 1410 + ceil(3000 / 2) - 180 = 2730 cycles a layer, 5460
    for the stage's two (5640 with both chips at 1 GHz, test_ep_step_hand). The analytic step adds its expected
    share, 1 - (8 x 7) / (16 x 15) of it, exactly (chip 1's period is a whole multiple of chip 2's). With chips 0, 2
    and 3 at 2 GHz and chip 1 at 1 GHz the same 2730 of chip 1's cycles a layer are twice as many of the run's (chip
    0's), and the analytic step, walking the card hops and switches between clocks, still agrees exactly."""
    C = ep_expert_chain_by_hand()
    sysf = json.load(open(SYSTEM_EP2))
    v = lambda n: n["value"] if isinstance(n, dict) else n
    bw, lat_ns = v(sysf["link"]["bandwidth_bits_per_s"]), v(sysf["link"]["latency_ns"])
    bits = 256 * 16
    hop = lambda hz: math.ceil(bits / bw * hz) + math.ceil(lat_ns * hz / 1e9)
    layer = hop(1e9) + -(-(C + hop(2e9)) // 2) - C
    expect((C, hop(1e9), hop(2e9), layer) == (180, 1410, 2820, 2730), f"hand: chain {C}, hops {hop(1e9)} {hop(2e9)}")
    with tempfile.TemporaryDirectory() as tmp:
        p = ep_system(tmp, "clk", [(1e9, False), (1e9, False), (2e9, False), (1e9, False)])
        base = ["--no-db", "--system", p, "--set", "tile.rom.rows=128", "--prompt", "8", "--generate", "4"]
        local = run_json(*base, "--routing", ep_route(tmp, [0, 1]))
        remote = run_json(*base, "--routing", ep_route(tmp, [8, 9]))
    for k in ("decode_first", "decode_last"):
        a, b = local["stream0_cycles"][k], remote["stream0_cycles"][k]
        expect(b - a == 2 * layer, f"{k}: local {a}, remote {b} cycles; by hand +{2 * layer}")
    share = 1 - (8 * 7) / (16 * 15)
    for j in (local, remote):
        an = j["analytic_stream0_cycles"]["decode_first"]
        expect(an == local["stream0_cycles"]["decode_first"] + round(share * 2 * layer),
               f"analytic {an}, simulated local {local['stream0_cycles']['decode_first']} + share of {2 * layer}")
    chips = remote["system"]["chips"]
    expect([c["clock_hz"] for c in chips] == [1e9, 1e9, 2e9, 1e9] and chips[2]["cycles"] == 2 * chips[1]["cycles"],
           f"each chip's own cycles: {[(c['clock_hz'], c['cycles']) for c in chips]}")
    # the other chips at 2 GHz and chip 1 at 1 GHz: items reach chip 1 through the switches on its clock and leave it on
    # chip 3's; the run counts chip 0's cycles (2 GHz), each of chip 1's two
    with tempfile.TemporaryDirectory() as tmp:
        p = ep_system(tmp, "clk2", [(2e9, False), (1e9, False), (2e9, False), (2e9, False)])
        base = ["--no-db", "--system", p, "--set", "tile.rom.rows=128", "--prompt", "8", "--generate", "4"]
        local = run_json(*base, "--routing", ep_route(tmp, [0, 1]))
        remote = run_json(*base, "--routing", ep_route(tmp, [8, 9]))
    for k in ("decode_first", "decode_last"):
        a, b = local["stream0_cycles"][k], remote["stream0_cycles"][k]
        expect(b - a == 2 * 2 * layer, f"{k}: local {a}, remote {b} cycles of 2 GHz; by hand +{4 * layer}")
    an = local["analytic_stream0_cycles"]["decode_first"]
    expect(an == local["stream0_cycles"]["decode_first"] + 2 * round(share * 2 * layer),
           f"analytic {an}, simulated local {local['stream0_cycles']['decode_first']} + 2 x share of {2 * layer}")


def test_ep_sync_step():
    """tile.sync_step on a system with an expert-parallel stage. The chips of the first stage setting it form the
    steps (each its own batch: its first tile takes no new pass until the tokens it sent on are back); a barrier on
    two chips in series could wait on each other (chip 0 holding B's token until A's is back, chip 3 holding A's
    until B's is back), which ran forever before. The stage's chips (1 GHz and 2 GHz) each step the one sequence they
    hold: with two streams, one on each, stream 0's steps are exactly those without tile.sync_step; with four, two
    on each, the steps wait for the pair (longer). With every chip setting it, chip 0 forms the steps, and the runs
    finish with every token."""
    with tempfile.TemporaryDirectory() as tmp:
        plain = ep_system(tmp, "plain", [(1e9, False), (1e9, False), (2e9, False), (1e9, False)])
        stage = ep_system(tmp, "stage", [(1e9, False), (1e9, True), (2e9, True), (1e9, False)])
        every = ep_system(tmp, "every", [(1e9, True), (1e9, True), (2e9, True), (1e9, True)])
        r = ep_route(tmp, [8, 9])
        go = lambda p, n: run_json("--no-db", "--system", p, "--set", "tile.rom.rows=128", "--prompt", "8",
                                   "--generate", "6", "--streams", str(n), "--routing", r)
        a, b = go(plain, 2), go(stage, 2)
        expect(a["stream0_cycles"] == b["stream0_cycles"] and a["tokens"] == b["tokens"] == 12,
               f"one sequence a chip: {a['stream0_cycles']} without, {b['stream0_cycles']} with tile.sync_step")
        expect([c["kv_max_used"] for c in b["system"]["chips"]][1:3] == [14, 14], f"{b['system']['chips']}")
        a, b = go(plain, 4), go(stage, 4)
        expect(b["tokens"] == 24 and b["stream0_cycles"]["decode_total"] > a["stream0_cycles"]["decode_total"],
               f"two a chip: {a['stream0_cycles']} without, {b['stream0_cycles']} with")
        for n in (2, 4):
            j = go(every, n)
            expect(j["tokens"] == 6 * n, f"every chip with tile.sync_step, {n} streams: {j['tokens']} tokens")


def test_eval_system_matches_run():
    """eval on a system of chips simulates the same pipeline as run: on the expert-parallel tiny-moe-ep2 (which eval
    refused before: its default prefix sharing is not modelled on an expert-parallel stage, so a system with one
    evaluates without it, "prefix_sharing.enabled" false) and on the layer split tiny-x2 (stories260K,
    --no-prefix-sharing),
    four records of one length take exactly the time and energy of run's four streams of that prompt, with the same
    KV positions (the system's) and each chip's KV held, link tokens and joules alike."""
    s = stories()
    with tempfile.TemporaryDirectory() as tmp:
        data = os.path.join(tmp, "u.csv")
        write_csv(data, [f"R{i:05d},{'y' * 40}" for i in range(4)])
        for sysargs, extra in (([SYSTEM_EP2, "--set", "tile.rom.rows=128"], []),
                               ([SYSTEM_X2, "--model", s], ["--no-prefix-sharing"])):
            e, _ = eval_json("--no-db", "--no-compare", "--system", *sysargs, "--data", data, "--rule", "Is it fine?",
                             "--max-new-tokens", "4", *extra)
            expect(e["records_done"] == 4 and e["prefix_sharing"]["enabled"] is False,
                   f"{sysargs[0]}: {e['records_done']}")
            P = e["rule_tokens"] + e["record_tokens_mean"]
            expect(P == int(P), f"records of one length: {P}")
            r = run_json("--no-db", "--system", *sysargs, "--prompt", str(int(P)), "--generate", "4", "--streams", "4")
            expect(e["batch_ns"] == r["cycles"] * 1e9 / r["clock_hz"] and e["output_tokens"] == r["tokens"] == 16,
                   f"{sysargs[0]}: eval {e['batch_ns']} ns, run {r['cycles']} cycles at {r['clock_hz']}")
            expect(abs(e["energy_j"] - r["energy_j"]) <= 1e-12 * r["energy_j"],
                   f"energy {e['energy_j']} {r['energy_j']}")
            expect(e["kv_positions"] == r["kv_positions"] and e["kv_max_used"] == r["kv_max_used"],
                   f"KV: eval {e['kv_positions']} {e['kv_max_used']}, run {r['kv_positions']} {r['kv_max_used']}")
            pick = lambda j: [(c["kv_positions"], c["kv_max_used"], c["dynamic_j"]) for c in j["system"]["chips"]]
            links = lambda j: [(l["unit"], l["tokens"]) for l in j["system"]["links"]]
            expect(pick(e) == pick(r) and links(e) == links(r),
                   f"chips {pick(e)} vs {pick(r)}; {links(e)} vs {links(r)}")


def test_ep_kv_bound():
    """The KV bound of an expert-parallel stage, each of its E chips holding its sequences whole (on the chip with the
    most positions free): sum(kv_cap) - (E - 1) x (L - 1), L the most positions one request holds (a list's longest;
    eval: its context window, min(kv.slot_context) of the chips). Chips 1 and 2 with 120 positions each
    (kv.bytes_per_tile 120 x 512 bytes: K and V of 256 dims at 8 bits, one layer a tile), the ends with 8192,
    kv.slot_context 60: by hand 240 - 59 = 181. Four records of 40 positions, then one of 60: the four alternate
    between chips 1 and 2 (80 each, 40 free on each); the fifth waits for one to finish (160 + 60 > 181), the
    first, on chip 1, and then goes there: chips 1 and 2 held at most 100 and 80, the ends 3 x 40 + 60 = 180.
    Counted in whole sequences of L, as before (2 x 2 x 60 = 240), it was admitted at once and overflowed chip 1's
    KV. The run's bound is the same
    formula with L its requests' length: six streams of 40 positions, 240 - 39 = 201, five in flight."""
    with tempfile.TemporaryDirectory() as tmp:
        p = ep_system(tmp, "kv", [(1e9, False)] * 4)
        sysf = json.load(open(p))
        for k in (1, 2):
            c = json.load(open(sysf["chips"][k]["chip"]))
            c["kv"]["bytes_per_tile"]["value"] = 120 * 512
            json.dump(c, open(sysf["chips"][k]["chip"], "w"))
        data = os.path.join(tmp, "d.csv")
        base = ["--no-db", "--no-compare", "--system", p, "--set", "tile.rom.rows=128", "--set", "kv.slot_context=60",
                "--rule", "Is it fine?", "--max-new-tokens", "4"]
        write_csv(data, ["R0,y"])
        one, _ = eval_json(*base, "--data", data)
        fixed = one["rule_tokens"] + one["record_tokens_mean"] - 1 + 4  # positions of a record of one estimated token
        # an estimated token is 4 UTF-8 bytes: records of 40 and 60 positions
        rec = lambda n: "y" * (4 * (n - fixed) + 1 - 4) if n > fixed else None
        write_csv(data, [f"R{i},{rec(40)}" for i in range(4)] + [f"R4,{rec(60)}"])
        j, _ = eval_json(*base, "--data", data)
        chips = j["system"]["chips"]
        expect(j["records_done"] == 5 and j["kv_positions"] == 181 and [c["kv_positions"] for c in chips] ==
               [8192, 120, 120, 8192], f"kv {j['kv_positions']}, chips {[c['kv_positions'] for c in chips]}")
        expect([c["kv_max_used"] for c in chips] == [180, 100, 80, 180] and j["max_in_flight"] == 4,
               f"held {[c['kv_max_used'] for c in chips]}, in flight {j['max_in_flight']}")
        r = run_json("--no-db", "--system", p, "--set", "tile.rom.rows=128", "--set", "kv.slot_context=60", "--prompt",
                     "30", "--generate", "10", "--streams", "6")
        expect(r["kv_positions"] == 240 - 39 and r["max_in_flight"] == 5,
               f"run: {r['kv_positions']} {r['max_in_flight']}")


def test_ep_adapter_sram_kv():
    """Rank 16 on q and v over tiny-moe-ep2, its stage's chips with a quarter of the KV SRAM (2048 positions a tile):
    every chip of the expert-parallel stage holds the attention of its layers, so each holds A and B of q and v for
    each of its two layers and loses its own KV positions; derived here from tiny-chip.json and tiny-moe's shapes:
    per tile 4 matrices of 16 x 256 8-bit elements (16,384 bytes), a position 2 x 256 bytes (K and V), so the ends
    keep (4 MiB - 16 KiB) / 512 = 8160 positions (slots of 512: 16 -> 15) and the stage's chips (1 MiB - 16 KiB) /
    512 = 2016 (4 -> 3). The system's slots are the fewest of any stage, the stage's its chips' together (3 + 3 of
    4 + 4); its KV bound (test ep_kv_bound) 2 x 2016 - 11 for requests of 12 positions; eval reports the same."""
    c = json.load(open(os.path.join(DATA, "tiny-chip.json")))
    kv = {k: v["value"] for k, v in c["kv"].items()}
    eb, word, kv_bytes, ctx = kv["element_bits"], kv["word_bits"], kv["bytes_per_tile"], kv["slot_context"]
    H, KV = 256, 256  # tiny-moe: hidden 256, 8 KV heads of 32
    words = lambda n: -(-n * eb // word) * word // 8
    per_tile = words(16 * H) + words(H * 16) + words(16 * H) + words(KV * 16)
    pos = 2 * KV * eb // 8
    small = kv_bytes // 4
    ends, stage = ((kv_bytes - per_tile) // pos, kv_bytes // pos), ((small - per_tile) // pos, small // pos)
    expect((per_tile, pos, ends, stage, ctx) == (16384, 512, (8160, 8192), (2016, 2048), 512), "oracle itself")
    with tempfile.TemporaryDirectory() as tmp:
        p = ep_system(tmp, "ad", [(1e9, False)] * 4)
        sysf = json.load(open(p))
        for k in (1, 2):
            cf = json.load(open(sysf["chips"][k]["chip"]))
            cf["kv"]["bytes_per_tile"]["value"] = small
            json.dump(cf, open(sysf["chips"][k]["chip"], "w"))
        args = ["--system", p, "--set", "tile.rom.rows=128", "--adapter-rank", "16", "--adapter-roles", "q,v"]
        j = run_json("--no-db", *args, "--prompt", "8", "--generate", "4", "--streams", "6")
        for k, layers in enumerate((1, 2, 2, 1)):
            left, without = ends if k in (0, 3) else stage
            want = {"tensors": 2 * layers, "rank": 16, "roles": "q,v", "alpha": 16, "scale": 1, "element_bits": eb,
                    "bytes_per_tile": per_tile, "bytes": per_tile * layers, "kv_bytes_per_tile_left":
                    (kv_bytes if k in (0, 3) else small) - per_tile, "kv_positions": left,
                    "kv_positions_without": without,
                    "kv_slots": left // ctx, "kv_slots_without": without // ctx, "kv_slots_lost": 1}
            got = j["system"]["chips"][k]["adapter"]
            expect(got == want and j["system"]["chips"][k]["kv_positions"] == left,
                   f"chips[{k}].adapter {got}, by hand {want}")
        want = {"tensors": 12, "rank": 16, "roles": "q,v", "alpha": 16, "scale": 1, "bytes": 6 * per_tile,
                "kv_slots": 2 * (stage[0] // ctx), "kv_slots_without": 2 * (stage[1] // ctx), "kv_slots_lost": 2}
        expect(j["adapter"] == want and j["kv_positions"] == 2 * stage[0] - 11, f"adapter {j['adapter']}, KV "
               f"{j['kv_positions']}; by hand {want}, {2 * stage[0] - 11}")
        expect([c["kv_max_used"] for c in j["system"]["chips"]] == [72, 36, 36, 72], f"{j['system']['chips']}")
        out = run("run", "--no-db", *args, "--prompt", "8", "--generate", "4").stdout
        line = (f"adapter rank 16 on q,v: {6 * per_tile} bytes in the 4 chips' KV SRAM; KV slots, the fewest of any "
                "stage (of several chips, theirs together), 8 -> 6 (2 lost); each chip's below")
        expect(line in out, f"summary lacks {line!r}: {out}")
        e, _ = eval_json("--no-db", "--records", "4", "--max-new-tokens", "2", "--no-compare", *args)
        expect(e["adapter"] == want and [x["adapter"]["bytes"] for x in e["system"]["chips"]] ==
               [per_tile, 2 * per_tile, 2 * per_tile, per_tile], f"eval adapter {e['adapter']}")


def test_ep_energy_per_token():
    """The work another chip of an expert-parallel stage does for an item (the dispatch, its experts' chains, the
    combine) is charged to the item's sequences, each its own tokens' share (it all went to the item's first
    sequence before). tiny-moe-ep2 with every process energy, leakage and board power zero but the card links'
    (10 pJ a bit through 0.9-efficient regulators), tokens_per_read 4 and one item in flight a tile (so the stage's
    items carry several sequences), sixteen streams of 1 + 4, every token routed to experts 8 and 9 (on chip 2).
    By hand each sequence's energy: its 4 tokens through the stage cross two card hops of 256 x 16 bits and 3
    sampled ids go back (32 bits); a sequence whose KV is on chip 1 (the even ones: admitted to the chip with the
    most free, the first on a tie) adds a dispatch and a combine of each token at each of the 2 layers. The
    sequences' energies sum to the run's."""
    sysf = json.load(open(SYSTEM_EP2))
    chip = json.load(open(os.path.join(DATA, "tiny-chip.json")))
    v = lambda n: n["value"] if isinstance(n, dict) else n
    j_bit = v(sysf["link"]["energy_pj_per_bit"]) * 1e-12 / v(chip["card"]["vr_efficiency"])
    act, tok, T = 256 * v(chip["link"]["elem_bits"]), v(chip["link"]["token_id_bits"]), 1 + 4 - 1
    local = (T * 2 * act + 3 * tok) * j_bit
    remote = local + T * 2 * 2 * act * j_bit
    with tempfile.TemporaryDirectory() as tmp:
        db = os.path.join(tmp, "e.sqlite")
        args = ["--system", SYSTEM_EP2, "--set", "tile.rom.rows=128", "--set", "tile.lanes.tokens_per_read=4",
                "--set", "tile.items_in_flight=1", "--set", "card.board_static_w=0", "--prompt", "1", "--generate",
                "4", "--streams", "16", "--routing", ep_route(tmp, [8, 9])]
        for k in ("logic", "sram", "rom"):
            args += ["--set", f"process.leakage.{k}_w_per_mm2=0"]
        for k in ("rom_read_fj_per_bit", "lane_cell_mac_fj", "attention_mac_fj", "sram_read_fj_per_bit",
                  "sram_write_fj_per_bit", "vector_op_fj", "wire_fj_per_bit_mm", "host_pj_per_bit",
                  "register_fj_per_bit_cycle", "clock_network_fj_per_bit_cycle"):
            args += ["--set", f"process.energy.{k}=0"]
        run("run", "--db", db, *args)
        j = run_json("--no-db", *args)
        e = [r[0] for r in sqlite3.connect(db).execute("SELECT energy_j FROM sequences ORDER BY seq")]
    close = lambda a, b: abs(a - b) <= 1e-9 * abs(b)
    want = [remote if k % 2 == 0 else local for k in range(16)]
    expect(len(e) == 16 and all(close(a, b) for a, b in zip(e, want)),
           f"sequences' energy {[round(x / j_bit) for x in e]} bits, by hand {[round(x / j_bit) for x in want]}")
    expect(close(sum(e), j["energy_j"]) and j["unattributed_j"] == 0, f"sum {sum(e)}, run {j['energy_j']}")


# ---- a power limit on a chip of a system: each chip's own governor inside the simulation (issue 20; helper h/gov20)
def gov_pair(tmp, limits, sets=None, system=SYSTEM_X2):
    """tiny-x2 (stories260K's layers 0-2 and 3-4 over two tiny-test chips; or another system of tiny-chip.json)
    written into tmp, chip k a copy of tiny-chip.json with card.power_limit_w limits[k] and the keys of sets
    ({section: {key: value}}); its path."""
    sysf = json.load(open(system))
    if system != SYSTEM_X2:
        sysf["model"] = os.path.join(os.path.dirname(system), sysf["model"])
    for k, w in enumerate(limits):
        c = json.load(open(os.path.join(DATA, "tiny-chip.json")))
        c["card"]["power_limit_w"]["value"] = w
        for sec, kv in (sets or {}).items():
            for key, v in kv.items():
                c[sec][key]["value"] = v
        path = os.path.join(tmp, f"c{k}.json")
        json.dump(c, open(path, "w"))
        sysf["chips"][k]["chip"] = path
    p = os.path.join(tmp, "pair.json")
    json.dump(sysf, open(p, "w"))
    return p


def reactive_oracle(watts, fixed, limit, f_nom, step, window_s, end_ps):
    """The reactive governor's rule replayed from a run's windows, without etchsim's code: window k runs from the
    end of window k-1 to the chip's first edge at or after (k+1) x window_s (its period the whole picoseconds
    nearest 1 / its clock; the last window cut at the run's end); at its end the next window's clock is the
    highest step f_nom - j x step at which window k's energy (its watts less the static watts, times its length:
    dynamic and clock energy, the same per cycle at any clock) over its cycles, at that step's real clock, plus
    the static watts fits the limit. The energy comes from the run's reported window watts; the clocks, window
    edges and cycles are derived here. Returns (each window's clock, the chip's cycles, real time below f_nom); with
    end_ps None (the run's end not known to the picosecond) the clocks only, the last window taken as whole."""
    per = lambda f: int(1e12 / f + 0.5)
    win_ps = round(window_s * 1e12)
    t, f, clocks, cycles, slow = 0, f_nom, [], 0, 0.0
    for k, w in enumerate(watts):
        p = per(f)
        end = t + -(-((k + 1) * win_ps - t) // p) * p
        end = end if end_ps is None else min(end, end_ps)
        n = -(-(end - t) // p)
        clocks.append(f)
        cycles += n
        slow += (end - t) * 1e-12 if f < f_nom else 0
        e_cycle = (w - fixed) * (end - t) * 1e-12 / n
        j = 0
        while e_cycle * 1e12 / per(f_nom - j * step) + fixed > limit:
            j += 1
        t, f = end, f_nom - j * step
    expect(end_ps is None or t == end_ps, f"the windows end at {t} ps, the run at {end_ps} ps")
    return clocks, cycles, slow


def test_system_power_limit_reactive():
    """chip 1 of a two-chip system under a limit that binds (12.5 W, its static power 12.3 W), chip 0 without one:
    chip 1's clock in every window is what reactive_oracle derives from the windows' reported watts (window 0 at
    the nominal clock, then stepping down by 15 MHz as its energy per cycle grows), its cycles and throttled time
    follow from those clocks; chip 0 keeps the nominal clock (its cycles are the run's); the run is slower than
    without the limit, with the same tokens; energy stays consistent: dynamic + each chip's leakage and board x the
    real seconds, and the tokens' energies + the unattributed rest. With clock_gating none (an ungated clock, per
    cycle: the windows' watts count it) the oracle holds too."""
    s = stories()
    base = ["--model", s, "--prompt", "16", "--generate", "256", "--streams", "8"]
    with tempfile.TemporaryDirectory() as tmp:
        free = run_json(*base, "--no-db", "--system", gov_pair(tmp, (0, 0)))
        db = os.path.join(tmp, "g.sqlite")
        capped = run_json(*base, "--db", db, "--system", gov_pair(tmp, (0, 12.5)))
        c0, c1 = capped["system"]["chips"]
        p = c1["power_limit"]
        fixed = c1["leakage_w"] + c1["board_w"]
        expect(12.3 < fixed < 12.5 and c0["power_limit"] is None, f"static {fixed} W, chip 0 {c0['power_limit']}")
        clocks, cycles, slow = reactive_oracle(p["window_w"], fixed, 12.5, 1e9, 15e6, 1e-4, capped["cycles"] * 1000)
        expect(p["window_clock_hz"] == clocks, f"window clocks {p['window_clock_hz']}, oracle {clocks}")
        expect(clocks[0] == 1e9 and min(clocks) <= 0.2e9 and p["min_clock_hz"] == min(clocks) and
               len(clocks) == p["windows"] == 32, f"clocks {clocks}")
        expect(c1["cycles"] == cycles and abs(p["throttled_s"] - slow) < 1e-15,
               f"chip 1: {c1['cycles']} cycles, {p['throttled_s']} s throttled; oracle {cycles}, {slow}")
        expect(c0["cycles"] == capped["cycles"] and c0["clock_hz"] == 1e9, f"chip 0: {c0['cycles']} cycles")
        expect(capped["cycles"] > 1.5 * free["cycles"] and capped["tokens"] == free["tokens"] == 2048,
               f"{capped['cycles']} cycles limited, {free['cycles']} free")
        sec = capped["cycles"] / 1e9
        expect(abs(capped["tokens_per_s"] - 2048 / sec) < 1e-6 * capped["tokens_per_s"], "tokens/s")
        static = sum(c["leakage_w"] + c["board_w"] for c in (c0, c1))
        want = capped["dynamic_j"] + static * sec
        expect(abs(capped["energy_j"] - want) < 1e-12 * want and
               abs(capped["joules_per_token"] - capped["energy_j"] / 2048) < 1e-15, f"energy {capped['energy_j']}, {want}")
        expect(abs(c0["dynamic_j"] + c1["dynamic_j"] - capped["dynamic_j"]) < 1e-12 * capped["dynamic_j"], "chips' energy")
        expect(abs(sum((w - fixed) * d for w, d in zip(p["window_w"], window_lengths(clocks, capped["cycles"])))
                   - c1["dynamic_j"]) < 1e-9 * c1["dynamic_j"], "chip 1's windows do not hold its dynamic energy")
        con = sqlite3.connect(db)
        tok_j = con.execute("SELECT SUM(energy_j) FROM tokens").fetchone()[0]
        con.close()
        expect(abs(tok_j + capped["unattributed_j"] - capped["energy_j"]) <= 1e-9 * capped["energy_j"],
               f"tokens {tok_j} J + unattributed {capped['unattributed_j']} J != {capped['energy_j']} J")
        # an ungated clock: per cycle, in the windows' watts, and in the tokens' energies
        db2 = os.path.join(tmp, "n.sqlite")
        ng = run_json(*base, "--db", db2, "--set", "clock_gating=none", "--system", gov_pair(tmp, (0, 13.5)))
        n1 = ng["system"]["chips"][1]
        pn, fixed_n = n1["power_limit"], n1["leakage_w"] + n1["board_w"]
        clocks, cycles, _ = reactive_oracle(pn["window_w"], fixed_n, 13.5, 1e9, 15e6, 1e-4, ng["cycles"] * 1000)
        expect(pn["window_clock_hz"] == clocks and n1["cycles"] == cycles and min(clocks) < 1e9,
               f"clock_gating none: clocks {pn['window_clock_hz']}, oracle {clocks}")
        con = sqlite3.connect(db2)
        tok_j = con.execute("SELECT SUM(energy_j) FROM tokens").fetchone()[0]
        con.close()
        expect(abs(tok_j + ng["unattributed_j"] - ng["energy_j"]) <= 1e-9 * ng["energy_j"],
               f"clock_gating none: tokens {tok_j} J + unattributed {ng['unattributed_j']} J != {ng['energy_j']} J")


def window_lengths(clocks, run_cycles):
    """Each window's real seconds from its clocks (as reactive_oracle lays them out, 100 us windows)."""
    per = lambda f: int(1e12 / f + 0.5)
    t, out, end_ps = 0, [], run_cycles * 1000
    for k, f in enumerate(clocks):
        p = per(f)
        end = min(t + -(-((k + 1) * 10 ** 8 - t) // p) * p, end_ps)
        out.append((end - t) * 1e-12)
        t = end
    return out


def test_system_power_limit_above():
    """A limit above chip 1's power (1000 W) gives exactly the unlimited run's figures: every key of run --json but
    the host's wall time and chip 1's power_limit, which reports every window at the nominal clock, never throttled."""
    s = stories()
    base = ["--no-db", "--model", s, "--prompt", "16", "--generate", "64", "--streams", "4"]
    with tempfile.TemporaryDirectory() as tmp:
        free = run_json(*base, "--system", gov_pair(tmp, (0, 0)))
        high = run_json(*base, "--system", gov_pair(tmp, (0, 1000)))
        p = high["system"]["chips"][1].pop("power_limit")
        expect(free["system"]["chips"][1].pop("power_limit") is None, "chip 1 without a limit")
        expect(p["throttled_s"] == 0 and set(p["window_clock_hz"]) == {1e9} and p["limit_w"] == 1000 and
               p["effective_clock_hz"] == 1e9 and p["max_window_w"] < 20, f"power_limit {p}")
        for j in (free, high):
            j.pop("sim_wall_s")
            j.pop("cost_unknown")
        expect(free == high, f"a limit that never binds changed the run: {[k for k in free if free[k] != high[k]]}")


def test_err_system_power_limit_static():
    """A limit at or below a chip's static power (its leakage / VR efficiency and board, 12.3 W on chip 1) is one
    error naming that chip's file, the key, the chip and its layers and both figures, exit 1; chip 0 is not named.
    A limit on a chip of an expert-parallel stage (not modelled) is one error naming it."""
    s = stories()
    with tempfile.TemporaryDirectory() as tmp:
        err = expect_error(["run", "--no-db", "--model", s, "--system", gov_pair(tmp, (0, 12)), "--prompt", "4",
                            "--generate", "2"], "c1.json: key 'card.power_limit_w'", "chip 1 of the system (layers 3..4)",
                           "12 W is at or below its card's static power, 12.34 W")
        expect("c0.json" not in err, err)
        # a chip of an expert-parallel stage: its tiles book the other chip's lanes in their shared cycles
        err = expect_error(["run", "--no-db", "--system", gov_pair(tmp, (0, 0, 13, 0), system=SYSTEM_EP2), "--set",
                            "tile.rom.rows=128", "--prompt", "4", "--generate", "2"],
                           "c2.json: key 'card.power_limit_w'", "chip 2 of the system (layers 1..2)",
                           "a chip of an expert-parallel stage", "set it to 0")



def test_power_limit_governor_reactive():
    """card.governor reactive on a chip alone (tiny-chip, clock_gating none, 16 streams) against the ideal governor
    on the same load and limit (20.6 W). Until the first window ends both runs are the same simulation at the
    nominal clock, so they see the same window-0 energy: the ideal governor runs window 0 itself at the step that
    energy allows, the reactive one runs it at the nominal clock and window 1 at that step; so the ideal's window-0
    watts are the reactive's less the static watts, scaled by the reactive's window-1 clock over the nominal, plus
    the static watts. Every reactive clock is reactive_oracle's; the reactive run ends sooner than the ideal one
    (its first window unthrottled) and later than the unlimited run; tokens' energies + unattributed = total.
    A value other than ideal or reactive is one error naming the file and key."""
    base = ["run", "--json", *TINY, "--prompt", "8", "--generate", "400", "--streams", "16", "--set", "clock_gating=none"]
    free = json.loads(run(*base, "--no-db").stdout)
    cap = [*base, "--set", "card.power_limit_w=20.6"]
    ideal = json.loads(run(*cap, "--no-db", "--set", "card.governor=ideal").stdout)
    with tempfile.TemporaryDirectory() as tmp:
        db = os.path.join(tmp, "r.sqlite")
        react = json.loads(run(*cap, "--db", db, "--set", "card.governor=reactive").stdout)
        con = sqlite3.connect(db)
        tok_j = con.execute("SELECT SUM(energy_j) FROM tokens").fetchone()[0]
        con.close()
    ev = free["energy_by_event_j"]
    fixed = (ev["leakage"] + ev["board"]) / (free["cycles"] / 1e9)
    pi, pr = ideal["power_limit"], react["power_limit"]
    end_ps = round(react["cycles"] / pr["effective_clock_hz"] * 1e9) * 1000  # the host's last arrival: its 1 GHz edge
    clocks, cycles, slow = reactive_oracle(pr["window_w"], fixed, 20.6, 1e9, 15e6, 1e-4, end_ps)
    expect(pr["window_clock_hz"] == clocks and clocks[0] == 1e9 and min(clocks) < 0.7e9 and "window_clock_hz" not in pi,
           f"reactive clocks {pr['window_clock_hz']}, oracle {clocks}")
    expect(react["cycles"] == cycles and abs(pr["throttled_s"] - slow) < 1e-15,
           f"the chip's cycles {react['cycles']}, throttled {pr['throttled_s']} s; oracle {cycles}, {slow}")
    want = (pr["window_w"][0] - fixed) * clocks[1] / 1e9 + fixed
    expect(abs(pi["window_w"][0] - want) < 1e-9 * want and pr["window_w"][0] > 24 and max(pi["window_w"]) <= 20.6,
           f"window 0: ideal {pi['window_w'][0]} W, from the reactive's {want} W")
    sec = lambda j: j["cycles"] / j["power_limit"]["effective_clock_hz"]
    expect(free["cycles"] / 1e9 < sec(react) < sec(ideal) and react["tokens"] == ideal["tokens"] == 6400,
           f"seconds: free {free['cycles'] / 1e9}, reactive {sec(react)}, ideal {sec(ideal)}")
    expect(abs(tok_j + react["unattributed_j"] - react["energy_j"]) <= 1e-9 * react["energy_j"],
           f"tokens {tok_j} J + unattributed {react['unattributed_j']} J != {react['energy_j']} J")
    expect_error([*cap, "--no-db", "--set", "card.governor=smart"], "tiny-chip.json: key 'card.governor'",
                 "expected \"ideal\" or \"reactive\", got \"smart\"")


# ---- issue 22, load time (h/load22): ROM images stored raw, version 1 images still read, builds reproducible ----

def rom_to_v1(src, dst, encoding=0, version=1):
    """The version 2 (stored) ROM image src rewritten as a version 1 image: every bank's payload
    zlib-compressed, its record's encoding set to `encoding` (version 1 knows only 0, zlib), CRC-32s and
    offsets made right (layout: weights/es_rom.h)."""
    import zlib

    def bank(i, data, stored, raw_bytes):
        expect(stored and len(data) == raw_bytes, "src must be stored")
        return zlib.compress(data), encoding
    rom_remake(src, dst, bank, version)


def test_rom_v1_images_read():
    """rom build writes version 2 images whose banks are stored as they are (a load reads the file, nothing to
    inflate); a version 1 image (every bank zlib) of the same weights still verifies and runs functional mode to
    the same tokens and logits; a version 1 image with a stored bank, and an unknown version, are one clear error."""
    import struct
    with tempfile.TemporaryDirectory() as tmp:
        v2 = build_tiny(tmp)
        b = open(v2, "rb").read()
        expect(struct.unpack_from("<I", b, 8)[0] == 2, "rom build writes version 2")
        v1 = os.path.join(tmp, "v1.rom")
        rom_to_v1(v2, v1)
        expect(os.path.getsize(v1) < os.path.getsize(v2), "the version 1 copy is compressed")
        run("rom", "verify", v1)
        outs = []
        for path in (v2, v1):
            lf = os.path.join(tmp, os.path.basename(path) + ".logits")
            j = run_json("--no-db", *TINY, "--mode", "functional", "--rom", path, "--prompt", "6", "--generate", "4",
                         "--logits", lf)
            outs.append((j["functional"]["output_ids"], open(lf).read()))
        expect(len(outs[0][0]) == 4 and outs[0] == outs[1], f"v2 {outs[0][0]} and v1 {outs[1][0]} differ")
        bad = os.path.join(tmp, "bad.rom")
        rom_to_v1(v2, bad, encoding=1)
        for cmd in (["rom", "inspect", bad], ["run", "--no-db", *TINY, "--mode", "functional", "--rom", bad]):
            expect_error(cmd, bad, "bank record 0 has encoding 1", "version 1 image")
        rom_to_v1(v2, bad, version=3)
        expect_error(["rom", "verify", bad], bad, "unsupported version 3 (expected 1 to 2)")


def test_rom_build_threads_same_bytes():
    """rom build lays every bank out before quantizing: the image's bytes are the same with 1 and 2 threads
    (units finish in any order)."""
    with tempfile.TemporaryDirectory() as tmp:
        one = build_tiny(tmp, "hc1-mix", "--threads", "1")
        a = open(one, "rb").read()
        for k in range(3):
            two = build_tiny(tmp, "hc1-mix", "--threads", "2")
            expect(open(two, "rb").read() == a, f"build {k} with 2 threads differs from 1 thread")


# --- issue 22 (h/llama22): the 135M-shaped random Q8_0 GGUF of scripts/bench-functional's llama.cpp row ---

def test_random_gguf_q8():
    """scripts/lib/random-gguf.py in a small shape (rows of 10 and 27 blocks): every 2-D tensor Q8_0 whose every
    block has element 0 at +-127, no -128 and a scale within S (0.75..1.25), norms F32; functional mode with recipe
    q8_0 on an FP32 datapath gives the FP32 reference's (etchsim infer, decoding the file's Q8_0) greedy tokens and
    logits within 1e-4 at every position: the recipe requantized the file to the very same weights."""
    import struct
    with tempfile.TemporaryDirectory() as tmp:
        path, chip = os.path.join(tmp, "r.gguf"), os.path.join(tmp, "chip.json")
        out = subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "lib", "random-gguf.py"), path, "--layers",
                              "2", "--dim", "320", "--heads", "5", "--kv-heads", "1", "--ffn", "864", "--vocab", "600"],
                             capture_output=True, text=True)
        expect(out.returncode == 0 and "2 layers, dim 320, 5/1 heads, ffn 864, vocab 600" in out.stdout, out.stderr)
        b = open(path, "rb").read()
        n_t = struct.unpack_from("<Q", b, 8)[0]
        kvs, _, info, data = gguf_read(path)
        meta = {k: r for k, t, r in kvs}
        expect(struct.unpack("<I", meta["llama.attention.head_count_kv"])[0] == 1 and
               struct.unpack("<I", meta["llama.embedding_length"])[0] == 320, "shape metadata")
        expect(n_t == 2 + 9 * 2, f"{n_t} tensors")
        s_lo, s_hi = 0.75 * 0.02 / (127 / 3 ** 0.5) * 0.999, 1.25 * 0.02 / (127 / 3 ** 0.5) * 1.001
        pos, q8, names = 0, 0, []
        for _ in range(n_t):
            ln = struct.unpack_from("<Q", info, pos)[0]
            name = info[pos + 8:pos + 8 + ln].decode()
            nd = struct.unpack_from("<I", info, pos + 8 + ln)[0]
            ne = struct.unpack_from(f"<{nd}Q", info, pos + 12 + ln)
            t, off = struct.unpack_from("<IQ", info, pos + 12 + ln + 8 * nd)
            pos += 12 + ln + 8 * nd + 12
            names.append(name)
            n = 1
            for d in ne:
                n *= d
            expect(t == (8 if nd == 2 else 0), f"{name}: type {t}")
            if t == 0:
                v = struct.unpack_from(f"<{n}f", data, off)
                expect(all(0.8 - 1e-6 <= x <= 1.2 + 1e-6 for x in v), f"{name}: norm weights outside 1 +- 0.2")
                continue
            q8 += 1
            for k in range(n // 32):
                blk = data[off + 34 * k:off + 34 * k + 34]
                d = struct.unpack_from("<e", blk)[0]
                c = struct.unpack_from("<32b", blk, 2)
                if not (c[0] in (127, -127) and -128 not in c and s_lo <= d <= s_hi):
                    expect(False, f"{name} block {k}: scale {d}, codes {c[:4]}...")
        expect(q8 == 1 + 7 * 2 and "output.weight" not in names, f"{q8} Q8_0 tensors, tied head: {names}")
        run("chip", "derive", "--model", path, "--like", "hc1-class", "--recipe", "q8_0", "-o", chip)
        lr, lf = os.path.join(tmp, "ref.json"), os.path.join(tmp, "func.json")
        ref = json.loads(run("infer", "--model", path, "--text", "Once", "--generate", "5", "--ignore-eos",
                             "--json", "--logits", lr).stdout)
        j = json.loads(run("run", "--json", "--no-db", "--model", path, "--chip", chip, "--mode", "functional",
                           "--weights", path, "--recipe", "q8_0", "--text", "Once", "--generate", "5",
                           "--logits", lf, *FP32_DATAPATH).stdout)
        f = j["functional"]
        expect(ref["prompt_ids"] == f["prompt_ids"] == [1, 229, 153, 132, 82, 113, 102, 104], f"prompt {f['prompt_ids']}")  # "▁Once" in bytes
        expect(f["output_ids"] == ref["output_ids"], f"greedy {f['output_ids']} != reference {ref['output_ids']}")
        a = {x["pos"]: x["logits"] for x in json.load(open(lf))}
        r = {x["pos"]: x["logits"] for x in json.load(open(lr))}
        worst = max(abs(x - y) for p in r for x, y in zip(a[p], r[p]))
        expect(len(r) == 12 and set(r) <= set(a) and worst <= 1e-4, f"{len(r)} positions, logits differ by {worst}")

# ---- a power limit's windows over it, reported (issue 20) ----
def test_power_limit_windows_over():
    """Llama-3.1-70B over its six derived chips, 1k/1k at one user, every chip under 25 W: the run (about 0.16 s)
    is shorter than one window (hc1-class's card.power_window_us, 0.1667 s), so each chip's reactive governor,
    which picks a window's clock at the end of the window before, never acts, and its one window averages above
    25 W (the README's per-card figures, 27-28 W). Each chip reports its window over the limit, in the JSON and
    the text, rather than only 'never engaged'; with 30 W, above every window, none is."""
    args = ("--system", "llama-3.1-70b-hc1", "--prompt", "1024", "--generate", "1024")
    j = run_json("--no-db", *args, "--set", "card.power_limit_w=25")
    for k, c in enumerate(j["system"]["chips"]):
        p = c["power_limit"]
        expect(p["windows"] == 1 and p["max_window_w"] > 25 and p["windows_over_limit"] == 1 and p["throttled_s"] == 0,
               f"chip {k}: {p['windows']} windows, highest {p['max_window_w']} W, {p['windows_over_limit']} over")
    text = run("run", "--no-db", *args, "--set", "card.power_limit_w=25").stdout
    expect(text.count("1 of 1 windows over the limit (the reactive governor acts a window late)") == 6, text)
    j = run_json("--no-db", *args, "--set", "card.power_limit_w=30")
    over = [c["power_limit"]["windows_over_limit"] for c in j["system"]["chips"]]
    expect(over == [0] * 6, f"30 W: windows over {over}")


if __name__ == "__main__":
    name = sys.argv[1] if len(sys.argv) > 1 else ""
    fn = globals().get("test_" + name)
    if not fn:
        print(f"unknown case {name!r}", file=sys.stderr)
        sys.exit(2)
    try:
        fn()
    except Skip as e:
        print(f"{name}: SKIPPED: {e}")
        sys.exit(77)
    print(f"{name}: ok")

