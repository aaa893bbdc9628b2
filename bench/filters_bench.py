"""Many viewers, each with their own filter (issue 17): one stream at 1,000 lines/s to 200 clients.

    .venv/bin/python -m bench.filters_bench                    # about 6 minutes
    .venv/bin/python -m bench.filters_bench --distinct 200 --kinds regex --seconds 10
    .venv/bin/python -m bench.filters_bench --before /path/to/older/tree   # that tree's gateway too

Same method as bench/gateway_bench.py (gateway pinned to core 0 with Redis and the
publisher, the load generator alone on core 1, 3 s warm-up, then measured). In one run:
the 200 clients unfiltered (the baseline), then with 1, 10, 100 and 200 distinct filters
given to the clients in turn, for each kind: regexes, keywords (half of them case-folded),
both mixed (regexes, keywords, a keyword and a regex together; both case modes), and broad
regexes (each selects about 90% of the lines: nearly every line goes to every client, each
client's frames its own).

Every filter but the broad ones selects a few percent of the publisher's lines (its lines are deterministic,
bench/publisher.py), so the lines the clients should get per second can be estimated (from
the first 20,000 lines; a 10 s window sees other ones, a few percent apart): the report
gives it beside what arrived. Loss is what the gateway says it dropped (`dropped`, `gap`):
it never drops a line unsaid.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from bench.gateway_bench import ROOT, load_run, write_results
from bench.publisher import WORDS, text
from embedded import RedisServer

CLIENTS, RATE = 200, 1000
STREAM = "kafka:incident"


def regex_filter(k: int) -> dict[str, Any]:
    """One host family's lines with a given word: about 2% of lines; distinct for k < 400."""
    spec: dict[str, Any] = {"regex": rf"10\.0\.0\.{k % 25}\d* .*{re.escape(WORDS[k % 16])}"}
    if k % 4 == 3:
        spec["ignore_case"] = True
    return spec


def keyword_filter(k: int) -> dict[str, Any]:
    """Two words in a row: about 4% of lines; distinct for k < 256; every other one folded."""
    phrase = f"{WORDS[k % 16]} {WORDS[(k // 16) % 16]}"
    return {"keyword": phrase.upper(), "ignore_case": True} if k % 2 else {"keyword": phrase}


def mixed_filter(k: int) -> dict[str, Any]:
    if k % 3 == 0:
        return regex_filter(k)
    if k % 3 == 1:
        return keyword_filter(k)
    return {"keyword": WORDS[k % 16], **regex_filter(k)}  # both must match


def broad_filter(k: int) -> dict[str, Any]:
    """Hosts but one last digit, or two words in a row: about 90% of lines; distinct for k < 256."""
    pair = f"{re.escape(WORDS[k % 16])} {re.escape(WORDS[(k // 16) % 16])}"
    return {"regex": rf"10\.0\.0\.\d*[^{k % 10}\D] |{pair}"}


KINDS = {"regex": regex_filter, "keyword": keyword_filter, "mixed": mixed_filter, "broad": broad_filter}


def selects(spec: dict[str, Any], line: str) -> bool:
    fold = spec.get("ignore_case", False)
    keyword = spec.get("keyword", "")
    if (keyword.casefold() not in line.casefold()) if fold else (keyword not in line):
        return False
    return not spec.get("regex") or re.search(spec["regex"], line, re.I if fold else 0) is not None


def expected_lines_per_s(filters: list[dict[str, Any]]) -> float:
    """Lines/s all clients should receive: each client's share of the publisher's lines."""
    sample = [text(i) for i in range(20000)]
    share = [sum(selects(f, line) for line in sample) / len(sample) for f in filters]
    return RATE * sum(share[i % len(filters)] for i in range(CLIENTS))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--distinct", default="1,10,100,200")
    parser.add_argument("--kinds", default="regex,keyword,mixed,broad")
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--before", type=Path, help="also run the gateway of this tree (same load, same run)")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="tailgate-bench-"))
    server = RedisServer(workdir=str(tmp)).start()
    subprocess.run(["taskset", "-pc", "0", str(server.proc.pid)], check=True, stdout=subprocess.DEVNULL)
    trees = [("this tree", ROOT)] + ([("before", args.before.resolve())] if args.before else [])
    results: list[dict[str, Any]] = []

    def run(tree: str, root: Path, kind: str, distinct: int, filters: list[dict[str, Any]]) -> None:
        load_args = ("--filters", json.dumps(filters)) if filters else ()
        res = load_run("tailgate", server, CLIENTS, [STREAM], RATE, args.seconds, tmp, load_args=load_args, root=root)
        expected = expected_lines_per_s(filters) if filters else RATE * CLIENTS
        results.append({"tree": tree, "filters": kind, "distinct": distinct, "expected_lines_per_s": round(expected)})
        results[-1].update(res)
        print(json.dumps(results[-1]), flush=True)

    try:
        for tree, root in trees:
            run(tree, root, "none", 0, [])
            for kind in args.kinds.split(","):
                for distinct in (int(n) for n in args.distinct.split(",")):
                    run(tree, root, kind, distinct, [KINDS[kind](k) for k in range(distinct)])
            run(tree, root, "none", 0, [])  # the baseline again: the machine may have changed meanwhile
    finally:
        server.stop()
    write_results("filters.json", results)


if __name__ == "__main__":
    main()
