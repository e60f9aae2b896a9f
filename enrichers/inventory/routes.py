"""Route templates: framework routes to OpenAPI syntax, and raw paths to templates.

Two jobs, both pure and cheap:

* :func:`convert_route` turns the ``http.route`` a framework reported into
  OpenAPI path syntax (Flask/Django ``<int:id>``, Express/Rails/Go ``:id`` and
  ``*path``, ``{id:[0-9]+}`` and ``{id?}`` constraints, Django regex groups).
* :class:`PathTemplater` infers a template from a raw ``url.path`` when no route
  was reported (404s, uninstrumented frameworks, eBPF). Segments that look like
  ids (numbers, UUIDs, ULIDs, hex hashes, emails, dates, long tokens) become typed
  parameters at once; other segments stay literal until their position has
  shown more than ``max_distinct`` different values, then that position
  collapses to a parameter (the way OBI's route harvester and the Collector keep
  cardinality low). A per-service node budget bounds memory whatever the input.

A template is a tuple of segments; a parameter segment is written ``{name}``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from urllib.parse import unquote

from agent.model import record

# Parameter types, as OpenAPI (type, format) pairs.
PARAM_SCHEMAS: dict[str, dict[str, str]] = {
    "integer": {"type": "integer"},
    "number": {"type": "number"},
    "uuid": {"type": "string", "format": "uuid"},
    "ulid": {"type": "string"},
    "hash": {"type": "string"},
    "email": {"type": "string", "format": "email"},
    "date": {"type": "string", "format": "date"},
    "token": {"type": "string"},
    "string": {"type": "string"},
}

#: Name given to an inferred parameter of each type.
_PARAM_NAMES = {
    "integer": "id",
    "number": "number",
    "uuid": "uuid",
    "ulid": "ulid",
    "hash": "hash",
    "email": "email",
    "date": "date",
    "token": "token",
    "string": "param",
}

_INT = re.compile(r"^[0-9]+$")
_UUID = re.compile(r"^[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}$")
_ULID = re.compile(r"^[0-7][0-9A-HJKMNP-TV-Za-hjkmnp-tv-z]{25}$")
_HEX = re.compile(r"^(?=.*[0-9])(?=.*[a-fA-F])[0-9a-fA-F]{8,}$")
_HEX_CHARS = frozenset("0123456789abcdefABCDEF")
_EMAIL = re.compile(r"^[^@/\s]+@[^@/\s]+\.[A-Za-z]{2,}$")
_DATE = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}([T ][0-9:.]+Z?)?$")
_TOKEN = re.compile(r"^[A-Za-z0-9_\-~+=]{16,}$")
# the extension must hold a letter: "1.5" is a decimal, one value, not "{id}.5"
_STEM_EXT = re.compile(r"^(.+)\.(?=[A-Za-z0-9]*[A-Za-z])([A-Za-z0-9]{1,8})$")
_DECIMAL = re.compile(r"^-?[0-9]+\.[0-9]+$")
#: What enrichers.sensitive.sanitize puts where a sensitive value was: a parameter
_PLACEHOLDER = re.compile(r"^\{[a-z0-9_]{1,40}\}$")
METHODS = frozenset(
    {"GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH", "QUERY"}
)
MAX_SEGMENT = 128


def normalize_method(method: str) -> str:
    """Upper-case known methods; anything else is ``_OTHER`` (bounded, like OTel)."""
    m = method.upper()
    return m if m in METHODS else "_OTHER"


def classify_segment(seg: str) -> str | None:
    """The parameter type a raw path segment looks like, or ``None`` if literal.

    Conservative on purpose: ``v1``, ``healthz``, ``hello.world``, file names and
    decimals (``1.5``: maybe a version) stay literal; cardinality, not looks,
    collapses the rest. A percent-encoded segment is classified decoded
    (``bob%40x.com`` is an email). 32 hex digits without dashes are a ``uuid``
    only when the version nibble (1-8) and the variant nibble (8, 9, a, b) say so,
    else a ``hash`` (an MD5 is one); with dashes they are always a ``uuid``.
    """
    if "%" in seg:
        seg = unquote(seg)
    n = len(seg)
    if n == 0:
        return None
    if n > MAX_SEGMENT:
        return "token"
    c0 = seg[0]
    if c0 == "{" and _PLACEHOLDER.match(seg):
        return "string"  # a value the sensitive stage took out (``{credit_card}``)
    if c0.isdigit():
        if _INT.match(seg):
            return "integer"
        if n >= 10 and _DATE.match(seg):
            return "date"
    if n in (32, 36) and _UUID.match(seg):
        if n == 36 or (seg[12] in "12345678" and seg[16] in "89abAB"):
            return "uuid"
        return "hash"
    if n == 26 and _ULID.match(seg) and any(ch.isdigit() for ch in seg):
        return "ulid"
    if "@" in seg and _EMAIL.match(seg):
        return "email"
    if n >= 8 and c0 in _HEX_CHARS and _HEX.match(seg):  # (_HEX: hex digits only)
        return "hash"
    if n >= 16 and _TOKEN.match(seg):
        digits = sum(ch.isdigit() for ch in seg)
        upper = any(ch.isupper() for ch in seg)
        lower = any(ch.islower() for ch in seg)
        if digits >= 2 or (digits and upper and lower) or n >= 40:
            return "token"
    return None


def split_path(path: str) -> list[str]:
    """Segments of a path: no empty segments, no trailing slash, no query."""
    if "?" in path or "#" in path:
        path = path.partition("?")[0].partition("#")[0]
    return [s for s in path.split("/") if s]


# the slash is matched, not looked behind for: a pattern that starts with a literal
# lets the regex engine jump from slash to slash (a third faster, same result)
_DIGIT_SEGMENT = re.compile(rf"/[0-9]{{1,{MAX_SEGMENT}}}(?=/|$)")


def canonical_path(path: str) -> str:
    """``path`` with every all-digit segment written ``0``.

    The templater gives such a segment the same treatment whatever its digits
    (an ``integer`` parameter: digit segments are never learned as literals), so
    two paths that differ only there get the same template and teach the trie
    the same thing. Caches key on this form, which turns ``/users/1``,
    ``/users/2``, ... into one entry. Not valid for a service whose spec pins an
    all-digit literal (:meth:`PathTemplater.pins_digits`).
    """
    return _DIGIT_SEGMENT.sub("/0", path)


def join_template(segments: Iterable[str]) -> str:
    s = "/".join(segments)
    return "/" + s


# ------------------------------------------------------------ framework routes

_FLASK = re.compile(r"<(?:(?P<conv>[A-Za-z_][A-Za-z0-9_]*)(?:\([^)]*\))?:)?(?P<name>[A-Za-z_][A-Za-z0-9_]*)>")
_DJANGO_GROUP = re.compile(r"\(\?P<(?P<name>[A-Za-z_][A-Za-z0-9_]*)>[^)]*\)")
_BRACE = re.compile(r"\{(?P<name>[^{}:?*=/]+?)(?:[:=][^{}]*)?\??\*?\}")
_COLON = re.compile(
    r"^:(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?P<re>\([^)]*\))?\??(?P<ext>\.[A-Za-z0-9]{1,8})?$"
)
_STAR = re.compile(r"^\*(?P<name>[A-Za-z_][A-Za-z0-9_]*)?$")
_FLASK_TYPES = {"int": "integer", "float": "string", "uuid": "uuid", "path": "string",
                "string": "string", "any": "string", "slug": "string", "str": "string"}


@record
class Template:
    """A route template with the type of each of its parameters.

    A :func:`agent.model.record` (immutable by contract, cheap to build): the
    templater makes one per raw path it has not seen.
    """

    route: str
    params: tuple[tuple[str, str], ...] = ()  # (name, type) in order
    inferred: bool = False

    @property
    def param_types(self) -> dict[str, str]:
        return dict(self.params)


def literal_param(seg: str) -> tuple[str, str] | None:
    """(type, suffix) when a literal segment looks like a value: ``42`` is
    ``("integer", "")``, ``42.json`` is ``("integer", ".json")``; else ``None``."""
    typ = classify_segment(seg)
    if typ is not None:
        return typ, ""
    if "." in seg:
        m = _STEM_EXT.match(seg)
        if m is not None:
            st = classify_segment(m.group(1))
            if st is not None:
                return st, "." + m.group(2)
    return None


def convert_route(route: str, *, template_ids: bool = True) -> Template:
    """Convert a framework route (``http.route``) to OpenAPI path syntax.

    With ``template_ids`` (the default), literal segments that look like values
    (ids, UUIDs, hashes, emails, dates, tokens: :func:`classify_segment`) become
    typed parameters, so an instrumentation that reports the raw path as its
    route cannot blow up cardinality; real literals (``v1``, ``healthz``,
    ``hello.world``) stay. Callers pass ``False`` for a service whose spec pins an
    all-digit literal.

    >>> convert_route("/users/<int:user_id>").route
    '/users/{user_id}'
    >>> convert_route("/users/:id/posts/*rest").route
    '/users/{id}/posts/{rest}'
    """
    r = route.strip()
    if " " in r:  # "GET /users/:id" from some instrumentations
        head, _, tail = r.partition(" ")
        if head.upper() in METHODS:
            r = tail.strip()
    r = r.removeprefix("^").removesuffix("$")
    r = r.replace("(.:format)", "")
    if not r.startswith("/"):
        r = "/" + r
    params: list[tuple[str, str]] = []
    used: set[str] = set()

    def unique(name: str) -> str:
        base = name or "param"
        n, i = base, 2
        while n in used:
            n, i = f"{base}{i}", i + 1
        used.add(n)
        return n

    def flask(m: re.Match[str]) -> str:
        name = unique(m.group("name"))
        params.append((name, _FLASK_TYPES.get(m.group("conv") or "string", "string")))
        return "{" + name + "}"

    def django(m: re.Match[str]) -> str:
        name = unique(m.group("name"))
        params.append((name, "string"))
        return "{" + name + "}"

    def brace(m: re.Match[str]) -> str:
        raw = m.group(0)
        name = unique(m.group("name").strip())
        typ = "integer" if (":int" in raw or "[0-9]" in raw or "\\d" in raw) else "string"
        params.append((name, typ))
        return "{" + name + "}"

    out: list[str] = []
    for seg in r.split("/"):
        if not seg:
            continue
        if "(?P<" in seg:
            seg = _DJANGO_GROUP.sub(django, seg)
        elif "<" in seg:
            seg = _FLASK.sub(flask, seg)
        elif "{" in seg:
            seg = _BRACE.sub(brace, seg)
        elif seg[0] == ":":
            m = _COLON.match(seg)
            if m:
                name = unique(m.group("name"))
                rx = m.group("re") or ""
                params.append((name, "integer" if ("\\d" in rx or "[0-9]" in rx) else "string"))
                seg = "{" + name + "}" + (m.group("ext") or "")
        elif seg[0] == "*":
            m = _STAR.match(seg)
            if m:
                name = unique(m.group("name") or "wildcard")
                params.append((name, "string"))
                seg = "{" + name + "}"
        elif template_ids:
            lp = literal_param(seg)
            if lp is not None:
                name = unique(_param_name(lp[0]))
                params.append((name, lp[0]))
                seg = "{" + name + "}" + lp[1]
        out.append(seg)
    return Template(join_template(out), tuple(params))


# --------------------------------------------------------------- path templating

PARAM = "\x00"  # trie key of a node's parameter child


@dataclass(slots=True)
class _Node:
    children: dict[str, _Node] = field(default_factory=dict)
    param: _Node | None = None
    param_type: str = ""  # widest type seen at the parameter child
    param_name: str = ""  # fixed when the parameter child is created: templates stay stable
    collapsed: bool = False
    pinned: bool = False  # a literal the service's spec names: never collapsed away


@dataclass(slots=True)
class _Trie:
    root: _Node = field(default_factory=_Node)
    nodes: int = 1
    collapses: int = 0


def _param_name(typ: str | None) -> str:
    return _PARAM_NAMES.get(typ or "string", "param")


class PathTemplater:
    """Infers route templates from raw paths, per service, with bounded memory.

    ``template(service, path)`` returns a :class:`Template`. ``collapsed`` is a
    listener list: after a position collapses, callers re-template what they
    stored (``retemplate``) so earlier literal endpoints merge into the new one.
    """

    def __init__(
        self,
        *,
        max_distinct: int = 25,
        max_depth: int = 12,
        max_nodes: int = 2_000,
        max_services: int = 2_000,
    ) -> None:
        self.max_distinct = max(1, max_distinct)
        self.max_depth = max(1, max_depth)
        self.max_nodes = max(16, max_nodes)
        self.max_services = max_services
        self._tries: dict[str, _Trie] = {}
        #: services whose trie pins an all-digit literal (see canonical_path)
        self._digit_pins: set[str] = set()
        self.overflow = 0
        #: services whose trie collapsed a position since the last ``take_collapsed``.
        self._dirty: set[str] = set()
        #: whether the last :meth:`template` call put its last segment in the parameter
        #: of a collapsed position (then any other value there, without a dot, gets the
        #: same template: callers may cache by the path up to that segment)
        self.last_collapsed = False

    def _trie(self, service: str) -> _Trie:
        t = self._tries.get(service)
        if t is None:
            if len(self._tries) >= self.max_services:
                service = "\x00overflow"
                t = self._tries.get(service)
                if t is not None:
                    return t
            t = _Trie()
            self._tries[service] = t
        return t

    def pin(self, service: str, template_segments: Iterable[str]) -> None:
        """Keep the literal segments of a documented path literal forever."""
        trie = self._trie(service)
        node = trie.root
        for seg in template_segments:
            if seg.startswith("{") and seg.endswith("}") and seg.count("{") == 1:
                if node.param is None:
                    node.param = _Node()
                    # untyped ("" reads as string) until traffic shows its values
                    node.param_type, node.param_name = "", "param"
                    trie.nodes += 1
                node = node.param
                continue
            child = node.children.get(seg)
            if child is None:
                child = _Node()
                node.children[seg] = child
                trie.nodes += 1
            child.pinned = True
            if seg.isascii() and seg.isdigit():
                self._digit_pins.add(service if self._tries.get(service) is trie else "\x00overflow")
            node = child

    def pins_digits(self, service: str) -> bool:
        """Whether ``service``'s trie pins an all-digit literal (no canonical_path then)."""
        return service in self._digit_pins or "\x00overflow" in self._digit_pins

    def take_collapsed(self) -> set[str]:
        d = self._dirty
        self._dirty = set()
        return d

    def template(self, service: str, path: str, *, learn: bool = True) -> Template:
        """The template of a raw path. With ``learn=False`` (a 404: scanners, typos)
        unknown literal segments become parameters without adding literal nodes
        or counting towards a collapse, so probes cannot generalise real routes."""
        segs = split_path(path)
        if len(segs) > self.max_depth:
            # the tail becomes one parameter (an over-long segment always is one)
            segs = segs[: self.max_depth - 1] + ["\x00" * (MAX_SEGMENT + 1)]
        trie = self._trie(service)
        node = trie.root
        out: list[str] = []
        params: list[tuple[str, str]] = []
        used: dict[str, int] = {}
        self.last_collapsed = False
        for seg in segs:
            self.last_collapsed = False
            typ = None
            lit = seg
            stem_ext = None
            known = node.children.get(seg)
            if known is not None and (known.pinned or not node.collapsed):
                out.append(seg)
                node = known
                continue
            lp = literal_param(seg)
            if lp is not None:
                if lp[1]:
                    stem_ext = (lp[0], lp[1][1:])
                else:
                    typ = lp[0]
            if typ is None and stem_ext is not None:
                typ, ext = stem_ext
                lit = "{}." + ext  # e.g. {id}.json: literal key shaped by extension
                child: _Node | None = node.children.get(lit)
                if child is None and learn and not node.collapsed and self._room(node, trie):
                    child = _Node()
                    node.children[lit] = child
                    trie.nodes += 1
                if child is not None:
                    if not child.param_name:  # a stem keeps its own type and name
                        child.param_name = _param_name(typ)
                        child.param_type = typ
                    elif child.param_type != typ:
                        child.param_type = "string"
                    name = self._name(child.param_name or "param", used)
                    params.append((name, child.param_type or "string"))
                    out.append("{" + name + "}." + ext)
                    node = child
                    continue
            if typ is None and not node.collapsed and learn:
                if self._room(node, trie):
                    child = _Node()
                    node.children[lit] = child
                    trie.nodes += 1
                    out.append(lit)
                    node = child
                    continue
                if trie.nodes < self.max_nodes:
                    self._collapse(service, node, trie)
            # parameter child
            if node.param is None:
                if trie.nodes >= self.max_nodes * 2:
                    self.overflow += 1
                    name = self._name("param", used)
                    out.append("{" + name + "}")
                    params.append((name, "string"))
                    break
                node.param = _Node()
                node.param_type = typ or "string"
                node.param_name = _param_name(node.param_type)
                trie.nodes += 1
            elif learn and node.param_type != (typ or "string"):
                # a spec's parameter (pin) starts untyped: the first value types it
                node.param_type = (typ or "string") if not node.param_type else "string"
            ptyp = node.param_type or "string"
            name = self._name(node.param_name or "param", used)
            params.append((name, ptyp))
            out.append("{" + name + "}")
            self.last_collapsed = node.collapsed and not any(c.pinned for c in node.children.values())
            node = node.param
        return Template(join_template(out), tuple(params), inferred=True)

    def _room(self, node: _Node, trie: _Trie) -> bool:
        return len(node.children) < self.max_distinct and trie.nodes < self.max_nodes

    @staticmethod
    def _name(base: str, used: dict[str, int]) -> str:
        n = used.get(base, 0) + 1
        used[base] = n
        return base if n == 1 else f"{base}{n}"

    def _collapse(self, service: str, node: _Node, trie: _Trie) -> None:
        """Turn a position into a parameter: merge its literal children into it."""
        node.collapsed = True
        trie.collapses += 1
        self._dirty.add(service)
        keep: dict[str, _Node] = {}
        if node.param is None:
            node.param = _Node()
            node.param_name = "param"
            trie.nodes += 1
        for key, child in node.children.items():
            if child.pinned or key.startswith("{}."):
                keep[key] = child
                continue
            self._merge(node.param, child, trie)
            trie.nodes -= 1
        node.children = keep
        node.param_type = "string"

    def _merge(self, dst: _Node, src: _Node, trie: _Trie) -> None:
        for key, child in src.children.items():
            if dst.collapsed and not child.pinned and not key.startswith("{}."):
                if dst.param is None:
                    dst.param = _Node()
                    dst.param_type, dst.param_name = "string", "param"
                    trie.nodes += 1
                self._merge(dst.param, child, trie)
                trie.nodes -= 1
                continue
            existing = dst.children.get(key)
            if existing is None:
                dst.children[key] = child
            else:
                self._merge(existing, child, trie)
                trie.nodes -= 1
        if src.param is not None:
            if dst.param is None:
                dst.param = src.param
                dst.param_type, dst.param_name = src.param_type, src.param_name
            else:
                self._merge(dst.param, src.param, trie)
                trie.nodes -= 1
                if dst.param_type != src.param_type:
                    dst.param_type = (dst.param_type or src.param_type) if "" in (
                        dst.param_type, src.param_type) else "string"

    def retemplate(self, service: str, template: str) -> Template:
        """Today's template of a route this templater produced earlier.

        A parameter segment walks the parameter child; a literal walks its
        literal child, or the parameter child once its position collapsed.
        Never adds nodes.
        """
        trie = self._tries.get(service)
        segs = split_path(template)
        if trie is None:
            return Template(template, (), inferred=True)
        node: _Node | None = trie.root
        out: list[str] = []
        params: list[tuple[str, str]] = []
        used: dict[str, int] = {}
        for seg in segs:
            if node is None:
                out.append(seg)
                continue
            if seg.startswith("{"):
                close = seg.find("}")
                rest = seg[close + 1 :]
                if rest:  # {id}.json
                    child = node.children.get("{}" + rest)
                    ptype = (child.param_type if child is not None else "") or "string"
                    pname = (child.param_name if child is not None else "") or "param"
                    name = self._name(pname, used)
                    params.append((name, ptype))
                    out.append("{" + name + "}" + rest)
                    node = child
                    continue
                name = self._name(node.param_name or "param", used)
                params.append((name, node.param_type or "string"))
                out.append("{" + name + "}")
                node = node.param
                continue
            child = node.children.get(seg)
            if child is not None and (child.pinned or not node.collapsed):
                out.append(seg)
                node = child
                continue
            if node.param is None:
                out.append(seg)
                node = None
                continue
            name = self._name(node.param_name or "param", used)
            params.append((name, node.param_type or "string"))
            out.append("{" + name + "}")
            node = node.param
        return Template(join_template(out), tuple(params), inferred=True)

    # -------------------------------------------------------------- stats/state
    def node_count(self, service: str | None = None) -> int:
        if service is not None:
            t = self._tries.get(service)
            return t.nodes if t else 0
        return sum(t.nodes for t in self._tries.values())

    def snapshot(self) -> dict[str, object]:
        return {svc: _dump(t.root) for svc, t in self._tries.items()}

    def restore(self, data: dict[str, object]) -> None:
        self._tries.clear()
        self._digit_pins.clear()
        for svc, d in data.items():
            t = _Trie()
            t.root = _load(d, t)
            self._tries[svc] = t
            if _pins_digits(t.root):
                self._digit_pins.add(svc)


def _pins_digits(n: _Node) -> bool:
    for key, child in n.children.items():
        if child.pinned and key.isascii() and key.isdigit():
            return True
        if _pins_digits(child):
            return True
    return n.param is not None and _pins_digits(n.param)


def _dump(n: _Node) -> dict[str, object]:
    d: dict[str, object] = {}
    if n.children:
        d["c"] = {k: _dump(v) for k, v in n.children.items()}
    if n.param is not None:
        d["p"] = _dump(n.param)
        d["t"] = n.param_type
        d["n"] = n.param_name
    if n.collapsed:
        d["x"] = 1
    if n.pinned:
        d["pin"] = 1
    return d


def _load(d: object, trie: _Trie) -> _Node:
    n = _Node()
    if not isinstance(d, dict):
        return n
    for k, v in (d.get("c") or {}).items():
        n.children[str(k)] = _load(v, trie)
        trie.nodes += 1
    if "p" in d:
        n.param = _load(d["p"], trie)
        n.param_type = str(d.get("t", "string") or "")  # "": a pinned, untyped parameter
        n.param_name = str(d.get("n") or "param")
        trie.nodes += 1
    n.collapsed = bool(d.get("x"))
    n.pinned = bool(d.get("pin"))
    return n


# ------------------------------------------------------ parameter value types

#: Flags of the types a path-parameter value fits (:func:`value_mask`); a
#: position keeps the AND of its values' flags, so it costs one int.
T_INTEGER, T_NUMBER, T_UUID, T_DATE, T_EMAIL = 1, 2, 4, 8, 16
_TYPE_ORDER = ((T_INTEGER, "integer"), (T_NUMBER, "number"), (T_UUID, "uuid"),
               (T_DATE, "date"), (T_EMAIL, "email"))
_DAY_ONLY = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")


def value_mask(value: str) -> int:
    """The type flags one raw path-parameter value fits (0: only a string)."""
    if "%" in value:
        value = unquote(value)
    typ = classify_segment(value)
    if typ == "integer":
        return T_INTEGER | T_NUMBER
    if typ == "uuid":
        return T_UUID
    if typ == "email":
        return T_EMAIL
    if typ == "date":
        return T_DATE if _DAY_ONLY.match(value) else 0
    if typ is None and value[:1].isdigit() and _DECIMAL.match(value):
        return T_NUMBER
    return 0


def mask_type(mask: int) -> str:
    """The narrowest parameter type (a :data:`PARAM_SCHEMAS` key) of a flag set."""
    for flag, name in _TYPE_ORDER:
        if mask & flag:
            return name
    return "string"
