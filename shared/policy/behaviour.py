"""Which fixes keep behaviour, and where a behaviour-changing one is justified (pure, over source text).

`FIXES` is the one table of every fix the rules engine can make: ruff rules by code, pixee codemods
by id, and our own site fixes. A fix that keeps behaviour everywhere is applied; one that changes
behaviour is applied only at the sites where `judge_site` finds the context that justifies it (a
`random` value that feeds a token, `== None` on a plain scalar…), site by site, so an unrelated use
in the same file never blocks the fix that matters. Sites outside that context are left as they are
and named with the reason, never auto-merged. A ruff fix that ruff itself marks unsafe and that has
no entry here is never applied: passing tests are not proof that behaviour is kept.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass

from shared.common.pyparse import parse_python
from shared.policy.paths import is_test_path


@dataclass(frozen=True)
class Fix:
    preserves: bool  # keeps behaviour wherever it applies
    changes: str  # what may change (for a preserving fix: where it would, and is therefore not applied)
    context: str | None = None  # the site check that decides (see judge_site)


_RANDOM = Fix(False, "seeding `random` no longer reproduces the values (a documented use for retry jitter, "
                     "sampling and simulations)", "secret")  # fmt: skip
_HIGH_RISK = "security"
FIXES: dict[str, Fix] = {
    # ruff rules with an unsafe fix that is known safe in a context
    "E711": Fix(False, "`x is None` differs from `x == None` when x's type overrides `__eq__` (numpy, pandas, "
                       "SQLAlchemy columns)", "plain-operand"),  # fmt: skip
    "E712": Fix(False, "`x is True` differs from `x == True` for 1, numpy booleans and types overriding `__eq__`",
                "bool-operand"),
    # ruff rules whose fix ruff marks safe but which change behaviour or cost in some places
    # `contextlib.suppress` is several times slower than try/except wherever it runs (toolz's `memoize`
    # hot path was rewritten), and in a generator changes how exception groups propagate (3.12+).
    "SIM105": Fix(False, "`contextlib.suppress` is several times slower than `try/except` (in a generator it "
                         "also changes how exception groups propagate)", None),  # fmt: skip
    "F401": Fix(False, "removing a module-level import removes the module attribute, which code elsewhere may "
                       "import from it (`from pkg.compat import Sequence`)", "not-reexport"),  # fmt: skip
    "SIM300": Fix(True, "in a test the comparison's direction is often the point of the test (`__eq__` vs "
                        "`__req__`)", "not-test"),  # fmt: skip
    # our own site fix, and the codemods
    "S311": _RANDOM,
    "fix:secure-random": _RANDOM,
    "pixee:python/secure-random": _RANDOM,
    "pixee:python/subprocess-shell-false": Fix(False, "the command no longer runs through a shell (pipes, globs "
                                                      "and variables stop working)", "argv-list"),  # fmt: skip
    "pixee:python/add-requests-timeouts": Fix(False, "a request that takes longer than the timeout now raises "
                                                     "instead of waiting forever", "always-timeout"),  # fmt: skip
    **{c: Fix(False, "the hardened call refuses input the old one accepted", _HIGH_RISK) for c in (
        "pixee:python/harden-pyyaml", "pixee:python/harden-pickle-load", "pixee:python/secure-tempfile",
        "pixee:python/sql-parameterization", "pixee:python/requests-verify", "pixee:python/enable-jinja2-autoescape",
        "pixee:python/url-sandbox", "pixee:python/use-defusedxml", "pixee:python/safe-lxml-parsing",
        "pixee:python/upgrade-sslcontext-tls")},
}  # fmt: skip
_ALWAYS = {
    "always-timeout": "a network call without a timeout can hang the program forever",
    _HIGH_RISK: "the finding is a security risk the fix removes",
}


def fix_of(key: str, *, ruff_unsafe: bool = False) -> Fix:
    """The table entry for a ruff code or codemod id; a ruff fix not listed keeps behaviour when ruff
    marks it safe, and is treated as behaviour-changing with no justifying context when unsafe."""
    if key in FIXES:
        return FIXES[key]
    if ruff_unsafe:
        return Fix(
            False, "ruff marks this fix unsafe (it may change behaviour) and no check shows it is safe here"
        )
    return Fix(True, "")


def changes_behaviour(rule: str | None) -> bool:
    """True for an improvement rule whose fix may change behaviour (validated with the own tests):
    ruff's unsafe fixes, codemods, our own site fixes, and `__all__` (it changes `import *`)."""
    return bool(rule) and rule.startswith(("lint-unsafe:", "codemod:", "fix:", "check:public-api"))


# -- site checks ------------------------------------------------------------------------------

# A name holds a secret when one of its words says so. A bare `key`, `id` or `code` does not: a sort,
# dict, cache or primary key is not a secret, an `api_key` or `session_key` is. A word that names
# something *about* the value (`token_count`, `max_tokens`, `password_length`) makes it not the value.
SECRET_WORDS = frozenset({
    "token", "tokens", "password", "passwords", "passwd", "passphrase", "pwd", "secret", "secrets", "salt",
    "nonce", "otp", "csrf", "xsrf", "credential", "credentials", "apikey", "sessionid",
})  # fmt: skip
_QUALIFIED = {  # a word that is a secret only after one of these words (`session_key`, `reset_code`)
    "key": frozenset({"api", "secret", "session", "private", "signing", "encryption", "crypto", "auth", "access",
                      "hmac", "aes", "master", "client", "app", "jwt", "cookie", "shared", "symmetric", "cipher"}),
    "id": frozenset({"session"}),
    "code": frozenset({"auth", "otp", "verification", "verify", "reset", "pin", "confirmation", "invite"}),
}  # fmt: skip
_ONE_WORD = ("token", "password", "passwd", "secret", "nonce")  # authtoken, csrftoken, userpassword
_ABOUT_THE_VALUE = frozenset({
    "count", "counts", "num", "n", "len", "length", "size", "max", "min", "limit", "type", "kind", "index", "idx",
    "field", "fields", "name", "names", "label", "prompt", "hint", "policy", "pattern", "regex", "url", "path",
    "file", "header", "env", "var", "ttl", "timeout", "expiry", "expires",
})  # fmt: skip


def name_words(name: str) -> list[str]:
    spaced = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", name)
    return [w.lower() for w in re.split(r"[^A-Za-z0-9]+", spaced) if w]


def is_secret_name(name: str) -> bool:
    """A name that says it holds a secret: `session_token`, `make_password`, `csrfNonce`, `salt`,
    `api_key`, `session_id`; not `sort_key`, `cache_key`, `keyfunc`, `primary_key` or `max_tokens`."""
    words = name_words(name)
    if any(w in _ABOUT_THE_VALUE for w in words):
        return False
    for before, word in zip([None, *words], words, strict=False):
        if word in SECRET_WORDS or word.endswith(_ONE_WORD):
            return True
        if before in _QUALIFIED.get(word.removesuffix("s"), ()):
            return True
        if any(word == q + noun for noun, qs in _QUALIFIED.items() for q in qs):  # `apikey`, `secretkey`
            return True
    return False


@dataclass(frozen=True)
class Verdict:
    ok: bool
    reason: str


def judge_site(key: str, source: str, path: str, line: int, *, ruff_unsafe: bool = False) -> Verdict:
    """May the fix `key` (ruff code or codemod id) be applied at `path:line`, and why (pure)."""
    fix = fix_of(key, ruff_unsafe=ruff_unsafe)
    where = f"{path}:{line}"
    if fix.context is None:
        return Verdict(fix.preserves, "keeps behaviour" if fix.preserves else f"{where}: {fix.changes}")
    if fix.context in _ALWAYS:
        return Verdict(True, f"{where}: {_ALWAYS[fix.context]}; {fix.changes}")
    if fix.context == "not-test":
        if is_test_path(path):
            return Verdict(False, f"{where} is a test: {fix.changes}")
        return Verdict(True, "keeps behaviour outside tests")
    try:
        tree = parse_python(source)
    except SyntaxError:
        return Verdict(False, f"{where}: the file does not parse, so no context can justify the fix")
    parents = _parents(tree)
    nodes = [n for n in ast.walk(tree) if getattr(n, "lineno", None) == line]
    func = _enclosing_function(nodes[0], parents) if nodes else None
    if fix.context == "not-reexport":
        return _not_reexport(tree, line, func, path, where, fix)
    if fix.context == "secret":
        calls = [n for n in nodes if isinstance(n, ast.Call)]
        if not calls:
            return Verdict(False, f"{where}: no call of `random` found on the line")
        return _feeds_secret(calls[0], func, parents, where, fix)
    if fix.context in ("plain-operand", "bool-operand"):
        return _plain_compare(nodes, func, where, fix, bool_only=fix.context == "bool-operand")
    if fix.context == "argv-list":
        calls = [n for n in nodes if isinstance(n, ast.Call) and any(k.arg == "shell" for k in n.keywords)]
        if calls and calls[0].args and isinstance(calls[0].args[0], (ast.List, ast.Tuple)):
            return Verdict(True, f"{where}: the command is an argument list, so it needs no shell (with "
                                 "`shell=True` only its first element reached the program)")  # fmt: skip
        return Verdict(False, f"{where}: the command is not an argument list; {fix.changes}")
    return Verdict(False, f"{where}: unknown context {fix.context!r}")


def _is_import_block(stmt: ast.stmt) -> bool:
    """An import, or a try/if made only of imports (and `pass`/fallback assignments)."""
    if isinstance(stmt, (ast.Import, ast.ImportFrom)):
        return True
    if isinstance(stmt, (ast.Try, ast.If)):
        inner = [*stmt.body, *stmt.orelse, *(h for x in getattr(stmt, "handlers", []) for h in x.body)]
        return all(isinstance(n, (ast.Import, ast.ImportFrom, ast.Pass, ast.Assign)) for n in inner)
    return False


def _not_reexport(tree: ast.Module, line: int, func, path: str, where: str, fix: Fix) -> Verdict:
    """An unused import may go inside a function, in a test, or at the top of a module's import
    block; not in `__init__.py` or a compat module, nor one placed after the module's code (both
    are how a module re-exports a name)."""
    if func is not None or is_test_path(path):
        return Verdict(True, f"{where}: the import is local to a function or a test")
    name = path.rsplit("/", 1)[-1]
    if name == "__init__.py" or "compat" in name:
        return Verdict(False, f"{where}: `{name}` is a module kept for the names it offers; {fix.changes}")
    for stmt in tree.body:
        if stmt.lineno <= line <= (stmt.end_lineno or stmt.lineno):
            return Verdict(True, f"{where}: an import of the module's leading import block")
        docstring = isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant)
        if not (docstring or _is_import_block(stmt)):
            return Verdict(False, f"{where}: the import is placed after the module's code, as a re-export "
                                  f"is; {fix.changes}")  # fmt: skip
    return Verdict(True, f"{where}: an import of the module's leading import block")


def _parents(tree: ast.AST) -> dict[ast.AST, ast.AST]:
    return {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}


def _enclosing_function(node: ast.AST, parents: dict) -> ast.FunctionDef | ast.AsyncFunctionDef | None:
    while node in parents:
        node = parents[node]
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            return node
    return None


def _own_nodes(func: ast.AST):
    """The nodes of `func`'s body, not those of functions or lambdas nested in it."""
    stack = list(ast.iter_child_nodes(func))
    while stack:
        node = stack.pop()
        yield node
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)):
            stack.extend(ast.iter_child_nodes(node))


def _target_names(target: ast.AST) -> list[str]:
    if isinstance(target, ast.Name):
        return [target.id]
    if isinstance(target, ast.Attribute):
        return [target.attr]
    if isinstance(target, ast.Subscript) and isinstance(target.slice, ast.Constant):
        return [str(target.slice.value)]
    if isinstance(target, (ast.Tuple, ast.List)):
        return [n for elt in target.elts for n in _target_names(elt)]
    return []


def _callee(call: ast.Call) -> str:
    f = call.func
    return f.attr if isinstance(f, ast.Attribute) else f.id if isinstance(f, ast.Name) else ""


def _sink(node: ast.AST, parents: dict, func) -> tuple[str | None, list[str]]:
    """Walking up from an expression: the secret-named place its value reaches directly (a reason),
    or the plain variable names it is assigned to (for the data flow)."""
    child = node
    while child in parents:
        parent = parents[child]
        if isinstance(parent, ast.keyword) and parent.arg and is_secret_name(parent.arg):
            return f"passed as `{parent.arg}=`", []
        if isinstance(parent, ast.Call) and child is not parent.func and is_secret_name(_callee(parent)):
            return f"passed into `{_callee(parent)}()`", []
        if isinstance(parent, ast.Dict) and child in parent.values:
            key = parent.keys[parent.values.index(child)]
            if isinstance(key, ast.Constant) and isinstance(key.value, str) and is_secret_name(key.value):
                return f"stored under the key `{key.value}`", []
        if isinstance(parent, (ast.Assign, ast.AnnAssign, ast.AugAssign, ast.NamedExpr)):
            targets = parent.targets if isinstance(parent, ast.Assign) else [parent.target]
            names = [n for t in targets for n in _target_names(t)]
            secret = [n for n in names if is_secret_name(n)]
            return (f"assigned to `{secret[0]}`", []) if secret else (None, names)
        if isinstance(parent, (ast.Return, ast.Yield, ast.YieldFrom)) and func is not None:
            if is_secret_name(func.name):
                return f"returned by `{func.name}()`", []
            return None, []
        if isinstance(parent, ast.stmt):
            return None, []
        child = parent
    return None, []


def _feeds_secret(call: ast.Call, func, parents: dict, where: str, fix: Fix) -> Verdict:
    """Does the value of `call` reach a secret-named place: directly, or through the variables it is
    assigned to within the same function (a few rounds of simple data flow)?"""
    reason, names = _sink(call, parents, func)
    tainted = set(names)
    scope = list(_own_nodes(func)) if func is not None else []
    for _ in range(4):
        if reason or not tainted:
            break
        grown = set()
        for node in scope:
            if isinstance(node, ast.Name) and node.id in tainted and isinstance(node.ctx, ast.Load):
                r, more = _sink(node, parents, func)
                if r:
                    reason = f"{r} (through `{node.id}`)"
                    break
                grown |= set(more) - tainted
        if not grown:
            break
        tainted |= grown
    if reason:
        return Verdict(True, f"{where}: the value is {reason}, a secret: it must not be predictable")
    holder = f"`{func.name}()`" if func is not None else "module level"
    return Verdict(False, f"{where}: the value (in {holder}) feeds no token, password, key, secret, salt or "
                          f"nonce; {fix.changes}")  # fmt: skip


_PLAIN = {"int", "str", "float", "bytes", "bool", "None", "complex"}


def _annotation_plain(ann: ast.AST | None, bool_only: bool) -> bool:
    if ann is None:
        return False
    text = ast.unparse(ann)
    parts = set(re.findall(r"[A-Za-z_][A-Za-z0-9_.]*", text)) - {"Optional", "Union", "typing.Optional"}
    plain = {"bool", "None"} if bool_only else _PLAIN
    return bool(parts) and parts <= plain


def _plain_compare(nodes: list[ast.AST], func, where: str, fix: Fix, *, bool_only: bool) -> Verdict:
    """`x == None` may become `x is None` where x is a parameter annotated with plain built-in types."""
    compares = [n for n in nodes if isinstance(n, ast.Compare)]
    if not compares or func is None:
        return Verdict(False, f"{where}: {fix.changes}, and nothing shows the operand's type")
    params = {a.arg: a.annotation for a in [*func.args.posonlyargs, *func.args.args, *func.args.kwonlyargs]}
    for cmp in compares:
        operands = [cmp.left, *cmp.comparators]
        names = [o.id for o in operands if isinstance(o, ast.Name)]
        if not names or not all(_annotation_plain(params.get(n), bool_only) for n in names):
            return Verdict(False, f"{where}: {fix.changes}, and the operand is not a parameter annotated "
                                  "with a built-in type")  # fmt: skip
    return Verdict(
        True, f"{where}: the operand is annotated with built-in types, which do not override `__eq__`"
    )
