#!/usr/bin/env python3
"""Creates infra/aws/sluice.yaml as a CloudFormation stack in the LOCAL moto server and prints,
as one JSON object on standard output: the stack's outputs, the resources moto created, and the
command, environment and secrets of the worker and coordinator task definitions as registered in
ECS (so a test can run the binaries exactly as a task would), and which of the template's
resources moto created and which it skipped.

    python3 infra/aws/moto_stack.py --stack-name NAME --bucket BUCKET --prefix dms/ \
        --db-host 127.0.0.1 --db-port 5432 --db-name sluice --db-user sluice

The database password is read from the environment variable SLUICE_TEST_DB_PASSWORD and stored
in moto's Secrets Manager, as it would be on AWS; it is never printed.

Refuses to run unless AWS_ENDPOINT_URL points at a loopback address: this is never for AWS.
moto creates the queues, table, roles, log group, security group, topic and ECS resources, and
skips (with a warning on stderr) the resource types it does not implement: the Application
Auto Scaling target and policies and the CloudWatch alarms. Those are checked by cfn-lint and by
infra/aws/test_template.py instead.
"""

import argparse
import json
import os
import sys
import time
import urllib.parse
import warnings

import boto3
from cfnlint.decode import decode

HERE = os.path.dirname(os.path.abspath(__file__))
TEMPLATE = os.path.join(HERE, "sluice.yaml")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--stack-name", required=True)
    ap.add_argument("--bucket", required=True)
    ap.add_argument("--prefix", default="")
    ap.add_argument("--db-host", required=True)
    ap.add_argument("--db-port", default="5432")
    ap.add_argument("--db-name", required=True)
    ap.add_argument("--db-user", required=True)
    ap.add_argument("--concurrency", default="2")
    ap.add_argument("--schemas", required=True, help="the stack's TargetSchemas")
    args = ap.parse_args()

    endpoint = os.environ.get("AWS_ENDPOINT_URL", "")
    host = urllib.parse.urlparse(endpoint).hostname
    if host not in ("127.0.0.1", "localhost", "::1"):
        print(f"AWS_ENDPOINT_URL must point at the local moto server, got {endpoint!r}", file=sys.stderr)
        return 2
    password = os.environ.get("SLUICE_TEST_DB_PASSWORD")
    if password is None:
        print("SLUICE_TEST_DB_PASSWORD is not set", file=sys.stderr)
        return 2

    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
    session = boto3.session.Session(region_name=region)
    cfn = session.client("cloudformation", endpoint_url=endpoint)
    ec2 = session.client("ec2", endpoint_url=endpoint)
    ecs = session.client("ecs", endpoint_url=endpoint)
    secrets = session.client("secretsmanager", endpoint_url=endpoint)

    # A network to name: moto's default VPC and its subnets.
    vpc = ec2.describe_vpcs(Filters=[{"Name": "isDefault", "Values": ["true"]}])["Vpcs"][0]["VpcId"]
    subnets = [
        s["SubnetId"]
        for s in ec2.describe_subnets(Filters=[{"Name": "vpc-id", "Values": [vpc]}])["Subnets"]
    ][:2]
    # The password as an RDS-managed secret holds it: JSON with a "password" key.
    secret_arn = secrets.create_secret(
        Name=f"{args.stack_name}-db",
        SecretString=json.dumps({"username": args.db_user, "password": password}),
    )["ARN"]

    params = {
        "SourceBucket": args.bucket,
        "SourcePrefix": args.prefix,
        "DatabaseHost": args.db_host,
        "DatabasePort": args.db_port,
        "DatabaseName": args.db_name,
        "DatabaseUser": args.db_user,
        # The local server's certificate is for localhost and the test connects to 127.0.0.1:
        # encrypted, not verified (the TLS tests verify it by name).
        "DatabaseSslMode": "require",
        "DatabaseSecretArn": secret_arn,
        "VpcId": vpc,
        "SubnetIds": ",".join(subnets),
        "ImageTag": "local-test",
        "WorkerConcurrency": args.concurrency,
        "TargetSchemas": args.schemas,
    }
    with open(TEMPLATE, encoding="utf-8") as f:
        body = f.read()
    cfn.create_stack(
        StackName=args.stack_name,
        TemplateBody=body,
        Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in params.items()],
        Capabilities=["CAPABILITY_IAM"],
    )
    deadline = time.monotonic() + 120
    while True:
        stack = cfn.describe_stacks(StackName=args.stack_name)["Stacks"][0]
        status = stack["StackStatus"]
        if status == "CREATE_COMPLETE":
            break
        if not status.endswith("_IN_PROGRESS") or time.monotonic() > deadline:
            events = cfn.describe_stack_events(StackName=args.stack_name)["StackEvents"]
            for e in events:
                print(
                    e.get("LogicalResourceId"),
                    e.get("ResourceStatus"),
                    e.get("ResourceStatusReason", ""),
                    file=sys.stderr,
                )
            print(f"stack {args.stack_name}: {status}", file=sys.stderr)
            return 1
        time.sleep(0.5)

    outputs = {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}
    created = {
        r["LogicalResourceId"]
        for r in cfn.list_stack_resources(StackName=args.stack_name)["StackResourceSummaries"]
    }
    template, errors = decode(TEMPLATE)
    if errors:
        print(errors, file=sys.stderr)
        return 1
    declared = {name: r["Type"] for name, r in template["Resources"].items()}

    def task(arn):
        td = ecs.describe_task_definition(taskDefinition=arn)["taskDefinition"]
        c = td["containerDefinitions"][0]
        return {
            "command": c.get("command", []),
            "environment": {e["name"]: e["value"] for e in c.get("environment", [])},
            "secrets": {s["name"]: s["valueFrom"] for s in c.get("secrets", [])},
            "health_check": c.get("healthCheck", {}).get("command", []),
            "stop_timeout": c.get("stopTimeout"),
        }

    print(
        json.dumps(
            {
                "outputs": outputs,
                "created": {n: t for n, t in declared.items() if n in created},
                "skipped": {n: t for n, t in declared.items() if n not in created},
                "secret_arn": secret_arn,
                "worker": task(outputs["WorkerTaskDefinitionArn"]),
                "coordinator": task(outputs["CoordinatorTaskDefinitionArn"]),
            },
            indent=2,
            sort_keys=True,
        )
    )
    return 0


if __name__ == "__main__":
    # moto reports each skipped resource type as a warning on the server side; nothing here.
    warnings.simplefilter("default")
    sys.exit(main())
