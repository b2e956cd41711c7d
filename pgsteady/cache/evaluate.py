"""What the rules decide for one request, with the reasons, and the checks of a rules file.

``decide()`` is the one place that says what the rules mean: ``cache check``,
``cache explain``, ``cache probe`` and the ``headers`` target all ask it, and
the proxy generators implement exactly its order:

1. a method other than GET or HEAD is never stored (HTTP caches store only those);
2. a query parameter with a percent-encoded name is never stored (see requests.py);
3. the first rule whose match holds decides; no rule matching means "not cached";
4. a never-cache rule answers ``private, no-store``;
5. else the rule's bypasses are tried in the order the rule lists them: the first
   that fires makes the response ``private, no-store`` and uncached;
6. else the response is cached with the rule's Cache-Control and Vary.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from itertools import product

from .requests import Request, from_example
from .rules import STORABLE, Action, Bypass, Example, Match, Rule, Rules, glob_regex

NO_STORE = "private, no-store"


@dataclass
class Step:
    rule: str
    matched: bool
    why: str


@dataclass
class Decision:
    cached: bool
    reason: str
    rule: Rule | None = None
    bypass: Bypass | None = None
    headers: dict[str, str] = field(default_factory=dict)
    steps: list[Step] = field(default_factory=list)
    bypasses_tried: list[Step] = field(default_factory=list)

    def to_json(self) -> dict:
        return {"cached": self.cached, "reason": self.reason, "rule": self.rule.name if self.rule else None,
                "bypass": self.bypass.name if self.bypass else None, "headers": self.headers,
                "rules_tried": [vars(s) for s in self.steps], "bypasses_tried": [vars(s) for s in self.bypasses_tried]}


def cache_control(action: Action) -> dict[str, str]:
    """The response headers of a cached response under this action."""
    if action.never:
        return {"Cache-Control": NO_STORE}
    parts = ["public", f"max-age={action.browser}", f"s-maxage={action.cdn}"]
    if action.stale_while_revalidate is not None:
        parts.append(f"stale-while-revalidate={action.stale_while_revalidate}")
    if action.stale_if_error is not None:
        parts.append(f"stale-if-error={action.stale_if_error}")
    headers = {"Cache-Control": ", ".join(parts)}
    if action.vary:
        headers["Vary"] = ", ".join(action.vary)
    return headers


def path_matches(pattern: str, path: str) -> bool:
    return re.match(glob_regex(pattern), path) is not None


def cookie_value(req: Request, name: str) -> str:
    """The value of cookie ``name`` (a trailing * matches a prefix); '' when absent."""
    name = name.lower()
    if name.endswith("*"):
        return next((v for k, v in req.cookies.items() if k.startswith(name[:-1]) and v), "")
    return req.cookies.get(name, "")


def _holds(kind: str, name: str, want: str, got: str) -> tuple[bool, str]:
    if want == "*":
        return bool(got), f"{kind} {name} {'is present' if got else 'is absent'}"
    return got == want, f"{kind} {name} is {got!r}" + ("" if got == want else f", not {want!r}")


def match(m: Match, req: Request) -> tuple[bool, str]:
    """Whether a rule's match holds, and the reason a person can read."""
    hit = next((p for p in m.paths if path_matches(p, req.path)), None)
    if hit is None:
        return False, f"path {req.path} does not match {' or '.join(m.paths)}"
    why = [f"path {req.path} matches {hit}"]
    if m.methods is not None:
        if req.method not in m.methods:
            return False, f"method {req.method} is not {', '.join(m.methods)}"
        why.append(f"method {req.method}")
    # "*" asks for presence: a parameter counts with or without a value, a header or cookie only with one
    checks = [("query parameter", n, v, ("(present)" if req.has_arg(n) else "") if v == "*" else req.arg(n))
              for n, v in m.query.items()] + \
        [("header", n, v, req.headers.get(n, "")) for n, v in m.headers.items()] + \
        [("cookie", n, v, cookie_value(req, n)) for n, v in m.cookies.items()]
    for kind, name, want, got in checks:
        ok, reason = _holds(kind, name, want, got)
        if not ok:
            return False, reason
        why.append(reason)
    return True, "; ".join(why)


def fires(b: Bypass, req: Request) -> tuple[bool, str]:
    if b.kind == "cookie":
        v = cookie_value(req, b.value)
        return bool(v), f"cookie {b.value} {'is sent' if v else 'is not sent'}"
    if b.kind == "header":
        v = req.headers.get(b.value, "")
        return bool(v), f"header {b.value} {'is sent' if v else 'is not sent'}"
    if b.kind == "query":  # present at all: ?preview with no value is a preview to most frameworks
        ok = req.has_arg(b.value)
        return ok, f"query parameter {b.value} {'is present' if ok else 'is absent'}"
    if b.kind == "path":
        ok = path_matches(b.value, req.path)
        return ok, f"path {req.path} {'matches' if ok else 'does not match'} {b.value}"
    ok = req.method not in b.value
    return ok, f"method {req.method} {'is not' if ok else 'is'} {', '.join(b.value)}"


def blocked(req: Request) -> str | None:
    """Why no rule may cache this request whatever it says (steps 1 and 2), or None."""
    if req.method not in STORABLE:
        return f"{req.method} responses are never stored (HTTP caches store only GET and HEAD)"
    name = req.encoded_param_name()
    if name is not None:
        return (f"query parameter name {name!r} is percent-encoded; such requests are never stored "
                "(they could slip past a bypass on the decoded name)")
    return None


def decide(rules: Rules, req: Request) -> Decision:
    d = Decision(False, "no rule matched; the proxy passes it to the origin without caching")
    for rule in rules.rules:
        ok, why = match(rule.match, req)
        d.steps.append(Step(rule.name, ok, why))
        if ok:
            d.rule = rule
            break
    if d.rule is None:
        return d
    rule = d.rule
    d.headers = {"Cache-Control": NO_STORE}
    if rule.action.never:
        d.reason = f"rule {rule.name!r} never caches"
        return d
    for name in rule.bypass:
        b = rules.bypasses.get(name)
        if b is None:
            continue  # check() reports it
        ok, why = fires(b, req)
        d.bypasses_tried.append(Step(name, ok, why))
        if ok:
            d.bypass = b
            d.reason = f"bypass {name!r} fired: {why}"
            return d
    no = blocked(req)
    if no is not None:
        d.reason = no
        return d
    d.cached, d.headers = True, cache_control(rule.action)
    d.reason = f"rule {rule.name!r} caches it: {d.headers['Cache-Control']}"
    return d


# -- the checks of `cache check` ------------------------------------------------


@dataclass
class Finding:
    rule: str
    problem: str
    example: str | None = None


@dataclass
class ExampleResult:
    rule: str
    example: Example
    decision: Decision

    @property
    def holds(self) -> bool:
        return self.decision.cached == self.example.cached


def _probes(pattern: str) -> list[str]:
    parts = re.split(r"(\*\*|\*)", pattern)
    choices = [["", "x", "x.y"] if p == "*" else ["", "x", "x/y.z"] if p == "**" else [p] for p in parts]
    return ["".join(c) for c in list(product(*choices))[:200]]


def covers(a: Match, b: Match) -> bool:
    """Whether every request that match ``b`` accepts is also accepted by ``a`` (conservatively)."""
    if a.methods is not None and (b.methods is None or not set(b.methods) <= set(a.methods)):
        return False
    for mine, theirs in ((a.query, b.query), (a.headers, b.headers), (a.cookies, b.cookies)):
        for k, v in mine.items():
            if k not in theirs or (v != "*" and theirs[k] != v):
                return False
    return all(any(path_matches(pa, probe) for pa in a.paths) for pb in b.paths for probe in _probes(pb))


def check(rules: Rules) -> tuple[list[Finding], list[ExampleResult]]:
    findings: list[Finding] = []
    results: list[ExampleResult] = []
    for i, rule in enumerate(rules.rules):
        for name in (b for r, b in rules.undefined_bypasses() if r == rule.name):
            findings.append(Finding(rule.name, f"names bypass {name!r}, which no [bypass.{name}] defines"))
        if not any(e.cached for e in rule.examples):
            findings.append(Finding(rule.name, "has no must_cache example; add one URL that must be cached "
                                               "(for a never-cache rule: a neighbouring URL that another rule caches)"))
        if not any(not e.cached for e in rule.examples):
            findings.append(Finding(rule.name, "has no must_not_cache example; add one URL that must not be cached"))
        shadow = next((r for r in rules.rules[:i] if covers(r.match, rule.match)), None)
        if shadow is not None:
            findings.append(Finding(rule.name, f"is unreachable: the earlier rule {shadow.name!r} matches every "
                                               "request it matches; move it above or narrow the earlier rule"))
        reached = False
        for ex in rule.examples:
            d = decide(rules, from_example(ex))
            results.append(ExampleResult(rule.name, ex, d))
            reached |= d.rule is rule
            if d.cached != ex.cached:
                want = "must be cached" if ex.cached else "must not be cached"
                findings.append(Finding(rule.name, f"example contradicts the rules: it {want}, but {d.reason}",
                                        ex.label()))
        if not reached and shadow is None and rule.examples:
            findings.append(Finding(rule.name, "no example of this rule is decided by it; add one that it matches"))
    return findings, results
