"""Correctness of hearth.structured on the official JSON-Schema-Test-Suite, drafts 2020-12 and 7.

The suite's files ship in the jsonschema source distribution on PyPI (`json/tests/<draft>/`);
this script downloads that sdist once with pip (cached outside the repository) unless
`--suite DIR` points at a checkout. For every test group it compiles the schema (formats as
annotations, as the suite's main files expect) and counts groups that compile and groups
refused with a ConstraintError; for every case of a compiled group it checks that
`accepts(json.dumps(data))` agrees with the suite's `valid`. Optional tests (`optional/`) are
left out, as the suite says they are not required of an implementation.

    python benchmarks/structured_suite.py            # writes results/structured_suite.json

Claims: `accepts` agrees with the suite on at least 99% of the cases whose schema compiles,
and at least 60% of the schemas compile.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tarfile
import time
from collections import Counter
from pathlib import Path

from common import cache_dir, markdown_table, write_result

SDIST = "jsonschema==4.26.0"
DRAFTS = ("draft2020-12", "draft7")


def suite_dir(given: str | None) -> Path:
    if given:
        return Path(given)
    home = cache_dir() / "jsonschema-test-suite"
    tests = home / "json" / "tests"
    if tests.is_dir():
        return tests
    home.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [sys.executable, "-m", "pip", "download", SDIST, "--no-binary", ":all:", "--no-deps",
         "-d", str(home), "-q"],
        check=True,
    )  # fmt: skip
    archive = next(home.glob("jsonschema-*.tar.gz"))
    with tarfile.open(archive) as tar:
        for member in tar.getmembers():
            parts = Path(member.name).parts
            if len(parts) > 2 and parts[1] == "json":
                member.name = str(Path(*parts[1:]))
                tar.extract(member, home, filter="data")
    return tests


def run_draft(root: Path, draft: str) -> dict:
    from hearth.errors import ConstraintError
    from hearth.structured import compile

    groups = Counter()
    cases = Counter()
    refused_by = Counter()
    disagreements = []
    compile_ms = []
    for path in sorted((root / draft).glob("*.json")):
        for group in json.loads(path.read_text()):
            schema = group["schema"]
            if draft == "draft7" and isinstance(schema, dict):
                schema = {"$schema": "http://json-schema.org/draft-07/schema#", **schema}
            groups["total"] += 1
            started = time.perf_counter()
            try:
                constraint = compile(schema)
            except ConstraintError as exc:
                groups["refused"] += 1
                refused_by[exc.keyword or str(exc).split(":")[-1].strip()[:60]] += 1
                continue
            compile_ms.append(1000 * (time.perf_counter() - started))
            groups["compiled"] += 1
            for test in group["tests"]:
                cases["total"] += 1
                text = json.dumps(test["data"], ensure_ascii=False)
                if constraint.accepts(text) == test["valid"]:
                    cases["agree"] += 1
                else:
                    # rejecting a valid document is over-strict (generation can still only
                    # write valid ones); accepting an invalid one would be a wrong answer
                    cases["wrongly accepted" if not test["valid"] else "wrongly rejected"] += 1
                    disagreements.append(
                        {"file": path.name, "group": group["description"],
                         "test": test["description"], "data": text[:80], "valid": test["valid"]}
                    )  # fmt: skip
    compile_ms.sort()
    return {
        "groups": dict(groups),
        "cases": dict(cases),
        "compile_share": groups["compiled"] / groups["total"],
        "agreement": cases["agree"] / max(cases["total"], 1),
        "compile_ms_p50": compile_ms[len(compile_ms) // 2] if compile_ms else None,
        "refused_by": dict(refused_by.most_common()),
        "disagreements": disagreements,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--suite", help="the suite's tests/ folder (default: from the sdist)")
    args = parser.parse_args()
    root = suite_dir(args.suite)
    results = {draft: run_draft(root, draft) for draft in DRAFTS}
    rows = [
        [
            draft,
            r["groups"]["total"],
            f"{r['groups']['compiled']} ({100 * r['compile_share']:.0f}%)",
            r["groups"].get("refused", 0),
            r["cases"]["total"],
            f"{100 * r['agreement']:.2f}%",
            r["cases"].get("wrongly accepted", 0),
            r["cases"].get("wrongly rejected", 0),
            f"{r['compile_ms_p50']:.2f}",
        ]
        for draft, r in results.items()
    ]
    table = markdown_table(
        ["draft", "schemas", "compile", "refused", "cases checked", "accepts agrees",
         "invalid accepted", "valid rejected", "compile ms p50"],
        rows,
    )  # fmt: skip
    claims = {
        f"{d}: accepts agrees with the suite on >= 99% of compiled cases": r["agreement"] >= 0.99
        for d, r in results.items()
    } | {f"{d}: >= 60% of schemas compile": r["compile_share"] >= 0.6 for d, r in results.items()}
    print(table)
    for draft, r in results.items():
        print(f"\n{draft} refused by keyword: {r['refused_by']}")
        for d in r["disagreements"][:15]:
            print(f"  disagrees: {d}")
    for claim, met in claims.items():
        print(f"{claim}: {'met' if met else 'MISSED'}")
    path = write_result(
        "structured_suite",
        {"suite": SDIST, "drafts": results, "table": table, "claims": claims},
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
