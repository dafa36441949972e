"""Benchmark of what every gRPC call pays on the server before and after the handler: the interceptor chain.

One trivial unary RPC (modelhub.testing.v1.EchoService/Echo: the handler builds one small response, no I/O)
served by two servers, each in its own process:
- baseline: a bare grpc.aio server, the generated registration, no interceptors;
- modelhub: `GrpcServer` with its whole chain (tracing with a TracerProvider as services configure it without a
  collector, RPC metrics, deadline check, error mapping, JWT authentication of a valid bearer token).
The client (this process) sends the same bearer metadata to both, at 1 and 16 calls in flight, and records
wall latency (p50/p99) and the server process's CPU seconds per call (utime+stime of all its threads, from
/proc). CPU per call is the figure to compare: other work on this shared machine moves latency far more than
it moves CPU time. The variants alternate, REPEATS times, and the load average is recorded around each.
Then, in this process and without a network, the CPU time of GrpcServer's interceptor chain alone per call
(run as grpc.aio runs it: each interceptor's `intercept_service`, then the wrapped handler, with a stand-in
servicer context), beside the bare handler: the chain's own cost, steady whatever the machine's load.
With `--before DIR` (a `libs/core` of earlier code, e.g. `git archive HEAD libs/core | tar -x -C /tmp/before`)
a third variant, modelhub_before, serves the same way with that code, alternating with the other two, and the
chain is measured for it too: before and after in one run, under the same load.
Writes bench/results/grpc.json.

    .venv/bin/python bench/grpc/run.py [--before /tmp/before/libs/core]
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from collections import namedtuple
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

import grpc
import grpc.aio

from modelhub.core.grpc.auth import current_principal, issue_token
from modelhub.testing.v1 import testing_pb2, testing_pb2_grpc

if TYPE_CHECKING:
    from modelhub.testing.v1.testing_pb2_grpc import EchoServiceAsyncStub  # in the stubs only

SERVICE = "modelhub.testing.v1.EchoService"
SECRET = "bench-secret-that-is-long-enough-for-hs256"
IN_FLIGHT = (1, 16)
WARM_UP_SECONDS = 1.0
MEASURE_SECONDS = 4.0
REPEATS = 3
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
RESULTS = Path(__file__).parent.parent / "results" / "grpc.json"


class Echo(testing_pb2_grpc.EchoServiceServicer):
    """The trivial handler: echo the message and the caller's id (empty without authentication)."""

    async def Echo(  # noqa: N802 - the generated name
        self, request: testing_pb2.EchoRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> testing_pb2.EchoResponse:
        principal = current_principal()
        return testing_pb2.EchoResponse(message=request.message, principal_id=principal.id if principal else "")


async def serve(variant: str) -> None:
    """Run one server variant until stdin closes; print its port first."""
    if variant == "baseline":
        server = grpc.aio.server()
        testing_pb2_grpc.add_EchoServiceServicer_to_server(Echo(), server)
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        stop = server.stop
    else:
        from modelhub.core.config import ServiceSettings, load_settings
        from modelhub.core.grpc.server import GrpcServer, ServiceRegistration
        from modelhub.core.telemetry.tracing import configure_tracing

        settings = load_settings(
            ServiceSettings,
            "MODELHUB_BENCH_GRPC_",
            service_name="bench-grpc",
            grpc_host="127.0.0.1",
            grpc_port=0,
            jwt_secret=SECRET,
        )
        configure_tracing(settings.service_name, settings.otlp_endpoint)
        modelhub = GrpcServer(
            settings, [ServiceRegistration(SERVICE, Echo(), testing_pb2_grpc.add_EchoServiceServicer_to_server)]
        )
        await modelhub.start()
        port = modelhub.port
        stop = modelhub.stop
    print(port, flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    await stop(0)


def process_cpu_seconds(pid: int) -> float:
    """utime + stime of every thread of process `pid`."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def own_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def load(stub: EchoServiceAsyncStub, metadata: Any, in_flight: int, seconds: float) -> list[float]:
    """Calls from `in_flight` concurrent callers for `seconds`; each call's latency in seconds."""
    latencies: list[float] = []
    request = testing_pb2.EchoRequest(message="hello")
    deadline = time.perf_counter() + seconds

    async def caller() -> None:
        while (started := time.perf_counter()) < deadline:
            await stub.Echo(request, metadata=metadata, timeout=10)
            latencies.append(time.perf_counter() - started)

    await asyncio.gather(*(caller() for _ in range(in_flight)))
    return latencies


def with_code(code: str | None) -> dict[str, str]:
    """The environment of a child process that runs the modelhub.core in `code` (None: the installed one)."""
    return os.environ | ({"PYTHONPATH": code} if code else {})


def start_server(variant: str, code: str | None) -> tuple[subprocess.Popen[bytes], int]:
    """A server process of `variant` running the modelhub.core in `code`, and the port it listens on."""
    server = subprocess.Popen(
        [sys.executable, __file__, "--serve", variant],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env=with_code(code),
    )
    assert server.stdout is not None
    return server, int(server.stdout.readline())


def stop_server(server: subprocess.Popen[bytes]) -> None:
    assert server.stdin is not None
    server.stdin.close()
    try:
        server.wait(30)
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()


async def measure(variant: str, code: str | None, token: str) -> dict[str, Any]:
    """One server process of `variant`, measured at each concurrency of IN_FLIGHT."""
    server, port = start_server(variant, code)
    try:
        metadata = (("authorization", f"Bearer {token}"),)
        phases: dict[str, Any] = {}
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            await asyncio.wait_for(channel.channel_ready(), 30)
            stub = testing_pb2_grpc.EchoServiceStub(channel)
            for in_flight in IN_FLIGHT:
                await load(stub, metadata, in_flight, WARM_UP_SECONDS)
                load_before = os.getloadavg()[0]
                server_cpu, client_cpu = process_cpu_seconds(server.pid), own_cpu_seconds()
                started = time.perf_counter()
                latencies = await load(stub, metadata, in_flight, MEASURE_SECONDS)
                elapsed = time.perf_counter() - started
                server_cpu = process_cpu_seconds(server.pid) - server_cpu
                client_cpu = own_cpu_seconds() - client_cpu
                calls = len(latencies)
                phases[str(in_flight)] = {
                    "calls": calls,
                    "calls_per_s": round(calls / elapsed),
                    "server_cpu_us_per_call": round(server_cpu / calls * 1e6, 1),
                    "client_cpu_us_per_call": round(client_cpu / calls * 1e6, 1),
                    "p50_ms": round(percentile(latencies, 0.50) * 1000, 3),
                    "p99_ms": round(percentile(latencies, 0.99) * 1000, 3),
                    "load_average_1m_before": round(load_before, 2),
                    "load_average_1m_after": round(os.getloadavg()[0], 2),
                }
        return phases
    finally:
        stop_server(server)


class StandInContext:
    """What the interceptors read of a grpc.aio servicer context, for the in-process chain measurement."""

    def __init__(self, metadata: tuple[Any, ...]) -> None:
        self._metadata = metadata

    def invocation_metadata(self) -> tuple[Any, ...]:
        return self._metadata

    def peer(self) -> str:
        return "ipv4:127.0.0.1:54321"

    def time_remaining(self) -> float:
        return 9.5

    def code(self) -> None:
        return None


async def chain_cpu_us(interceptors: list[Any], token: str, calls: int = 20_000) -> float:
    """CPU microseconds per call of `interceptors` around the Echo handler, run as grpc.aio runs them."""
    metadatum = namedtuple("metadatum", "key value")  # what grpc.aio hands out
    metadata = (metadatum("user-agent", "grpc-python-asyncio"), metadatum("authorization", f"Bearer {token}"))
    handler = grpc.unary_unary_rpc_method_handler(Echo().Echo)
    request = testing_pb2.EchoRequest(message="hello")

    async def run_interceptors(remaining: Any, details: Any) -> Any:  # grpc.aio's _run_interceptor
        interceptor = next(remaining, None)
        if interceptor is None:
            return handler
        return await interceptor.intercept_service(functools.partial(run_interceptors, remaining), details)

    async def call() -> None:
        details = SimpleNamespace(method=f"/{SERVICE}/Echo", invocation_metadata=metadata)
        wrapped: Any = await run_interceptors(iter(interceptors), details) if interceptors else handler
        await wrapped.unary_unary(request, StandInContext(metadata))

    for _ in range(2_000):
        await call()
    started = time.process_time()
    for _ in range(calls):
        await call()
    return (time.process_time() - started) / calls * 1e6


async def measure_chain(token: str) -> dict[str, Any]:
    """The interceptor chain's CPU per call, in this process: the bare handler vs GrpcServer's chain."""
    from modelhub.core.config import ServiceSettings, load_settings
    from modelhub.core.grpc.server import GrpcServer
    from modelhub.core.telemetry.tracing import configure_tracing

    configure_tracing("bench-grpc")  # as the modelhub server process does
    settings = load_settings(ServiceSettings, "MODELHUB_BENCH_GRPC_", service_name="bench-grpc", jwt_secret=SECRET)
    chain = GrpcServer(settings, [])._interceptors()
    variants: dict[str, list[Any]] = {
        "baseline": [],
        "modelhub": chain,
        "tracing_only": chain[:1],
        "without_tracing": chain[1:],
    }
    results = {
        name: min([await chain_cpu_us(interceptors, token) for _ in range(REPEATS)])
        for name, interceptors in variants.items()
    }
    return {name: round(value, 1) for name, value in results.items()}


def summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Per concurrency, the median over repeats of each figure."""
    keys = ("calls_per_s", "server_cpu_us_per_call", "client_cpu_us_per_call", "p50_ms", "p99_ms")
    return {
        flight: {key: statistics.median(run[flight][key] for run in runs) for key in keys}
        for flight in (str(n) for n in IN_FLIGHT)
    }


def chain_in_child(code: str | None) -> dict[str, Any]:
    """`measure_chain` in a child process running the modelhub.core in `code`."""
    out = subprocess.run(
        [sys.executable, __file__, "--chain"], env=with_code(code), check=True, capture_output=True, text=True
    )
    result: dict[str, Any] = json.loads(out.stdout)
    return result


async def main(before: str | None) -> None:
    token = issue_token("bench-user", ["user"], key=SECRET, expires_in=3600)
    # variant -> (server kind, code)
    variants: dict[str, tuple[str, str | None]] = {"baseline": ("baseline", None), "modelhub": ("modelhub", None)}
    if before:
        variants["modelhub_before"] = ("modelhub", before)
    runs: dict[str, list[dict[str, Any]]] = {variant: [] for variant in variants}
    for repeat in range(REPEATS):
        for variant in list(variants) if repeat % 2 == 0 else reversed(variants):
            phases = await measure(*variants[variant], token)
            runs[variant].append(phases)
            print(variant, json.dumps(phases), flush=True)
    medians = {variant: summary(runs[variant]) for variant in variants}
    chain = {"modelhub": chain_in_child(None)} | ({"modelhub_before": chain_in_child(before)} if before else {})
    overhead = {
        variant: {
            flight: {
                "server_cpu_us_per_call": round(
                    medians[variant][flight]["server_cpu_us_per_call"]
                    - medians["baseline"][flight]["server_cpu_us_per_call"],
                    1,
                ),
                "server_cpu_ratio": round(
                    medians[variant][flight]["server_cpu_us_per_call"]
                    / medians["baseline"][flight]["server_cpu_us_per_call"],
                    2,
                ),
            }
            for flight in (str(n) for n in IN_FLIGHT)
        }
        for variant in variants
        if variant != "baseline"
    }
    result = {
        "benchmark": "grpc",
        "machine": {
            "cpus": os.cpu_count() or 0,
            "python": sys.version.split()[0],
            "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(),
            "grpcio": grpc.__version__,
        },
        "settings": {
            "rpc": f"{SERVICE}/Echo, a 5-byte message, bearer metadata on every call (every variant)",
            "baseline": "bare grpc.aio server, generated registration, no interceptors",
            "modelhub": "GrpcServer: tracing (TracerProvider, no collector), metrics, deadline, error mapping, "
            "JWT auth (HS256, valid token, the same token on every call)",
            "modelhub_before": f"as modelhub, with the modelhub.core in {before}" if before else "not measured",
            "client": "this process, one grpc.aio channel; each server in its own process",
            "in_flight": list(IN_FLIGHT),
            "warm_up_seconds": WARM_UP_SECONDS,
            "measure_seconds": MEASURE_SECONDS,
            "repeats": REPEATS,
            "cpu": "server process utime+stime (all threads, /proc, 10 ms ticks) over the measured phase / calls",
            "interceptor_chain": "in this process, no network: process_time per call of the chain around the Echo "
            "handler (best of REPEATS runs of 20,000 calls); tracing_only = the OpenTelemetry interceptor, "
            "without_tracing = the rest (metrics, deadline, errors, auth)",
        },
        "median": medians,
        "over_baseline": overhead,
        "interceptor_chain_cpu_us_per_call": chain,
        "runs": runs,
        "notes": "The machine has 2 cores shared with other work (see the load averages): compare CPU per call, "
        "not latency, across runs.",
    }
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({"median": medians, "over_baseline": overhead, "chain": chain}, indent=2))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--before", help="a libs/core directory of earlier code to measure beside this one")
    parser.add_argument("--serve", choices=("baseline", "modelhub"), help=argparse.SUPPRESS)
    parser.add_argument("--chain", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        asyncio.run(serve(args.serve))
    elif args.chain:
        token = issue_token("bench-user", ["user"], key=SECRET, expires_in=3600)
        print(json.dumps(asyncio.run(measure_chain(token))))
    else:
        asyncio.run(main(args.before))
