"""The shape of the code: no import cycles among specfair's modules (function-local imports
included), and one owner for the end-of-sequence rule."""

from __future__ import annotations

import ast
from pathlib import Path

import specfair

ROOT = Path(specfair.__file__).parent


def _modules() -> dict[str, Path]:
    out = {}
    for p in ROOT.rglob("*.py"):
        parts = list(p.relative_to(ROOT.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = p
    return out


MODULES = _modules()


def _resolve(name: str) -> str | None:
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def _imports(mod: str, path: Path) -> list[tuple[str, int, bool]]:
    """``(imported specfair module, line, local)`` for every import in ``path``; ``local``:
    inside a function. Imports under ``if TYPE_CHECKING:`` are skipped."""
    out = []

    def visit(node, local):
        for ch in ast.iter_child_nodes(node):
            if isinstance(ch, ast.If) and "TYPE_CHECKING" in ast.unparse(ch.test):
                continue
            if isinstance(ch, ast.Import):
                names = [a.name for a in ch.names]
            elif isinstance(ch, ast.ImportFrom):
                base = ch.module or ""
                if ch.level:
                    pkg = mod.split(".") if path.name == "__init__.py" else mod.split(".")[:-1]
                    pkg = pkg[: len(pkg) - ch.level + 1]
                    base = ".".join(pkg + ([base] if base else []))
                names = [f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base
                         for a in ch.names]
            else:
                visit(ch, local or isinstance(ch, ast.FunctionDef | ast.AsyncFunctionDef))
                continue
            for n in names:
                r = _resolve(n) if n.startswith("specfair") else None
                if r and r != mod:
                    out.append((r, ch.lineno, local))

    visit(ast.parse(path.read_text(encoding="utf-8")), False)
    return out


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, comps = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                comps.append(sorted(comp))

    for v in edges:
        if v not in index:
            visit(v)
    return comps


def test_no_import_cycles_even_through_local_imports():
    edges = {m: {r for r, _, _ in _imports(m, p)} for m, p in MODULES.items()}
    assert _cycles(edges) == []


def _attribute_reads(path: Path, attr: str) -> list[int]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return [n.lineno for n in ast.walk(tree)
            if isinstance(n, ast.Attribute) and n.attr == attr]


def test_one_end_of_sequence_rule():
    """Only :mod:`specfair.models.eos` reads a model's or tokenizer's ``eos_token_id`` to decide
    where a response ends. Allowed elsewhere: comparing two tokenizers, writing a GGUF's
    metadata and reading an external engine's output."""
    allowed = {"specfair.models.eos", "specfair.models.tokenizers",
               "specfair.backends.gguf_export", "specfair.backends.llamacpp"}
    found = {m: lines for m, p in MODULES.items() if m not in allowed
             for lines in [_attribute_reads(p, "eos_token_id")] if lines}
    assert found == {}
    hard_coded = {m for m, p in MODULES.items()
                  for n in ast.walk(ast.parse(p.read_text(encoding="utf-8")))
                  if isinstance(n, ast.Constant) and n.value == "<|im_end|>"}
    assert hard_coded == set()



def test_one_owner_of_the_responses_cache():
    """Only :mod:`specfair.measure.responses` builds responses records and defines their file
    and reader; every other module goes through its functions."""
    owner = "specfair.measure.responses"
    for m, p in MODULES.items():
        text = p.read_text(encoding="utf-8")
        if m == owner or m.startswith("specfair.study"):  # the study has its own signal store
            continue
        assert '"response_ids":' not in text, m  # builds a record
        assert 'RESPONSES_FILE = ' not in text and "def read_responses" not in text, m


def test_one_alpha_family():
    """``Σ min(p, q)`` is computed in :mod:`specfair.measure.acceptance`; elsewhere only as the
    TVD loss (1 - alpha) and the top-k approximation of the distillation study."""
    found = {m for m, p in MODULES.items() if "torch.minimum(" in p.read_text(encoding="utf-8")}
    assert found <= {"specfair.measure.acceptance", "specfair.distill.losses",
                     "specfair.distill.topk"}
    assert "def acceptance(" not in (ROOT / "distill" / "losses.py").read_text(encoding="utf-8")


def test_defaults_defined_once():
    """The default pair and gamma are defined in :mod:`specfair.defaults` only."""
    for m, p in MODULES.items():
        if m in ("specfair.defaults", "specfair.models.registry", "specfair.measure.replay") \
                or m.startswith("specfair.study"):
            continue  # the registry lists the known models by name; replay/study: to do
        text = p.read_text(encoding="utf-8")
        assert '"qwen2.5-coder-1.5b-instruct"' not in text, m
        assert "DEFAULT_TARGET = " not in text and "gamma: int = 5" not in text, m


LAYERS = {"defaults": 0, "errors": 0, "schema": 0, "rundir": 0, "atomic": 0,
          "tasks": 1, "models": 1, "decoding": 1, "drafters": 2, "measure": 3, "backends": 3,
          "distill": 4, "report": 5, "cli": 6, "cli_groups": 6, "study": 6, "__main__": 6}
# layer 0 inside packages: no model code (the JSON files of measure.io are read by drafters)
BOTTOM = {"specfair.models.hardware", "specfair.models.eos", "specfair.measure.io"}
# command-level modules inside lower packages: export-gguf converts deployed drafters
TOP = {"specfair.backends.gguf_export"}
# the modules that drive training (and so may import specfair.distill) besides distill itself
TRAINING_DRIVERS = {"specfair.cli", "specfair.cli_groups", "specfair.__main__"}


def _layer(mod: str) -> int:
    parts = mod.split(".")
    if mod in BOTTOM or len(parts) == 1:
        return 0
    if (len(parts) > 2 and parts[2] == "commands") or mod in TOP:  # command lines sit on top
        return LAYERS["cli"]
    return LAYERS[parts[1]]


def test_layers_import_downwards():
    """docs/ARCHITECTURE.md: a module imports from its own layer or below (a package's
    ``__init__`` may re-export its own ``commands``)."""
    up = [(m, r, line) for m, p in MODULES.items() for r, line, _ in _imports(m, p)
          if _layer(r) > _layer(m) and not r.startswith(m + ".")]
    assert up == []


def test_only_training_drivers_import_distill():
    """docs/ARCHITECTURE.md: ``distill`` only trains. What a deployed drafter is (formats,
    loading, routing) is :mod:`specfair.drafters`; outside ``distill`` only the command line and
    the experiment (``study``), which drive training, import it: bench, generate, export-gguf and
    every lower layer reach a drafter through ``drafters``."""
    found = sorted((m, r, line) for m, p in MODULES.items() for r, line, _ in _imports(m, p)
                   if r.startswith("specfair.distill") and not m.startswith("specfair.distill")
                   and m not in TRAINING_DRIVERS and not m.startswith("specfair.study"))
    assert found == []


def test_deployed_drafters_sit_below_measure_backends_and_training():
    """``drafters`` is its own layer: above ``tasks``/``models``/``decoding`` (which never import
    it), below ``measure``, ``backends``, ``distill`` and ``study``."""
    assert LAYERS["models"] < LAYERS["drafters"] < min(LAYERS["measure"], LAYERS["backends"])
    assert LAYERS["drafters"] < LAYERS["distill"] < LAYERS["study"]
    drafters = [m for m in MODULES if m.startswith("specfair.drafters.")]
    assert {"specfair.drafters.load", "specfair.drafters.export", "specfair.drafters.router",
            "specfair.drafters.routing", "specfair.drafters.task_classifier"} <= set(drafters)
    reached = {_layer(r) for m in drafters for r, _, _ in _imports(m, MODULES[m])}
    assert max(reached) <= LAYERS["drafters"]

