"""moto_server answering one request at a time.

`scripts/servers` starts this next to the ordinary (threaded) moto_server for
the tests that rely on S3's conditional writes being atomic. moto 5.2 checks
If-Match / If-None-Match and then stores the object without a lock, so on its
threaded server two PutObjects conditional on the same ETag can both succeed
(scripts/moto-race.py shows it), which S3 never allows. Served one request at
a time (HTTP/1.0, one connection after another), the check and the write
cannot interleave. It is the same moto, only not threaded; long polls (SQS)
would block it, so the other tests keep the threaded server.

    moto-serial.py HOST PORT
"""

import os
import sys

from werkzeug.serving import run_simple

from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)


def main() -> None:
    host, port = sys.argv[1], int(sys.argv[2])
    os.environ.setdefault("MOTO_PORT", str(port))
    run_simple(
        host,
        port,
        DomainDispatcherApplication(create_backend_app),
        threaded=False,
        request_handler=MotoRequestHandler,
    )


if __name__ == "__main__":
    main()
