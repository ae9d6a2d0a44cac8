"""Method specs from the run config (the config boundary): ``benchmark.methods`` or ``method``.

An entry of ``benchmark.methods`` is a method config name or a mapping::

    methods:
      - gradient
      - {name: gradcampp, label: GradCAM++ B2, layer: "${model.block_layers.B2}"}
      - {name: groupcam, groups: 16}            # label: groupcam(groups=16)

Keys other than ``name`` and ``label`` override the method's ``explainer`` arguments (dotted
keys reach nested nodes, ``params: {...}`` is accepted too). Method configs are found through
Hydra's config search path, so user folders (``--config-dir``, ``hydra.searchpath``) work in
lists as they do for ``method=``. An empty list means the run's own ``method`` node: the same
mechanism with one entry, whose overrides are the keys that differ from its config file.
"""

from __future__ import annotations

import copy
import inspect
from collections.abc import Mapping
from typing import Any

from hydra._internal.config_repository import ConfigRepository
from hydra._internal.config_search_path_impl import ConfigSearchPathImpl
from hydra.core.hydra_config import HydraConfig
from hydra.core.plugins import Plugins
from hydra.utils import get_class
from omegaconf import DictConfig, OmegaConf, open_dict
from omegaconf.errors import OmegaConfBaseException

from xai_bench.methods.spec import MethodSet, MethodSpec, default_label
from xai_bench.utils.errors import UserInputError

PACKAGE_CONFIGS = "pkg://xai_bench.configs"
ENTRY_KEYS = ("name", "label", "params")


def config_repository() -> ConfigRepository:
    """The config sources of the running Hydra job (with user folders), else the package's."""
    Plugins.instance()  # registers the file:// and pkg:// sources
    csp = ConfigSearchPathImpl()
    sources = HydraConfig.get().runtime.config_sources if HydraConfig.initialized() else []
    for src in sources:
        if src.schema != "structured":
            csp.append(src.provider, f"{src.schema}://{src.path}")
    if not sources:
        csp.append("xai-bench", PACKAGE_CONFIGS)
    csp.append("schema", "structured://")
    return ConfigRepository(csp)


def load_method_config(repo: ConfigRepository, name: str, where: str) -> DictConfig:
    """The method config ``name`` as written (interpolations unresolved); each file is read
    once per process and config search path (a benchmark lists the same methods many times)."""
    key = (_sources_key(repo), name)
    if key not in _LOADED:
        result = repo.load_config(f"method/{name}") if name else None
        if result is None:
            options = ", ".join(repo.get_group_options("method"))
            raise UserInputError(f"{where}: unknown method '{name}' (options: {options})")
        node = copy.deepcopy(result.config)
        with open_dict(node):
            node.pop("defaults", None)
        _LOADED[key] = node
    return copy.deepcopy(_LOADED[key])


_LOADED: dict[tuple[tuple[str, ...], str], DictConfig] = {}


def _sources_key(repo: ConfigRepository) -> tuple[str, ...]:
    return tuple(f"{s.scheme()}://{s.path}" for s in repo.get_sources())


def parse_entry(entry: Any, where: str) -> tuple[str, str | None, dict[str, Any]]:
    """``(config name, label or None, explainer overrides)`` of one ``methods`` entry."""
    if isinstance(entry, str):
        return entry, None, {}
    if not isinstance(entry, Mapping) or not isinstance(entry.get("name"), str):
        raise UserInputError(
            f"{where}: a method entry is a config name or a mapping with a `name`, got {entry!r}"
        )
    params = dict(entry.get("params") or {})
    params.update({k: v for k, v in entry.items() if k not in ENTRY_KEYS})
    label = entry.get("label")
    return entry["name"], None if label is None else str(label), params


def check_params(node: DictConfig, params: Mapping[str, Any], where: str) -> None:
    """Refuse override keys that the explainer neither has in its config nor accepts."""
    explainer = node.get("explainer")
    target = None if explainer is None else explainer.get("_target_")
    accepted = set(explainer.keys()) if explainer is not None else set()
    varkw = False
    if target is not None:
        try:
            sig = inspect.signature(get_class(str(target)).__init__)
        except Exception:  # an unimportable target fails later, with its own error
            sig = None
        if sig is not None:
            accepted |= set(sig.parameters) - {"self", "model", "meta"}
            varkw = any(p.kind is p.VAR_KEYWORD for p in sig.parameters.values())
    unknown = [k for k in params if k.split(".")[0] not in accepted]
    if unknown and not varkw:
        known = ", ".join(sorted(k for k in accepted if not k.startswith("_")))
        raise UserInputError(
            f"{where}: unknown parameter(s) {unknown} of method '{node.get('name')}' "
            f"(parameters: {known})"
        )


def resolve_spec(
    cfg: DictConfig,
    node: DictConfig,
    config_name: str,
    label: str | None,
    params: Mapping[str, Any],
    where: str,
    scratch: DictConfig | None = None,
) -> MethodSpec:
    """Apply ``params`` to ``node``'s explainer and resolve it against the run config.

    ``scratch`` is a copy of ``cfg`` that may be overwritten (its ``method`` node is replaced);
    passing one copy for many specs saves a deep copy of the whole run config per spec.
    """
    check_params(node, params, where)
    run = copy.deepcopy(cfg) if scratch is None else scratch
    with open_dict(run):
        run.method = copy.deepcopy(node)
        for key, value in params.items():
            OmegaConf.update(run.method.explainer, key, value, merge=False, force_add=True)
    try:
        resolved = OmegaConf.to_container(run.method, resolve=True)
    except OmegaConfBaseException as err:
        raise UserInputError(f"{where}: {type(err).__name__}: {err}".splitlines()[0]) from err
    resolved_params = {k: OmegaConf.select(run.method.explainer, k) for k in params}
    resolved_params = {
        k: OmegaConf.to_container(v, resolve=True) if OmegaConf.is_config(v) else v
        for k, v in resolved_params.items()
    }
    return MethodSpec(
        label or default_label(config_name, resolved_params),
        config_name,
        resolved_params,
        resolved,  # type: ignore[arg-type]
    )


def own_method_overrides(cfg: DictConfig, pristine: DictConfig) -> dict[str, Any]:
    """Explainer keys of the run's ``method`` node that differ from its config file."""
    own = OmegaConf.to_container(cfg.method.get("explainer", {}), resolve=False)
    base = OmegaConf.to_container(pristine.get("explainer", {}), resolve=False)
    return {k: v for k, v in own.items() if base.get(k, _MISSING) != v}  # type: ignore[union-attr]


_MISSING = object()


def method_entries(cfg: DictConfig) -> list[Any]:
    """The entries a run compares: ``benchmark.methods``, else ``[method]``."""
    bench = cfg.get("benchmark")
    listed = bench.get("methods") if isinstance(bench, DictConfig) else None
    if listed:
        try:
            return OmegaConf.to_container(listed, resolve=True)  # type: ignore[return-value]
        except OmegaConfBaseException as err:
            msg = f"benchmark.methods: {type(err).__name__}: {err}".splitlines()[0]
            raise UserInputError(msg) from err
    return []


def resolve_methods(cfg: DictConfig) -> MethodSet:
    """The run's :class:`MethodSet`, resolved once; bad entries fail before any computation."""
    repo = config_repository()
    entries = method_entries(cfg)
    specs = [] if entries else [own_method(cfg, repo)]
    scratch = copy.deepcopy(cfg) if entries else None
    for i, entry in enumerate(entries):
        where = f"benchmark.methods[{i}]"
        name, label, params = parse_entry(entry, where)
        node = load_method_config(repo, name, where)
        specs.append(
            resolve_spec(cfg, node, name, label, params, f"{where} ({name})", scratch=scratch)
        )
    try:
        return MethodSet(specs)
    except ValueError as err:
        raise UserInputError(f"benchmark.methods: {err}") from err


def resolve_entry(cfg: DictConfig, entry: Any, where: str = "method entry") -> MethodSpec:
    """The spec of one ``methods`` entry (a name or a mapping) against the run config."""
    name, label, params = parse_entry(entry, where)
    node = load_method_config(config_repository(), name, where)
    return resolve_spec(cfg, node, name, label, params, f"{where} ({name})")


def own_method(cfg: DictConfig, repo: ConfigRepository | None = None) -> MethodSpec:
    """The spec of the run's ``method`` node: its config file plus the overridden keys."""
    name = str(cfg.method.name)
    pristine = _pristine(repo or config_repository(), name)
    node = cfg.method if pristine is None else pristine
    params = {} if pristine is None else own_method_overrides(cfg, pristine)
    return resolve_spec(cfg, node, name, None, params, f"method={name}")


def _pristine(repo: ConfigRepository, name: str) -> DictConfig | None:
    """The run's method as its config file has it (``None`` for a node without a file)."""
    result = repo.load_config(f"method/{name}")
    return None if result is None else result.config
