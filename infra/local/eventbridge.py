#!/usr/bin/env python3
"""Sends a bucket's S3 ObjectCreated events under a prefix to an SQS queue through EventBridge,
as infra/aws/sluice.yaml does on AWS: EventBridge switched on for the bucket (its other
notification settings kept), and a rule on the default bus, filtered to the bucket and the
prefix, whose target is the queue. Used by the local demo and by the integration tests
(tests/it/events.rs); idempotent.

    eventbridge.py BUCKET PREFIX QUEUE_URL RULE_NAME

The endpoint and credentials come from the environment (AWS_ENDPOINT_URL, ...), as for the AWS
CLI. On AWS the queue also needs a policy letting events.amazonaws.com send to it (the
template's EventsQueuePolicy); moto does not check it, so it is not set here.
"""
import json
import os
import sys

import boto3


def main(bucket, prefix, queue_url, rule):
    # boto3 reads AWS_DEFAULT_REGION; the Rust SDK and the local stack set AWS_REGION.
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    s3 = boto3.client("s3", region_name=region)
    sqs = boto3.client("sqs", region_name=region)
    events = boto3.client("events", region_name=region)
    config = s3.get_bucket_notification_configuration(Bucket=bucket)
    config.pop("ResponseMetadata", None)
    config["EventBridgeConfiguration"] = {}
    s3.put_bucket_notification_configuration(Bucket=bucket, NotificationConfiguration=config)
    arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])[
        "Attributes"
    ]["QueueArn"]
    pattern = {
        "source": ["aws.s3"],
        "detail-type": ["Object Created"],
        "detail": {"bucket": {"name": [bucket]}, "object": {"key": [{"prefix": prefix}]}},
    }
    events.put_rule(Name=rule, EventPattern=json.dumps(pattern), State="ENABLED")
    events.put_targets(Rule=rule, Targets=[{"Id": "events-queue", "Arn": arn}])
    print(arn)


if __name__ == "__main__":
    if len(sys.argv) != 5:
        sys.exit(__doc__)
    main(*sys.argv[1:])
