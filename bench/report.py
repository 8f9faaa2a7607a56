#!/usr/bin/python3
"""Turns bench/run.sh's raw results into one plain-text table (stdout) and its markdown version.

Usage: report.py WORK_DIR MARKDOWN_OUT
WORK_DIR holds meta.env (key=value), runs.tsv (one wrk run a line: system, concurrency, round,
wrk output file, expected status, proxy CPU ticks, Redis calls, Redis CPU ticks) and, when the
memory part ran, memory.tsv (key, value).
"""
import re
import statistics
import sys
from collections import defaultdict
from pathlib import Path

UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3, "h": 3600e3}  # to milliseconds
SYSTEM_ORDER = ["direct", "nginx", "nginx-limit_req", "haproxy", "rlp-redis", "rlp-baseline", "rlp-memory",
                "rlp-deny"]
OURS = ["rlp-redis", "rlp-memory"]
REFS = ["nginx", "haproxy"]


def parse_latency(text: str):
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m|h)", text.strip())
    return float(m.group(1)) * UNITS[m.group(2)] if m else None


def parse_wrk(path: str) -> dict:
    """Requests/sec, 50%/99% latency (ms), requests, non-2xx/3xx count and socket errors."""
    r = {"rps": None, "p50": None, "p99": None, "requests": 0, "non2xx": 0, "sockerr": 0, "error": ""}
    try:
        text = Path(path).read_text(errors="replace")
    except OSError as e:
        r["error"] = str(e)
        return r
    if m := re.search(r"^Requests/sec:\s+([\d.]+)", text, re.M):
        r["rps"] = float(m.group(1))
    for pct in ("50", "99"):
        if m := re.search(rf"^\s*{pct}(?:\.0+)?%\s+(\S+)", text, re.M):
            r["p" + pct] = parse_latency(m.group(1))
    if m := re.search(r"^\s*(\d+) requests in", text, re.M):
        r["requests"] = int(m.group(1))
    if m := re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text):
        r["non2xx"] = int(m.group(1))
    if m := re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text):
        r["sockerr"] = sum(int(g) for g in m.groups())
        r["sockerr_text"] = "c%s/r%s/w%s/t%s" % m.groups()
    if r["rps"] is None or r["p99"] is None:
        r["error"] = "unparsable wrk output"
    if m := re.search(r"^wrk exited with status (\d+)", text, re.M):
        r["error"] = f"wrk exit {m.group(1)}"
    return r


def fmt_ms(ms):
    if ms is None:
        return "-"
    if ms < 1:
        return f"{ms * 1000:.0f}us"
    if ms < 100:
        return f"{ms:.2f}ms"
    return f"{ms:.0f}ms"


def fmt_num(x, digits=2):
    return "-" if x is None else f"{x:.{digits}f}"


def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def ratio_text(xs):
    xs = [x for x in xs if x is not None]
    if not xs:
        return "-"
    return f"{statistics.median(xs):.2f} ({min(xs):.2f}-{max(xs):.2f})"


def load(work: Path):
    meta = {}
    for line in (work / "meta.env").read_text().splitlines():
        if "=" in line:
            k, v = line.split("=", 1)
            meta[k] = v
    runs = []
    for line in (work / "runs.tsv").read_text().splitlines():
        if not line.strip():
            continue
        sys_, conc, rnd, path, expect, ticks, calls, rticks, evals = line.split("\t")
        run = parse_wrk(path)
        run.update(system=sys_, conc=int(conc), round=int(rnd), expect=int(expect),
                   ticks=None if ticks == "-" else int(ticks), calls=int(calls), rticks=int(rticks),
                   evals=int(evals))
        runs.append(run)
    memory = {}
    if (work / "memory.tsv").exists():
        for line in (work / "memory.tsv").read_text().splitlines():
            if "\t" in line:
                k, v = line.split("\t", 1)
                memory[k] = v
    return meta, runs, memory


def flags_for(group) -> str:
    """What went wrong in a system's runs at one concurrency: unexpected statuses, socket errors."""
    flags = []
    errors = [r["error"] for r in group if r["error"]]
    if errors:
        flags.append(f"FAILED x{len(errors)} ({errors[0]})")
    expect = group[0]["expect"]
    if expect == 200:
        bad = sum(r["non2xx"] for r in group)
        if bad:
            flags.append(f"NON-2XX {bad}")
    else:  # every response should be non-2xx (e.g. 429); wrk cannot tell which non-2xx
        ok2xx = sum(r["requests"] - r["non2xx"] for r in group)
        if ok2xx:
            flags.append(f"2XX {ok2xx} (expected {expect})")
    sockerr = [r.get("sockerr_text") for r in group if r["sockerr"]]
    if sockerr:
        flags.append("SOCKERR " + ",".join(sockerr))
    return "; ".join(flags) if flags else "ok"


def table(headers, rows, aligns):
    widths = [max(len(str(x)) for x in col) for col in zip(headers, *rows)]
    def line(cells):
        return "  ".join(str(c).rjust(w) if a == "r" else str(c).ljust(w)
                         for c, w, a in zip(cells, widths, aligns)).rstrip()
    out = [line(headers), line(["-" * w for w in widths])]
    out += [line(r) for r in rows]
    return "\n".join(out)


def md_table(headers, rows, aligns):
    out = ["| " + " | ".join(headers) + " |",
           "|" + "|".join("---:" if a == "r" else "---" for a in aligns) + "|"]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(out)


def main() -> int:
    work, md_out = Path(sys.argv[1]), Path(sys.argv[2])
    meta, runs, memory = load(work)
    clk = float(meta.get("clk_tck", "100"))

    by = defaultdict(list)  # (system, conc) -> runs
    for r in runs:
        by[(r["system"], r["conc"])].append(r)
    concs = sorted({r["conc"] for r in runs})
    systems = [s for s in SYSTEM_ORDER if any(k[0] == s for k in by)]
    systems += sorted({k[0] for k in by} - set(systems))
    rounds = {c: max(r["round"] for r in runs if r["conc"] == c) for c in concs}

    # Main table: one row per system and concurrency.
    main_headers = ["system", "conc", "RPS", "RPS min-max", "p50", "p99", "p99-direct",
                    "proxy CPU us/req", "Redis cmd/req", "EVAL/req", "Redis CPU us/req", "runs", "flags"]
    main_aligns = ["l", "r", "r", "r", "r", "r", "r", "r", "r", "r", "r", "r", "l"]
    main_rows = []
    any_flag = False
    for c in concs:
        direct_p99 = med(r["p99"] for r in by.get(("direct", c), []))
        for s in systems:
            g = by.get((s, c))
            if not g:
                continue
            rps = [r["rps"] for r in g if r["rps"] is not None]
            p99 = med(r["p99"] for r in g)
            reqs = sum(r["requests"] for r in g)
            ticks = [r["ticks"] for r in g if r["ticks"] is not None]
            cpu = (sum(ticks) / clk * 1e6 / reqs) if ticks and reqs else None
            cmd = sum(r["calls"] for r in g) / reqs if reqs else None
            evals = sum(r["evals"] for r in g) / reqs if reqs else None
            rcpu = sum(r["rticks"] for r in g) / clk * 1e6 / reqs if reqs else None
            flags = flags_for(g)
            any_flag |= flags != "ok"
            main_rows.append([
                s, c, f"{med(rps):.0f}" if rps else "-",
                f"{min(rps):.0f}-{max(rps):.0f}" if rps else "-",
                fmt_ms(med(r["p50"] for r in g)), fmt_ms(p99),
                "-" if s == "direct" or p99 is None or direct_p99 is None else
                ("+" if p99 >= direct_p99 else "-") + fmt_ms(abs(p99 - direct_p99)),
                fmt_num(cpu, 1), fmt_num(cmd, 3), fmt_num(evals, 3), fmt_num(rcpu, 1), len(g), flags])

    # Ratios: per round, ours / reference; median (min-max) over rounds.
    def per_round(a, b, key="rps", c=None):
        ra = {r["round"]: r[key] for r in by.get((a, c), [])}
        rb = {r["round"]: r[key] for r in by.get((b, c), [])}
        return [ra[k] / rb[k] for k in ra if k in rb and ra[k] and rb[k]]

    ratio_headers = ["ratio (median of rounds, min-max)"] + [f"c{c} ({rounds[c]} rounds)" for c in concs]
    ratio_rows = []
    for ours in OURS:
        for ref in REFS:
            ratio_rows.append([f"RPS {ours} / {ref}"] + [ratio_text(per_round(ours, ref, c=c)) for c in concs])
    for ref in REFS:
        ratio_rows.append([f"p99 rlp-redis / {ref}"] +
                          [ratio_text(per_round("rlp-redis", ref, "p99", c)) for c in concs])
    ratio_rows.append(["RPS nginx-limit_req / nginx"] +
                      [ratio_text(per_round("nginx-limit_req", "nginx", c=c)) for c in concs])
    ratio_rows.append(["RPS rlp-deny / rlp-redis (deny/allow)"] +
                      [ratio_text(per_round("rlp-deny", "rlp-redis", c=c)) for c in concs])
    if any(s == "rlp-baseline" for s, _ in by):
        # run.sh --baseline: this build against an earlier one, in the same rounds.
        for key in ("rps", "p99"):
            ratio_rows.append([f"{'RPS' if key == 'rps' else 'p99'} rlp-redis / rlp-baseline"] +
                              [ratio_text(per_round("rlp-redis", "rlp-baseline", key, c)) for c in concs])
    ratio_aligns = ["l"] + ["r"] * len(concs)

    # Memory.
    mem_rows = []
    if memory:
        def mib(k):
            v = memory.get(k)
            return f"{int(v) / 1024:.1f}" if v and v.isdigit() else "-"
        def growth(name):
            b, p = memory.get(f"{name}.rss_before_kb"), memory.get(f"{name}.peak_kb")
            return f"{(int(p) - int(b)) / 1024:.1f}" if b and p else "-"
        def speed(name, field):
            parts = memory.get(f"{name}.curl", "").split()
            return f"{float(parts[field]) / 1e6:.0f} MB/s" if len(parts) == 5 else "-"
        mem_rows = [
            ["RSS at start (after one request)", mib("start_rss_kb"), ""],
            ["1 GiB download: RSS before / peak / growth",
             f"{mib('download.rss_before_kb')} / {mib('download.peak_kb')} / {growth('download')}",
             f"{speed('download', 3)}; curl code/bytes: {' '.join(memory.get('download.curl', '').split()[:2])}"],
            ["1 GiB upload: RSS before / peak / growth",
             f"{mib('upload.rss_before_kb')} / {mib('upload.peak_kb')} / {growth('upload')}",
             f"{speed('upload', 4)}; upstream said: {memory.get('upload.upstream_answer', '-').strip()}"],
            [f"{memory.get('idle.count', '?')} idle keep-alive connections: RSS before / with them",
             f"{mib('idle.rss_before_kb')} / {mib('idle.rss_idle_kb')}",
             f"open {memory.get('idle.open', '?')}, answered 200: {memory.get('idle.answered', '?')}"],
        ]
    mem_headers = ["memory (ratelimit-proxy THREADS=1, Redis store)", "MiB", "notes"]
    mem_aligns = ["l", "r", "l"]

    settings = (f"wrk -t1 -cN -d{meta.get('duration')}s --latency, path {meta.get('path')}; rounds: "
                + ", ".join(f"c{c}: {rounds[c]}" for c in concs)
                + "; one round = every system once, in turn (interleaved)")
    notes = [
        "RPS, p50, p99: median over the rounds; p99-direct: p99 added over the direct run.",
        "proxy CPU us/req: (utime+stime) of the proxy process (nginx: its worker) / requests wrk completed.",
        "Redis cmd/req: INFO commandstats calls (all commands but INFO, including those run inside Lua scripts) / requests;"
        " EVAL/req: EVALSHA+EVAL+FCALL calls only (round trips for limit checks). Background commands included.",
        "flags: NON-2XX / 2XX = responses with an unexpected status; SOCKERR = wrk socket errors (connect/read/write/timeout).",
    ]
    header_lines = [
        f"date: {meta.get('date')}   machine: {meta.get('uname')}, {meta.get('cpu')}",
        f"versions: {meta.get('nginx')}; {meta.get('haproxy')}; {meta.get('wrk')}; {meta.get('redis')}; "
        f"ratelimit-proxy git {meta.get('git')} ({meta.get('binary')})",
        f"pinning: {meta.get('pinning')}",
        f"load: {settings}",
        f"benchmark wall time: {meta.get('wall')} s",
    ]

    # Plain text.
    print("\n".join(header_lines))
    print()
    if runs:
        print(table(main_headers, main_rows, main_aligns))
        print()
        print(table(ratio_headers, ratio_rows, ratio_aligns))
    if mem_rows:
        print()
        print(table(mem_headers, mem_rows, mem_aligns))
    print()
    print("\n".join(notes))
    if any_flag:
        print("\nWARNING: some runs are flagged (see the flags column).")

    # Markdown.
    md = ["# ratelimit-proxy benchmark: latest run", ""]
    md += [f"- {line}" for line in header_lines]
    md += ["", "Systems:", ""]
    md += [f"- `{s}`: {meta.get('desc.' + s, '')}" for s in systems]
    if runs:
        md += ["", "## Throughput and latency", "", md_table(main_headers, main_rows, main_aligns), "",
               "## Ratios", "", md_table(ratio_headers, ratio_rows, ratio_aligns), ""]
    if mem_rows:
        md += ["## Memory", "", md_table(mem_headers, mem_rows, mem_aligns), ""]
    md += ["## Notes", ""] + [f"- {n}" for n in notes] + [""]
    if any_flag:
        md += ["**Some runs are flagged (see the flags column).**", ""]
    md_out.write_text("\n".join(md))
    return 0


if __name__ == "__main__":
    sys.exit(main())
