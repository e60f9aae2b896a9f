"""API specs: load OpenAPI 3.0/3.1 and Swagger 2.0 files and match endpoints by shape.

Matching ignores parameter names (the spec may say ``{userId}`` where the code
says ``{user_id}``): a path is compared segment by segment, where a spec
parameter matches any observed segment and a spec literal matches only the same
literal. The method must match too (``HEAD`` falls back to ``GET``). Server
prefixes (OpenAPI ``servers[].url`` paths, Swagger ``basePath``) are tried with
and without, since a framework may report its route with or without the mount
point.

Path items (and operations) written as ``$ref`` are resolved: local refs
(``#/components/pathItems/x``) and refs to other files relative to the
referring one (``./paths.yaml#/users``), never over the network, at most
:data:`MAX_REF_DEPTH` deep and without cycles. A ref that cannot be resolved
is a :class:`SpecError` naming the file, the path and the ref.

A spec that cannot be used raises :class:`SpecError` with one sentence naming
the file and the problem; callers log it and go on without that spec.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn
from urllib.parse import unquote, urlsplit

import orjson
import yaml

from enrichers.inventory.routes import split_path

HTTP_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
#: How many ``$ref`` hops one path item may take, and how many files a spec may pull in.
MAX_REF_DEPTH = 16
MAX_REF_FILES = 64
_VAR = re.compile(r"\{[^{}]*\}")


class SpecError(Exception):
    """A spec file that cannot be used; the message names the file and the fix."""


def segment_shape(seg: str) -> str:
    """A segment with every ``{param}`` replaced by ``{}``: the name-free shape."""
    return _VAR.sub("{}", seg) if "{" in seg else seg


def path_shape(path: str) -> tuple[str, ...]:
    return tuple(segment_shape(s) for s in split_path(path))


@dataclass(frozen=True, slots=True)
class Operation:
    """One operation of a spec."""

    method: str  # upper case
    path: str  # as written in the spec, without server prefix
    shape: tuple[str, ...]
    deprecated: bool = False
    operation_id: str = ""
    summary: str = ""
    security: tuple[str, ...] = ()

    @property
    def key(self) -> str:
        return f"{self.method} {self.path}"


@dataclass(slots=True)
class Spec:
    """A loaded spec: its operations, indexed by method and path length."""

    service: str
    path: str
    version: str
    prefixes: tuple[tuple[str, ...], ...] = ((),)
    operations: list[Operation] = field(default_factory=list)
    security_schemes: dict[str, Any] = field(default_factory=dict)
    _index: dict[tuple[str, int], list[Operation]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for op in self.operations:
            self._index.setdefault((op.method, len(op.shape)), []).append(op)

    def match(self, method: str, route: str) -> Operation | None:
        """The operation an observed (method, route template) is, by shape."""
        shape = path_shape(route)
        methods = (method,) if method != "HEAD" else ("HEAD", "GET")
        best: tuple[int, Operation] | None = None
        for m in methods:
            for prefix in self.prefixes:
                n = len(prefix)
                if n:
                    if shape[:n] != prefix:
                        continue
                    rest = shape[n:]
                else:
                    rest = shape
                for op in self._index.get((m, len(rest)), ()):
                    score = _score(op.shape, rest)
                    if score >= 0 and (best is None or score > best[0]):
                        best = (score, op)
            if best is not None:
                return best[1]
        return best[1] if best else None

    def has_path(self, route: str) -> bool:
        """Whether some method of the spec has this path (for OPTIONS, 405s)."""
        shape = path_shape(route)
        for prefix in self.prefixes:
            n = len(prefix)
            if n and shape[:n] != prefix:
                continue
            rest = shape[n:]
            for (_m, ln), ops in self._index.items():
                if ln == len(rest) and any(_score(op.shape, rest) >= 0 for op in ops):
                    return True
        return False


def _score(spec_shape: tuple[str, ...], observed: tuple[str, ...]) -> int:
    """-1 when the shapes differ, else the number of literal segments matched."""
    score = 0
    for s, o in zip(spec_shape, observed, strict=True):
        if s == o:
            if "{" not in s:
                score += 2
            continue
        if s == "{}":  # a spec parameter matches any observed segment
            continue
        if "{" in s and "{" not in o and _pattern(s).fullmatch(o):
            score += 1
            continue
        return -1
    return score


_PATTERNS: dict[str, re.Pattern[str]] = {}


def _pattern(shape: str) -> re.Pattern[str]:
    p = _PATTERNS.get(shape)
    if p is None:
        p = re.compile("[^/]+".join(re.escape(x) for x in shape.split("{}")))
        _PATTERNS[shape] = p
    return p


# ------------------------------------------------------------------------ loading


def load_spec(path: str | Path, service: str = "") -> Spec:
    """Read and index one spec file, or raise :class:`SpecError`."""
    p = Path(path)
    try:
        raw = p.read_bytes()
    except FileNotFoundError:
        raise SpecError(f"{p}: spec file not found; fix the path in 'specs' or --spec.") from None
    except OSError as exc:
        raise SpecError(f"{p}: cannot read the spec ({exc.strerror}).") from None
    doc = _parse(p, raw)
    if not isinstance(doc, dict):
        raise SpecError(f"{p}: a spec must be a mapping with 'openapi' or 'swagger' at the top.")
    version = str(doc.get("openapi") or doc.get("swagger") or "")
    if not version:
        raise SpecError(f"{p}: no 'openapi' (3.x) or 'swagger' (2.0) field; is this an API spec?")
    if "swagger" in doc and not version.startswith("2."):
        raise SpecError(f"{p}: swagger version {version!r} is not supported; use 2.0 or OpenAPI 3.")
    if "openapi" in doc and not version.startswith("3."):
        raise SpecError(f"{p}: openapi version {version!r} is not supported; use 3.0 or 3.1.")
    paths = doc.get("paths")
    if paths is None and version.startswith("3.1") and "webhooks" in doc:
        paths = {}
    if not isinstance(paths, dict):
        raise SpecError(f"{p}: field 'paths' is missing or not a mapping of paths to operations.")
    prefixes = _prefixes(doc, version)
    ops: list[Operation] = []
    global_security = _security_names(doc.get("security"))
    refs = _Refs(p, doc)
    for route, item in paths.items():
        if not isinstance(route, str) or not route.startswith("/"):
            raise SpecError(f"{p}: path {route!r} under 'paths' must start with '/'.")
        where = (p, doc)
        if isinstance(item, dict) and "$ref" in item:
            item, where = refs.resolve(item, where, route)
        if not isinstance(item, dict):
            raise SpecError(f"{p}: path {route!r} must map methods to operations.")
        for m, op in item.items():
            if m not in HTTP_METHODS:
                continue
            if isinstance(op, dict) and "$ref" in op:
                op, _ = refs.resolve(op, where, route)
            if not isinstance(op, dict):
                raise SpecError(f"{p}: operation {m.upper()} {route} must be a mapping.")
            sec = _security_names(op["security"]) if "security" in op else global_security
            ops.append(
                Operation(
                    method=m.upper(),
                    path=route,
                    shape=path_shape(route),
                    deprecated=bool(op.get("deprecated")),
                    operation_id=str(op.get("operationId") or ""),
                    summary=str(op.get("summary") or ""),
                    security=sec,
                )
            )
    comps = doc.get("components") if isinstance(doc.get("components"), dict) else {}
    schemes = (comps or {}).get("securitySchemes") or doc.get("securityDefinitions") or {}
    return Spec(
        service=service,
        path=str(p),
        version=version,
        prefixes=prefixes,
        operations=ops,
        security_schemes=schemes if isinstance(schemes, dict) else {},
    )


class _Refs:
    """Resolves ``$ref``s of one spec: JSON pointers into the spec itself or into
    files next to it (parsed once each); no URLs, no cycles, bounded depth."""

    def __init__(self, path: Path, doc: Any) -> None:
        self.root = path
        self.docs: dict[Path, Any] = {path.resolve(): doc}

    def resolve(self, obj: dict[str, Any], where: tuple[Path, Any], route: str) -> tuple[Any, tuple[Path, Any]]:
        """``obj`` with its ``$ref`` followed (siblings of the ``$ref`` win), and the
        (file, document) later refs inside the result are relative to."""
        seen: set[tuple[Path, str]] = set()
        siblings: dict[str, Any] = {}
        while isinstance(obj, dict) and "$ref" in obj:
            ref = obj["$ref"]
            siblings = {**{k: v for k, v in obj.items() if k != "$ref"}, **siblings}
            if not isinstance(ref, str):
                self._fail(route, repr(ref), "it is not a string")
            if len(seen) >= MAX_REF_DEPTH:
                self._fail(route, ref, f"more than {MAX_REF_DEPTH} refs in a row")
            file, _, pointer = ref.partition("#")
            path, doc = where
            if file:
                if "://" in file or file.startswith("//"):
                    self._fail(route, ref, "only local files are read, never URLs")
                path = (path.parent / unquote(file)).resolve()
                doc = self._load(path, route, ref)
            key = (path.resolve(), pointer)
            if key in seen:
                self._fail(route, ref, "the refs form a cycle")
            seen.add(key)
            obj = self._pointer(doc, pointer, route, ref)
            where = (path, doc)
        if siblings and isinstance(obj, dict):
            obj = {**obj, **siblings}
        return obj, where

    def _load(self, path: Path, route: str, ref: str) -> Any:
        doc = self.docs.get(path)
        if doc is None:
            if len(self.docs) >= MAX_REF_FILES:
                self._fail(route, ref, f"a spec may use at most {MAX_REF_FILES} files")
            try:
                raw = path.read_bytes()
            except OSError as exc:
                self._fail(route, ref, f"cannot read {path}: {exc.strerror}")
            try:
                doc = _parse(path, raw)
            except SpecError as exc:
                self._fail(route, ref, str(exc).rstrip("."))
            self.docs[path] = doc
        return doc

    def _pointer(self, doc: Any, pointer: str, route: str, ref: str) -> Any:
        cur = doc
        for raw in unquote(pointer).split("/")[1:] if pointer else ():
            part = raw.replace("~1", "/").replace("~0", "~")
            if isinstance(cur, dict) and part in cur:
                cur = cur[part]
            elif isinstance(cur, list) and part.isdigit() and int(part) < len(cur):
                cur = cur[int(part)]
            else:
                self._fail(route, ref, f"nothing at {part!r}")
        return cur

    def _fail(self, route: str, ref: str, why: str) -> NoReturn:
        raise SpecError(f"{self.root}: path {route!r}: cannot resolve $ref {ref!r} ({why}).")


def _parse(p: Path, raw: bytes) -> Any:
    if p.suffix.lower() == ".json" or raw.lstrip()[:1] in (b"{", b"["):
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise SpecError(f"{p}: not valid JSON ({exc}); fix the syntax.") from None
    try:
        return yaml.safe_load(raw)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or "syntax error"
        raise SpecError(f"{p}: not valid YAML{where} ({problem}); fix the syntax.") from None


def _prefixes(doc: dict[str, Any], version: str) -> tuple[tuple[str, ...], ...]:
    out: list[tuple[str, ...]] = [()]
    if version.startswith("2."):
        bp = doc.get("basePath")
        if isinstance(bp, str) and bp.strip("/"):
            out.append(path_shape(bp))
        return tuple(out)
    for srv in doc.get("servers") or ():
        if not isinstance(srv, dict) or not isinstance(srv.get("url"), str):
            continue
        url = srv["url"]
        for name, var in (srv.get("variables") or {}).items():
            if isinstance(var, dict) and "default" in var:
                url = url.replace("{" + str(name) + "}", str(var["default"]))
        try:
            path = urlsplit(url).path if "://" in url else url
        except ValueError:
            continue
        shape = path_shape(path)
        if shape and shape not in out:
            out.append(shape)
    return tuple(out)


def _security_names(sec: Any) -> tuple[str, ...]:
    names: list[str] = []
    if isinstance(sec, list):
        for req in sec:
            if isinstance(req, dict):
                names.extend(str(k) for k in req)
    return tuple(dict.fromkeys(names))


def check_spec_file(path: str | Path) -> list[str]:
    """Problems of a spec: loading errors first, then validator messages (max 5).

    For ``apiward config check``; the agent itself uses any spec that loads.
    """
    try:
        load_spec(path)
    except SpecError as exc:
        return [str(exc)]
    try:
        from openapi_spec_validator import validate
        from openapi_spec_validator.readers import read_from_filename
    except ImportError:  # pragma: no cover - a declared dependency
        return []
    try:
        doc, _ = read_from_filename(str(path))
        validate(doc)
    except Exception as exc:  # noqa: BLE001 - every validator error is a message here
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return [f"{path}: does not validate as OpenAPI ({msg[:300]})."]
    return []
