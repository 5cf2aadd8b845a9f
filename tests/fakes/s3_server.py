"""A loopback S3 stand-in (moto's server) for `argo-workflows create`, which uploads the code package to S3.

    with S3Server() as s3:                      # free port on 127.0.0.1, bucket created
        env = s3.metaflow_env()                 # METAFLOW_DEFAULT_DATASTORE=s3, SYSROOT, ENDPOINT, dummy AWS_*
        ...
        s3.keys()                               # what was uploaded

Standalone (used by scripts/argo_compile.sh): `python -m tests.fakes.s3_server [--port N] [--bucket B]` prints
`export ...` lines for a shell, then serves until killed (SIGTERM/SIGINT).

Needs the optional packages `moto`, `flask`, `flask-cors` (moto's server mode) and boto3 (already a dependency of
the snowflake extra). Nothing here talks to the network: the server binds 127.0.0.1 only.
"""
from __future__ import annotations

import logging
import os

DUMMY_AWS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


class S3Server:
    def __init__(self, bucket: str = "ingest-metaflow", prefix: str = "metaflow", port: int = 0):
        from moto.server import ThreadedMotoServer  # optional dependency: import only when used

        logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one access-log line per request otherwise
        self.bucket = bucket
        self.prefix = prefix
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
        self.url = ""

    def start(self) -> "S3Server":
        self._server.start()
        host, port = self._server.get_host_and_port()
        self.url = f"http://{host}:{port}"
        self._client().create_bucket(Bucket=self.bucket)
        return self

    def stop(self) -> None:
        self._server.stop()

    def __enter__(self) -> "S3Server":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def sysroot(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}"

    def metaflow_env(self) -> dict[str, str]:
        """What a platform team's Metaflow config provides for the S3 datastore, pointed at this server."""
        return {
            "METAFLOW_DEFAULT_DATASTORE": "s3",
            "METAFLOW_DATASTORE_SYSROOT_S3": self.sysroot,
            "METAFLOW_S3_ENDPOINT_URL": self.url,
            **DUMMY_AWS,
        }

    def _client(self):
        import boto3

        return boto3.client("s3", endpoint_url=self.url, region_name=DUMMY_AWS["AWS_DEFAULT_REGION"],
                            aws_access_key_id="testing", aws_secret_access_key="testing")

    def keys(self) -> list[str]:
        out: list[str] = []
        for page in self._client().get_paginator("list_objects_v2").paginate(Bucket=self.bucket):
            out.extend(o["Key"] for o in page.get("Contents", []))
        return out

    def get(self, key: str) -> bytes:
        return self._client().get_object(Bucket=self.bucket, Key=key)["Body"].read()


def main(argv: list[str] | None = None) -> None:
    import argparse
    import shlex
    import signal
    import sys
    import threading

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--bucket", default="ingest-metaflow")
    ap.add_argument("--prefix", default="metaflow")
    args = ap.parse_args(argv)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    with S3Server(args.bucket, args.prefix, args.port) as s3:
        for k, v in s3.metaflow_env().items():
            print(f"export {k}={shlex.quote(v)}")
        print(f"# pid {os.getpid()}", flush=True)
        sys.stdout.close()  # the shell reading our stdout sees EOF: the server is up
        done.wait()


if __name__ == "__main__":
    main()
