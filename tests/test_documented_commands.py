"""Every documented command works (issue 14): each ``xai-bench ...`` command written in
README.md, docs/*.md and the comments of the config files composes, its benchmark and method
specs instantiate, and every layer they name exists in a randomly initialised model of the
command's model config.

A command is composed exactly as the CLI would: :func:`~xai_bench.experiments.expand_argv` adds
a paper experiment's scale overrides, and a ``-m`` sweep is expanded into every job as Hydra's
basic sweeper does (:func:`~xai_bench.reproduce.sweep_jobs_for`). Each job then runs the CLI's
config checks (:func:`~xai_bench.checks.check_config`, less what depends on this machine: its
GPUs and the weights files and datasets on disk), builds its benchmark
(:func:`~xai_bench.run.build_benchmark`) and its method specs
(:func:`~xai_bench.method_specs.resolve_methods` and the run's own ``method``), builds the
model with ``model.weights=random`` (once per distinct model config) and checks the layers:
``model.cam_layer``, ``model.blocks``, ``model.block_layers``, the benchmark's ``blocks``, each
method's own layers (:meth:`MethodSpec.build` raises :class:`UnknownLayerError`) and the
benchmark's own model checks (``check``; those that read the data are left out). No data and
no weights are read; everything is written under pytest's temporary folder.

Extraction: fenced code blocks and inline code spans of the markdown files, comment lines of
the YAML files (their code spans when a line has any, else the text from ``xai-bench`` on);
backslash continuations are joined (also across comment lines), trailing ``# comments`` are
dropped, shell brace lists (``experiment=oppsd_resnet50_{food101,birds250}``) give one command
per item, and :data:`PLACEHOLDERS` fills the few documented placeholders. A command that still
holds a placeholder (``<name>``, ``...``, ``/path/to/``, ``$var``) fails unless it is in
:data:`TEMPLATES`, so a new sloppy command fails this test.
"""

from __future__ import annotations

import contextlib
import copy
import inspect
import itertools
import json
import re
import shlex
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from omegaconf import DictConfig, OmegaConf, open_dict

REPO = Path(__file__).resolve().parent.parent
CONFIGS = REPO / "xai_bench" / "configs"
PROGRAM = "xai-bench"

#: documented placeholders and the value composed in their place
PLACEHOLDERS = {r"(?<==)N\b": "1", r"\$s\b": "0"}
#: what is still a placeholder after :data:`PLACEHOLDERS`
PLACEHOLDER = re.compile(r"<[^<>\s]*>|\.\.\.|…|/path/to/|\$(?!\{)\w")
#: commands that are templates, not runnable, as written (continuations joined): the reason
TEMPLATES = {
    "xai-bench -m experiment=<paper>/<result> scale=<scale>": "the form of every paper "
    "experiment's sweep (docs/reproduce.md); each file's own commands are collected",
    "xai-bench -m experiment=<paper>/<result>": "the form of every paper experiment's sweep "
    "(README); each file's own commands are collected",
    "xai-bench experiment=<name>": "a table header: the experiments are the table's rows "
    "(docs/models_finetune.md)",
    "xai-bench trainer=ddp ...": "how to run any DDP job without -m (README)",
    "xai-bench method=oppsd_noble ...": "how to pick a method by name (docs/methods.md)",
    "xai-bench benchmark=map_sparsity": "the user-written benchmark of docs/adding_a_benchmark.md "
    "(its config file is the reader's, not the package's); tests/test_docs_template.py runs it",
}
#: benchmarks that skip the methods that do not fit the model (MethodNotApplicableError: e.g.
#: guided backprop on a ViT) and report them in their table (``applicable = 0``)
SKIPS_INAPPLICABLE = {
    "class_sensitivity", "deletion_insertion", "efficiency", "gallery", "input_invariance",
    "pixel_perturbation", "pointing_game", "roar", "sanity_checks",
}  # fmt: skip
#: tasks that use no method of the run (their specs are resolved, as every run does, not built)
NO_METHODS = {"groupcam_finetune", "overview", "train"}
#: command-line flags and whether they take a value (``--cfg job``); they do not compose
FLAGS = {"-m": False, "--multirun": False, "--help": False, "-h": False, "--hydra-help": False,
         "--cfg": True, "-c": True, "--package": True, "-p": True, "--resolve": False,
         "--version": False, "-V": False}  # fmt: skip
#: flags that print instead of running: no run starts, so the run's early checks (weights and
#: their classes, the trainer's GPUs) are not made; the config composes all the same
PRINT_FLAGS = {"--help", "-h", "--hydra-help", "--cfg", "-c", "--version", "-V"}
#: config checks of the CLI that depend on this machine (its GPUs, the logger's package), not
#: on the command
MACHINE_CHECKS = {"check_device", "check_logger_package"}
#: benchmark keys that name input files (read by the constructor): one not on this machine is
#: composed as null, as a dataset that is not on disk is not read
INPUT_FILES = ("subset_flags",)


@dataclass(frozen=True)
class Command:
    """One documented command: where it is written, its text as written (continuations joined)
    and the command line composed (after brace expansion and placeholders)."""

    where: str
    written: str
    line: str

    @property
    def id(self) -> str:
        return f"{self.where}: {self.line}"


# ---------------------------------------------------------------- extraction
def _scan(text: str) -> Iterator[tuple[int, str, bool]]:
    """``(index, character, quoted)`` of ``text``, shell quoting (single, double, backslash)."""
    quote, escaped = None, False
    for i, ch in enumerate(text):
        if escaped:
            escaped = False
            yield i, ch, True
        elif quote:
            if ch == quote:
                quote = None
            yield i, ch, True
        elif ch in "'\"":
            quote = ch
            yield i, ch, True
        elif ch == "\\":
            escaped = True
            yield i, ch, True
        else:
            yield i, ch, False


def strip_comment(text: str) -> str:
    """``text`` without a trailing shell comment (an unquoted ``#`` after a blank)."""
    for i, ch, quoted in _scan(text):
        if ch == "#" and not quoted and (i == 0 or text[i - 1].isspace()):
            return text[:i].rstrip()
    return text.rstrip()


START = re.compile(rf"(?:^|(?<=[\s;(&|]))(?:\$\s+)?{PROGRAM}(?=\s|$)")


def find_commands(text: str) -> list[str]:
    """The ``xai-bench ...`` commands in one line of shell: each up to the end, a trailing
    comment, or an unquoted ``;``, ``&`` or ``|`` (``for s in 0 1; do xai-bench ...; done``).
    ``xai-bench:`` (its error messages) and paths (``~/.cache/xai-bench/``) are not commands."""
    text = strip_comment(text)
    found = []
    for match in START.finditer(text):
        rest = text[match.start() :]
        end = len(rest)
        for i, ch, quoted in _scan(rest):
            if ch in ";&|" and not quoted:
                end = i
                break
        command = rest[:end].strip()
        if command.startswith("$"):
            command = command[1:].strip()
        found.append(command)
    return found


def join_continuations(lines: list[str]) -> list[tuple[int, str]]:
    """``(first line number, text)`` with backslash continuations joined."""
    out: list[tuple[int, str]] = []
    pending: tuple[int, str] | None = None
    for number, line in enumerate(lines, start=1):
        if pending is not None:
            line = pending[1] + " " + line.strip()
            number = pending[0]
            pending = None
        if line.rstrip().endswith("\\") and not line.rstrip().endswith("\\\\"):
            pending = (number, line.rstrip()[:-1].rstrip())
            continue
        out.append((number, line))
    if pending is not None:
        out.append(pending)
    return out


SPAN = re.compile(r"(?<!`)(`+)(?!`)(.+?)(?<!`)\1(?!`)", re.S)


def span_commands(text: str) -> list[tuple[int, str]]:
    """``(offset, command)`` of the commands in the inline code spans of ``text`` (a span may
    wrap lines within a paragraph)."""
    out = []
    for match in SPAN.finditer(text):
        code = match.group(2)
        if "\n\n" in code:
            continue
        for command in find_commands(" ".join(code.split())):
            out.append((match.start(), command))
    return out


def markdown_commands(path: Path) -> list[tuple[int, str]]:
    """``(line number, command)`` of a markdown file: fenced code blocks and code spans."""
    lines = path.read_text().splitlines()
    prose, block, fence = [], [], None
    found: list[tuple[int, str]] = []
    for number, line in enumerate(lines, start=1):
        stripped = line.lstrip()
        if fence is None and stripped.startswith(("```", "~~~")):
            fence, block = stripped[:3], []
            prose.append("")
        elif fence is not None and stripped.startswith(fence):
            for first, text in join_continuations([b for _, b in block]):
                found += [(block[first - 1][0], c) for c in find_commands(text)]
            fence = None
            prose.append("")
        elif fence is not None:
            block.append((number, line))
            prose.append("")
        else:
            prose.append(line)
    text = "\n".join(prose)
    found += [(text.count("\n", 0, at) + 1, c) for at, c in span_commands(text)]
    return sorted(found)


def yaml_commands(path: Path) -> list[tuple[int, str]]:
    """``(line number, command)`` of the comment lines of a YAML file: the code spans of a line
    that has any, else the text from ``xai-bench`` on; continuations join comment lines."""
    comments: list[str] = []
    numbers: list[int] = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if line.lstrip().startswith("#"):
            comments.append(line.lstrip()[1:])
            numbers.append(number)
        else:
            comments.append("")  # breaks a continuation
            numbers.append(number)
    found = []
    for first, text in join_continuations(comments):
        number = numbers[first - 1]
        if "`" in text:
            found += [(number, c) for _, c in span_commands(text)]
        else:
            found += [(number, c) for c in find_commands(text)]
    return found


def _brace_items(word: str) -> list[str]:
    """Bash's brace expansion of one word (unquoted ``{a,b}``; not ``${...}``)."""
    marks = list(_scan(word))
    for k, (i, ch, quoted) in enumerate(marks):
        if ch != "{" or quoted or (i > 0 and word[i - 1] == "$"):
            continue
        depth, commas = 0, [i]
        for j, cj, qj in marks[k:]:
            if qj:
                continue
            if cj == "{":
                depth += 1
            elif cj == "}":
                depth -= 1
                if depth == 0:
                    if len(commas) == 1:
                        break
                    commas.append(j)
                    head, tail = word[:i], word[j + 1 :]
                    parts = [word[a + 1 : b] for a, b in itertools.pairwise(commas)]
                    return [x for p in parts for x in _brace_items(head + p + tail)]
            elif cj == "," and depth == 1:
                commas.append(j)
    return [word]


def _words(command: str) -> list[str]:
    """The words of a command as written (quotes kept)."""
    words, start = [], None
    for i, ch, quoted in _scan(command):
        if ch.isspace() and not quoted:
            if start is not None:
                words.append(command[start:i])
                start = None
        elif start is None:
            start = i
    if start is not None:
        words.append(command[start:])
    return words


def expand_braces(command: str) -> list[str]:
    """One command per item of each brace list (a documentation convention: in a shell the
    items would be arguments of one command)."""
    choices = [_brace_items(w) for w in _words(command)]
    return [" ".join(c) for c in itertools.product(*choices)]


def fill_placeholders(command: str) -> str:
    for pattern, value in PLACEHOLDERS.items():
        command = re.sub(pattern, value, command)
    return command


def documented_files() -> list[Path]:
    files = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
    return files + sorted(CONFIGS.rglob("*.yaml"))


def collect() -> tuple[dict[str, list[Command]], dict[str, str]]:
    """The documented commands to compose, by command line (the places that write it), and the
    templates skipped (place and command: reason)."""
    commands: dict[str, list[Command]] = {}
    skipped: dict[str, str] = {}
    for path in documented_files():
        read = markdown_commands if path.suffix == ".md" else yaml_commands
        for number, written in read(path):
            where = f"{path.relative_to(REPO)}:{number}"
            written = " ".join(written.split())
            if written in TEMPLATES:
                skipped[f"{where}: {written}"] = TEMPLATES[written]
                continue
            for line in expand_braces(written):
                command = Command(where, written, fill_placeholders(line))
                places = commands.setdefault(command.line, [])
                if command not in places:
                    places.append(command)
    return commands, skipped


COMMANDS, SKIPPED = collect()


def test_extraction() -> None:
    """The extraction rules on the documentation's forms."""
    loop = "for s in 0 1 2; do xai-bench a=1 seed=$s; done"
    assert find_commands(loop) == ["xai-bench a=1 seed=$s"]
    assert find_commands("xai-bench --help    # groups") == ["xai-bench --help"]
    assert find_commands("xai-bench: error: bad") == []
    assert find_commands("see ~/.cache/xai-bench/digests") == []
    assert expand_braces("xai-bench experiment=x_{a,b}_{c,d} y=1") == [
        "xai-bench experiment=x_a_c y=1", "xai-bench experiment=x_a_d y=1",
        "xai-bench experiment=x_b_c y=1", "xai-bench experiment=x_b_d y=1",
    ]  # fmt: skip
    quoted = "xai-bench 'b.methods=[{name:g,layer:${model.block_layers.B1}},{name:r}]'"
    assert expand_braces(quoted) == [quoted]
    lines = ["#   xai-bench a=1 \\", "#       b=2   # note", "x: 1", "# `xai-bench c=3` or so"]
    assert _yaml_lines(lines) == [(1, "xai-bench a=1 b=2"), (4, "xai-bench c=3")]
    assert fill_placeholders("xai-bench seed=N threads=1") == "xai-bench seed=1 threads=1"
    assert PLACEHOLDER.search("xai-bench experiment=<paper>/<result>")


def _yaml_lines(lines: list[str]) -> list[tuple[int, str]]:
    class Stub:
        def read_text(self) -> str:
            return "\n".join(lines)

    return yaml_commands(Stub())  # type: ignore[arg-type]


def test_templates_are_still_documented() -> None:
    """An entry of TEMPLATES that no file writes any more is removed from it."""
    assert set(TEMPLATES) == {key.split(": ", 1)[1] for key in SKIPPED}, SKIPPED


# ---------------------------------------------------------------- composition
def split_argv(argv: list[str]) -> tuple[list[str], bool, bool]:
    """The overrides of a command line, whether it is a sweep (``-m``) and whether it only
    prints (:data:`PRINT_FLAGS`); the flags themselves are dropped."""
    overrides, multirun, prints, skip = [], False, False, False
    for arg in argv:
        if skip:
            skip = False
            continue
        if arg.startswith("-"):
            if arg not in FLAGS:
                raise AssertionError(f"unknown flag {arg} (add it to FLAGS if Hydra has it)")
            multirun |= arg in ("-m", "--multirun")
            prints |= arg in PRINT_FLAGS
            skip = FLAGS[arg]
            continue
        overrides.append(arg)
    return overrides, multirun, prints


def command_jobs(line: str) -> list[list[str]]:
    """The override lists of the command's runs, as the CLI composes them."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from xai_bench.experiments import expand_argv
    from xai_bench.reproduce import sweep_jobs_for

    argv = shlex.split(line)
    assert argv[0] == PROGRAM
    overrides, multirun, _ = split_argv(argv[1:])
    if multirun:
        return sweep_jobs_for(overrides)
    argv = expand_argv(overrides)
    sweeps = [str(o.input_line) for o in OverridesParser.create().parse_overrides(argv)
              if o.is_sweep_override()]  # fmt: skip
    assert not sweeps, f"{sweeps}: a sweep needs -m (Hydra refuses it otherwise)"
    return [argv]


_CHECK_NAMES: list[str] = []


def config_checks(cfg: DictConfig, run_dir: Path) -> None:
    """The CLI's early checks (:func:`check_config`) that depend on the command: a weights
    file or a published checkpoint that is not on this machine is not the command's fault."""
    from xai_bench import checks
    from xai_bench.utils.errors import WeightsNotFoundError

    if not _CHECK_NAMES:
        source = inspect.getsource(checks.check_config)
        _CHECK_NAMES.extend(re.findall(r"^\s+(check_\w+)\(", source, re.M))
        assert "check_weights" in _CHECK_NAMES and "check_benchmark_keys" in _CHECK_NAMES
    for name in _CHECK_NAMES:
        if name in MACHINE_CHECKS:
            continue
        check = getattr(checks, name)
        args = (cfg, run_dir) if "run_dir" in inspect.signature(check).parameters else (cfg,)
        with contextlib.suppress(WeightsNotFoundError):
            check(*args)


_BASES: dict[tuple[str, ...], DictConfig] = {}


def _is_group(override) -> bool:
    """A config-group override (``model=vgg16``, ``hydra/launcher=slurm``), or one that changes
    where configs are found; the others set values."""
    key = override.key_or_group
    return (override.package is not None or "/" in key or (CONFIGS / key).is_dir()
            or key.startswith("hydra.searchpath"))  # fmt: skip


def compose_config(overrides: list[str]) -> DictConfig:
    """:func:`xai_bench.reproduce.compose_config` with a cache: Hydra composes the config groups
    (the defaults list), then applies the value overrides in their order
    (``ConfigLoaderImpl._apply_overrides_to_config``). The first step is cached per set of
    group overrides and the second is Hydra's own function: the same config, without composing
    again the many jobs of a sweep that differ in values only (seeds, fractions)."""
    from hydra._internal.config_loader_impl import ConfigLoaderImpl
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parsed = OverridesParser.create().parse_overrides(list(overrides))
    groups = tuple(str(o.input_line) for o in parsed if _is_group(o))
    if groups not in _BASES:
        _BASES[groups] = _compose_config(list(groups))
    cfg = copy.deepcopy(_BASES[groups])
    ConfigLoaderImpl._apply_overrides_to_config([o for o in parsed if not _is_group(o)], cfg)
    return cfg


_compose_config = None  # xai_bench.reproduce's own, while the cache stands in for it


@pytest.fixture(scope="module", autouse=True)
def _cached_composition() -> Iterator[None]:
    """While this module runs: :func:`compose_config` stands in for the package's, and Hydra's
    config repository keeps the files it has read and parsed (it reads each one again for every
    composition; copies are handed out, and the files do not change meanwhile)."""
    global _compose_config
    from hydra._internal.config_repository import ConfigRepository

    from xai_bench import reproduce

    read = ConfigRepository.load_config
    memo: dict[tuple[tuple[str, ...], str], object] = {}

    def load_config(self: ConfigRepository, config_path: str) -> object:
        key = (tuple(s.full_path() for s in self.get_sources()), config_path)
        if key not in memo:
            memo[key] = read(self, config_path)
        return copy.deepcopy(memo[key])

    _compose_config = reproduce.compose_config
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(reproduce, "compose_config", compose_config)
        patch.setattr(ConfigRepository, "load_config", load_config)
        yield


def _key(*nodes: object) -> str:
    return json.dumps(nodes, sort_keys=True, default=str)


def _plain(node: object) -> object:
    return OmegaConf.to_container(node, resolve=True) if OmegaConf.is_config(node) else node


class _NeedsDataError(Exception):
    """A benchmark check that reads the dataset (not done here)."""


#: networks built with random weights, by their resolved ``model.net``, at most this many
#: bytes of parameters kept (torchvision's VGGs are 0.5 GB each)
_NETS: OrderedDict[str, torch.nn.Module] = OrderedDict()
_KEEP_BYTES = 3e9
#: method specs by (entries, method, model, dataset), explainer builds by (model, spec)
_SPECS: dict[str, tuple[list, object]] = {}
_BUILT: dict[tuple[str, str], str | None] = {}


def random_net(cfg: DictConfig, run_dir: Path, net: object) -> torch.nn.Module:
    """The evaluated model of ``cfg`` (``model.weights=random``), built once per ``model.net``
    (``net``: the resolved node)."""
    from xai_bench.workspace import Workspace

    key = _key(net)
    if key not in _NETS:
        torch.manual_seed(0)
        _NETS[key] = Workspace(cfg, run_dir).model
        size = lambda net: sum(p.numel() * p.element_size() for p in net.parameters())  # noqa: E731
        while len(_NETS) > 1 and sum(size(n) for n in _NETS.values()) > _KEEP_BYTES:
            _NETS.popitem(last=False)
    _NETS.move_to_end(key)
    return _NETS[key]


def method_specs(cfg: DictConfig, model: object) -> tuple[list, object]:
    """The run's method specs (``benchmark.methods``, else ``method``) and its own ``method``'s
    (``model``: the resolved ``model`` node)."""
    from xai_bench.method_specs import method_entries, own_method, resolve_methods

    key = _key(method_entries(cfg), model, _plain(cfg.method), _plain(cfg.dataset))
    if key not in _SPECS:
        _SPECS[key] = (list(resolve_methods(cfg)), own_method(cfg))
    return _SPECS[key]


def check_job(overrides: list[str], root: Path, run: bool = True) -> dict[str, str]:
    """Compose one job and check it (``run``: with the run's early checks); returns the methods
    the benchmark skips (label: why)."""
    from xai_bench.methods.spec import MethodSet
    from xai_bench.models.layers import get_layer
    from xai_bench.reproduce import compose_job
    from xai_bench.run import build_benchmark
    from xai_bench.workspace import Workspace

    cfg, run_dir = compose_job([*overrides, f"paths.root_dir={root}", "device=cpu"])
    if run:
        config_checks(cfg, run_dir)
    with open_dict(cfg):
        for key in INPUT_FILES:
            value = cfg.benchmark.get(key)
            if value is not None and not Path(str(value)).is_file():
                cfg.benchmark[key] = None
    bench = build_benchmark(cfg.benchmark)
    plain = _plain(cfg.model)
    run_specs, own = method_specs(cfg, plain)
    specs = run_specs + [own] * (own.hash not in {s.hash for s in run_specs})
    with open_dict(cfg):
        cfg.model.weights = "random"
    model = random_net(cfg, run_dir, plain["net"])  # type: ignore[index]
    meta = Workspace(cfg, run_dir).meta

    layers = [meta.cam_layer, *meta.blocks, *dict(meta.block_layers).values()]
    layers += list(getattr(bench, "blocks", None) or [])
    for layer in layers:
        if layer is not None:
            get_layer(model, str(layer))  # UnknownLayerError names the closest layers

    class NoData(Workspace):
        def build_datamodule(self):  # type: ignore[override]
            raise _NeedsDataError

    ws = NoData(cfg, run_dir)
    ws.__dict__.update(model=model, meta=meta, methods=MethodSet(run_specs))  # cached properties
    check = getattr(bench, "check", None)
    if check is not None:
        with contextlib.suppress(_NeedsDataError):
            check(ws.context())

    kind = type(bench).name  # the class's (pointing_game_restricted is a pointing_game)
    if kind in NO_METHODS:
        return {}
    assert kind in SKIPS_INAPPLICABLE, f"{kind}: add it to SKIPS_INAPPLICABLE or NO_METHODS"
    model_key = _key({**plain, "weights": "random"}, bool(meta.multilabel))  # type: ignore[dict-item]
    skipped = {}
    for spec in specs:
        if (model_key, spec.hash) not in _BUILT:
            _BUILT[model_key, spec.hash] = built(spec, model, meta)
        if _BUILT[model_key, spec.hash] is not None:
            skipped[spec.label] = str(_BUILT[model_key, spec.hash])
    assert len(skipped) < len(specs), f"no method fits the model: {skipped}"
    return skipped


def built(spec, model: torch.nn.Module, meta) -> str | None:
    """Build the spec's explainer: ``None``, or why the method does not fit the model
    (:class:`MethodNotApplicableError`). A layer the model lacks raises UnknownLayerError."""
    from xai_bench.methods.base import MethodNotApplicableError

    try:
        spec.build(model, meta)
    except MethodNotApplicableError as err:
        return str(err)
    return None


#: the methods of documented commands that their benchmark skips (printed: pytest -rA)
NOT_APPLICABLE: dict[str, dict[str, str]] = {}


def _model_hint(line: str) -> tuple[str, str]:
    """The model and experiment a command names: the tests run in this order, so that the
    commands of one model follow each other while its network is cached."""
    found = [re.search(rf"\b{k}=(\S+)", line) for k in ("(?:model|setup)", "experiment")]
    return tuple(m.group(1) if m else "" for m in found)  # type: ignore[return-value]


ORDER = sorted(COMMANDS, key=_model_hint)


@pytest.mark.parametrize("line", ORDER, ids=[COMMANDS[c][0].id for c in ORDER])
def test_documented_command(line: str, tmp_path_factory) -> None:
    places = ", ".join(c.where for c in COMMANDS[line])
    if PLACEHOLDER.search(line):
        pytest.fail(
            f"{places}: `{COMMANDS[line][0].written}` holds a placeholder; write a runnable "
            "command, or add it to TEMPLATES with the reason"
        )
    root = tmp_path_factory.getbasetemp() / "outputs"
    jobs = command_jobs(line)
    assert jobs
    prints = split_argv(shlex.split(line)[1:])[2]
    for job in dict.fromkeys(tuple(j) for j in jobs):
        skipped = check_job(list(job), root, run=not prints)
        if skipped:
            NOT_APPLICABLE[line] = {**NOT_APPLICABLE.get(line, {}), **skipped}
    for label, why in NOT_APPLICABLE.get(line, {}).items():
        print(f"skipped by the benchmark, by design: {label}: {why}")
    assert not any(root.rglob("*.pt")), "a documented command wrote a model"


def test_collected_every_source() -> None:
    """README, docs and config comments all contribute (the extraction did not go blind)."""
    sources = {c.where.split(":")[0].split("/")[0] for cs in COMMANDS.values() for c in cs}
    assert {"README.md", "docs", "xai_bench"} <= sources
    assert len(COMMANDS) > 50
