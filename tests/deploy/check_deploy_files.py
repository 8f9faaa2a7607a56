#!/usr/bin/env python3
"""Checks the dashboard and the alert rules in deploy/ against a scrape of the proxy.

    check_deploy_files.py --metrics SCRAPE [--dashboard JSON] [--alerts YAML]
    check_deploy_files.py --dashboard-as-rules [--dashboard JSON] > rules.yml
    check_deploy_files.py --self-test

SCRAPE is the Prometheus text the proxy answers on GET /metrics ("-" reads standard input).
Every metric name in every dashboard query (panel targets and template variables) and in every
alert expression must be one the scrape exports: a family of a `# TYPE` line (a histogram's
also as _bucket, _sum and _count) or a sample's name. The dashboard must be JSON with panels,
each query panel with queries, every $variable defined; every alert needs `for:`, a severity
label and summary and description annotations. Exit 0 when all holds, 1 with the list of
problems, 2 on bad arguments.

--dashboard-as-rules writes the dashboard's queries as recording rules (Grafana variables
replaced by values), so `promtool check rules` parses them.

Python 3 standard library only (no YAML module: the alert file is read with a small parser for
the subset Prometheus rule files use).
"""

import argparse
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_DASHBOARD = ROOT / "deploy" / "grafana" / "ratelimit-proxy.json"
DEFAULT_ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yml"

IDENT = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
# Numbers (1, 0.5, 1e3, 0x1f, Inf is an identifier) and durations (5m, 1h30m) outside [...].
NUMBER = re.compile(r"(?:0[xX][0-9a-fA-F]+|[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)[a-zA-Z0-9_]*")
GRAFANA_VAR = re.compile(
    r"\$\{([a-zA-Z_]\w*)(?::[^}]*)?\}|\$([a-zA-Z_]\w*)|\[\[([a-zA-Z_]\w*)(?::[^\]]*)?\]\]")
GRAFANA_BUILTINS = {
    "__rate_interval", "__interval", "__interval_ms", "__range", "__range_s", "__range_ms",
    "__from", "__to", "__all", "__name", "__org", "__user", "__dashboard", "timeFilter",
}

# Operators and keywords, case-insensitive in PromQL. A name in LABEL_LISTS followed by "("
# opens a list of label names.
LABEL_LISTS = {"by", "without", "on", "ignoring", "group_left", "group_right"}
KEYWORDS = LABEL_LISTS | {
    "and", "or", "unless", "bool", "offset", "atan2", "inf", "nan",
    "sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values",
    "bottomk", "topk", "quantile", "limitk", "limit_ratio",
}
FUNCTIONS = {
    "abs", "absent", "absent_over_time", "acos", "acosh", "asin", "asinh", "atan", "atanh",
    "avg_over_time", "ceil", "changes", "clamp", "clamp_max", "clamp_min", "cos", "cosh",
    "count_over_time", "day_of_month", "day_of_week", "day_of_year", "days_in_month", "deg",
    "delta", "deriv", "double_exponential_smoothing", "end", "exp", "floor", "histogram_avg",
    "histogram_count", "histogram_fraction", "histogram_quantile", "histogram_stddev",
    "histogram_stdvar", "histogram_sum", "holt_winters", "hour", "idelta", "increase", "info",
    "irate", "label_join", "label_replace", "last_over_time", "ln", "log10", "log2",
    "mad_over_time", "max_over_time", "min_over_time", "minute", "month", "pi",
    "predict_linear", "present_over_time", "quantile_over_time", "rad", "rate", "resets",
    "round", "scalar", "sgn", "sin", "sinh", "sort", "sort_by_label", "sort_by_label_desc",
    "sort_desc", "sqrt", "start", "stddev_over_time", "stdvar_over_time", "sum_over_time",
    "tan", "tanh", "time", "timestamp", "vector", "year",
}


class ParseError(Exception):
    pass


def _skip_string(text, i):
    """Index just past the string literal starting at text[i]."""
    quote = text[i]
    i += 1
    while i < len(text):
        if text[i] == "\\" and quote != "`":
            i += 2
            continue
        if text[i] == quote:
            return i + 1
        i += 1
    raise ParseError(f"unterminated string in {text!r}")


def _skip_block(text, i, close):
    """Index just past the `close` that ends the {...} or [...] starting at text[i]."""
    i += 1
    while i < len(text):
        c = text[i]
        if c in "\"'`":
            i = _skip_string(text, i)
            continue
        if c == close:
            return i + 1
        i += 1
    raise ParseError(f"no {close!r} closes {text!r}")


def tokens(expr):
    """PromQL tokens as (kind, text): ident, number, string, matchers, range, punct.
    Grafana variables have been replaced beforehand (see metric_names)."""
    out = []
    i = 0
    while i < len(expr):
        c = expr[i]
        if c.isspace():
            i += 1
        elif c == "#":
            end = expr.find("\n", i)
            i = len(expr) if end < 0 else end
        elif c in "\"'`":
            j = _skip_string(expr, i)
            out.append(("string", expr[i:j]))
            i = j
        elif c == "{":
            j = _skip_block(expr, i, "}")
            out.append(("matchers", expr[i:j]))
            i = j
        elif c == "[":
            j = _skip_block(expr, i, "]")
            out.append(("range", expr[i:j]))
            i = j
        elif c.isdigit() or (c == "." and expr[i + 1:i + 2].isdigit()):
            m = NUMBER.match(expr, i)
            out.append(("number", m.group(0)))
            i = m.end()
        elif IDENT.match(expr, i):
            m = IDENT.match(expr, i)
            out.append(("ident", m.group(0)))
            i = m.end()
        else:
            out.append(("punct", c))
            i += 1
    return out


def metric_names(expr):
    """(metric names, function names) an expression uses."""
    # A Grafana variable stands for a value (a number, a duration, a regex inside a string).
    expr = GRAFANA_VAR.sub(" 1 ", expr)
    toks = tokens(expr)
    metrics, functions = [], []
    i = 0
    while i < len(toks):
        kind, text = toks[i]
        following = toks[i + 1] if i + 1 < len(toks) else None
        if kind == "matchers":
            metrics += re.findall(r'__name__\s*=\s*"([^"]*)"', text)
        elif kind == "ident":
            opens = following == ("punct", "(")
            if opens and text.lower() in LABEL_LISTS:
                depth, i = 0, i + 1
                while i < len(toks):
                    if toks[i] == ("punct", "("):
                        depth += 1
                    elif toks[i] == ("punct", ")"):
                        depth -= 1
                        if depth == 0:
                            break
                    i += 1
            elif opens:
                if text.lower() not in KEYWORDS:
                    functions.append(text)
            elif text.lower() not in KEYWORDS:
                metrics.append(text)
        i += 1
    return metrics, functions


def exported_names(scrape):
    """Names a query may select: `# TYPE` families (with a histogram's or summary's series
    names) and the samples' names."""
    names = set()
    for line in scrape.splitlines():
        line = line.strip()
        if line.startswith("# TYPE "):
            parts = line.split()
            if len(parts) < 4:
                continue
            family, kind = parts[2], parts[3]
            names.add(family)
            if kind == "histogram":
                names |= {family + "_bucket", family + "_sum", family + "_count"}
            elif kind == "summary":
                names |= {family + "_sum", family + "_count"}
        elif line and not line.startswith("#"):
            m = IDENT.match(line)
            if m:
                names.add(m.group(0))
    return names


def dashboard_queries(path, problems):
    """(where, expr) of every query in the dashboard; structural problems go to `problems`."""
    try:
        dash = json.loads(Path(path).read_text())
    except (OSError, ValueError) as e:
        problems.append(f"{path}: not readable as JSON: {e}")
        return []
    if not isinstance(dash, dict):
        problems.append(f"{path}: not a dashboard object")
        return []

    variables = set(GRAFANA_BUILTINS)
    queries = []
    for var in dash.get("templating", {}).get("list", []):
        variables.add(var.get("name", ""))
        if var.get("type") != "query":
            continue
        query = var.get("query")
        query = query.get("query", "") if isinstance(query, dict) else query or ""
        where = f"{path}: variable {var.get('name')!r}"
        m = re.fullmatch(r"\s*label_values\((.*),\s*[a-zA-Z_][a-zA-Z0-9_]*\s*\)\s*", query, re.S)
        if m:
            queries.append((where, m.group(1)))
            continue
        m = re.fullmatch(r"\s*query_result\((.*)\)\s*", query, re.S)
        if m:
            queries.append((where, m.group(1)))
            continue
        problems.append(f"{where}: query {query!r} is neither label_values(metric, label) "
                        "nor query_result(expr)")

    def walk(panels):
        for panel in panels:
            yield panel
            yield from walk(panel.get("panels", []))

    panels = list(walk(dash.get("panels", [])))
    if not any(p.get("type") != "row" for p in panels):
        problems.append(f"{path}: no panels")
    ids = [p.get("id") for p in panels]
    for dup in sorted({i for i in ids if ids.count(i) > 1 and i is not None}):
        problems.append(f"{path}: panel id {dup} used more than once")

    def check_vars(where, text):
        for m in GRAFANA_VAR.finditer(text):
            name = next(g for g in m.groups() if g)
            if name not in variables:
                problems.append(f"{where}: ${name} is not a dashboard variable")

    for panel in panels:
        if panel.get("type") in ("row", "text"):
            continue
        where = f"{path}: panel {panel.get('title')!r} (id {panel.get('id')})"
        check_vars(where, json.dumps(panel.get("datasource", "")))
        targets = panel.get("targets") or []
        if not targets:
            problems.append(f"{where}: no queries")
        for target in targets:
            expr = target.get("expr", "")
            twhere = f"{where} target {target.get('refId', '?')}"
            if not expr.strip():
                problems.append(f"{twhere}: empty expr")
                continue
            check_vars(twhere, expr)
            queries.append((twhere, expr))
    return queries


def dashboard_as_rules(path):
    """The dashboard's panel queries as a Prometheus rule file, or None when it has problems."""
    problems = []
    queries = dashboard_queries(path, problems)
    if problems:
        print("\n".join(problems), file=sys.stderr)
        return None

    def value(m):
        name = next(g for g in m.groups() if g)
        return "5m" if name in ("__rate_interval", "__interval", "__range") else ".*"

    lines = ["groups:", "  - name: dashboard", "    rules:"]
    for n, (where, expr) in enumerate(queries, 1):
        lines += [f"      # {where}", f"      - record: dashboard:query{n}",
                  f"        expr: {json.dumps(GRAFANA_VAR.sub(value, expr))}"]
    return "\n".join(lines) + "\n"


def _yaml_scalar(value):
    value = value.strip()
    if len(value) >= 2 and value[0] == value[-1] == "'":
        return value[1:-1].replace("''", "'")
    if len(value) >= 2 and value[0] == value[-1] == '"':
        return json.loads(value)
    return value


def alert_rules(path, problems):
    """(where, expr) of every rule in a Prometheus rule file; an alert's missing parts go to
    `problems`."""
    try:
        lines = Path(path).read_text().splitlines()
    except OSError as e:
        problems.append(f"{path}: {e}")
        return []

    def indent(line):
        return len(line) - len(line.lstrip(" "))

    starts = [i for i, line in enumerate(lines) if re.match(r"\s*- (alert|record):", line)]
    if not starts:
        problems.append(f"{path}: no rules found")
    rules = []
    for start in starts:
        base = indent(lines[start])
        end = start + 1
        while end < len(lines) and (not lines[end].strip() or indent(lines[end]) > base):
            end += 1
        block = lines[start:end]
        kind, name = re.match(r"\s*- (alert|record):\s*(\S+)", lines[start]).groups()
        where = f"{path}: {kind} {name}"
        expr = None
        for j, line in enumerate(block):
            m = re.match(r"(\s*)expr:(.*)$", line)
            if not m:
                continue
            key_indent, value = len(m.group(1)), m.group(2).strip()
            rest = []
            for more in block[j + 1:]:
                if more.strip() and indent(more) <= key_indent:
                    break
                rest.append(more)
            if value[:1] in ("|", ">"):
                expr = "\n".join(rest)
            else:
                expr = _yaml_scalar(" ".join([value] + [r.strip() for r in rest]))
            break
        if not expr or not expr.strip():
            problems.append(f"{where}: no expr")
            continue
        rules.append((where, expr))
        if kind == "alert":
            text = "\n".join(block)
            for part, pattern in (("for:", r"^\s+for:\s*\S"),
                                  ("labels.severity", r"^\s+severity:\s*\S"),
                                  ("annotations.summary", r"^\s+summary:\s*\S"),
                                  ("annotations.description", r"^\s+description:\s*\S")):
                if not re.search(pattern, text, re.M):
                    problems.append(f"{where}: no {part}")
    return rules


def check(scrape, dashboard, alerts):
    problems = []
    exported = exported_names(scrape)
    if not exported:
        problems.append("the scrape has no metrics")
    queries = dashboard_queries(dashboard, problems) + alert_rules(alerts, problems)
    unknown, used = {}, set()
    for where, expr in queries:
        try:
            metrics, functions = metric_names(expr)
        except ParseError as e:
            problems.append(f"{where}: {e}")
            continue
        for fn in functions:
            if fn not in FUNCTIONS:
                problems.append(f"{where}: unknown PromQL function {fn}()")
        for name in metrics:
            used.add(name)
            if name not in exported:
                unknown.setdefault(name, []).append(where)
    for name in sorted(unknown):
        problems.append(f"unknown metric {name} (not in the scrape), used by:\n    "
                        + "\n    ".join(unknown[name]))
    return problems, len(queries), used


SELF_TEST = [
    ('sum by (policy) (rate(ratelimit_proxy_decisions_total{policy!="none",decision=~"denied|x"}[5m]))',
     ["ratelimit_proxy_decisions_total"], ["rate"]),
    ("histogram_quantile(0.99, sum by (job, instance, le) (rate(a_bucket[5m]))) > 0.025 and on (job, instance) b_count > 1",
     ["a_bucket", "b_count"], ["histogram_quantile", "rate"]),
    ('sum(rate(x_total{instance=~"$instance"}[$__rate_interval])) / ignoring (kind) group_left (le) y',
     ["x_total", "y"], ["rate"]),
    ("max without (instance) (up offset 5m) * on (job) group_left info_metric",
     ["up", "info_metric"], []),
    ('label_replace(foo{a="}{[by("}, "dst", "$1", "src", "(.*)") # comment naming not_a_metric(',
     ["foo"], ["label_replace"]),
    ('{__name__="by_name", job="j"} + 1e3 + 0x1F + Inf - NaN + 1h30m', ["by_name"], []),
    ("time() - max by (instance) (z{instance=~\"${instance:regex}\"}) > bool 2", ["z"], ["time"]),
    ("rate(q[5m:1m] @ start()) and sum(v) by (policy)", ["q", "v"], ["rate", "start"]),
]


def self_test():
    failures = 0
    for expr, want_metrics, want_functions in SELF_TEST:
        got = metric_names(expr)
        if got != (want_metrics, want_functions):
            failures += 1
            print(f"FAIL {expr!r}: got {got}, want {(want_metrics, want_functions)}")
    scrape = ("# HELP h_seconds x\n# TYPE h_seconds histogram\nh_seconds_bucket{le=\"+Inf\"} 1\n"
              "# TYPE c_total counter\nc_total{a=\"b\"} 3\nuntyped_sample 1\n")
    want = {"h_seconds", "h_seconds_bucket", "h_seconds_sum", "h_seconds_count", "c_total", "untyped_sample"}
    if exported_names(scrape) != want:
        failures += 1
        print(f"FAIL exported_names: got {sorted(exported_names(scrape))}")
    print(f"self-test: {len(SELF_TEST) + 1 - failures} passed, {failures} failed")
    return 1 if failures else 0


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--metrics", help='a scrape of GET /metrics ("-": standard input)')
    parser.add_argument("--dashboard", default=str(DEFAULT_DASHBOARD))
    parser.add_argument("--alerts", default=str(DEFAULT_ALERTS))
    parser.add_argument("--dashboard-as-rules", action="store_true",
                        help="print the dashboard's queries as a rule file for promtool and exit")
    parser.add_argument("--self-test", action="store_true", help="test the PromQL tokeniser and exit")
    args = parser.parse_args()
    if args.self_test:
        return self_test()
    if args.dashboard_as_rules:
        rules = dashboard_as_rules(args.dashboard)
        if rules is None:
            return 1
        sys.stdout.write(rules)
        return 0
    if not args.metrics:
        parser.error("--metrics is required")
    try:
        scrape = sys.stdin.read() if args.metrics == "-" else Path(args.metrics).read_text()
    except OSError as e:
        parser.error(str(e))

    problems, count, used = check(scrape, args.dashboard, args.alerts)
    if problems:
        print(f"{len(problems)} problem(s) in the deploy files:", file=sys.stderr)
        for problem in problems:
            print(f"  {problem}", file=sys.stderr)
        return 1
    print(f"ok: {count} queries over {len(used)} metric names, all exported by the scrape")
    return 0


if __name__ == "__main__":
    sys.exit(main())
