"""Runs one state machine on moto's Step Functions (execute_state_machine
on, Lambda without Docker: a task's answer is its payload, as moto's
lambda-simple backend echoes it) and prints the execution as JSON:
{"status", "output", "error", "cause", "entered": [state names in order]}.

Input (stdin, JSON): {"endpoint", "name", "definition" (text, with the
${domain/worker} resources already replaced by Lambda ARNs), "functions"
(the function names), "input" (text)}. Run with the python of moto's venv
(boto3 is installed there with moto[server])."""

import io
import json
import sys
import time
import urllib.request
import zipfile

import boto3

ACCOUNT = "123456789012"
REGION = "us-east-1"


def main():
    req = json.load(sys.stdin)
    endpoint = req["endpoint"]
    config = json.dumps(
        {"stepfunctions": {"execute_state_machine": True}, "lambda": {"use_docker": False}}
    ).encode()
    urllib.request.urlopen(
        urllib.request.Request(
            endpoint + "/moto-api/config",
            data=config,
            headers={"Content-Type": "application/json"},
            method="POST",
        )
    ).read()
    kw = dict(
        endpoint_url=endpoint,
        region_name=REGION,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    iam = boto3.client("iam", **kw)
    try:
        role = iam.create_role(
            RoleName="usher-sfn-differential",
            AssumeRolePolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": []}),
        )["Role"]["Arn"]
    except iam.exceptions.EntityAlreadyExistsException:
        role = iam.get_role(RoleName="usher-sfn-differential")["Role"]["Arn"]
    lam = boto3.client("lambda", **kw)
    code = io.BytesIO()
    with zipfile.ZipFile(code, "w") as z:
        z.writestr("index.py", "def handler(event, context):\n    return event\n")
    for fn in req["functions"]:
        try:
            lam.create_function(
                FunctionName=fn,
                Runtime="python3.12",
                Role=role,
                Handler="index.handler",
                Code={"ZipFile": code.getvalue()},
            )
        except lam.exceptions.ResourceConflictException:
            pass
    sfn = boto3.client("stepfunctions", **kw)
    arn = sfn.create_state_machine(
        name=req["name"], definition=req["definition"], roleArn=role
    )["stateMachineArn"]
    execution = sfn.start_execution(stateMachineArn=arn, input=req["input"])["executionArn"]
    deadline = time.time() + 60
    while True:
        d = sfn.describe_execution(executionArn=execution)
        if d["status"] != "RUNNING" or time.time() > deadline:
            break
        time.sleep(0.1)
    events = []
    token = None
    while True:
        page = sfn.get_execution_history(
            executionArn=execution, maxResults=1000, **({"nextToken": token} if token else {})
        )
        events.extend(page["events"])
        token = page.get("nextToken")
        if not token:
            break
    entered = [
        e["stateEnteredEventDetails"]["name"]
        for e in events
        if e["type"].endswith("StateEntered")
    ]
    output = d.get("output")
    if output is not None:
        try:
            output = json.loads(output)
        except json.JSONDecodeError:
            pass
    out = {
        "status": d["status"],
        "output": output,
        "error": d.get("error"),
        "cause": d.get("cause"),
        "entered": entered,
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
