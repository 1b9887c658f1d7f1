import httpx, json
from tests.support.servers import ServerHandle, WorkerHandle

async def test_probe(server: ServerHandle, worker: WorkerHandle) -> None:
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as c:
        async def show(method, url, **kw):
            try:
                r = await c.request(method, url, **kw)
                print(method, url, str(kw)[:80], "->", r.status_code, dict(r.headers).get("allow"), r.text[:300])
            except Exception as e:
                print(method, url, str(kw)[:80], "-> EXC", repr(e))
        await show("POST", "/jobs", content=b"{bad")
        await show("POST", "/jobs", content=b"[1]")
        await show("POST", "/jobs", content=b"")
        await show("POST", "/jobs", content=b"x" * (1024*1024+1))
        async def gen():
            for _ in range(20):
                yield b"x" * 65536
        await show("POST", "/jobs", content=gen())
        await show("POST", "/jobs", json={"task": "nope"})
        await show("POST", "/jobs", json={"task": "sleep_steps", "args": {"steps": "x"}})
        await show("POST", "/jobs", json={"task": "sleep_steps", "args": {"bogus": 1}})
        await show("POST", "/jobs", json={"task": "sleep_steps", "bogus": 1})
        await show("POST", "/jobs", json={"task": "sleep_steps", "priority": 11})
        await show("POST", "/jobs", json={"task": "sleep_steps", "run_at": "garbage"})
        await show("POST", "/jobs", json={"task": "sleep_steps", "run_at": "2030-01-01T00:00:00"})
        await show("POST", "/jobs", json={"task": "sleep_steps", "run_at": "2030-01-01T00:00:00+00:00", "delay_s": 1})
        await show("POST", "/jobs", json={"task": "sleep_steps", "run_at": "0001-01-01T00:00:00+01:00"})
        await show("POST", "/jobs", json={"task": "sleep_steps", "run_at": "9999-12-31T23:59:59-01:00"})
        await show("POST", "/jobs", json={"task": "a\u0000b"})
        await show("POST", "/jobs", json={"task": "fail", "args": {"message": "a\u0000b"}})
        await show("POST", "/jobs", json={"task": "fail", "idempotency_key": "a\u0000b"})
        await show("POST", "/jobs", json={"task": "fail", "queue": "a\u0000b"})
        await show("GET", "/jobs?task=%00")
        await show("GET", "/jobs?limit=%C2%B2")
        await show("GET", "/jobs?limit=0")
        await show("GET", "/jobs?cursor=garbage")
        await show("GET", "/jobs/00000000-0000-0000-0000-000000000000")
        await show("GET", "/jobs/nope/events")
        await show("GET", "/nope")
        await show("PUT", "/jobs")
        await show("DELETE", "/jobs/00000000-0000-0000-0000-000000000000")
        await show("GET", "/jobs?limit=1")
        r = await c.post("/jobs", json={"task": "noop"}); r = await c.get("/jobs?limit=1")
        jid = r.json()["jobs"][0]["id"]
        await show("GET", f"/jobs/{jid}/events?after=%C2%B2", headers={"accept": "application/json"})
        await show("GET", f"/jobs/{jid}/events?after=x", headers={"accept": "application/json"})
        await show("GET", f"/jobs/{jid}/events", headers={"last-event-id": "²"})
        import base64
        cur = base64.urlsafe_b64encode(b"0001-01-01T00:00:00+01:00|00000000-0000-0000-0000-000000000000").decode()
        await show("GET", f"/jobs?cursor={cur}")
        cur = base64.urlsafe_b64encode(b"2020-01-01T00:00:00|00000000-0000-0000-0000-000000000000").decode()
        await show("GET", f"/jobs?cursor={cur}")
