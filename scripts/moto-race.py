"""Shows whether an S3 endpoint's conditional writes are atomic.

Each round stores an object, then eight threads PutObject at once, all with
If-Match on the ETag just stored; S3 lets exactly one of them succeed. Prints
in how many rounds more than one succeeded. Run with moto's venv, e.g.

    $USHER_CACHE/venv-moto/bin/python scripts/moto-race.py $USHER_TEST_AWS
    $USHER_CACHE/venv-moto/bin/python scripts/moto-race.py $USHER_TEST_AWS_SERIAL

(2026-12-07, moto 5.2.6: 2 rounds in 200 on the threaded moto_server, 0 on
scripts/moto-serial.py.)
"""

import sys
import threading
import uuid

import boto3

ROUNDS, WRITERS = 200, 8


def main() -> None:
    s3 = boto3.client(
        "s3",
        endpoint_url=sys.argv[1],
        region_name="us-east-1",
        aws_access_key_id="test",
        aws_secret_access_key="test",
    )
    bucket = f"moto-race-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=bucket)
    doubled = 0
    for n in range(ROUNDS):
        etag = s3.put_object(Bucket=bucket, Key="k", Body=b"base %d" % n)["ETag"]
        won = []
        barrier = threading.Barrier(WRITERS)

        def write(i: int) -> None:
            barrier.wait()
            try:
                s3.put_object(Bucket=bucket, Key="k", Body=b"%d %d" % (n, i), IfMatch=etag)
                won.append(i)
            except s3.exceptions.ClientError:
                pass

        threads = [threading.Thread(target=write, args=(i,)) for i in range(WRITERS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if len(won) > 1:
            doubled += 1
    print(f"rounds where more than one If-Match write succeeded: {doubled} of {ROUNDS}")


if __name__ == "__main__":
    main()
