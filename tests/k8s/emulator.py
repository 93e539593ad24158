"""A Kubernetes API stand-in: kmock's KubernetesEmulator, served over real HTTP, with the parts of an API
server the operator and kopf rely on and kmock leaves out.

kmock stores objects and streams watch events, but never assigns `uid`, `creationTimestamp` or
`resourceVersion`, treats a failed JSON-patch `test` as a server error, ignores label selectors and never
garbage-collects dependents. Each of those changes what the operator does, so this subclass adds them:

- every write bumps a cluster-wide `resourceVersion`, and creates assign `uid`, `creationTimestamp` and
  `generation` (bumped when anything outside metadata and status changes); an update or patch that changes
  nothing is not written (the same resourceVersion, no watch event);
- an update (PUT, which replaces the object) or a patch whose result carries a `metadata.resourceVersion`
  other than the stored one answers 409 Conflict, in the API server's words: the optimistic concurrency
  of leader election and of the operator's status writes;
- a JSON patch whose `test` fails answers 422, as kopf's optimistic concurrency expects;
- writes to the `status` subresource change only `status`, and writes to the object leave `status` alone;
- a pod with two volumes of one name, a mount of a volume it lacks, or two mounts at one path is refused
  with 422, as the API server's pod validation refuses it (tests.k8s.admission.pod_spec_problems);
- a custom resource's CEL validation rules (`x-kubernetes-validations`, see tests.k8s.cel) refuse
  writes with 422, transition rules included, and rules on the root see only `metadata.name` and
  `metadata.generateName` of the metadata; every write of a custom resource, its status included, is
  pruned to its structural schema and validated against it (see tests.k8s.openapi);
- list and watch honour `labelSelector`s (equality, inequality, existence and set-based terms) and
  equality `fieldSelector`s on dotted paths (what `kubectl wait` and `kubectl describe` send); a list
  says its kind (`<Kind>List`), as kubectl needs;
- a custom resource read with `Accept: ...;as=Table` comes back as a Table of its printer columns, so
  `kubectl get` prints what it prints on a cluster (see tests.k8s.tables);
- Leases (`coordination.k8s.io/v1`) are served, for leader election;
- every write is recorded with the bearer token that made it (`writes`), as an audit log would name
  the user, so a test can tell which operator replica wrote what;
- the log of served requests is bounded, and objects are found by their key, not by a scan of every
  object (kmock's way), so the thousandth request costs what the first did;
- a deleted pod that a kubelet started stays, marked with deletionTimestamp (the moment its grace period
  ends, as the API server sets it) and deletionGracePeriodSeconds, until its kubelet confirms with a zero
  grace period (graceful termination); a later delete with a shorter grace period brings both forward; a
  pod never started goes at once;
- deleting an object deletes, in turn, every object whose owners are all gone (background propagation),
  unless the request asks for `propagationPolicy: Orphan`; an object created with owners that are all gone
  already is deleted just after, as the garbage collector finds it;
- a watch starts where its `resourceVersion` says, as the API server's watch cache serves it: unset or "0",
  with an ADDED event for each object there is, then every change; a version, with every change after it,
  or, when that is older than the changes kept (`changes_kept` per resource), an ERROR event carrying 410
  Expired ("too old resource version"), on which clients list again. An object that starts or stops
  matching the watch's selectors arrives as ADDED or DELETED, as the watch cache converts it. The stream
  ends after `timeoutSeconds` (or `longest_watch_s`), and `watch` is read as Go's ParseBool reads it (the
  `kubernetes` client sends `watch=True`).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import copy
import functools
import json
import re
import threading
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp.web
import attrs
import jsonpatch
import yaml
from kmock import (
    KubernetesEmulator,
    KubernetesError,
    KubernetesObjectNotFoundError,
    KubernetesResourceNotFoundError,
    ResourceInfo,
    Server,
)
from kmock._internal import dicts, enums, references, rendering
from kmock._internal.k8s import KubernetesObjectConflictError

from tests.k8s.admission import metadata_label_problems, pod_spec_problems
from tests.k8s.cel import violations
from tests.k8s.openapi import pruned, schema_errors
from tests.k8s.tables import table

KubernetesObject = dict[str, Any]
ObjectKey = tuple[references.resource, str | None, str]

BUILTIN_RESOURCES: dict[str, ResourceInfo] = {
    "v1/pods": ResourceInfo(kind="Pod", namespaced=True, subresources={"status"}),
    "v1/configmaps": ResourceInfo(kind="ConfigMap", namespaced=True),
    "v1/services": ResourceInfo(kind="Service", namespaced=True, subresources={"status"}),
    "v1/serviceaccounts": ResourceInfo(kind="ServiceAccount", namespaced=True),
    "v1/secrets": ResourceInfo(kind="Secret", namespaced=True),
    "v1/events": ResourceInfo(kind="Event", namespaced=True),
    "v1/namespaces": ResourceInfo(kind="Namespace", namespaced=False, subresources={"status"}),
    "v1/nodes": ResourceInfo(kind="Node", namespaced=False, subresources={"status"}),
    "rbac.authorization.k8s.io/v1/roles": ResourceInfo(kind="Role", namespaced=True),
    "rbac.authorization.k8s.io/v1/rolebindings": ResourceInfo(kind="RoleBinding", namespaced=True),
    "coordination.k8s.io/v1/leases": ResourceInfo(kind="Lease", namespaced=True),
}
REQUESTS_KEPT = 16
VERBS = {"get", "list", "watch", "create", "update", "patch", "delete"}
ENDED_PHASES = ("Succeeded", "Failed")
"""Pod phases a pod does not leave: such a pod is deleted at once, as one no node holds."""
TRUE_WORDS = {"1", "t", "T", "TRUE", "true", "True"}
"""What Go's strconv.ParseBool reads as true: how the API server reads `watch=`."""


def expired(message: str) -> KubernetesObject:
    """The Status of a 410 Gone: a resourceVersion older than the server keeps."""
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": "Expired",
        "code": 410,
    }


def _unversioned(obj: KubernetesObject) -> KubernetesObject:
    """The object without its resourceVersion: what the storage layer compares before it writes (an update
    whose result equals the stored object is not written; GuaranteedUpdate returns the object as it was)."""
    return {**obj, "metadata": {k: v for k, v in obj.get("metadata", {}).items() if k != "resourceVersion"}}


def _now(later: float = 0) -> str:
    return (datetime.now(UTC) + timedelta(seconds=later)).strftime("%Y-%m-%dT%H:%M:%SZ")


_SELECTOR_TERM = re.compile(
    r"""\s*(?:
        (?P<set_key>[^\s,!=()]+)\s+(?P<operator>in|notin)\s*\((?P<values>[^)]*)\)
      | (?P<key>[^\s,!=()]+)\s*(?P<equality>==|=|!=)\s*(?P<value>[^\s,!=()]*)
      | (?P<absent>!)?\s*(?P<exists>[^\s,!=()]+)
    )\s*(?:,|$)""",
    re.VERBOSE,
)


Requirement = tuple[str, str, frozenset[str]]
"""(key, operator, values) with operator one of in, notin, exists, absent (= and != are in and notin)."""


@functools.cache
def _requirements(selector: str) -> tuple[Requirement, ...]:
    """A label selector in the API's syntax: `a=b`, `a==b`, `a!=b`, `a`, `!a`, `a in (x,y)` and
    `a notin (x,y)`, joined by commas."""
    text, position, found = selector.strip(), 0, []
    while position < len(text):
        term = _SELECTOR_TERM.match(text, position)
        if term is None:
            raise KubernetesError(status=400, reason="BadRequest", message=f"unable to parse requirement: {text!r}")
        position = term.end()
        if term["set_key"] is not None:
            values = frozenset(value.strip() for value in term["values"].split(","))
            found.append((term["set_key"], term["operator"], values))
        elif term["key"] is not None:
            found.append((term["key"], "notin" if term["equality"] == "!=" else "in", frozenset([term["value"]])))
        else:
            found.append((term["exists"], "absent" if term["absent"] else "exists", frozenset()))
    return tuple(found)


def _matches(selector: str | None, labels: dict[str, str]) -> bool:
    """Whether labels match a label selector (a term with `!=` or `notin` matches an absent key)."""
    for key, operator, values in _requirements(selector or ""):
        present = key in labels
        if operator == "exists" and not present:
            return False
        if operator == "absent" and present:
            return False
        if operator == "in" and not (present and labels[key] in values):
            return False
        if operator == "notin" and present and labels[key] in values:
            return False
    return True


def _fields_match(selector: str | None, obj: KubernetesObject) -> bool:
    """Equality field selectors on dotted paths (`metadata.name=flies`, `involvedObject.uid=...`, `!=` too)."""
    for term in filter(None, (selector or "").split(",")):
        negated = "!=" in term
        path, value = term.replace("!=", "=").replace("==", "=").split("=", 1)
        actual: Any = obj
        for part in path.strip().split("."):
            actual = actual.get(part) if isinstance(actual, dict) else None
        if (str(actual) if actual is not None else "") == value.strip() and negated:
            return False
        if (str(actual) if actual is not None else "") != value.strip() and not negated:
            return False
    return True


def _token(request: rendering.Request) -> str:
    """Who made a request: its bearer token (each test client's kubeconfig names its own)."""
    authorization = next((value for key, value in request.headers.items() if key.lower() == "authorization"), "")
    return authorization.removeprefix("Bearer ").strip()


@attrs.frozen
class Write:
    """One write the emulator served: who made it (the bearer token), how, and to what."""

    who: str
    verb: str
    plural: str
    namespace: str | None
    name: str | None
    subresource: str | None = None


@attrs.frozen
class Change:
    """One change to an object, as the watch cache keeps it: the object after it (the last state, for a
    deletion) and before it, to tell a watch whose selector the change crosses."""

    revision: int
    type: str
    obj: KubernetesObject
    previous: KubernetesObject | None


@attrs.define(kw_only=True)
class ClusterEmulator(KubernetesEmulator):
    _revision: int = attrs.field(default=0, init=False)
    created_at: list[tuple[float, str, str | None, str]] = attrs.field(factory=list, init=False)
    """(time.monotonic(), plural, namespace, name) of every create: what the benchmarks time."""
    schemas: dict[str, KubernetesObject] = attrs.field(factory=dict, init=False)
    """The OpenAPI schema of each custom resource served, by "group/version/plural"."""
    columns: dict[str, list[KubernetesObject]] = attrs.field(factory=dict, init=False)
    """The additionalPrinterColumns of each custom resource served, for `kubectl get`'s Table."""
    writes: list[Write] = attrs.field(factory=list, init=False)
    """Every write served (create, update, patch, delete), oldest first."""
    served: collections.Counter[str] = attrs.field(factory=collections.Counter, init=False)
    """Requests served, by "<action> <plural>" (e.g. "LIST pods"; "EXPIRED pods" for a watch answered 410):
    what the benchmarks count per job."""
    selectors: collections.Counter[tuple[str, str, str, str]] = attrs.field(factory=collections.Counter, init=False)
    """(who, action, plural, labelSelector) of every list and watch: what each client asked to be sent."""
    _kept: dict[references.resource, dict[tuple[str | None, str], Any]] = attrs.field(factory=dict, init=False)
    """Every object ever stored (kmock's record of its versions), by resource: what a list looks through."""
    changes_kept: int = 1000
    """Changes kept per resource for watches that resume from a resourceVersion (the watch cache's window)."""
    longest_watch_s: float | None = None
    """When set, every watch ends after at most this long, its timeoutSeconds notwithstanding, as watches end on
    a cluster for reasons of their own (an API server restarted or rolled, a load balancer's idle timeout): a
    test's way to make clients watch again."""
    _changes: dict[references.resource, collections.deque[Change]] = attrs.field(factory=dict, init=False)
    _expired: dict[references.resource, int] = attrs.field(factory=dict, init=False)
    """The newest revision each resource's window no longer holds: a watch from before it gets 410."""
    _changed: asyncio.Condition | None = attrs.field(default=None, init=False)
    _collectors: set[asyncio.Task[None]] = attrs.field(factory=set, init=False)
    _warnings: dict[int, list[str]] = attrs.field(factory=dict, init=False)
    """The warnings a request in progress gets in its response's Warning headers, by id(request)."""
    watches_held: asyncio.Event | None = attrs.field(default=None, init=False)
    """While set, a watch opened waits before it starts (see EmulatedCluster.holding_watches)."""
    waiting_watches: collections.Counter[str] = attrs.field(factory=collections.Counter, init=False)
    """Watches waiting there, by plural."""

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        for key, info in BUILTIN_RESOURCES.items():
            self.resources[key] = attrs.evolve(info, verbs=VERBS)

    def add_custom_resource(self, crd: KubernetesObject) -> None:
        """Serve a CustomResourceDefinition's storage version, as the API server does once it is applied."""
        names, spec = crd["spec"]["names"], crd["spec"]
        version = next(v for v in spec["versions"] if v.get("storage"))
        key = f"{spec['group']}/{version['name']}/{names['plural']}"
        self.schemas[key] = version["schema"]["openAPIV3Schema"]
        self.columns[key] = list(version.get("additionalPrinterColumns") or [])
        self.resources[key] = ResourceInfo(
            kind=names["kind"],
            singular=names.get("singular"),
            namespaced=spec["scope"] == "Namespaced",
            shortnames=set(names.get("shortNames", [])),
            subresources=set(version.get("subresources", {})),
            verbs=VERBS,
        )

    def _validate(
        self, resource: references.resource, new: KubernetesObject, old: KubernetesObject | None = None
    ) -> None:
        schema = self.schemas.get(f"{resource.group}/{resource.version}/{resource.plural}")
        problems = metadata_label_problems(new.get("metadata", {}).get("labels") or {})
        problems += violations(schema, new, old) if schema is not None else []
        self._refuse(resource, new, problems)

    def _refuse(self, resource: references.resource, new: KubernetesObject, problems: list[str]) -> None:
        if problems:
            kind = self.resources[resource].kind
            qualified = f"{kind}.{resource.group}" if resource.group else kind  # core kinds go unqualified
            name = new.get("metadata", {}).get("name")
            message = f'{qualified} "{name}" is invalid: {"; ".join(problems)}'
            raise KubernetesError(status=422, reason="Invalid", message=message)

    def _schema_checked(
        self, request: rendering.Request, new: KubernetesObject, old: KubernetesObject | None = None
    ) -> KubernetesObject:
        """A custom resource as the API server stores it: pruned to its schema, and refused (422) where what
        is left breaks the schema (see tests.k8s.openapi). A field the schema lacks is refused (400) under
        `fieldValidation=Strict` and warned of under Warn (the default). Other kinds pass as they are."""
        resource = request.resource
        assert resource is not None
        schema = self.schemas.get(f"{resource.group}/{resource.version}/{resource.plural}")
        if schema is None:
            return new
        unknown: list[str] = []
        kept: KubernetesObject = pruned(new, schema, unknown)
        validation = request.params.get("fieldValidation", "Warn")
        if unknown and validation == "Strict":
            kind = self.resources[resource].kind
            raise KubernetesError(
                status=400,
                reason="BadRequest",
                message=f'{kind} in version "{resource.version}" cannot be handled as a {kind}: strict decoding '
                f"error: {', '.join(f'unknown field {json.dumps(path)}' for path in unknown)}",
            )
        if unknown and validation != "Ignore":
            self._warnings[id(request)] = [f"unknown field {json.dumps(path)}" for path in unknown]
        self._refuse(resource, kept, schema_errors(kept, schema, old))
        return kept

    def _conflict(self, resource: references.resource, name: str) -> KubernetesError:
        """The API server's answer to a write made on a stale resourceVersion (apimachinery's NewConflict)."""
        qualified = f"{resource.plural}.{resource.group}" if resource.group else str(resource.plural)
        return KubernetesError(
            status=409,
            reason="Conflict",
            message=f'Operation cannot be fulfilled on {qualified} "{name}": the object has been modified; '
            "please apply your changes to the latest version and try again",
            details={"name": name, "group": resource.group, "kind": resource.plural},
        )

    def _bump(self, obj: KubernetesObject) -> None:
        self._revision += 1
        obj.setdefault("metadata", {})["resourceVersion"] = str(self._revision)

    async def _handle(self, request: rendering.Request) -> Any:
        # kmock matches a request against its reactions by scanning every request it recorded, which makes
        # the n-th request O(n). Reads and writes of objects go straight to the emulator's own handlers;
        # discovery and watches still go through kmock's matching, over a short log.
        del self._requests[:-REQUESTS_KEPT]
        is_object_request = request.resource is not None and bool(request.resource.plural)
        if is_object_request and request.method == enums.method.PUT and request.name is not None:
            # kmock leaves PUT on a named object (an update, which replaces it) unparsed.
            object.__setattr__(request, "action", enums.action.UPDATE)
        if is_object_request and request.method == enums.method.GET and request.params.get("watch") in TRUE_WORDS:
            object.__setattr__(request, "action", enums.action.WATCH)  # kmock knows only watch=true
        if request.resource is not None and request.action is not None:
            self.served[f"{request.action.value} {request.resource.plural}"] += 1
            if request.action in (enums.action.LIST, enums.action.WATCH):
                selector = request.params.get("labelSelector", "")
                self.selectors[_token(request), str(request.action.value), str(request.resource.plural), selector] += 1
        if is_object_request and request.action == enums.action.WATCH:
            return await self._stream_watch(request)
        serve = self._direct.get(request.action) if is_object_request else None
        if serve is None:
            return await super(KubernetesEmulator, self)._handle(request)
        asked = id(request)
        async with self._lock:
            try:
                request = await self._write(request)
            except BaseException:
                self._warnings.pop(asked, None)
                raise
            if request.action in (enums.action.CREATE, enums.action.UPDATE, enums.action.DELETE):
                assert request.resource is not None
                verb = {enums.method.PUT: "update", enums.method.PATCH: "patch"}.get(request.method, "")
                self.writes.append(
                    Write(
                        who=_token(request),
                        verb=verb or str(request.action.value).lower(),
                        plural=str(request.resource.plural),
                        namespace=request.namespace,
                        name=request.name or (request.data or {}).get("metadata", {}).get("name"),
                        subresource=request.subresource,
                    )
                )
        payload = await serve(request)
        payload = self._as_table(request, payload)
        warnings = self._warnings.pop(asked, [])
        headers = [("Warning", f"299 - {json.dumps(warning)}") for warning in warnings]
        # The typed clients deserialize a created object only from a 201.
        response = aiohttp.web.json_response(payload, status=201 if request.action == enums.action.CREATE else 200)
        for name, value in headers:
            response.headers.add(name, value)
        return response

    def _as_table(self, request: rendering.Request, payload: Any) -> Any:
        """A custom resource's list or object as the Table kubectl asks for, with its printer columns."""
        assert request.resource is not None
        accept = request._raw_request.headers.get("Accept", "") if request._raw_request is not None else ""
        key = f"{request.resource.group}/{request.resource.version}/{request.resource.plural}"
        if "as=Table" not in accept or key not in self.columns or not isinstance(payload, dict):
            return payload
        if request.action == enums.action.LIST:
            return table(self.columns[key], payload["items"], payload["metadata"]["resourceVersion"])
        if request.action == enums.action.FETCH:
            return table(self.columns[key], [payload], payload["metadata"].get("resourceVersion", ""))
        return payload

    async def _stream_watch(self, request: rendering.Request) -> aiohttp.web.StreamResponse:
        """A watch as the API server streams it: one JSON event per line, as application/json (kubectl's
        client-go refuses kmock's untyped stream; kopf reads either). Streamed initial lists (WatchList) are
        refused as an API server without that feature gate refuses them, and clients fall back to list+watch."""
        assert request._raw_request is not None
        if request.params.get("sendInitialEvents") == "true":
            raise KubernetesError(
                status=422,
                reason="Invalid",
                message="sendInitialEvents: Forbidden: sendInitialEvents is forbidden for watch unless the "
                "WatchList feature gate is enabled",
            )
        version = request.params.get("resourceVersion") or "0"
        if not version.isdigit():
            raise KubernetesError(status=400, reason="BadRequest", message=f"invalid resource version: {version!r}")
        timeout = request.params.get("timeoutSeconds") or "0"
        if not timeout.isdigit():
            raise KubernetesError(status=400, reason="BadRequest", message=f"timeoutSeconds: invalid value {timeout!r}")
        response = aiohttp.web.StreamResponse(headers={"Content-Type": "application/json"})
        await response.prepare(request._raw_request)
        try:
            async for event in self._serve_watch(request):
                if isinstance(event, dict):
                    await response.write(json.dumps(event).encode() + b"\n")
            await response.write_eof()
        except ConnectionError:
            pass  # the client went away
        return response

    @property
    def _direct(self) -> dict[enums.action | None, Callable[[rendering.Request], Awaitable[rendering.Payload]]]:
        return {
            enums.action.CREATE: self._serve_create,
            enums.action.UPDATE: self._serve_update,
            enums.action.DELETE: self._serve_delete,
            enums.action.FETCH: self._serve_fetch,
            enums.action.LIST: self._serve_list,
        }

    async def _write(self, request: rendering.Request) -> rendering.Request:
        assert request.resource is not None
        if request.action == enums.action.CREATE:
            return await self._create(request)
        if request.action == enums.action.UPDATE and request.name is not None:
            await self._update(request)
        elif request.action == enums.action.DELETE and request.name is not None:
            key: ObjectKey = (request.resource, request.namespace, request.name)
            if key not in self._objects or self._objects[key].deleted:
                raise KubernetesObjectNotFoundError()
            options = request.data if isinstance(request.data, dict) else {}
            orphan = options.get("propagationPolicy") == "Orphan"
            grace = request.params.get("gracePeriodSeconds", options.get("gracePeriodSeconds"))
            await self._delete(key, cascade=not orphan, grace=None if grace is None else int(grace))
        return request

    async def _create(self, request: rendering.Request) -> rendering.Request:
        assert request.resource is not None
        obj = copy.deepcopy(request.data) if isinstance(request.data, dict) else {}
        meta = obj.setdefault("metadata", {})
        if not meta.get("name") and meta.get("generateName"):
            meta["name"] = f"{meta['generateName']}{uuid.uuid4().hex[:5]}"
        if not meta.get("name"):
            raise KubernetesError(status=422, reason="Invalid", message="metadata.name: Required value")
        namespace = request.namespace or meta.get("namespace")
        if namespace is not None:
            meta["namespace"] = namespace
        key: ObjectKey = (request.resource, namespace, meta["name"])
        if key in self._objects and not self._objects[key].deleted:
            raise KubernetesObjectConflictError(
                reason="AlreadyExists",
                message=f'{request.resource.plural} "{meta["name"]}" already exists',
                details={"name": meta["name"], "group": request.resource.group, "kind": request.resource.plural},
            )
        obj = self._schema_checked(request, obj)
        self._validate(request.resource, obj)
        if request.resource.group == "" and request.resource.plural == "pods":
            problems = pod_spec_problems(obj.get("spec") or {})
            if problems:
                message = f'Pod "{meta["name"]}" is invalid: [{", ".join(problems)}]'
                raise KubernetesError(status=422, reason="Invalid", message=message)
        meta.update(uid=str(uuid.uuid4()), creationTimestamp=_now(), generation=1)
        self.created_at.append((time.monotonic(), str(request.resource.plural), namespace, meta["name"]))
        await self._store(key, obj)
        if meta.get("ownerReferences"):
            # The garbage collector finds a dependent whose owners are all gone however late it was made (an
            # owner deleted while its controller was still creating children), and deletes it soon after.
            self._collectors.add(task := asyncio.create_task(self._collect_dangling(key, meta["uid"])))
            task.add_done_callback(self._collectors.discard)
        # kmock matches reactions against the very request object it recorded, so the stored body (with a
        # generated name) replaces the request's data in place rather than in a copy.
        object.__setattr__(request, "data", obj)
        return request

    async def _store(self, key: ObjectKey, obj: KubernetesObject) -> None:
        """Store a new object (its identity already set) and tell the watchers."""
        self._bump(obj)
        if key in self._objects:
            self._objects[key].create(obj)
        else:
            self._objects[key] = obj
            self._kept.setdefault(key[0], {})[key[1], key[2]] = self._objects[key]
        await self._announce(key[0], "ADDED", obj, None)

    async def seed(self, resource: str, objects: list[KubernetesObject]) -> None:
        """Store objects as if created by someone else, without an HTTP request each (a busy cluster's
        thousands of other pods, for the benchmarks): they get identities and watchers hear of them."""
        parsed = references.resource(resource)
        async with self._lock:
            for obj in objects:
                meta = obj["metadata"]
                meta.update(uid=str(uuid.uuid4()), creationTimestamp=_now(), generation=1)
                await self._store((parsed, meta.get("namespace"), meta["name"]), obj)

    async def touch(self, resource: str, namespace: str | None, names: list[str], patch: KubernetesObject) -> None:
        """Merge-patch stored objects as their owner would (a kubelet's status update, say), without HTTP."""
        parsed = references.resource(resource)
        async with self._lock:
            for name in names:
                key: ObjectKey = (parsed, namespace, name)
                old = self._objects[key].raw
                new = copy.deepcopy(dict(dicts.patch_dict(old, patch)))
                if _unversioned(new) == _unversioned(old):
                    continue
                self._bump(new)
                self._objects[key].create(new)
                await self._announce(parsed, "MODIFIED", new, old)

    def _stored(self, request: rendering.Request, namespace: str | None, name: str | None) -> Any:
        """The stored object a request names, found by its key."""
        assert request.resource is not None and name is not None
        key: ObjectKey = (request.resource, namespace, name)
        if key not in self._objects:
            raise KubernetesObjectNotFoundError()
        return self._objects[key]

    async def _serve_create(self, request: rendering.Request) -> rendering.Payload:
        meta = request.data["metadata"]
        raw: rendering.Payload = self._stored(request, meta.get("namespace"), meta["name"]).raw
        return raw

    async def _serve_fetch(self, request: rendering.Request) -> rendering.Payload:
        obj = self._stored(request, request.namespace, request.name)
        if obj.deleted:
            raise KubernetesObjectNotFoundError()
        raw: rendering.Payload = obj.raw
        return raw

    async def _serve_update(self, request: rendering.Request) -> rendering.Payload:
        raw: rendering.Payload = self._stored(request, request.namespace, request.name).last.raw
        return raw

    async def _serve_delete(self, request: rendering.Request) -> rendering.Payload:
        raw: rendering.Payload = self._stored(request, request.namespace, request.name).last.raw
        return raw

    async def _update(self, request: rendering.Request) -> None:
        assert request.resource is not None and request.name is not None
        key: ObjectKey = (request.resource, request.namespace, request.name)
        if key not in self._objects or self._objects[key].deleted:
            raise KubernetesObjectNotFoundError()
        old = copy.deepcopy(self._objects[key].raw)
        try:
            if request.method == enums.method.PUT:
                new = copy.deepcopy(request.data) if isinstance(request.data, dict) else {}
                new.setdefault("metadata", {})
            else:
                new = copy.deepcopy(dict(dicts.patch_dict(old, request.data)))
        except jsonpatch.JsonPatchTestFailed as error:
            raise KubernetesError(
                status=422, reason="Invalid", message=f"the JSON patch test failed: {error}"
            ) from None
        except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException, TypeError) as error:
            raise KubernetesError(status=422, reason="Invalid", message=f"cannot apply the patch: {error}") from None
        # The precondition of an update: the version the writer read, when it says which (a PUT of the object
        # read, or a patch that sets metadata.resourceVersion); without one, the write is unconditional.
        version = new["metadata"].get("resourceVersion")
        if version is not None and version != old["metadata"]["resourceVersion"]:
            raise self._conflict(request.resource, request.name)
        if "status" in self.resources[request.resource].subresources:
            if request.subresource == "status":
                new = {**old, "status": new.get("status")}
            else:
                new["status"] = old.get("status")
            new = {field: value for field, value in new.items() if value is not None}
        for immutable in ("uid", "creationTimestamp", "name", "namespace", "deletionTimestamp", "generation"):
            if immutable in old["metadata"]:
                new["metadata"][immutable] = old["metadata"][immutable]
        new = self._schema_checked(request, new, old)
        if request.subresource != "status":  # a status write leaves the rest as it was, rules included
            self._validate(request.resource, new, old)
        body = {field: value for field, value in new.items() if field not in ("metadata", "status")}
        if body != {field: value for field, value in old.items() if field not in ("metadata", "status")}:
            new["metadata"]["generation"] = old["metadata"].get("generation", 1) + 1
        if _unversioned(new) == _unversioned(old):
            return  # a write that changes nothing is not stored: no new resourceVersion, no event
        self._bump(new)
        self._objects[key].create(new)
        # An update deletes only what has nothing left to wait for: no finalizer and no grace period (the
        # store's shouldDeleteDuringUpdate); a terminating pod's status changes are events like any other.
        meta = new["metadata"]
        if meta.get("deletionTimestamp") and not meta.get("finalizers") and not meta.get("deletionGracePeriodSeconds"):
            await self._delete(key, cascade=True)
        else:
            await self._announce(request.resource, "MODIFIED", new, old)

    async def _delete(self, key: ObjectKey, cascade: bool, grace: int | None = None) -> None:
        obj = self._objects[key]
        meta = obj.raw["metadata"]
        # A pod bound to a node and not ended is only marked: its kubelet stops the containers (SIGTERM, then
        # SIGKILL after the grace period) and then removes it for good with a zero grace period. One no node
        # holds, or one that has ended, goes at once (podStrategy.CheckGracefulDelete).
        status, spec = obj.raw.get("status") or {}, obj.raw.get("spec") or {}
        held = key[0].plural == "pods" and bool(spec.get("nodeName")) and status.get("phase") not in ENDED_PHASES
        if meta.get("finalizers") or (held and grace != 0):
            shortened = grace is not None and grace < int(meta.get("deletionGracePeriodSeconds", grace + 1))
            if not meta.get("deletionTimestamp") or shortened:  # a second delete may only shorten the grace
                marked = copy.deepcopy(obj.raw)
                if grace is None:
                    default = 30 if key[0].plural == "pods" else 0
                    grace = int((obj.raw.get("spec") or {}).get("terminationGracePeriodSeconds", default))
                marked["metadata"].update(deletionTimestamp=_now(later=grace), deletionGracePeriodSeconds=grace)
                self._bump(marked)
                previous = obj.raw
                obj.create(marked)
                await self._announce(key[0], "MODIFIED", marked, previous)
            return
        last = copy.deepcopy(obj.raw)
        self._bump(last)
        obj.delete()
        await self._announce(key[0], "DELETED", last, last)
        if cascade:
            await self._collect_garbage(meta["uid"])

    def _alive(self) -> set[str]:
        return {o.raw["metadata"]["uid"] for _, o in self._objects.items() if not o.deleted}

    async def _collect_dangling(self, key: ObjectKey, uid: str) -> None:
        async with self._lock:
            if key not in self._objects:
                return
            obj = self._objects[key]
            if obj.deleted or obj.raw["metadata"]["uid"] != uid:
                return
            owners = [ref["uid"] for ref in obj.raw["metadata"].get("ownerReferences") or []]
            if owners and not self._alive() & set(owners):
                await self._delete(key, cascade=True)

    async def _collect_garbage(self, owner_uid: str) -> None:
        alive = self._alive()
        for key, obj in list(self._objects.items()):
            if obj.deleted:
                continue
            owners = [ref["uid"] for ref in obj.raw["metadata"].get("ownerReferences", [])]
            if owner_uid in owners and not any(uid in alive for uid in owners):
                await self._delete(key, cascade=True)

    async def _serve_list(self, request: rendering.Request) -> rendering.Payload:
        assert request.resource is not None
        resource = request.resource
        if resource not in self.resources:
            raise KubernetesResourceNotFoundError()
        selector, fields = request.params.get("labelSelector"), request.params.get("fieldSelector")
        items = []
        for (namespace, _), obj in self._kept.get(resource, {}).items():
            if request.namespace is not None and namespace != request.namespace:
                continue
            if obj.deleted:
                continue
            if _matches(selector, obj.raw["metadata"].get("labels") or {}) and _fields_match(fields, obj.raw):
                items.append(obj.raw)
        return {
            "apiVersion": f"{resource.group}/{resource.version}" if resource.group else resource.version,
            "kind": f"{self.resources[resource].kind}List",
            "metadata": {"resourceVersion": str(self._revision)},
            "items": items,
        }

    async def _announce(
        self, resource: references.resource, kind: str, obj: KubernetesObject, previous: KubernetesObject | None
    ) -> None:
        """Keep a change in its resource's window and wake the watches."""
        changes = self._changes.setdefault(resource, collections.deque())
        while len(changes) >= self.changes_kept:  # read on each change: a test may narrow the window any time
            self._expired[resource] = changes.popleft().revision
        revision = int(obj["metadata"]["resourceVersion"])
        changes.append(Change(revision, kind, copy.deepcopy(obj), copy.deepcopy(previous)))
        async with self._changes_condition():
            self._changes_condition().notify_all()

    def _changes_condition(self) -> asyncio.Condition:
        if self._changed is None:  # made in the server's event loop, on first use
            self._changed = asyncio.Condition()
        return self._changed

    async def _serve_watch(self, request: rendering.Request) -> AsyncIterator[rendering.Payload]:
        """The events a watch from `resourceVersion` gets (see the module's docstring), until `timeoutSeconds`."""
        assert request.resource is not None
        resource = request.resource
        selector, fields = request.params.get("labelSelector"), request.params.get("fieldSelector")
        # timeoutSeconds 0 or absent: the API server's own choice, a random 30 to 60 minutes; none here.
        limits = [float(t) for t in (int(request.params.get("timeoutSeconds") or 0), self.longest_watch_s) if t]
        deadline = asyncio.get_running_loop().time() + min(limits) if limits else None

        def passes(obj: KubernetesObject | None) -> bool:
            if obj is None:
                return False
            meta = obj.get("metadata", {})
            if request.namespace is not None and meta.get("namespace") != request.namespace:
                return False
            if request.name is not None and meta.get("name") != request.name:
                return False
            return _matches(selector, meta.get("labels") or {}) and _fields_match(fields, obj)

        def converted(change: Change) -> KubernetesObject | None:
            """The watch cache's conversion (cacheWatcher.convertToWatchEvent): a change that crosses the
            selector is an ADDED or a DELETED of the object as it was, at the change's version."""
            now, before = change.type != "DELETED" and passes(change.obj), passes(change.previous)
            if now:
                return {"type": change.type if before else "ADDED", "object": change.obj}
            if before:
                assert change.previous is not None
                gone = copy.deepcopy(change.previous)
                gone["metadata"]["resourceVersion"] = str(change.revision)
                return {"type": "DELETED", "object": gone}
            return None

        yield b""  # the headers go out at once, as a watch with nothing to say yet still streams
        while self.watches_held is not None:
            self.waiting_watches[str(resource.plural)] += 1
            try:
                await self.watches_held.wait()
            finally:
                self.waiting_watches[str(resource.plural)] -= 1
        start = request.params.get("resourceVersion") or "0"
        async with self._lock:
            if start == "0":  # Start at Most Recent / Any: the objects there are, as ADDED events
                seen = self._revision
                objects = [o.raw for o in self._kept.get(resource, {}).values() if not o.deleted]
                initial = [{"type": "ADDED", "object": copy.deepcopy(o)} for o in objects if passes(o)]
            elif int(start) < self._expired.get(resource, 0):
                # Past authorization and a version that parses, the API server fails a watch with an ERROR
                # event rather than an HTTP error (Cacher.Watch's newErrWatcher).
                oldest = self._changes[resource][0].revision
                message = f"too old resource version: {start} ({oldest - 1})"
                initial = [{"type": "ERROR", "object": expired(message)}]
                self.served[f"EXPIRED {resource.plural}"] += 1
            else:
                seen, initial = int(start), []
        for event in initial:
            yield event
        if initial and initial[0]["type"] == "ERROR":
            return
        condition = self._changes_condition()
        while True:
            left = None if deadline is None else deadline - asyncio.get_running_loop().time()
            if left is not None and left <= 0:
                return  # timeoutSeconds: the server ends the stream, the client watches again from `seen`
            if seen < self._expired.get(resource, 0):
                # Fallen behind the window: the API server closes a watcher that cannot keep up, and the
                # client, watching again from `seen`, is told 410 and lists afresh. Nothing is skipped unsaid.
                return
            pending = [change for change in self._changes.get(resource, ()) if change.revision > seen]
            for change in pending:
                seen = change.revision
                sent = converted(change)
                if sent is not None:
                    yield sent
            if pending:
                continue
            async with condition:  # a change announced since the scan above holds the condition until now
                if not any(change.revision > seen for change in self._changes.get(resource, ())):
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(condition.wait(), timeout=left)


class EmulatedCluster:
    """The emulator on 127.0.0.1 in a background event loop, with a kubeconfig that points at it."""

    def __init__(self, workdir: Path, crds: list[KubernetesObject]) -> None:
        self.emulator = ClusterEmulator()
        for crd in crds:
            self.emulator.add_custom_resource(crd)
        self.loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._serve, name="k8s-emulator", daemon=True)
        self.url = ""
        self.kubeconfig = workdir / "kubeconfig.yaml"

    def _serve(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_until_complete(self._main())

    async def _main(self) -> None:
        self._stop = asyncio.Event()
        async with self.emulator, Server(self.emulator) as server:
            self.url = str(server.url).rstrip("/")
            self._ready.set()
            await self._stop.wait()

    def start(self) -> EmulatedCluster:
        self._thread.start()
        if not self._ready.wait(30):
            raise TimeoutError("the Kubernetes emulator did not start")
        self.kubeconfig.write_text(self._config("emulated"))
        return self

    def seed(self, resource: str, objects: list[KubernetesObject]) -> None:
        """Store objects without admission (see ClusterEmulator.seed): also what a cluster holds of objects
        created before their CRD's schema grew stricter, since the API server does not check again what it
        has stored."""
        asyncio.run_coroutine_threadsafe(self.emulator.seed(resource, objects), self.loop).result(60)

    @contextmanager
    def holding_watches(self) -> Iterator[None]:
        """Watches opened meanwhile start only when this ends: what a client reconnecting while the API server
        is busy or restarting sees, and the way to change objects while no watch is open."""

        async def hold() -> None:
            self.emulator.watches_held = asyncio.Event()

        async def release() -> None:
            held, self.emulator.watches_held = self.emulator.watches_held, None
            if held is not None:
                held.set()

        asyncio.run_coroutine_threadsafe(hold(), self.loop).result()
        try:
            yield
        finally:
            asyncio.run_coroutine_threadsafe(release(), self.loop).result()

    def kubeconfig_for(self, user: str) -> Path:
        """A kubeconfig whose bearer token is `user`: the emulator records that user's writes under it."""
        path = self.kubeconfig.with_name(f"kubeconfig-{user}.yaml")
        path.write_text(self._config(user))
        return path

    def _config(self, token: str) -> str:
        return yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "emulator", "cluster": {"server": self.url}}],
                "users": [{"name": "tester", "user": {"token": token}}],
                "contexts": [{"name": "emulator", "context": {"cluster": "emulator", "user": "tester"}}],
                "current-context": "emulator",
            }
        )

    def stop(self) -> None:
        if self._stop is not None:
            self.loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(30)


@contextmanager
def emulated_cluster(workdir: Path, crds: list[KubernetesObject]) -> Iterator[EmulatedCluster]:
    cluster = EmulatedCluster(workdir, crds).start()
    try:
        yield cluster
    finally:
        cluster.stop()
