"""The fake API server keeps the wire facts a client depends on (raw HTTP, as a client sees it)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from controller.sim.kube import SimKube
from controller.sim.server import LoopbackServer

VIRTUAL_TIME = True
"""The async tests of this module wait in virtual time (conftest.pytest_asyncio_loop_factories)."""

LEASES = "/apis/coordination.k8s.io/v1/namespaces/shop/leases"
MICRO = "2026-05-01T12:00:00.000000Z"


def lease(name: str = "l1", **spec: Any) -> dict[str, Any]:
    body = {"holderIdentity": "a", "leaseDurationSeconds": 15, "renewTime": MICRO}
    return {"metadata": {"name": name, "labels": {"role": "hb"}}, "spec": {**body, **spec}}


@pytest.fixture
async def api() -> AsyncIterator[tuple[SimKube, httpx.AsyncClient]]:
    sim = SimKube(tokens={"t": "client"})
    async with LoopbackServer(sim.app()) as server:
        headers = {"Authorization": "Bearer t"}
        async with httpx.AsyncClient(base_url=server.url, headers=headers, timeout=5) as client:
            yield sim, client


def status_of(reply: httpx.Response) -> dict[str, Any]:
    assert reply.headers["Content-Type"] == "application/json", "exactly: lightkube needs it"
    body: dict[str, Any] = reply.json()
    assert body["kind"] == "Status" and body["code"] == reply.status_code
    return body


async def test_lease_writes_follow_optimistic_concurrency(
    api: tuple[SimKube, httpx.AsyncClient],
) -> None:
    _, client = api
    made = await client.post(LEASES, json=lease())
    assert made.status_code == 201
    version = made.json()["metadata"]["resourceVersion"]
    assert isinstance(version, str) and made.json()["metadata"]["uid"]
    again = await client.post(LEASES, json=lease())
    assert again.status_code == 409 and status_of(again)["reason"] == "AlreadyExists"
    assert status_of(again)["details"] == {
        "name": "l1",
        "group": "coordination.k8s.io",
        "kind": "leases",
    }
    body = made.json()
    renewed = await client.put(f"{LEASES}/l1", json=body)
    assert renewed.status_code == 200
    assert int(renewed.json()["metadata"]["resourceVersion"]) > int(version)
    stale = await client.put(f"{LEASES}/l1", json=body)
    assert stale.status_code == 409 and status_of(stale)["reason"] == "Conflict"
    assert "the object has been modified" in status_of(stale)["message"]
    del body["metadata"]["resourceVersion"]
    unconditional = await client.put(f"{LEASES}/l1", json=body)
    assert unconditional.status_code == 422 and status_of(unconditional)["reason"] == "Invalid"
    created = await client.put(f"{LEASES}/l2", json=lease("l2"))
    assert created.status_code == 201, "a Lease PUT to a missing name creates it"
    missing = await client.get(f"{LEASES}/nope")
    assert missing.status_code == 404 and status_of(missing)["reason"] == "NotFound"


@pytest.mark.parametrize(
    "value", ["2026-05-01T12:00:00Z", "2026-05-01T12:00:00.12Z", "2026-05-01T12:00:00.1234567Z", 5]
)
async def test_micro_time_needs_exactly_six_digits(
    api: tuple[SimKube, httpx.AsyncClient], value: object
) -> None:
    _, client = api
    reply = await client.post(LEASES, json=lease(renewTime=value))
    assert reply.status_code == 400 and status_of(reply)["reason"] == "BadRequest"
    ok = await client.post(LEASES, json=lease(renewTime="2026-05-01T12:00:00.000000+02:00"))
    assert ok.status_code == 201


async def test_names_and_namespaces_must_match_the_url(
    api: tuple[SimKube, httpx.AsyncClient],
) -> None:
    _, client = api
    await client.post(LEASES, json=lease())
    wrong_name = await client.put(f"{LEASES}/l1", json=lease("other"))
    assert (
        wrong_name.status_code == 400
        and "does not match the name" in status_of(wrong_name)["message"]
    )
    body = lease("l3")
    body["metadata"]["namespace"] = "elsewhere"
    wrong_ns = await client.post(LEASES, json=body)
    assert wrong_ns.status_code == 400 and "namespace" in status_of(wrong_ns)["message"]


async def test_denied_verbs_and_bad_tokens(api: tuple[SimKube, httpx.AsyncClient]) -> None:
    sim, client = api
    sim.denied.add(("update", "leases"))
    await client.post(LEASES, json=lease())
    denied = await client.put(f"{LEASES}/l1", json=(await client.get(f"{LEASES}/l1")).json())
    assert denied.status_code == 403
    assert status_of(denied)["message"] == (
        'leases.coordination.k8s.io "l1" is forbidden: User "system:serviceaccount:shop:client" '
        'cannot update resource "leases" in API group "coordination.k8s.io" in the namespace "shop"'
    )
    anonymous = await client.get(LEASES, headers={"Authorization": "Bearer wrong"})
    assert anonymous.status_code == 401 and status_of(anonymous)["reason"] == "Unauthorized"


async def test_lists_select_by_label_and_field(api: tuple[SimKube, httpx.AsyncClient]) -> None:
    _, client = api
    await client.post(LEASES, json=lease("a"))
    other = lease("b")
    other["metadata"]["labels"] = {"role": "leader"}
    await client.post(LEASES, json=other)
    cases = {
        "role=hb": ["a"],
        "role==hb": ["a"],
        "role!=hb": ["b"],
        "role in (hb, leader)": ["a", "b"],
        "role notin (hb)": ["b"],
        "role": ["a", "b"],
        "!role": [],
    }
    for selector, names in cases.items():
        reply = await client.get(LEASES, params={"labelSelector": selector})
        items = reply.json()["items"]
        assert [i["metadata"]["name"] for i in items] == names, selector
        assert all("kind" not in i for i in items), "list items carry no kind"
        assert reply.json()["metadata"]["resourceVersion"]
    by_name = await client.get(LEASES, params={"fieldSelector": "metadata.name=b"})
    assert [i["metadata"]["name"] for i in by_name.json()["items"]] == ["b"]


async def watch(client: httpx.AsyncClient, **params: str) -> list[dict[str, Any]]:
    events = []
    async with client.stream("GET", LEASES, params={"watch": "true", **params}) as reply:
        assert reply.status_code == 200 and reply.headers["Content-Type"] == "application/json"
        async for line in reply.aiter_lines():
            if line:
                events.append(json.loads(line))
    return events


@pytest.mark.real_time  # the fake ends a watch at timeoutSeconds by the real clock
async def test_watch_resumes_sends_bookmarks_only_when_asked_and_ends_at_the_timeout(
    api: tuple[SimKube, httpx.AsyncClient],
) -> None:
    sim, client = api
    made = (await client.post(LEASES, json=lease("a"))).json()
    since = made["metadata"]["resourceVersion"]
    await client.post(LEASES, json=lease("b"))
    fresh = await watch(client, timeoutSeconds="1")
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in fresh] == [
        ("ADDED", "a"),
        ("ADDED", "b"),
    ], "no resourceVersion: the current objects as synthetic ADDED events, then a clean end"
    resumed = await watch(client, timeoutSeconds="1", resourceVersion=since)
    assert [e["object"]["metadata"]["name"] for e in resumed] == ["b"], "only what came after"
    marked = await watch(
        client, timeoutSeconds="2", resourceVersion=since, allowWatchBookmarks="true"
    )
    assert any(e["type"] == "BOOKMARK" for e in marked)
    assert not any(e["type"] == "BOOKMARK" for e in resumed)
    sim.compact()
    expired = await watch(client, timeoutSeconds="1", resourceVersion="1")
    assert len(expired) == 1 and expired[0]["type"] == "ERROR", "a 200 stream with one ERROR event"
    assert expired[0]["object"]["code"] == 410 and expired[0]["object"]["reason"] == "Expired"


async def test_lists_come_in_pages_when_a_limit_is_asked(
    api: tuple[SimKube, httpx.AsyncClient],
) -> None:
    """`limit` and `continue` as the real API server pages a list (the controller reads lists
    in pages of 100), never everything at once whatever was asked."""
    sim, client = api
    for i in range(5):
        sim.put("leases", {"metadata": {"name": f"l{i}", "namespace": "shop"}, "spec": {}})
    path = "/apis/coordination.k8s.io/v1/namespaces/shop/leases"
    first = (await client.get(path, params={"limit": "2"})).json()
    assert [i["metadata"]["name"] for i in first["items"]] == ["l0", "l1"]
    assert first["metadata"]["remainingItemCount"] == 3
    names, token = [], first["metadata"]["continue"]
    while token:
        page = (await client.get(path, params={"limit": "2", "continue": token})).json()
        names += [i["metadata"]["name"] for i in page["items"]]
        assert page["metadata"]["resourceVersion"] == first["metadata"]["resourceVersion"]
        token = page["metadata"].get("continue")
    assert names == ["l2", "l3", "l4"]
    bad = await client.get(path, params={"limit": "2", "continue": "not-a-token"})
    assert bad.status_code == 400 and bad.json()["reason"] == "BadRequest"


async def test_discovery_and_version_as_a_real_client_reads_them(
    api: tuple[SimKube, httpx.AsyncClient],
) -> None:
    _, client = api
    version = await client.get("/version", headers={"Authorization": ""})
    assert version.status_code == 200 and version.json()["major"] == "1", "no token needed"
    assert (await client.get("/api", headers={"Authorization": ""})).status_code == 401
    assert (await client.get("/api")).json()["versions"] == ["v1"]
    groups = {g["name"] for g in (await client.get("/apis")).json()["groups"]}
    assert groups == {"apps", "coordination.k8s.io", "events.k8s.io"}
    core = {r["name"]: r for r in (await client.get("/api/v1")).json()["resources"]}
    assert {"pods", "namespaces", "events", "secrets"} <= set(core)
    assert core["namespaces"]["namespaced"] is False
    apps = (await client.get("/apis/apps/v1")).json()
    deployments = next(r for r in apps["resources"] if r["name"] == "deployments")
    assert deployments["kind"] == "Deployment" and deployments["shortNames"] == ["deploy"]
    # A kind is served only under its own group and version.
    wrong = await client.get("/apis/apps/v1/namespaces/shop/leases")
    assert wrong.status_code == 404 and status_of(wrong)["reason"] == "NotFound"


async def test_events_are_served_through_core_v1_with_their_involved_object(
    api: tuple[SimKube, httpx.AsyncClient],
) -> None:
    """The API server stores one Event and serves it through events.k8s.io/v1 and core/v1:
    kubectl get events and describe read the latter (involvedObject, message)."""
    _, client = api
    regarding = {"apiVersion": "apps/v1", "kind": "Deployment", "name": "bot",
                 "namespace": "shop", "uid": "u-1"}  # fmt: skip
    event = {
        "metadata": {"name": "bot.1", "namespace": "shop"}, "eventTime": MICRO,
        "reportingController": "presence-controller", "reportingInstance": "pod-a",
        "action": "SetPresence", "reason": "PresenceUnavailable", "type": "Warning",
        "note": "maintenance", "regarding": regarding,
    }  # fmt: skip
    assert (
        await client.post("/apis/events.k8s.io/v1/namespaces/shop/events", json=event)
    ).is_success
    core = "/api/v1/namespaces/shop/events"
    selected = await client.get(
        core, params={"fieldSelector": "involvedObject.kind=Deployment,involvedObject.uid=u-1"}
    )
    (item,) = selected.json()["items"]
    assert item["involvedObject"] == regarding and item["message"] == "maintenance"
    assert item["source"] == {"component": "presence-controller"} and item["count"] == 1
    none = await client.get(core, params={"fieldSelector": "reason=PresenceAvailable"})
    assert none.json()["items"] == []
    assert (await client.get(f"{core}/bot.1")).json()["reason"] == "PresenceUnavailable"
    assert (await client.post(core, json=event)).status_code == 405, "read-only"
    table = await client.get(
        core, headers={"Accept": "application/json;as=Table;v=v1;g=meta.k8s.io"}
    )
    assert table.json()["kind"] == "Table"
    assert table.json()["rows"][0]["cells"][1:4] == [
        "Warning",
        "PresenceUnavailable",
        "deployment/bot",
    ]


async def test_deleting_an_owner_collects_its_dependents_and_preconditions_hold(
    api: tuple[SimKube, httpx.AsyncClient],
) -> None:
    sim, client = api
    sim.workload("shop", "bot", ["pod-a"])
    pod = sim.get("pods", "shop", "pod-a")
    assert pod is not None
    owner = {"apiVersion": "v1", "kind": "Pod", "name": "pod-a", "uid": pod["metadata"]["uid"]}
    body = lease("hb")
    body["metadata"]["ownerReferences"] = [owner]
    made = (await client.post(LEASES, json=body)).json()
    stale = {"kind": "DeleteOptions", "apiVersion": "v1", "preconditions": {"resourceVersion": "1"}}
    refused = await client.request("DELETE", f"{LEASES}/hb", json=stale)
    assert refused.status_code == 409 and "Precondition failed" in status_of(refused)["message"]
    sim.delete("pods", "shop", "pod-a")
    assert sim.get("leases", "shop", "hb") is None, "collected with its Pod"
    # Created with an owner that is gone: collected at once.
    assert (await client.post(LEASES, json=body)).status_code == 201
    assert sim.get("leases", "shop", "hb") is None
    assert made["metadata"]["ownerReferences"] == [owner]
    # Deleting the Deployment takes its ReplicaSet, not its (gracefully deleted) pods.
    sim.workload("shop", "bot", ["pod-b"])
    sim.delete("deployments", "shop", "bot")
    assert sim.get("replicasets", "shop", "bot-7d4b9") is None
    assert sim.get("pods", "shop", "pod-b") is not None
