"""How fast the two simulators answer on loopback (printed, never asserted).

Starts the sandbox (``start_sandbox``, both servers in this process), then for each scenario runs
``--clients`` threads, each with its own keep-alive ``httpx.Client``, for ``--seconds`` or until
``--max-requests`` calls in total, and prints requests/s with p50/p99 latency as the clients see
it, ``server`` = the mean time the simulator itself spent per call (its request log's
``duration_ms``: the handler, without the HTTP stack, GIL waits included) and ``cpu`` = the CPU
time of the simulator's server thread per call (HTTP stack included; the figure that load on
the machine disturbs least):

- ``st GET /api/job/{id}``   a ServiceTrade read with a Bearer token
- ``spectrum GetJob``        a SOAP Get over the Info-Link SQLite file (TEMPLATE + seeded jobs)
- ``spectrum AddPhase``      a SOAP Put (upsert of one TEMPLATE phase: a real write each time)
- ``spectrum ARMultiLine``   ``POST /customer/invoice``: a new 3-line invoice per call (P2's write)

    ./.venv/bin/python -m bench.sandbox_throughput [--seconds 3] [--clients 8] [--companies 5]
"""

from __future__ import annotations

import argparse
import base64
import itertools
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from xml.sax.saxutils import escape

import httpx

from clients.spectrum.services import NS_TYPES, SERVICES
from sandbox import credentials
from sandbox.faults import FaultInjector
from sandbox.run import RunningSandbox, start_sandbox
from sandbox.seed import SeedSpec

Call = Callable[[httpx.Client], httpx.Response]


def soap_envelope(service: str, values: dict[str, str]) -> str:
    """Every element of the service layout, in order, empty when unused."""
    fields = "".join(
        f"<{name}>{escape(values.get(name, ''))}</{name}>"
        for name in ("Authorization_ID", "GUID", *SERVICES[service].field_names)
    )
    return (
        '<?xml version="1.0" encoding="UTF-8"?>'
        '<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body>'
        f'<{service} xmlns="{NS_TYPES}">{fields}</{service}></soap:Body></soap:Envelope>'
    )


@dataclass
class Result:
    name: str
    latencies_ms: list[float] = field(default_factory=list)
    errors: int = 0
    elapsed_s: float = 0.0
    server_ms: list[float] = field(default_factory=list)
    server_cpu_s: float = float("nan")

    def line(self) -> str:
        lat = sorted(self.latencies_ms)
        n = len(lat)
        if not n:
            return f"{self.name:<28} no successful calls ({self.errors} errors)"
        p50 = statistics.median(lat)
        p99 = lat[min(n - 1, int(n * 0.99))]
        rate = n / self.elapsed_s if self.elapsed_s else 0.0
        server = statistics.mean(self.server_ms) if self.server_ms else float("nan")
        cpu = self.server_cpu_s * 1000 / (n + self.errors)
        return (
            f"{self.name:<28} {n:>7} ok {self.errors:>4} err  {rate:>8.0f} req/s  "
            f"p50 {p50:>6.2f} ms  p99 {p99:>6.2f} ms  server {server:>5.2f} ms  cpu {cpu:>5.2f} ms"
        )


def hammer(name: str, call: Call, *, clients: int, seconds: float, max_requests: int) -> Result:
    """Run ``call`` from ``clients`` threads until the time or the request budget is spent."""
    result = Result(name)
    lock = threading.Lock()
    budget = [max_requests]
    deadline = time.monotonic() + seconds

    def worker() -> None:
        local: list[float] = []
        errors = 0
        with httpx.Client(timeout=10) as client:
            while time.monotonic() < deadline:
                with lock:
                    if budget[0] <= 0:
                        break
                    budget[0] -= 1
                started = time.perf_counter()
                try:
                    ok = call(client).status_code == 200
                except httpx.HTTPError:
                    ok = False
                if ok:
                    local.append((time.perf_counter() - started) * 1000)
                else:
                    errors += 1
        with lock:
            result.latencies_ms.extend(local)
            result.errors += errors

    threads = [threading.Thread(target=worker, name=f"bench-{i}") for i in range(clients)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    result.elapsed_s = time.perf_counter() - started
    return result


def _invoice_call(sb: RunningSandbox) -> Call:
    """``POST /customer/invoice`` with a new invoice number each call, for a customer and job
    put into Spectrum here and the seed's first non-direct GL account."""
    db = sb.spectrum_db
    db.load(
        {
            "CR_CUSTOMER_MASTER_MC": [
                {"Company_Code": "ABC", "Customer_Code": "BENCH1", "Name": "Bench customer"}
            ],
            "JC_JOB_MASTER_MC": [
                {"Company_Code": "ABC", "Job_Number": "BENCH1", "Customer_Code": "BENCH1"}
            ],
        }
    )
    account = next(
        r["GL_Account"]
        for r in db.rows("GL_ACCOUNT_MASTER_MC", Company_Code="ABC")
        if (r["Direct_Cost_Flag"] or "N") == "N"
    )
    today = date.today().strftime("%m/%d/%Y")
    auth = f"ABC:{credentials.SPECTRUM_AUTHORIZATION_ID}".encode()
    headers = {"Authorization": "Basic " + base64.b64encode(auth).decode()}
    numbers = itertools.count(1)  # next() on a count is atomic under the GIL
    line = {"Quantity": "2", "Unit_Of_Measure": "EA", "Line_Extension": "125.50"}

    def call(client: httpx.Client) -> httpx.Response:
        invoice = {
            "Company_Code": "ABC",
            "GL_Date": today,
            "Batch_Code": "BENCH",
            "Customer_Code": "BENCH1",
            "Invoice_Or_Transaction": f"B{next(numbers):09d}",
            "Transaction_Type": "I",
            "Invoice_Date": today,
            "Job_Number": "BENCH1",
            "Remarks": "sandbox_throughput",
            "invoiceDetails": [
                {**line, "Detail_Description": f"Line {i}", "GL_Account": account}
                for i in range(1, 4)
            ],
        }
        return client.post(
            f"{sb.spectrum_url}/customer/invoice",
            json={"arInvoices": [invoice]},
            headers=headers,
        )

    return call


def scenarios(sb: RunningSandbox) -> list[tuple[str, Call]]:
    assert sb.world is not None
    job_id = sb.world.servicetrade["job"][0]["id"]
    token = httpx.post(
        f"{sb.st_url}/api/oauth2/token",
        data={
            "grant_type": "client_credentials",
            "client_id": credentials.ST_CLIENT_ID,
            "client_secret": credentials.ST_CLIENT_SECRET,
        },
    ).json()["access_token"]
    st_headers = {"Authorization": f"Bearer {token}"}
    auth = credentials.SPECTRUM_AUTHORIZATION_ID
    xml = {"Content-Type": "text/xml; charset=utf-8", "SOAPAction": '""'}
    get_job = soap_envelope(
        "GetJob", {"Authorization_ID": auth, "pCompany_Code": "ABC", "pCustomer_Code": ""}
    )
    add_phase = soap_envelope(
        "AddPhase",
        {
            "Authorization_ID": auth,
            "Company_Code": "ABC",
            "Job_Number": "TEMPLATE",
            "Phase_Code": "100",
            "Cost_Type": "L",
            "Description": "Sprinkler",
            "Price_Method_Code": "T",
        },
    )

    def st_get(client: httpx.Client) -> httpx.Response:
        return client.get(f"{sb.st_url}/api/job/{job_id}", headers=st_headers)

    def sp_get(client: httpx.Client) -> httpx.Response:
        return client.post(f"{sb.spectrum_url}/ws/GetJob", content=get_job, headers=xml)

    def sp_put(client: httpx.Client) -> httpx.Response:
        return client.post(f"{sb.spectrum_url}/ws/AddPhase", content=add_phase, headers=xml)

    return [
        ("st GET /api/job/{id}", st_get),
        ("spectrum GetJob", sp_get),
        ("spectrum AddPhase", sp_put),
        ("spectrum ARMultiLine", _invoice_call(sb)),
    ]


def _thread_cpu_s(name: str) -> float:
    """CPU seconds (user + system) used so far by this process's thread called ``name``."""
    import psutil

    native = next(t.native_id for t in threading.enumerate() if t.name == name)
    times = next(t for t in psutil.Process().threads() if t.id == native)
    return float(times.user_time + times.system_time)


def _server_ms(injector: FaultInjector, since: float) -> list[float]:
    """What the simulator logged as its own time per successful call since ``since``."""
    return [r.duration_ms for r in injector.requests(since=since) if r.status == 200]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    parser.add_argument("--seconds", type=float, default=3.0, help="per scenario (3)")
    parser.add_argument("--clients", type=int, default=8, help="concurrent client threads (8)")
    parser.add_argument("--companies", type=int, default=5, help="seed size (5)")
    parser.add_argument(
        "--max-requests", type=int, default=50_000, help="request budget per scenario (50000)"
    )
    args = parser.parse_args(argv)
    seconds = min(max(args.seconds, 0.5), 60.0)  # bounded either way
    clients = min(max(args.clients, 1), 64)
    with tempfile.TemporaryDirectory(prefix="stsync-bench-") as tmp:
        spec = SeedSpec(companies=args.companies)
        with start_sandbox(Path(tmp), spec=spec, host="127.0.0.1") as sb:
            print(
                f"sandbox on {sb.st_url} and {sb.spectrum_url}; {clients} clients, "
                f"{seconds:g} s per scenario, seed companies={args.companies}"
            )
            for name, call in scenarios(sb):
                for _ in range(20):  # warm up connections and caches
                    with httpx.Client() as warm:
                        call(warm)
                st = name.startswith("st ")
                injector = sb.st_injector if st else sb.spectrum_injector
                thread = "sandbox-servicetrade" if st else "sandbox-spectrum"  # sandbox.run names
                since, cpu_before = time.time(), _thread_cpu_s(thread)
                result = hammer(
                    name, call, clients=clients, seconds=seconds, max_requests=args.max_requests
                )
                result.server_cpu_s = _thread_cpu_s(thread) - cpu_before
                result.server_ms = _server_ms(injector, since)
                print(result.line())


if __name__ == "__main__":
    main()
