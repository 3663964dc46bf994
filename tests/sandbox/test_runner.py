"""The sandbox runner: both simulators as real HTTP servers on loopback (run.py, __main__)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

import httpx
import pytest
from sqlalchemy import create_engine, func, select

from clients.spectrum import infolink_schema as il
from clients.spectrum.services import NS_TYPES, SERVICES
from sandbox import credentials
from sandbox.run import RunningSandbox, in_process, start_sandbox
from sandbox.seed import SeedSpec

REPO = Path(__file__).resolve().parents[2]
SPEC = SeedSpec(companies=2)


def soap_envelope(service: str, values: dict[str, str]) -> str:
    """Every element of the layout, in order, empty when unused (the sandbox requires them all)."""
    fields = "".join(
        f"<{name}>{escape(values.get(name, ''))}</{name}>"
        for name in ("Authorization_ID", "GUID", *SERVICES[service].field_names)
    )
    return (
        '<?xml version="1.0" encoding="UTF-8"?>'
        '<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body>'
        f'<{service} xmlns="{NS_TYPES}">{fields}</{service}></soap:Body></soap:Envelope>'
    )


def st_token(client: httpx.Client, st_url: str) -> str:
    r = client.post(
        f"{st_url}/api/oauth2/token",
        data={
            "grant_type": "client_credentials",
            "client_id": credentials.ST_CLIENT_ID,
            "client_secret": credentials.ST_CLIENT_SECRET,
        },
    )
    assert r.status_code == 200, r.text
    token = r.json()["access_token"]
    assert isinstance(token, str)
    return token


def get_job_template(client: httpx.Client, spectrum_url: str) -> httpx.Response:
    body = soap_envelope(
        "GetJob",
        {"Authorization_ID": credentials.SPECTRUM_AUTHORIZATION_ID, "pCompany_Code": "ABC"},
    )
    return client.post(
        f"{spectrum_url}/ws/GetJob",
        content=body,
        headers={"Content-Type": "text/xml; charset=utf-8", "SOAPAction": '""'},
    )


def refused(url: str) -> bool:
    try:
        httpx.get(url, timeout=2)
    except httpx.ConnectError:
        return True
    return False


@pytest.fixture
def sandbox(tmp_path: Path) -> Iterator[RunningSandbox]:
    sb = start_sandbox(tmp_path / "sb", spec=SPEC)
    try:
        yield sb
    finally:
        sb.stop()


def test_both_servers_answer_real_http(sandbox: RunningSandbox) -> None:
    assert sandbox.st_url.startswith("http://127.0.0.1:")
    assert sandbox.spectrum_url.startswith("http://127.0.0.1:")
    assert sandbox.st_url != sandbox.spectrum_url
    assert sandbox.world is not None
    job = sandbox.world.servicetrade["job"][0]
    with httpx.Client(timeout=10) as client:
        token = st_token(client, sandbox.st_url)
        r = client.get(
            f"{sandbox.st_url}/api/job/{job['id']}", headers={"Authorization": f"Bearer {token}"}
        )
        assert r.status_code == 200, r.text
        data = r.json()["data"]
        assert data["number"] == job["number"]
        assert data["uri"].startswith(sandbox.st_url)  # records point at this server
        unauth = client.get(f"{sandbox.st_url}/api/job/{job['id']}")
        assert unauth.status_code == 401
        soap = get_job_template(client, sandbox.spectrum_url)
        assert soap.status_code == 200, soap.text
        assert "<Job_Number>TEMPLATE</Job_Number>" in soap.text
        assert "<getJob>" in soap.text


def test_infolink_is_a_sqlite_file_other_readers_see(sandbox: RunningSandbox) -> None:
    assert sandbox.infolink_url == f"sqlite:///{sandbox.data_dir.resolve() / 'spectrum.sqlite'}"
    assert (sandbox.data_dir / "spectrum.sqlite").is_file()
    assert sandbox.world is not None
    engine = create_engine(sandbox.infolink_url)
    try:
        with engine.connect() as conn:
            n = conn.execute(select(func.count()).select_from(il.po_headers)).scalar_one()
            padded = conn.execute(select(il.po_headers.c.PO_Number)).scalars().first()
    finally:
        engine.dispose()
    assert n == len(sandbox.world.spectrum[il.po_headers.name])
    assert padded is not None
    assert padded.endswith(" ")


def test_fault_knobs_and_environment(sandbox: RunningSandbox) -> None:
    env = sandbox.environment()
    assert env["SERVICETRADE_BASE_URL"] == sandbox.st_url
    assert env["SPECTRUM_INFOLINK_URL"] == sandbox.infolink_url
    with httpx.Client(timeout=10) as client:
        r = client.post(f"{sandbox.spectrum_url}/_sandbox/script/GetJob", json=["error"])
        assert r.status_code == 200, r.text
        faulted = get_job_template(client, sandbox.spectrum_url)
        assert faulted.status_code == 500
        assert "Error executing Web Service" in faulted.text
        assert get_job_template(client, sandbox.spectrum_url).status_code == 200
        counters = client.get(f"{sandbox.spectrum_url}/_sandbox/counters").json()
        assert counters["calls"]["GetJob"] == 2
    assert sandbox.spectrum_injector.calls["GetJob"] == 2


def test_latency_knob_slows_every_call(tmp_path: Path) -> None:
    with start_sandbox(tmp_path, spec=SPEC, latency_ms=150) as sb, httpx.Client() as client:
        started = time.perf_counter()
        assert get_job_template(client, sb.spectrum_url).status_code == 200
        assert time.perf_counter() - started >= 0.15
        assert sb.st_injector.config.latency_ms == 150


def test_keep_alive_calls_do_not_wait_for_delayed_acks(sandbox: RunningSandbox) -> None:
    # Without TCP_NODELAY on accepted sockets each keep-alive response waits ~40 ms (Nagle
    # against the client's delayed ACK); stsync's clients keep connections alive.
    with httpx.Client(timeout=10) as client:
        for url in (sandbox.st_url, sandbox.spectrum_url):
            client.get(f"{url}/_sandbox/counters")
            took = []
            for _ in range(15):
                started = time.perf_counter()
                assert client.get(f"{url}/_sandbox/counters").status_code == 200
                took.append(time.perf_counter() - started)
            took.sort()
            assert took[len(took) // 2] < 0.030, f"{url}: median {took[len(took) // 2]:.3f} s"


def test_stop_closes_both_ports(tmp_path: Path) -> None:
    sb = start_sandbox(tmp_path, spec=SPEC)
    assert not refused(f"{sb.st_url}/_sandbox/counters")
    sb.stop()
    assert refused(f"{sb.st_url}/_sandbox/counters")
    assert refused(f"{sb.spectrum_url}/_sandbox/counters")
    sb.stop()  # idempotent


def test_busy_port_is_a_clear_error(sandbox: RunningSandbox, tmp_path: Path) -> None:
    port = int(sandbox.st_url.rsplit(":", 1)[1])
    with pytest.raises(OSError, match=f"127.0.0.1:{port}"):
        start_sandbox(tmp_path / "other", st_port=port, spec=SPEC)


def test_no_seed_keeps_the_spectrum_file(tmp_path: Path) -> None:
    with start_sandbox(tmp_path, spec=SPEC) as first:
        before = first.spectrum_db.count(il.phases.name)
        body = soap_envelope(
            "AddPhase",
            {
                "Authorization_ID": credentials.SPECTRUM_AUTHORIZATION_ID,
                "Company_Code": "ABC",
                "Job_Number": "TEMPLATE",
                "Phase_Code": "900",
                "Cost_Type": "L",
                "Description": "Added by test",
                "Price_Method_Code": "T",
            },
        )
        r = httpx.post(
            f"{first.spectrum_url}/ws/AddPhase", content=body, headers={"Content-Type": "text/xml"}
        )
        assert r.status_code == 200, r.text
        assert "<response>" not in r.text, r.text  # a Put success has no message rows
    with start_sandbox(tmp_path, spec=None) as second:
        assert second.world is None
        assert second.spectrum_db.count(il.phases.name) == before + 1
        assert second.st_state is not None
    with start_sandbox(tmp_path, spec=SPEC) as third:  # a spec reseeds from scratch
        assert third.spectrum_db.count(il.phases.name) == before


def test_in_process_apps() -> None:
    from fastapi.testclient import TestClient

    st_app, spectrum_app, world = in_process(SPEC)
    with TestClient(spectrum_app) as client:
        r = client.post(
            "/ws/GetJob",
            content=soap_envelope(
                "GetJob",
                {"Authorization_ID": credentials.SPECTRUM_AUTHORIZATION_ID, "pCompany_Code": "ABC"},
            ),
        )
        assert "<Job_Number>TEMPLATE</Job_Number>" in r.text
    with TestClient(st_app) as client:
        token = client.post(
            "/api/oauth2/token",
            data={
                "grant_type": "client_credentials",
                "client_id": credentials.ST_CLIENT_ID,
                "client_secret": credentials.ST_CLIENT_SECRET,
            },
        ).json()["access_token"]
        r = client.get(
            "/api/company",
            params={"isCustomer": "true"},
            headers={"Authorization": f"Bearer {token}"},
        )
        assert r.status_code == 200, r.text
        names = {c["name"] for c in r.json()["data"]["companies"]}
        assert {c["name"] for c in world.servicetrade["company"] if c["isCustomer"]} <= names


# --- python -m sandbox ---------------------------------------------------------------------------
def _read_urls(proc: subprocess.Popen[str], deadline: float) -> dict[str, str]:
    assert proc.stdout is not None
    urls: dict[str, str] = {}
    while time.monotonic() < deadline and "spectrum" not in urls:
        line = proc.stdout.readline()
        if not line:
            break
        if line.startswith("ServiceTrade sandbox"):
            urls["st"] = line.split()[-1].removesuffix("/api")
        if line.startswith("Spectrum sandbox"):
            urls["spectrum"] = line.split()[-1].removesuffix("/ws/<Service>")
    return urls


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_cli_up_serves_and_stops_on_signal(tmp_path: Path, sig: signal.Signals) -> None:
    st_port = _free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "sandbox",
            "up",
            "--st-port",
            str(st_port),
            "--spectrum-port",
            "0",
            "--data-dir",
            str(tmp_path / "data"),
            "--companies",
            "3",
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        urls = _read_urls(proc, time.monotonic() + 60)
        assert urls.get("st") == f"http://127.0.0.1:{st_port}", urls
        assert "spectrum" in urls, urls
        with httpx.Client(timeout=10) as client:
            token = st_token(client, urls["st"])
            r = client.get(
                f"{urls['st']}/api/company",
                params={"isCustomer": "true"},
                headers={"Authorization": f"Bearer {token}"},
            )
            assert len(r.json()["data"]["companies"]) == 3
            assert get_job_template(client, urls["spectrum"]).status_code == 200
        assert (tmp_path / "data" / "spectrum.sqlite").is_file()
        proc.send_signal(sig)
        out, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, out
    assert "sandbox stopped" in out
    assert refused(f"{urls['st']}/_sandbox/counters")


def test_cli_seed_dump(tmp_path: Path) -> None:
    out = tmp_path / "world.json"
    done = subprocess.run(
        [sys.executable, "-m", "sandbox", "seed", "--companies", "4", "--out", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    data: dict[str, Any] = json.loads(out.read_text())
    assert sum(1 for c in data["servicetrade"]["company"] if c["isCustomer"]) == 4
    assert data["summary"]["customers"] == 4
    assert "PO_PURCHASE_ORDER_HEADER_MC" in data["spectrum"]
    bad = subprocess.run(
        [sys.executable, "-m", "sandbox", "seed", "--companies", "0"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert bad.returncode != 0
    assert "companies" in bad.stderr
