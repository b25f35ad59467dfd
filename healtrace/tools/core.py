"""Tools: typed async functions whose JSON schema comes from their signature and docstring.

    @tool(timeout_s=5)
    async def bmi(ctx: ToolContext, weight_kg: float, height_cm: float) -> BmiResult:
        '''Body-mass index with the WHO adult category.

        Args:
            weight_kg: Body weight in kilograms.
            height_cm: Standing height in centimetres.
        '''

The first parameter, if annotated ``ToolContext``, receives the run context and is not
part of the schema. Raise :class:`ToolRetry` to tell the model to try again (bad
arguments, nothing found); any other failure is infrastructure and ends the turn.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
import re
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field, replace
from importlib.metadata import entry_points
from typing import Any, Literal, get_type_hints, overload

from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model

from healtrace.agent.citations import CitationLedger, KnowledgeSearch
from healtrace.agent.models.base import ToolSpec
from healtrace.config import Settings
from healtrace.errors import HealTraceError, ToolInfraError

log = logging.getLogger(__name__)

Permission = Literal["records", "rewards", "network", "images", "speech", "knowledge"]
ENTRY_POINT_GROUP = "healtrace.tools"


class ToolRetry(HealTraceError):
    """The model should see this message and try again; the turn goes on."""

    code = "tool_retry"


@dataclass(slots=True)
class ToolContext:
    """What a tool may use. Passed explicitly; tools read no globals."""

    session_id: str
    locale: str
    settings: Settings
    patient_id: str | None = None
    tenant_id: str | None = None
    #: The knowledge base, when one is configured.
    knowledge: KnowledgeSearch | None = None
    #: This turn's numbered sources; search tools add to it so markers stay consistent.
    citations: CitationLedger = field(default_factory=CitationLedger)
    stores: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Tool:
    name: str
    description: str
    fn: Callable[..., Awaitable[Any]]
    params_model: type[BaseModel]
    takes_context: bool
    timeout_s: float | None = None
    permissions: tuple[Permission, ...] = ()
    needs_consent: bool = False
    needs_approval: bool = False
    source: str = "builtin"
    #: What the model is told; built once, since schema generation is slow.
    spec: ToolSpec = field(init=False, compare=False)

    def __post_init__(self) -> None:
        schema = self.params_model.model_json_schema()
        schema.pop("title", None)
        spec = ToolSpec(name=self.name, description=self.description, parameters=schema)
        object.__setattr__(self, "spec", spec)

    async def call(self, ctx: ToolContext, args: BaseModel) -> Any:
        kwargs = {name: getattr(args, name) for name in type(args).model_fields}
        if self.takes_context:
            return await self.fn(ctx, **kwargs)
        return await self.fn(**kwargs)


_SECTION = re.compile(r"^(Args|Arguments|Parameters|Returns|Raises|Yields|Examples?|Notes?):\s*$")
_ARG_LINE = re.compile(r"^(\s+)(\w+)\s*(?:\([^)]*\))?:\s*(.*)$")


def _parse_docstring(doc: str) -> tuple[str, dict[str, str]]:
    """Description (text before the first section) and per-argument descriptions from a
    Google-style docstring."""
    lines = inspect.cleandoc(doc).splitlines() if doc else []
    summary: list[str] = []
    params: dict[str, str] = {}
    section: str | None = None
    arg_indent: int | None = None
    current: str | None = None
    for line in lines:
        header = _SECTION.match(line)
        if header:
            section = header.group(1)
            continue
        if section is None:
            summary.append(line)
        elif section in ("Args", "Arguments", "Parameters"):
            match = _ARG_LINE.match(line)
            if match and (arg_indent is None or len(match.group(1)) == arg_indent):
                arg_indent = len(match.group(1))
                current = match.group(2)
                params[current] = match.group(3).strip()
            elif current and line.strip():
                params[current] = f"{params[current]} {line.strip()}"
    return "\n".join(summary).strip(), params


def _is_context(annotation: Any) -> bool:
    return annotation is ToolContext


def make_tool(
    fn: Callable[..., Awaitable[Any]],
    *,
    name: str | None = None,
    timeout_s: float | None = None,
    permissions: Iterable[Permission] = (),
    needs_consent: bool = False,
    needs_approval: bool = False,
    source: str = "builtin",
) -> Tool:
    if not inspect.iscoroutinefunction(fn):
        raise TypeError(f"tool {fn.__name__} must be an async function")
    hints = get_type_hints(fn, include_extras=True)
    description, arg_docs = _parse_docstring(fn.__doc__ or "")
    if not description:
        raise TypeError(f"tool {fn.__name__} needs a docstring: the model reads it")
    fields: dict[str, Any] = {}
    takes_context = False
    for index, (pname, param) in enumerate(inspect.signature(fn).parameters.items()):
        annotation = hints.get(pname, Any)
        if index == 0 and _is_context(annotation):
            takes_context = True
            continue
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            raise TypeError(f"tool {fn.__name__}: *args/**kwargs cannot be described to a model")
        default = ... if param.default is inspect.Parameter.empty else param.default
        if isinstance(default, type(Field())):
            fields[pname] = (annotation, default)
        else:
            fields[pname] = (annotation, Field(default, description=arg_docs.get(pname)))
    tool_name = name or fn.__name__
    params_model = create_model(
        f"{tool_name}_args",
        __config__=ConfigDict(extra="forbid"),
        **fields,
    )
    return Tool(
        name=tool_name,
        description=description,
        fn=fn,
        params_model=params_model,
        takes_context=takes_context,
        timeout_s=timeout_s,
        permissions=tuple(permissions),
        needs_consent=needs_consent,
        needs_approval=needs_approval,
        source=source,
    )


@overload
def tool(fn: Callable[..., Awaitable[Any]]) -> Tool: ...


@overload
def tool(
    *,
    name: str | None = None,
    timeout_s: float | None = None,
    permissions: Iterable[Permission] = (),
    needs_consent: bool = False,
    needs_approval: bool = False,
) -> Callable[[Callable[..., Awaitable[Any]]], Tool]: ...


def tool(
    fn: Callable[..., Awaitable[Any]] | None = None,
    *,
    name: str | None = None,
    timeout_s: float | None = None,
    permissions: Iterable[Permission] = (),
    needs_consent: bool = False,
    needs_approval: bool = False,
) -> Tool | Callable[[Callable[..., Awaitable[Any]]], Tool]:
    """Turn an async function into a :class:`Tool` (usable bare or with options)."""

    def wrap(f: Callable[..., Awaitable[Any]]) -> Tool:
        return make_tool(
            f,
            name=name,
            timeout_s=timeout_s,
            permissions=permissions,
            needs_consent=needs_consent,
            needs_approval=needs_approval,
        )

    return wrap(fn) if fn is not None else wrap


@dataclass(frozen=True, slots=True)
class ToolOutcome:
    """The result of one call as the model will see it."""

    call_id: str
    name: str
    ok: bool
    content: str
    data: Any = None


def _result_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, BaseModel):
        return value.model_dump_json()
    return json.dumps(value, ensure_ascii=False, default=str)


class ToolRegistry:
    """The tools a turn may call, by name."""

    def __init__(self, tools: Iterable[Tool] = (), *, default_timeout_s: float = 20.0) -> None:
        self._tools: dict[str, Tool] = {}
        self.default_timeout_s = default_timeout_s
        self.load_errors: list[str] = []
        for t in tools:
            self.register(t)

    def register(self, t: Tool) -> None:
        if t.name in self._tools:
            raise ValueError(f"tool name {t.name!r} is registered twice")
        self._tools[t.name] = t

    def __contains__(self, name: object) -> bool:
        return name in self._tools

    def __iter__(self) -> Any:
        return iter(self._tools.values())

    def __len__(self) -> int:
        return len(self._tools)

    def get(self, name: str) -> Tool | None:
        return self._tools.get(name)

    def without(self, permission: Permission) -> ToolRegistry:
        """A registry of the tools that do not need ``permission``."""
        kept = ToolRegistry(
            (t for t in self._tools.values() if permission not in t.permissions),
            default_timeout_s=self.default_timeout_s,
        )
        kept.load_errors = list(self.load_errors)
        return kept

    def specs(self) -> tuple[ToolSpec, ...]:
        return tuple(t.spec for t in self._tools.values())

    async def run(self, call_id: str, name: str, arguments: str, ctx: ToolContext) -> ToolOutcome:
        """Run one call. Model mistakes come back as a failed outcome; infra raises."""
        t = self._tools.get(name)
        if t is None:
            known = ", ".join(sorted(self._tools)) or "none"
            return ToolOutcome(
                call_id, name, False, f"Unknown tool '{name}'. Available tools: {known}."
            )
        try:
            raw = json.loads(arguments or "{}")
        except json.JSONDecodeError as exc:
            return ToolOutcome(call_id, name, False, f"Arguments are not valid JSON: {exc.msg}.")
        if not isinstance(raw, dict):
            return ToolOutcome(call_id, name, False, "Arguments must be a JSON object.")
        try:
            args = t.params_model.model_validate(raw)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or 'arguments'}: {e['msg']}"
                for e in exc.errors(include_url=False)
            )
            return ToolOutcome(call_id, name, False, f"Invalid arguments: {problems}.")
        timeout = t.timeout_s if t.timeout_s is not None else self.default_timeout_s
        try:
            async with asyncio.timeout(timeout):
                value = await t.call(ctx, args)
        except ToolRetry as exc:
            return ToolOutcome(call_id, name, False, exc.detail or str(exc))
        except TimeoutError as exc:
            raise ToolInfraError(f"tool {name} timed out after {timeout}s", tool=name) from exc
        except HealTraceError:
            raise
        except Exception as exc:
            raise ToolInfraError(f"tool {name} failed: {type(exc).__name__}", tool=name) from exc
        return ToolOutcome(call_id, name, True, _result_text(value), value)


def load_tools(
    settings: Settings, *, group: str = ENTRY_POINT_GROUP, enabled: Iterable[str] | None = None
) -> ToolRegistry:
    """Every tool registered through the ``healtrace.tools`` entry-point group.

    An entry point names a :class:`Tool` or an iterable of them. A broken plugin is
    reported in ``registry.load_errors`` and skipped; start-up goes on.
    """
    registry = ToolRegistry(default_timeout_s=settings.tool_timeout_s)
    wanted = set(enabled) if enabled is not None else None
    for ep in sorted(entry_points(group=group), key=lambda e: (e.name != "builtin", e.name)):
        try:
            loaded = ep.load()
            items = [loaded] if isinstance(loaded, Tool) else list(loaded)
            for item in items:
                if not isinstance(item, Tool):
                    raise TypeError(f"{item!r} is not a healtrace Tool")
                if wanted is not None and item.name not in wanted:
                    continue
                src = "builtin" if ep.name == "builtin" else f"plugin:{ep.name}"
                registry.register(replace(item, source=src))
        except Exception as exc:  # noqa: BLE001 - a broken plugin must not stop start-up
            message = f"tool plugin {ep.name!r} ({ep.value}) was skipped: {exc}"
            log.error(message)
            registry.load_errors.append(message)
    return registry
