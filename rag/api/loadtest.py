"""`rag bench --api`: a bounded load test of one `rag api` process on loopback.

It copies the corpus to a temporary folder, builds an index there, starts one
API process on 127.0.0.1 with a fresh key and no rate limit, and runs
``clients`` concurrent asyncio clients for ``seconds`` seconds twice: first at
rest, then while `rag ingest --rebuild` runs again and again on the same index
(each rebuild switches the live version under the server).  It never talks to
anything but 127.0.0.1 and never runs longer than the two phases plus start-up.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from rag.config import PROJECT_ROOT, Settings


def _questions() -> list[str]:
    path = PROJECT_ROOT / "eval" / "qa.jsonl"
    if path.exists():
        out = [json.loads(line)["question"] for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        if out:
            return out
    return ["デジタル実装に取り組む地方公共団体の目標は？", "地方創生の交付金は？"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def _phase(base: str, key: str, clients: int, seconds: float, questions: list[str]) -> dict:
    import httpx

    latencies: list[float] = []
    errors: dict[str, int] = {}
    deadline = time.monotonic() + seconds
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)

    async def client(n: int, http: httpx.AsyncClient) -> None:
        i = n
        while time.monotonic() < deadline:
            q = questions[i % len(questions)]
            i += clients
            t0 = time.perf_counter()
            try:
                r = await http.post("/v1/ask", json={"question": q})
                if r.status_code == 200:
                    latencies.append((time.perf_counter() - t0) * 1000)
                else:
                    errors[str(r.status_code)] = errors.get(str(r.status_code), 0) + 1
            except Exception as exc:  # noqa: BLE001 - every failure is counted, none stops the run
                errors[type(exc).__name__] = errors.get(type(exc).__name__, 0) + 1

    t0 = time.monotonic()
    async with httpx.AsyncClient(base_url=base, headers={"Authorization": f"Bearer {key}"}, timeout=120, limits=limits) as http:
        await asyncio.gather(*(client(n, http) for n in range(clients)))
    elapsed = time.monotonic() - t0
    latencies.sort()

    def pct(p: float) -> float:
        return round(latencies[min(len(latencies) - 1, int(p * len(latencies)))], 1) if latencies else 0.0

    return {
        # The machine's 1-minute load average at the end: on a shared machine other work shows up here.
        "load_average_1m": round(os.getloadavg()[0], 2),
        "clients": clients,
        "seconds": seconds,
        "requests": len(latencies) + sum(errors.values()),
        "errors": sum(errors.values()),
        "error_kinds": errors,
        "throughput_rps": round(len(latencies) / elapsed, 2),
        "p50_ms": pct(0.50),
        "p95_ms": pct(0.95),
    }


def run_api_bench(settings: Settings, clients: int = 50, seconds: float = 60.0) -> dict:
    from rag.api.keys import KeyStore

    rag = [sys.executable, "-m", "rag"]
    with tempfile.TemporaryDirectory(prefix="rag-api-bench-") as tmp:
        root = Path(tmp)
        shutil.copytree(settings.corpus_dir, root / "corpus")
        env = {
            **os.environ,
            "RAG_CORPUS_DIR": str(root / "corpus"),
            "RAG_INDEX_DIR": str(root / "index"),
            "RAG_API__KEYS_DB": str(root / "keys.sqlite3"),
            "RAG_API__RATE_PER_MINUTE": "0",
            "RAG_API__TIMEOUT_S": "120",
        }
        subprocess.run([*rag, "ingest"], env=env, check=True, capture_output=True)
        key = KeyStore(root / "keys.sqlite3").add("bench")
        port = _free_port()
        base = f"http://127.0.0.1:{port}"
        server = subprocess.Popen([*rag, "api", "--host", "127.0.0.1", "--port", str(port)], env=env,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            _wait_ready(base, server)
            questions = _questions()
            results = {"machine": _machine()}
            results["at_rest"] = asyncio.run(_phase(base, key, clients, seconds, questions))
            stop = threading.Event()
            rebuilds = []

            def reingest():
                while not stop.is_set():
                    done = subprocess.run([*rag, "ingest", "--rebuild"], env=env, capture_output=True)
                    rebuilds.append(done.returncode)

            worker = threading.Thread(target=reingest)
            worker.start()
            try:
                results["during_reingest"] = asyncio.run(_phase(base, key, clients, seconds, questions))
            finally:
                stop.set()
                worker.join()
            results["during_reingest"]["rebuilds_completed"] = sum(1 for rc in rebuilds if rc == 0)
            return results
        finally:
            server.terminate()
            server.wait(timeout=30)


def _wait_ready(base: str, server: subprocess.Popen) -> None:
    import httpx

    deadline = time.time() + 120
    while time.time() < deadline:
        if server.poll() is not None:
            raise RuntimeError("rag api が起動しませんでした")
        try:
            if httpx.get(f"{base}/healthz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise RuntimeError("rag api が2分以内に応答しませんでした")


def _machine() -> str:
    import platform

    return f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, {platform.platform()}"
