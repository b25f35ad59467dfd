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

Tools that come from elsewhere (an MCP server, a LangChain or LlamaIndex tool) have a JSON
schema rather than a Python signature: :func:`schema_tool` wraps those, validating the
arguments against the schema before the call.
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
from typing import Any, Literal, get_args, get_type_hints, overload

from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model

from healtrace.agent.citations import CitationLedger, KnowledgeSearch
from healtrace.agent.models.base import ToolSpec
from healtrace.config import Settings
from healtrace.errors import HealTraceError, ToolInfraError

log = logging.getLogger(__name__)

Permission = Literal["records", "rewards", "network", "images", "speech", "knowledge"]
PERMISSIONS: tuple[Permission, ...] = get_args(Permission)
ENTRY_POINT_GROUP = "healtrace.tools"
#: What OpenAI-compatible servers accept as a function name.
TOOL_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


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
    """One callable tool and what it needs.

    Arguments are checked before the call: against ``params_model`` for Python tools, or
    against ``input_schema`` (JSON Schema) for tools described by one.
    """

    name: str
    description: str
    fn: Callable[..., Awaitable[Any]]
    #: Python tools: the arguments as a model. None for schema-described tools.
    params_model: type[BaseModel] | None
    takes_context: bool
    timeout_s: float | None = None
    #: What the tool reaches: "records" and "rewards" act for the signed-in patient (offered
    #: only when there is one), "network" calls out of the service, "images" looks at the
    #: turn's photos (offered only when it has some).
    permissions: tuple[Permission, ...] = ()
    #: It reads data that the patient's consent governs; the tool must check the consent
    #: gate itself, and the MCP server offers it only to a patient's own key.
    needs_consent: bool = False
    #: The orchestrator runs it only once the patient approved this exact call.
    needs_approval: bool = False
    #: Locales the tool serves (empty: every locale).
    locales: tuple[str, ...] = ()
    source: str = "builtin"
    #: Schema-described tools: the JSON Schema of the arguments object.
    input_schema: dict[str, Any] | None = field(default=None, compare=False)
    #: What the model is told; built once, since schema generation is slow.
    spec: ToolSpec = field(init=False, compare=False)
    _validator: Any = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.params_model is not None:
            schema = self.params_model.model_json_schema()
            schema.pop("title", None)
            validator = None
        else:
            if self.input_schema is None:
                raise TypeError(f"tool {self.name}: needs params_model or input_schema")
            schema = check_input_schema(self.name, self.input_schema)
            validator = _jsonschema_validator(schema)
        spec = ToolSpec(name=self.name, description=self.description, parameters=schema)
        object.__setattr__(self, "spec", spec)
        object.__setattr__(self, "_validator", validator)

    def serves(self, locale: str) -> bool:
        """Whether the tool is offered in ``locale`` ("zh" matches "zh-CN")."""
        if not self.locales:
            return True
        lang = locale.split("-")[0].lower()
        return any(loc == locale or loc.split("-")[0].lower() == lang for loc in self.locales)

    def parse(self, raw: dict[str, Any]) -> Any:
        """The validated arguments; raises :class:`ToolRetry` with what is wrong."""
        if self.params_model is not None:
            try:
                return self.params_model.model_validate(raw)
            except ValidationError as exc:
                raise ToolRetry(validation_text(exc)) from exc
        errors = sorted(self._validator.iter_errors(raw), key=lambda e: list(e.absolute_path))
        if errors:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e.absolute_path) or 'arguments'}: {e.message}"
                for e in errors[:5]
            )
            raise ToolRetry(f"Invalid arguments: {problems}.")
        return raw

    async def call(self, ctx: ToolContext, args: Any) -> Any:
        if self.params_model is None:
            return await self.fn(ctx, dict(args))
        kwargs = {name: getattr(args, name) for name in type(args).model_fields}
        if self.takes_context:
            return await self.fn(ctx, **kwargs)
        return await self.fn(**kwargs)


def validation_text(exc: ValidationError) -> str:
    """What the model is told about arguments a pydantic model refused."""
    problems = "; ".join(
        f"{'.'.join(str(p) for p in e['loc']) or 'arguments'}: {e['msg']}"
        for e in exc.errors(include_url=False)
    )
    return f"Invalid arguments: {problems}."


def _jsonschema_validator(schema: dict[str, Any]) -> Any:
    from jsonschema import validators

    cls = validators.validator_for(schema, default=validators.Draft202012Validator)
    return cls(schema)


def check_input_schema(name: str, schema: Any) -> dict[str, Any]:
    """``schema`` if it is a valid JSON Schema of an arguments object; else ``TypeError``."""
    from jsonschema import SchemaError, validators

    if not isinstance(schema, dict):
        raise TypeError(f"tool {name}: the input schema must be a JSON object")
    if schema.get("type", "object") != "object":
        raise TypeError(f"tool {name}: the input schema must describe an object")
    cls = validators.validator_for(schema, default=validators.Draft202012Validator)
    try:
        cls.check_schema(schema)
    except SchemaError as exc:
        raise TypeError(f"tool {name}: invalid input schema: {exc.message}") from exc
    out = dict(schema)
    out.setdefault("type", "object")
    out.setdefault("properties", {})
    return out


def check_tool(t: Tool) -> None:
    """Raise ``TypeError`` if ``t`` cannot be offered to a model."""
    if not TOOL_NAME.match(t.name):
        raise TypeError(
            f"tool name {t.name!r} must be 1-64 letters, digits, '_' or '-' (OpenAI function names)"
        )
    if not t.description.strip():
        raise TypeError(f"tool {t.name}: needs a description, the model reads it")
    unknown = [p for p in t.permissions if p not in PERMISSIONS]
    if unknown:
        raise TypeError(f"tool {t.name}: unknown permission(s) {unknown}; known: {PERMISSIONS}")
    if t.timeout_s is not None and not t.timeout_s > 0:
        raise TypeError(f"tool {t.name}: timeout_s must be positive")


def schema_tool(
    name: str,
    description: str,
    input_schema: dict[str, Any],
    fn: Callable[[ToolContext, dict[str, Any]], Awaitable[Any]],
    *,
    timeout_s: float | None = None,
    permissions: Iterable[Permission] = (),
    needs_consent: bool = False,
    needs_approval: bool = False,
    locales: Iterable[str] = (),
    source: str = "builtin",
) -> Tool:
    """A tool described by a JSON Schema; ``fn(ctx, arguments)`` gets validated arguments."""
    t = Tool(
        name=name,
        description=description,
        fn=fn,
        params_model=None,
        takes_context=True,
        timeout_s=timeout_s,
        permissions=tuple(permissions),
        needs_consent=needs_consent,
        needs_approval=needs_approval,
        locales=tuple(locales),
        source=source,
        input_schema=input_schema,
    )
    check_tool(t)
    return t


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
    locales: Iterable[str] = (),
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
    made = Tool(
        name=tool_name,
        description=description,
        fn=fn,
        params_model=params_model,
        takes_context=takes_context,
        timeout_s=timeout_s,
        permissions=tuple(permissions),
        needs_consent=needs_consent,
        needs_approval=needs_approval,
        locales=tuple(locales),
        source=source,
    )
    check_tool(made)
    return made


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
    locales: Iterable[str] = (),
) -> Callable[[Callable[..., Awaitable[Any]]], Tool]: ...


def tool(
    fn: Callable[..., Awaitable[Any]] | None = None,
    *,
    name: str | None = None,
    timeout_s: float | None = None,
    permissions: Iterable[Permission] = (),
    needs_consent: bool = False,
    needs_approval: bool = False,
    locales: Iterable[str] = (),
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
            locales=locales,
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

    def where(self, keep: Callable[[Tool], bool]) -> ToolRegistry:
        """A registry of the tools ``keep`` accepts (load errors carried over)."""
        kept = ToolRegistry(
            (t for t in self._tools.values() if keep(t)),
            default_timeout_s=self.default_timeout_s,
        )
        kept.load_errors = list(self.load_errors)
        return kept

    def without(self, permission: Permission) -> ToolRegistry:
        """A registry of the tools that do not need ``permission``."""
        return self.where(lambda t: permission not in t.permissions)

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
            args = t.parse(raw)
        except ToolRetry as exc:
            return ToolOutcome(call_id, name, False, str(exc.detail or exc))
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

    An entry point names a :class:`Tool` or an iterable of them (built-in tools register
    the same way, as ``builtin``). A plugin that fails to import, names something that is
    not a tool, or describes a tool a model cannot be offered is reported in
    ``registry.load_errors`` and skipped as a whole; start-up goes on. Tools named in
    ``HEALTRACE_TOOLS_DISABLED`` are left out.
    """
    registry = ToolRegistry(default_timeout_s=settings.tool_timeout_s)
    wanted = set(enabled) if enabled is not None else None
    disabled = set(settings.tools_disabled)
    for ep in sorted(entry_points(group=group), key=lambda e: (e.name != "builtin", e.name)):
        src = "builtin" if ep.name == "builtin" else f"plugin:{ep.name}"
        try:
            loaded = ep.load()
            items = [loaded] if isinstance(loaded, Tool) else list(loaded)
            for item in items:
                if not isinstance(item, Tool):
                    raise TypeError(f"{item!r} is not a healtrace Tool")
                check_tool(item)
        except Exception as exc:  # noqa: BLE001 - a broken plugin must not stop start-up
            message = f"tool plugin {ep.name!r} ({ep.value}) was skipped: {exc}"
            log.error(message)
            registry.load_errors.append(message)
            continue
        for item in items:
            if item.name in disabled or (wanted is not None and item.name not in wanted):
                continue
            existing = registry.get(item.name)
            if existing is not None:
                message = (
                    f"tool {item.name!r} of plugin {ep.name!r} was skipped: "
                    f"{existing.source} already registers that name"
                )
                log.error(message)
                registry.load_errors.append(message)
                continue
            registry.register(replace(item, source=src))
    return registry
