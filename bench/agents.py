"""Agent map benchmark on 100,000 agents: the nearby search (cube + earthdistance, GiST) against
brute force in the same run, and the map's clusters.

    .venv/bin/python bench/agents.py [--database-url postgresql://postgres@127.0.0.1:5432/payops_bench_agents]
                                     [--agents 100000] [--runs 300] [--reload]

1. load: the database is migrated to the current head, then 100,000 agents around Dakar, Abidjan and
   Accra (devstack/demo_agents.py, seeded: the same every run) with one float each, through the
   agents store in chunks; ANALYZE;
2. nearby (warm: each query point is asked once before timing): random points near the three
   cities, radii 1, 5 and 25 km, limit 20 and 100, through core.agents.service.nearby (the SQL, the
   floats and 30-day sales of each agent, the view) — p50/p95/max; then brute force: the same
   search with the index disabled (a sequential scan computing every agent's distance) and in
   Python (a haversine over all 100,000 agents held in memory); each indexed answer is checked
   equal to Python's; "server" is PostgreSQL's own execution time of the search (EXPLAIN
   ANALYZE), which a loaded machine's scheduling does not inflate as much;
3. clusters: the city-wide box at zoom 10 and 12, a screen of central Dakar at zoom 15 (single
   agents) and the three-city box at zoom 6 and 8, p50/p95;
4. EXPLAIN (ANALYZE) of the nearby search, showing the GiST index (ix_agents_earth) in use.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import random
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import asyncpg  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402
from sqlalchemy import text  # noqa: E402

from core.agents import service, store  # noqa: E402
from core.agents.service import AgentScope  # noqa: E402
from core.platform.db import create_engine, create_sessionmaker, run_migrations  # noqa: E402
from devstack.demo_agents import CITIES, demo_agents  # noqa: E402

console = Console(width=int(os.environ.get("COLUMNS", "160")))
DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/payops_bench_agents"
MEAN_R_KM = 6371.0088
CHUNK = 5000


def haversine_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    p1, p2 = math.radians(lat1), math.radians(lat2)
    a = math.sin((p2 - p1) / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(math.radians(lon2 - lon1) / 2) ** 2
    return 2 * MEAN_R_KM * math.asin(min(1.0, math.sqrt(a)))


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, max(0, math.ceil(q * len(s)) - 1))]


async def ensure_database(url: str, reload: bool) -> bool:
    base, name = url.rsplit("/", 1)
    conn = await asyncpg.connect(base + "/postgres")
    try:
        exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name)
        if exists and reload:
            await conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
            exists = False
        if not exists:
            await conn.execute(f'CREATE DATABASE "{name}"')
        return not exists
    finally:
        await conn.close()


async def load(sm, agents: list[dict]) -> float:
    started = time.perf_counter()
    for i in range(0, len(agents), CHUNK):
        chunk = agents[i:i + CHUNK]
        async with sm() as s, s.begin():
            await store.upsert_agents(s, [{k: v for k, v in a.items() if k != "floats"} for a in chunk])
            await store.upsert_floats(s, [{"agent_id": a["id"], **f} for a in chunk for f in a["floats"]])
    async with sm() as s, s.begin():
        await s.execute(text("ANALYZE agents"))
        await s.execute(text("ANALYZE agent_floats"))
    return time.perf_counter() - started


def query_points(rng: random.Random, n: int) -> list[tuple[float, float]]:
    out = []
    for _ in range(n):
        c = rng.choice(CITIES)
        out.append((c.lat + rng.gauss(0, 0.08), c.lon + rng.gauss(0, 0.08)))
    return out


async def time_nearby(sm, points, radius_km: float, limit: int) -> tuple[list[float], list[list[str]]]:
    times, answers = [], []
    async with sm() as s:
        for lat, lon in points[:20]:  # warm: plans and pages
            await service.nearby(s, AgentScope(), lat=lat, lon=lon, radius_km=radius_km, limit=limit)
        for lat, lon in points:
            t = time.perf_counter()
            rows = await service.nearby(s, AgentScope(), lat=lat, lon=lon, radius_km=radius_km, limit=limit)
            times.append((time.perf_counter() - t) * 1000)
            answers.append([r["id"] for r in rows])
    return times, answers


async def server_times(sm, points, radius_km: float, limit: int) -> list[float]:
    """The candidate scan's `Execution Time` as PostgreSQL measures it (EXPLAIN ANALYZE): the
    search without the client, the network and the scheduling of a busy machine."""
    out = []
    async with sm() as s:
        for lat, lon in points:
            plan = await store.explain_nearby(s, lat=lat, lon=lon, radius_km=radius_km, limit=limit)
            out.append(float(plan.rsplit("Execution Time:", 1)[1].split()[0]))
    return out


async def time_brute_sql(sm, points, radius_km: float, limit: int) -> list[float]:
    times = []
    async with sm() as s, s.begin():
        await s.execute(text("SET LOCAL enable_indexscan = off"))
        await s.execute(text("SET LOCAL enable_bitmapscan = off"))
        for lat, lon in points:
            t = time.perf_counter()
            await s.execute(text("""
                SELECT id, earth_distance(ll_to_earth(:lat, :lon), ll_to_earth(lat, lon)) AS d FROM agents
                 WHERE earth_distance(ll_to_earth(:lat, :lon), ll_to_earth(lat, lon)) <= :r * earth() / :mr
                 ORDER BY d LIMIT :limit"""), {"lat": lat, "lon": lon, "r": radius_km * 1000, "mr": MEAN_R_KM * 1000,
                                                "limit": limit})
            times.append((time.perf_counter() - t) * 1000)
    return times


def brute_python(agents, points, radius_km: float, limit: int) -> tuple[list[float], list[list[str]]]:
    times, answers = [], []
    for lat, lon in points:
        t = time.perf_counter()
        hits = sorted((d, a["id"]) for a in agents
                      if (d := haversine_km(lat, lon, a["lat"], a["lon"])) <= radius_km)[:limit]
        times.append((time.perf_counter() - t) * 1000)
        answers.append([i for _, i in hits])
    return times, answers


async def time_clusters(sm, bbox: str, zoom: int, runs: int) -> tuple[list[float], int, int]:
    times = []
    async with sm() as s:
        body = await service.clusters(s, AgentScope(), bbox=bbox, zoom=zoom)
        for _ in range(runs):
            t = time.perf_counter()
            body = await service.clusters(s, AgentScope(), bbox=bbox, zoom=zoom)
            times.append((time.perf_counter() - t) * 1000)
    return times, len(body["clusters"]), body["total"]


async def run(args) -> None:
    url = args.database_url
    fresh = await ensure_database(url, args.reload)
    await asyncio.to_thread(run_migrations, url)
    engine = create_engine(url)
    sm = create_sessionmaker(engine)
    agents = demo_agents(args.agents, seed=20, prefix="agt_bench_")
    try:
        async with sm() as s:
            have = (await s.execute(text("SELECT count(*) FROM agents"))).scalar_one()
        if fresh or have != args.agents:
            secs = await load(sm, agents)
            console.print(f"loaded {args.agents:,} agents (+ floats) in {secs:.1f} s")
        async with sm() as s:
            pg = (await s.execute(text("SELECT version()"))).scalar_one()
            ext = (await s.execute(text("SELECT string_agg(extname || ' ' || extversion, ', ') FROM pg_extension "
                                        "WHERE extname IN ('cube', 'earthdistance')"))).scalar_one()
        console.print(f"{pg.split(' on ')[0]}; {ext}; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")

        rng = random.Random(1)
        table = Table(title=f"nearby search, {args.agents:,} agents, {args.runs} queries each (ms)")
        for col in ("radius km", "limit", "avg hits", "indexed p50", "indexed p95", "indexed max", "server p50",
                    "server p95",
                    "seq-scan SQL p50", "seq-scan SQL p95", "Python p50", "equal to Python"):
            table.add_column(col, justify="right")
        for radius_km, limit in ((1, 20), (5, 20), (25, 20), (5, 100), (25, 100)):
            points = query_points(rng, args.runs)
            idx, answers = await time_nearby(sm, points, radius_km, limit)
            server = await server_times(sm, points[:args.brute_runs * 3], radius_km, limit)
            brute_sql = await time_brute_sql(sm, points[:args.brute_runs], radius_km, limit)
            py, py_answers = brute_python(agents, points[:args.brute_runs], radius_km, limit)
            equal = sum(1 for a, b in zip(answers, py_answers) if a == b)
            table.add_row(str(radius_km), str(limit), f"{statistics.mean(len(a) for a in answers):.1f}",
                          f"{pct(idx, .5):.2f}", f"{pct(idx, .95):.2f}", f"{max(idx):.2f}",
                          f"{pct(server, .5):.2f}", f"{pct(server, .95):.2f}",
                          f"{pct(brute_sql, .5):.1f}", f"{pct(brute_sql, .95):.1f}", f"{pct(py, .5):.1f}",
                          f"{equal}/{len(py_answers)}")
        console.print(table)

        ct = Table(title=f"clusters, {args.cluster_runs} requests each (ms)")
        for col in ("box", "zoom", "clusters", "agents", "p50", "p95", "max"):
            ct.add_column(col, justify="right")
        dakar = "-17.75,14.5,-17.1,15.0"
        three = "-18,4.5,0.5,15.5"
        street = "-17.48,14.70,-17.44,14.73"  # a 1360 x 900 px screen at zoom 15 in central Dakar
        for name, bbox, zoom in (("Dakar", dakar, 10), ("Dakar", dakar, 12), ("central Dakar", street, 15),
                                 ("Dakar+Abidjan+Accra", three, 6), ("Dakar+Abidjan+Accra", three, 8)):
            times, n, total = await time_clusters(sm, bbox, zoom, args.cluster_runs)
            ct.add_row(name, str(zoom), str(n), f"{total:,}", f"{pct(times, .5):.1f}", f"{pct(times, .95):.1f}",
                       f"{max(times):.1f}")
        console.print(ct)

        console.print(f"load average at the end: {os.getloadavg()[0]:.1f}")
        async with sm() as s:
            c = CITIES[0]
            console.print("[bold]EXPLAIN ANALYZE nearby (Dakar, 5 km, limit 20)[/bold]")
            console.print(await store.explain_nearby(s, lat=c.lat, lon=c.lon, radius_km=5, limit=20), markup=False)
            console.print("[bold]EXPLAIN ANALYZE the clusters' box scan (Dakar)[/bold]")
            console.print(await store.explain_clusters_scan(s, west=-17.75, south=14.5, east=-17.1, north=15.0),
                          markup=False)
    finally:
        await engine.dispose()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--database-url", default=os.environ.get("PAYOPS_BENCH_DATABASE_URL", DEFAULT_URL))
    ap.add_argument("--agents", type=int, default=100_000)
    ap.add_argument("--runs", type=int, default=300)
    ap.add_argument("--brute-runs", type=int, default=30, help="brute-force queries per row (they are slow)")
    ap.add_argument("--cluster-runs", type=int, default=50)
    ap.add_argument("--reload", action="store_true")
    asyncio.run(run(ap.parse_args()))


if __name__ == "__main__":
    main()
