#!/usr/bin/env python3
"""Compares a critest (ginkgo v2) JSON report with an expectation file.

Expectation file lines:   STATE | SPEC | REASON
  STATE  failed or skipped: the outcome this spec is allowed (and expected) to have on this machine
  SPEC   the spec's full text as ginkgo reports it: container texts and the leaf text joined by spaces
  REASON why (required); '#' starts a comment line.
Exit 1 when a spec fails or skips without an entry, when an entry names a spec that did not run at all,
or when a listed spec now passes or has another outcome (edit the file: it only ever shrinks).
"""
import json
import sys

OK_STATES = {"passed"}


def load_expect(path):
    out = {}
    for n, raw in enumerate(open(path, encoding="utf-8"), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        parts = [p.strip() for p in line.split("|")]
        if len(parts) != 3 or parts[0] not in ("failed", "skipped") or not parts[1] or not parts[2]:
            sys.exit(f"{path}:{n}: expected 'failed|skipped | SPEC | REASON', got {line!r}")
        if parts[1] in out:
            sys.exit(f"{path}:{n}: {parts[1]!r} listed twice")
        out[parts[1]] = (parts[0], parts[2])
    return out


def load_report(path):
    specs = {}
    for suite in json.load(open(path, encoding="utf-8")):
        for r in suite.get("SpecReports") or []:
            if r.get("LeafNodeType") != "It":
                continue
            name = " ".join([*(r.get("ContainerHierarchyTexts") or []), r.get("LeafNodeText", "")])
            state = r.get("State", "?")
            msg = ((r.get("Failure") or {}).get("Message") or "").strip().splitlines()
            specs[name] = (state, msg[0][:200] if msg else "")
    return specs


def main():
    report, expect_path, handler = sys.argv[1], sys.argv[2], sys.argv[3]
    expect = load_expect(expect_path)
    specs = load_report(report)
    counts = {}
    for state, _ in specs.values():
        counts[state] = counts.get(state, 0) + 1
    problems = []
    for name, (state, msg) in sorted(specs.items()):
        want = expect.get(name)
        if state in OK_STATES:
            if want:
                problems.append(f"NOW PASSES (remove it from {expect_path}): {name}")
            continue
        norm = "failed" if state in ("failed", "panicked", "timedout", "aborted", "interrupted") else state
        if want is None:
            problems.append(f"UNEXPECTED {state.upper()}: {name}" + (f"\n      {msg}" if msg else ""))
        elif want[0] != norm:
            problems.append(f"EXPECTED {want[0]} BUT {state}: {name}" + (f"\n      {msg}" if msg else ""))
    for name in expect:
        if name not in specs:
            problems.append(f"LISTED BUT NOT RUN (stale entry in {expect_path}): {name}")
    summary = ", ".join(f"{v} {k}" for k, v in sorted(counts.items()))
    print(f"critest[{handler}]: {len(specs)} specs: {summary}; {len(expect)} listed in {expect_path}")
    for name, (state, _) in sorted(specs.items()):
        if state not in OK_STATES:
            print(f"  {state:8} {name}  -- {expect.get(name, ('', 'NOT LISTED'))[1]}")
    if problems:
        print(f"critest[{handler}]: {len(problems)} result(s) differ from {expect_path}:")
        for p in problems:
            print("  " + p)
        return 1
    print(f"critest[{handler}]: every result as expected")
    return 0


if __name__ == "__main__":
    sys.exit(main())
