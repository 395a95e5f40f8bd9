"""The layer rules of ../shared/DESIGN.md, checked by reading the source with ``ast``.

Nothing is imported or executed; every ``.py`` file under ``homeserver/`` and
``federation/`` is parsed.

Rules (each finding names the importing file and line):

- ``homeserver/`` imports ``federation`` only in the composition root (``homeserver/app.py``).
- Domain packages (everything in ``homeserver/`` but ``api/``, ``app.py`` and ``__main__.py``)
  and ``federation/`` never import ``homeserver.api``.
- The pure core (``homeserver/events/``, ``homeserver/rooms/auth/``,
  ``homeserver/rooms/state_res/``) imports nothing with I/O (network, database, files,
  clock, event loop, logging) and, inside ``homeserver``, only the pure core itself.
- No package cycles: in every package, the imports between its direct children (its
  subpackages and modules) form no cycle that runs through a subpackage. Cycles made only
  of sibling modules of one package are that package's own business and are allowed.

Every import counts, also those inside functions or ``if TYPE_CHECKING:``: a deferred import
still ties the two packages together.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

TOP_PACKAGES = ("homeserver", "federation")
COMPOSITION_ROOT = "homeserver.app"
API = "homeserver.api"
# Outside api/ but allowed to import it: the composition root and the CLI that runs it.
API_USERS = ("homeserver.app", "homeserver.__main__")
PURE = ("homeserver.events", "homeserver.rooms.auth", "homeserver.rooms.state_res")
# Top-level modules with I/O (or a clock, or randomness) that the pure core must not import.
IO_MODULES = frozenset(
    {
        "aiofiles",
        "aiohttp",
        "aiosqlite",
        "asyncio",
        "asyncpg",
        "concurrent",
        "datetime",
        "federation",
        "http",
        "httpx",
        "io",
        "logging",
        "multiprocessing",
        "os",
        "pathlib",
        "random",
        "requests",
        "secrets",
        "selectors",
        "shutil",
        "signal",
        "socket",
        "sqlite3",
        "ssl",
        "subprocess",
        "tempfile",
        "threading",
        "time",
        "urllib",
        "uvloop",
    }
)


@dataclass(frozen=True, order=True)
class Import:
    """``importer`` (a module name) imports ``target`` (a module or package name)."""

    importer: str
    target: str
    path: str
    line: int


def _module_name(root: Path, file: Path) -> str:
    parts = list(file.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def source_files(root: Path) -> Iterator[Path]:
    for top in TOP_PACKAGES:
        if (root / top).is_dir():
            yield from sorted(p for p in (root / top).rglob("*.py") if "__pycache__" not in p.parts)


def known_modules(root: Path) -> set[str]:
    return {_module_name(root, f) for f in source_files(root)}


def _resolve(importer: str, is_package: bool, module: str | None, level: int) -> str:
    """The absolute name of an ``import``/``from`` target (relative imports resolved)."""
    if level == 0:
        return module or ""
    base = importer.split(".")
    if not is_package:
        base = base[:-1]
    if level > 1:
        base = base[: len(base) - (level - 1)]
    return ".".join([*base, module] if module else base)


def imports_of(root: Path, file: Path, modules: set[str]) -> Iterator[Import]:
    importer = _module_name(root, file)
    rel = file.relative_to(root).as_posix()
    tree = ast.parse(file.read_text(encoding="utf-8"), filename=rel)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield Import(importer, alias.name, rel, node.lineno)
        elif isinstance(node, ast.ImportFrom):
            base = _resolve(importer, file.name == "__init__.py", node.module, node.level)
            for alias in node.names:
                # ``from pkg import mod`` depends on pkg.mod when that is a module of ours.
                sub = f"{base}.{alias.name}"
                yield Import(importer, sub if sub in modules else base, rel, node.lineno)


def all_imports(root: Path) -> list[Import]:
    modules = known_modules(root)
    return sorted(i for f in source_files(root) for i in imports_of(root, f, modules))


def _within(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def rule_findings(imports: Iterable[Import]) -> list[str]:
    """Every import that crosses a forbidden line, as ``path:line: message``."""
    out: list[str] = []
    for i in imports:
        where = f"{i.path}:{i.line}: {i.importer} imports {i.target}"
        if _within(i.importer, "homeserver") and _within(i.target, "federation"):
            if i.importer != COMPOSITION_ROOT:
                out.append(f"{where}: only {COMPOSITION_ROOT} may import federation")
        if _within(i.target, API) and not _within(i.importer, API):
            if _within(i.importer, "federation"):
                out.append(f"{where}: federation must not import the client API")
            elif i.importer not in API_USERS:
                out.append(f"{where}: a domain package must not import the client API")
        if any(_within(i.importer, p) for p in PURE):
            top = i.target.split(".")[0]
            if top in IO_MODULES:
                out.append(f"{where}: the pure core must not import I/O ({top})")
            elif top == "homeserver" and not any(_within(i.target, p) for p in PURE):
                out.append(f"{where}: the pure core may import only the pure core")
    return list(dict.fromkeys(out))  # one line importing several names: one finding


def _child(package: str, name: str) -> str | None:
    """The direct child of ``package`` that ``name`` lies in (None if outside or the package)."""
    if not name.startswith(package + "."):
        return None
    return package + "." + name[len(package) + 1 :].split(".")[0]


def package_graphs(imports: Iterable[Import], modules: set[str]) -> dict[str, dict[str, set[str]]]:
    """For each package: its direct children and which child imports which."""
    packages = {m.rsplit(".", 1)[0] for m in modules if "." in m} | set(TOP_PACKAGES)
    packages = {p for p in packages if p in modules}
    graphs: dict[str, dict[str, set[str]]] = {p: {} for p in packages}
    for i in imports:
        for package in packages:
            a, b = _child(package, i.importer), _child(package, i.target)
            if a is not None and b is not None and a != b:
                graphs[package].setdefault(a, set()).add(b)
    return graphs


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one node (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component: list[str] = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def _is_package(name: str, root: Path) -> bool:
    return (root / Path(*name.split(".")) / "__init__.py").is_file()


def cycle_findings(root: Path, imports: list[Import] | None = None) -> list[str]:
    """Package cycles: among a package's children, any cycle that includes a subpackage.

    Cycles made only of sibling modules (e.g. two modules of rooms/) are a module's business
    and are not reported; a cycle through a subpackage ties two packages together.
    """
    modules = known_modules(root)
    imports = all_imports(root) if imports is None else imports
    out: list[str] = []
    for package, graph in sorted(package_graphs(imports, modules).items()):
        for component in _cycles(graph):
            if any(_is_package(c, root) for c in component):
                edges = sorted(
                    {
                        f"{i.path}:{i.line} ({i.importer} -> {i.target})"
                        for i in imports
                        if _child(package, i.importer) in component
                        and _child(package, i.target) in component
                        and _child(package, i.importer) != _child(package, i.target)
                    }
                )
                out.append(
                    f"package cycle in {package}: {' <-> '.join(component)}; via "
                    + ", ".join(edges[:12])
                    + (" ..." if len(edges) > 12 else "")
                )
    return out


def check(root: Path) -> list[str]:
    """Every finding for the tree at ``root`` (a repository root holding homeserver/)."""
    imports = all_imports(root)
    return rule_findings(imports) + cycle_findings(root, imports)
