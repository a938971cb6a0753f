"""The documentation against the code: README.md and docs/**/*.md.

- Links: every relative link (and image) reaches an existing file; a `#anchor` names a
  heading of its target.
- Names: every `python -m vgjax.<module>` is a runnable module; every `vgjax.<dotted.name>`
  written as code resolves; every `scripts/`, `configs/`, `tests/`, `vgjax/` or `docs/` path
  exists; `tests/<file>.py::<test>` names a test there.
- Runnable blocks: a fenced bash block right after the line `<!-- runnable -->` is run, each
  command failing the block; `python` stands for this interpreter. Blocks marked
  `<!-- runnable: setup -->` run first, once, and prepare the shared temporary folder that the
  others run in (it holds links to `configs/` and `scripts/`). A failure is one line naming
  the doc file and the line of the block's fence.
"""
from __future__ import annotations

import dataclasses
import importlib.util
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
BLOCK_TIMEOUT_S = 300

FENCE = re.compile(r"^\s{0,3}(`{3,}|~{3,})\s*([\w+-]*)")
MARKER = re.compile(r"^\s*<!--\s*runnable(?:\s*:\s*(\w+))?\s*-->\s*$")
HEADING = re.compile(r"^\s{0,3}(#{1,6})\s+(.*?)\s*#*\s*$")
LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
HTML_REF = re.compile(r"""(?:href|src)\s*=\s*["']([^"']+)["']""")
HTML_ID = re.compile(r"""<a\s[^>]*(?:name|id)\s*=\s*["']([^"']+)["']""")
CODE_SPAN = re.compile(r"(`+)(.+?)\1")
MODULE = re.compile(r"\bpython3?\s+-m\s+(vgjax(?:\.\w+)*)(?!\w|\.[\w<])")  # not vgjax.<x>
REPO_PATH = re.compile(r"(?<![\w./<-])((?:scripts|configs|tests|vgjax|docs)/[\w./-]*)")
TEST_REF = re.compile(r"\b(tests/[\w/]+\.py)::(\w+)")
DOTTED = re.compile(r"`(vgjax(?:\.[A-Za-z_]\w*)+)")  # `vgjax.eval.recalls.chance_recalls`
PYTHON_WORD = re.compile(r"(^|&&|\|\||[;|(]|\$\()(\s*(?:\w+=\S*\s+)*)python3?(?=\s|$)",
                         re.MULTILINE)


def rel(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


@dataclasses.dataclass(frozen=True)
class Line:
    number: int        # 1-based
    text: str
    in_code: bool      # inside a fenced block (or a fence line itself)


def lines_of(path: Path) -> list[Line]:
    out, fence = [], None
    for i, text in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        m = FENCE.match(text)
        if fence is None and m:
            fence = m.group(1)
            out.append(Line(i, text, True))
        elif fence is not None:
            if text.strip().startswith(fence[0] * len(fence)) and not text.strip().strip(fence[0]):
                fence = None
            out.append(Line(i, text, True))
        else:
            out.append(Line(i, text, False))
    return out


def slug(heading: str) -> str:
    """GitHub's anchor of a heading: the rendered text, lower case, punctuation dropped,
    spaces as hyphens."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # links -> their text
    text = CODE_SPAN.sub(lambda m: m.group(2), text)
    text = re.sub(r"<[^>]+>", "", text)
    text = re.sub(r"(\*+|(?<!\w)_+|_+(?!\w))", "", text)  # emphasis markers
    return re.sub(r"[^\w\- ]", "", text.strip().lower()).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    seen: dict[str, int] = {}
    out = set()
    for line in lines_of(path):
        if line.in_code:
            continue
        out.update(HTML_ID.findall(line.text))
        m = HEADING.match(line.text)
        if m:
            base = slug(m.group(2))
            n = seen.get(base, 0)
            seen[base] = n + 1
            out.add(base if n == 0 else f"{base}-{n}")
    return out


def link_problems(doc: Path) -> list[str]:
    problems = []
    for line in lines_of(doc):
        if line.in_code:
            continue
        text = CODE_SPAN.sub("", line.text)
        for target in LINK.findall(text) + HTML_REF.findall(text):
            if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I):  # http:, mailto:, ...
                continue
            path_part, _, anchor = target.partition("#")
            dest = (doc.parent / path_part).resolve() if path_part else doc
            where = f"{rel(doc)}:{line.number}"
            if not dest.exists():
                problems.append(f"{where}: link {target!r}: no file {path_part!r}")
            elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
                problems.append(f"{where}: link {target!r}: no heading #{anchor} in "
                                f"{rel(dest) if ROOT in dest.parents else dest}")
    return problems


def runnable_module(name: str) -> bool:
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return False
    if spec is None:
        return False
    if spec.submodule_search_locations is not None:  # a package runs its __main__
        try:
            return importlib.util.find_spec(name + ".__main__") is not None
        except (ImportError, ValueError):
            return False
    return True


def resolves(dotted: str) -> bool:
    """A module, or an attribute of the longest importable module prefix."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for name in parts[cut:]:
            if not hasattr(obj, name):
                return False
            obj = getattr(obj, name)
        return True
    return False


def name_problems(doc: Path) -> list[str]:
    problems, lines = [], lines_of(doc)
    for line in lines:
        where = f"{rel(doc)}:{line.number}"
        for name in MODULE.findall(line.text):
            if not runnable_module(name):
                problems.append(f"{where}: `python -m {name}`: no such runnable module")
        for dotted in DOTTED.findall(line.text):
            if not resolves(dotted):
                problems.append(f"{where}: `{dotted}`: no such module or attribute")
        for path in REPO_PATH.findall(line.text):
            path = path.rstrip("./") or path
            if not (ROOT / path).exists():
                problems.append(f"{where}: {path}: no such file or folder")
        for path, test in TEST_REF.findall(line.text):
            file = ROOT / path
            if file.exists() and not re.search(rf"^\s*(?:async\s+)?def {test}\b|^class {test}\b",
                                               file.read_text(encoding="utf-8"), re.M):
                problems.append(f"{where}: {path}::{test}: no such test")
        m = MARKER.match(line.text)
        if m and not line.in_code:
            following = lines[line.number] if line.number < len(lines) else None
            fence = FENCE.match(following.text) if following else None
            if not fence or fence.group(2) not in ("bash", "sh", "shell", "console"):
                problems.append(f"{where}: a runnable marker must be followed by a ```bash block")
            if m.group(1) not in (None, "setup"):
                problems.append(f"{where}: unknown marker 'runnable: {m.group(1)}' "
                                "(accepted: runnable, runnable: setup)")
    return problems


@dataclasses.dataclass(frozen=True)
class Block:
    doc: Path
    line: int          # the fence's line
    setup: bool
    code: str

    @property
    def where(self) -> str:
        return f"{rel(self.doc)}:{self.line}"


def runnable_blocks(doc: Path) -> list[Block]:
    lines, blocks = lines_of(doc), []
    for i, line in enumerate(lines[:-1]):
        m = MARKER.match(line.text)
        fence = FENCE.match(lines[i + 1].text)
        if line.in_code or not m or not fence:
            continue
        body = []
        for x in lines[i + 2:]:
            if x.text.strip().startswith(fence.group(1)):
                break
            body.append(x.text)
        blocks.append(Block(doc, lines[i + 1].number, m.group(1) == "setup", "\n".join(body)))
    return blocks


BLOCKS = [b for doc in DOCS for b in runnable_blocks(doc)]


def with_interpreter(code: str) -> str:
    """`python` / `python3` as a command word -> this interpreter."""
    exe = shlex.quote(sys.executable)
    return PYTHON_WORD.sub(lambda m: m.group(1) + m.group(2) + exe, code)


def run_block(block: Block, folder: Path) -> str | None:
    """None if the block ran; else the one-line reason."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [env.get("PYTHONPATH")])])
    env.setdefault("JAX_PLATFORMS", "cpu")
    env.setdefault("MPLBACKEND", "Agg")
    try:
        done = subprocess.run(["bash", "-e", "-o", "pipefail", "-c", with_interpreter(block.code)],
                              cwd=folder, env=env, capture_output=True, text=True,
                              timeout=BLOCK_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return f"{block.where}: runnable block still running after {BLOCK_TIMEOUT_S} s"
    if done.returncode == 0:
        return None
    said = [s.strip() for s in (done.stderr + "\n" + done.stdout).splitlines() if s.strip()]
    last = next((s for s in reversed(done.stderr.splitlines()) if s.strip()),
                said[-1] if said else "no output").strip()
    return f"{block.where}: runnable block failed (exit {done.returncode}): {last}"


@pytest.fixture(scope="module")
def docs_folder(tmp_path_factory):
    """The folder runnable blocks run in, prepared by the setup blocks."""
    folder = tmp_path_factory.mktemp("docs-run")
    for name in ("configs", "scripts"):
        (folder / name).symlink_to(ROOT / name, target_is_directory=True)
    for block in (b for b in BLOCKS if b.setup):
        problem = run_block(block, folder)
        if problem:
            pytest.fail(f"setup {problem}", pytrace=False)
    return folder


@pytest.mark.parametrize("doc", DOCS, ids=rel)
def test_links_reach_files_and_headings(doc):
    problems = link_problems(doc)
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("doc", DOCS, ids=rel)
def test_named_modules_files_and_tests_exist(doc):
    problems = name_problems(doc)
    assert not problems, "\n".join(problems)


def test_some_blocks_are_runnable():
    assert any(b.setup for b in BLOCKS) and any(not b.setup for b in BLOCKS)


@pytest.mark.parametrize("block", [b for b in BLOCKS if not b.setup], ids=lambda b: b.where)
def test_runnable_block(block, docs_folder):
    problem = run_block(block, docs_folder)
    if problem:
        pytest.fail(problem, pytrace=False)
