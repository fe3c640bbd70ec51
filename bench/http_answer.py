"""The server's CPU per HTTP answer with the head held for its body (imserver.server_uvicorn._HeadHeld) and
without it, alternated: uvicorn on uvloop with the production protocol, an application that answers a 200-byte
JSON body, loaded by wrk (Debian's package) on kept-alive connections.

    python -m bench.http_answer --rounds 3 --seconds 8 --connections 20

Prints, per round and variant, the answers wrk got and the server process's CPU (user + system) per answer.
Nothing else should run meanwhile: the two cores are shared with wrk.
"""
import argparse
import os
import re
import signal
import socket
import subprocess
import sys
import time

BODY = b'{"status":"ok","padding":"' + b"x" * 170 + b'"}'


async def application(scope, receive, send):
    if scope["type"] != "http":
        return
    await receive()
    await send({"type": "http.response.start", "status": 200, "headers": [
        (b"content-type", b"application/json"), (b"content-length", str(len(BODY)).encode())]})
    await send({"type": "http.response.body", "body": BODY})


def serve(variant: str, port: int) -> None:
    """The server process: `held` as deployed, `apart` with the head written as soon as uvicorn has it."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "imserver.settings")
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    import django

    django.setup()
    import uvicorn

    from imserver import server_uvicorn

    if variant == "apart":
        class Apart(server_uvicorn._HeadHeld):
            __slots__ = ()

            def write(self, data) -> None:
                self.transport.write(data)

        server_uvicorn._HeadHeld = Apart
    config = uvicorn.Config(application, host="127.0.0.1", port=port, http=server_uvicorn.DrainingHttpProtocol,
                            loop="uvloop", lifespan="off", log_config=None, access_log=False)
    uvicorn.Server(config).run()


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def measure(variant: str, seconds: float, connections: int) -> tuple[int, float]:
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "bench.http_answer", "--serve", variant, "--port", str(port)])
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.1)
        before = cpu_seconds(server.pid)
        out = subprocess.run(["wrk", "-t1", f"-c{connections}", f"-d{seconds:g}", f"http://127.0.0.1:{port}/"],
                             capture_output=True, text=True, check=True).stdout
        used = cpu_seconds(server.pid) - before
    finally:
        server.send_signal(signal.SIGTERM)  # uvicorn raises it again once it has stopped: a quiet exit
        server.wait(10)
    answers = int(re.search(r"(\d+) requests in", out).group(1))
    return answers, used / answers * 1e6


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=8)
    parser.add_argument("--connections", type=int, default=20)
    parser.add_argument("--serve", choices=("held", "apart"), help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        serve(args.serve, args.port)
        return
    for n in range(1, args.rounds + 1):
        for variant in ("held", "apart"):
            answers, micros = measure(variant, args.seconds, args.connections)
            print(f"round {n} {variant:5}: {answers} answers, {micros:.1f} µs of server CPU each", flush=True)


if __name__ == "__main__":
    main()
