"""Static checks of infra/aws/sluice.yaml against the Rust sources.

The least-privilege check derives, from the code, the AWS calls each component makes (the SDK
operations in its sources, and those of the ManifestStore methods it calls, transitively) and
asserts that its role grants exactly their IAM actions: nothing missing (the service would
fail), nothing more. No statement grants "*" actions, and "*" resources only where AWS accepts
nothing else (ecr:GetAuthorizationToken). Also checked: the database password reaches only the
worker and only as a task-definition secret; the manifest table is what
ManifestStore::ensure_table creates; the timeouts agree; scaling and alarms are wired.

    python3 -m unittest discover -s infra/aws -p 'test_*.py'     (infra/local/test.sh runs it)

The template is read with cfn-lint's own loader (cfn-lint is installed by infra/local/stack.sh).
"""

import json
import os
import re
import unittest

from cfnlint.decode import decode

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
TEMPLATE = os.path.join(ROOT, "infra", "aws", "sluice.yaml")

# SDK operation (Rust builder method) -> the IAM action that authorises it.
SDK_ACTIONS = {
    "get_object": "s3:GetObject",
    "head_object": "s3:GetObject",
    "list_objects_v2": "s3:ListBucket",
    "put_object": "s3:PutObject",
    "receive_message": "sqs:ReceiveMessage",
    "delete_message": "sqs:DeleteMessage",
    "delete_message_batch": "sqs:DeleteMessage",
    "change_message_visibility": "sqs:ChangeMessageVisibility",
    "change_message_visibility_batch": "sqs:ChangeMessageVisibility",
    "send_message": "sqs:SendMessage",
    "send_message_batch": "sqs:SendMessage",
    "get_queue_attributes": "sqs:GetQueueAttributes",
    "get_queue_url": "sqs:GetQueueUrl",
    "create_queue": "sqs:CreateQueue",
    "get_item": "dynamodb:GetItem",
    "put_item": "dynamodb:PutItem",
    "update_item": "dynamodb:UpdateItem",
    "delete_item": "dynamodb:DeleteItem",
    "batch_get_item": "dynamodb:BatchGetItem",
    "batch_write_item": "dynamodb:BatchWriteItem",
    "query": "dynamodb:Query",
    "scan": "dynamodb:Scan",
    "create_table": "dynamodb:CreateTable",
    "describe_table": "dynamodb:DescribeTable",
    "put_metric_data": "cloudwatch:PutMetricData",
}
# An SDK call is a builder method with no arguments: `.get_object()`, possibly after a newline.
SDK_CALL = re.compile(r"\.\s*(" + "|".join(sorted(SDK_ACTIONS, key=len, reverse=True)) + r")\(\)")

# What the ECS agent needs for any task (image pull, awslogs); the worker's agent also fetches
# the database secret.
EXECUTION_ACTIONS = {
    "ecr:GetAuthorizationToken",
    "ecr:BatchCheckLayerAvailability",
    "ecr:GetDownloadUrlForLayer",
    "ecr:BatchGetImage",
    "logs:CreateLogStream",
    "logs:PutLogEvents",
}
# Actions AWS authorises only on Resource "*". PutMetricData is here for when the coordinator
# publishes its figures itself: then only with a condition on the Sluice namespace.
STAR_ONLY_ACTIONS = {"ecr:GetAuthorizationToken", "cloudwatch:PutMetricData"}


def read(*parts):
    with open(os.path.join(ROOT, *parts), encoding="utf-8") as f:
        return f.read()


def rust_sources(*parts):
    """Every `.rs` file under a folder, its subfolders included, by path relative to it."""
    d = os.path.join(ROOT, *parts)
    out = {}
    for dirpath, _, names in sorted(os.walk(d)):
        for n in sorted(names):
            if n.endswith(".rs"):
                rel = os.path.relpath(os.path.join(dirpath, n), d)
                out[rel] = read(*parts, rel)
    return out


def strip_tests(src):
    """The source without its `#[cfg(test)]` module (tests are not what the binary calls)."""
    i = src.find("#[cfg(test)]")
    return src if i < 0 else src[:i]


class Store:
    """ManifestStore's methods, each with the SDK operations and indexes it reaches."""

    def __init__(self):
        src = "\n".join(strip_tests(s) for s in rust_sources("common", "src", "store").values())
        self.index_names = dict(re.findall(r'pub const (\w+_INDEX): &str = "([^"]+)";', src))
        impl = "".join(
            src[m.start():src.index("\n}\n", m.start())]
            for m in re.finditer(r"impl ManifestStore \{", src)
        )
        parts = re.split(r"\n    (?:pub(?:\([a-z]+\))? )?(?:async )?fn (\w+)", impl)
        bodies = dict(zip(parts[1::2], parts[2::2]))
        self.methods = set(bodies)
        self.direct = {m: set(SDK_CALL.findall(b)) for m, b in bodies.items()}
        self.calls = {
            m: set(re.findall(r"self\s*\.\s*(\w+)\s*\(", b)) & self.methods
            for m, b in bodies.items()
        }
        self.indexes = {
            m: {self.index_names[i] for i in re.findall(r"\b(\w+_INDEX)\b", b) if i in self.index_names}
            for m, b in bodies.items()
        }
        self.ensure_table_body = bodies["ensure_table"]

    def closure(self, methods):
        seen, todo = set(), list(methods)
        while todo:
            m = todo.pop()
            if m not in seen:
                seen.add(m)
                todo.extend(self.calls[m])
        return seen

    def needs(self, methods):
        reached = self.closure(methods)
        ops = set().union(*(self.direct[m] for m in reached)) if reached else set()
        idx = set().union(*(self.indexes[m] for m in reached)) if reached else set()
        return ops, idx


def component_needs(store, sources):
    """IAM actions and manifest indexes that these Rust sources need."""
    ops, methods = set(), set()
    for src in sources.values():
        src = strip_tests(src)
        ops |= set(SDK_CALL.findall(src))
        methods |= set(re.findall(r"store\s*\.\s*(\w+)\s*\(", src)) & store.methods
    store_ops, indexes = store.needs(methods)
    return {SDK_ACTIONS[o] for o in ops | store_ops}, indexes, methods


def render(v):
    """A template value as text: Ref X -> ${X}, GetAtt A.B -> ${A.B}, Sub -> its string."""
    if isinstance(v, str):
        return v
    if isinstance(v, dict) and len(v) == 1:
        (k, x), = v.items()
        if k == "Ref":
            return "${%s}" % x
        if k == "Fn::GetAtt":
            return "${%s}" % (".".join(x) if isinstance(x, list) else x)
        if k == "Fn::Sub":
            return x if isinstance(x, str) else x[0]
    raise AssertionError(f"unexpected value in a policy: {json.dumps(v)}")


def as_list(v):
    return v if isinstance(v, list) else [v]


def is_no_value(v):
    return isinstance(v, dict) and v.get("Ref") == "AWS::NoValue"


def statements(role):
    """(statement, condition name or None) for every statement of a role's inline policies."""
    out = []
    for policy in role["Properties"].get("Policies", []):
        for s in policy["PolicyDocument"]["Statement"]:
            if isinstance(s, dict) and "Fn::If" in s:
                cond, yes, no = s["Fn::If"]
                for branch in (yes, no):
                    if not is_no_value(branch):
                        out.append((branch, cond))
            else:
                out.append((s, None))
    return out


class TemplateTestCase(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        template, errors = decode(TEMPLATE)
        assert not errors, errors
        cls.t = template
        cls.res = template["Resources"]
        cls.store = Store()

    def resources_of(self, kind):
        return {n: r for n, r in self.res.items() if r["Type"] == kind}

    def container(self, td):
        (c,) = self.res[td]["Properties"]["ContainerDefinitions"]
        return c

    def env(self, td):
        return {e["Name"]: e["Value"] for e in self.container(td).get("Environment", [])}


class LeastPrivilege(TemplateTestCase):
    def setUp(self):
        self.worker = component_needs(self.store, rust_sources("worker", "src"))
        # The coordinator's service runs `run`: pass after pass of scan::scan (which lists the
        # lake through listing.rs), and its metrics (observe.rs). `bootstrap` (table and
        # queues: made by the stack) and the operator's commands (ops/, own credentials) do
        # not run under its role.
        self.coordinator = component_needs(
            self.store,
            {n: read("coordinator", "src", n) for n in ("scan.rs", "listing.rs", "observe.rs", "events.rs")},
        )

    def test_code_analysis_finds_the_calls(self):
        # Guards the analysis itself: if these were empty, equality below would prove little.
        w_actions, _, w_methods = self.worker
        c_actions, c_indexes, c_methods = self.coordinator
        self.assertIn("s3:GetObject", w_actions)
        self.assertIn("transition", w_methods)
        self.assertIn("s3:ListBucket", c_actions)
        self.assertIn("sqs:SendMessage", c_actions)
        self.assertIn("sqs:GetQueueAttributes", c_actions)
        self.assertIn("list_open", c_methods)
        self.assertIn("count_open", c_methods)
        self.assertEqual(c_indexes, {"open-index", "table-index"})
        # Only store/ talks to AWS in common/: no call can hide elsewhere.
        for name, src in rust_sources("common", "src").items():
            if not name.startswith("store/"):
                self.assertFalse(SDK_CALL.findall(strip_tests(src)), name)

    def test_only_the_four_roles_and_inline_policies(self):
        self.assertEqual(
            set(self.resources_of("AWS::IAM::Role")),
            {"WorkerTaskRole", "CoordinatorTaskRole", "WorkerExecutionRole", "CoordinatorExecutionRole"},
        )
        for kind in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy", "AWS::IAM::User", "AWS::IAM::Group"):
            self.assertFalse(self.resources_of(kind), kind)
        for name, role in self.resources_of("AWS::IAM::Role").items():
            self.assertNotIn("ManagedPolicyArns", role["Properties"], name)
            self.assertNotIn("PermissionsBoundary", role["Properties"], name)

    def test_roles_are_assumed_by_ecs_tasks_of_this_account_only(self):
        for name, role in self.resources_of("AWS::IAM::Role").items():
            (s,) = role["Properties"]["AssumeRolePolicyDocument"]["Statement"]
            self.assertEqual(s["Effect"], "Allow", name)
            self.assertEqual(s["Principal"], {"Service": "ecs-tasks.amazonaws.com"}, name)
            self.assertEqual(s["Action"], "sts:AssumeRole", name)
            self.assertEqual(s["Condition"]["StringEquals"]["aws:SourceAccount"], {"Ref": "AWS::AccountId"})

    def test_task_definitions_use_their_own_roles(self):
        for td, who in (("WorkerTaskDefinition", "Worker"), ("CoordinatorTaskDefinition", "Coordinator")):
            p = self.res[td]["Properties"]
            self.assertEqual(p["TaskRoleArn"], {"Fn::GetAtt": [f"{who}TaskRole", "Arn"]})
            self.assertEqual(p["ExecutionRoleArn"], {"Fn::GetAtt": [f"{who}ExecutionRole", "Arn"]})

    def test_no_wildcard_actions_no_inverted_statements(self):
        for name, role in self.resources_of("AWS::IAM::Role").items():
            for s, _ in statements(role):
                self.assertEqual(s["Effect"], "Allow", name)
                for key in ("NotAction", "NotResource", "NotPrincipal"):
                    self.assertNotIn(key, s, name)
                for a in as_list(s["Action"]):
                    self.assertNotIn("*", a, f"{name}: wildcard action {a}")

    def test_star_resources_only_where_aws_accepts_nothing_else(self):
        for name, role in self.resources_of("AWS::IAM::Role").items():
            for s, _ in statements(role):
                resources = [render(r) for r in as_list(s["Resource"])]
                if "*" in resources:
                    self.assertEqual(resources, ["*"], name)
                    self.assertLessEqual(set(as_list(s["Action"])), STAR_ONLY_ACTIONS, name)
                    if "cloudwatch:PutMetricData" in as_list(s["Action"]):
                        self.assertEqual(
                            s["Condition"]["StringEquals"]["cloudwatch:namespace"], "Sluice", name
                        )
                    continue
                for r in resources:
                    if "*" in r:
                        # Wildcards only as "everything under this prefix/stream folder".
                        self.assertTrue(
                            r.endswith("${SourcePrefix}*")
                            or re.search(r":log-stream:(worker|coordinator)/\*$", r),
                            f"{name}: {r}",
                        )

    def granted(self, role_name):
        """{action: [(resources, condition-or-None, template condition or None)]}"""
        out = {}
        for s, cond in statements(self.res[role_name]):
            for a in as_list(s["Action"]):
                out.setdefault(a, []).append(
                    ([render(r) for r in as_list(s["Resource"])], s.get("Condition"), cond)
                )
        return out

    def unconditional(self, granted):
        return {a for a, uses in granted.items() if any(c is None for _, _, c in uses)}

    def test_worker_grants_exactly_what_the_worker_calls(self):
        needed, indexes, _ = self.worker
        granted = self.granted("WorkerTaskRole")
        self.assertEqual(self.unconditional(granted), needed)
        self.assertFalse(indexes, "the worker queries no index")
        bucket_objects = "arn:${AWS::Partition}:s3:::${SourceBucket}/${SourcePrefix}*"
        for action, uses in granted.items():
            for resources, condition, cond in uses:
                service = action.split(":")[0]
                if cond is not None:
                    self.assertEqual((action, cond), ("kms:Decrypt", "HasSourceKmsKey"))
                    self.assertEqual(resources, ["${SourceKmsKeyArn}"])
                    self.assertIn("kms:ViaService", condition["StringEquals"])
                elif service == "s3":
                    self.assertEqual(resources, [bucket_objects], action)
                elif service == "sqs":
                    self.assertEqual(resources, ["${WorkQueue.Arn}"], action)
                elif service == "dynamodb":
                    self.assertEqual(resources, ["${ManifestTable.Arn}"], action)
                else:
                    self.fail(f"unexpected action {action}")

    def test_coordinator_grants_exactly_what_its_run_command_calls(self):
        needed, indexes, _ = self.coordinator
        granted = self.granted("CoordinatorTaskRole")
        self.assertEqual(self.unconditional(granted), needed)
        self.assertEqual(set(granted), needed, "no conditional extras for the coordinator")
        table = "${ManifestTable.Arn}"
        for action, uses in granted.items():
            ((resources, condition, _),) = uses
            service = action.split(":")[0]
            if action == "s3:ListBucket":
                self.assertEqual(resources, ["arn:${AWS::Partition}:s3:::${SourceBucket}"])
                # Listing is confined to the prefix (when there is one).
                cond = condition["Fn::If"]
                self.assertEqual(cond[0], "HasSourcePrefix")
                self.assertEqual(render(cond[1]["StringLike"]["s3:prefix"]), "${SourcePrefix}*")
                self.assertTrue(is_no_value(cond[2]))
            elif action == "sqs:GetQueueAttributes":
                # Queue depth for the metrics: the work queue and its dead-letter queue.
                self.assertEqual(resources, ["${WorkQueue.Arn}", "${DeadLetterQueue.Arn}"])
            elif action in ("sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility"):
                # S3 events, read from their own queue (events.rs); never the work queue.
                self.assertEqual(resources, ["${EventsQueue.Arn}"], action)
            elif service == "sqs":
                self.assertEqual(resources, ["${WorkQueue.Arn}"], action)
            elif action == "dynamodb:Query":
                self.assertEqual(set(resources), {table} | {f"{table}/index/{i}" for i in indexes})
            elif service == "dynamodb":
                self.assertEqual(resources[0], table, action)
                self.assertTrue(all(r == table or r.startswith(f"{table}/index/") for r in resources))
            else:
                self.fail(f"unexpected action {action}")

    def test_execution_roles_pull_log_and_only_the_worker_reads_the_secret(self):
        for who, stream in (("Worker", "worker"), ("Coordinator", "coordinator")):
            granted = self.granted(f"{who}ExecutionRole")
            expected = EXECUTION_ACTIONS | ({"secretsmanager:GetSecretValue"} if who == "Worker" else set())
            self.assertEqual(self.unconditional(granted), expected, who)
            for action, uses in granted.items():
                for resources, condition, cond in uses:
                    if cond is not None:
                        self.assertEqual((who, action, cond), ("Worker", "kms:Decrypt", "HasSecretKmsKey"))
                        self.assertEqual(resources, ["${DatabaseSecretKmsKeyArn}"])
                        self.assertIn("kms:ViaService", condition["StringEquals"])
                    elif action == "ecr:GetAuthorizationToken":
                        self.assertEqual(resources, ["*"])
                    elif action.startswith("ecr:"):
                        self.assertEqual(len(resources), 1)
                        self.assertTrue(resources[0].endswith(":repository/${ImageRepository}"), resources)
                    elif action.startswith("logs:"):
                        self.assertEqual(len(resources), 2)
                        self.assertTrue(resources[0].endswith(":log-group:${LogGroup}"))
                        self.assertTrue(resources[1].endswith(f":log-group:${{LogGroup}}:log-stream:{stream}/*"))
                    elif action == "secretsmanager:GetSecretValue":
                        self.assertEqual(resources, ["${DatabaseSecretArn}"])
                    else:
                        self.fail(f"{who}: unexpected action {action}")


class Events(TemplateTestCase):
    def test_the_rule_sends_the_lakes_created_objects_to_the_events_queue(self):
        p = self.res["EventsRule"]["Properties"]
        pattern = p["EventPattern"]
        self.assertEqual(pattern["source"], ["aws.s3"])
        self.assertEqual(pattern["detail-type"], ["Object Created"])
        cond, with_prefix, without = pattern["detail"]["Fn::If"]
        self.assertEqual(cond, "HasSourcePrefix")
        for detail in (with_prefix, without):
            self.assertEqual(detail["bucket"]["name"], [{"Ref": "SourceBucket"}])
        self.assertEqual(with_prefix["object"]["key"], [{"prefix": {"Ref": "SourcePrefix"}}])
        (target,) = p["Targets"]
        self.assertEqual(target["Arn"], {"Fn::GetAtt": ["EventsQueue", "Arn"]})

    def test_only_the_rule_may_send_to_the_events_queue(self):
        p = self.res["EventsQueuePolicy"]["Properties"]
        self.assertEqual(p["Queues"], [{"Ref": "EventsQueue"}])
        (s,) = p["PolicyDocument"]["Statement"]
        self.assertEqual((s["Effect"], s["Action"]), ("Allow", "sqs:SendMessage"))
        self.assertEqual(s["Principal"], {"Service": "events.amazonaws.com"})
        self.assertEqual(s["Resource"], {"Fn::GetAtt": ["EventsQueue", "Arn"]})
        self.assertEqual(s["Condition"]["ArnEquals"]["aws:SourceArn"], {"Fn::GetAtt": ["EventsRule", "Arn"]})

    def test_unparseable_events_reach_their_own_dead_letter_queue(self):
        q = self.res["EventsQueue"]["Properties"]
        self.assertEqual(q["RedrivePolicy"]["deadLetterTargetArn"], {"Fn::GetAtt": ["EventsDeadLetterQueue", "Arn"]})
        dlq = self.res["EventsDeadLetterQueue"]["Properties"]
        self.assertGreater(dlq["MessageRetentionPeriod"], q["MessageRetentionPeriod"])
        self.assertEqual(self.env("CoordinatorTaskDefinition")["SLUICE_EVENTS_QUEUE_URL"], {"Ref": "EventsQueue"})


class Secrets(TemplateTestCase):
    def test_password_reaches_the_worker_only_as_a_secret(self):
        worker = self.container("WorkerTaskDefinition")
        (secret,) = worker["Secrets"]
        self.assertEqual(secret["Name"], "SLUICE_DB_PASSWORD")
        value_from = secret["ValueFrom"]["Fn::If"]
        self.assertEqual(render(value_from[1]), "${DatabaseSecretArn}:${DatabaseSecretJsonKey}::")
        self.assertEqual(render(value_from[2]), "${DatabaseSecretArn}")
        for td in ("WorkerTaskDefinition", "CoordinatorTaskDefinition"):
            for name, value in self.env(td).items():
                self.assertNotRegex(name, "PASSWORD|SECRET|DATABASE_URL", td)
                self.assertNotIn("DatabaseSecret", json.dumps(value), td)
        self.assertNotIn("Secrets", self.container("CoordinatorTaskDefinition"))
        self.assertFalse(
            [n for n in self.env("CoordinatorTaskDefinition") if n.startswith("SLUICE_DB_")],
            "the coordinator needs no database",
        )

    def test_no_parameter_carries_a_password(self):
        for name in self.t["Parameters"]:
            self.assertNotRegex(name.lower(), "password")


class ManifestTable(TemplateTestCase):
    def test_table_is_what_ensure_table_creates(self):
        body = self.store.ensure_table_body
        names = self.store.index_names
        attrs = set(re.findall(r'\.attribute_definitions\(attr\("(\w+)"\)\)', body))
        keys = re.findall(r'\.key_schema\(key\("(\w+)", KeyType::(Hash|Range)\)\)', body)
        gsis = re.findall(r'\.global_secondary_indexes\(gsi\((\w+), "(\w+)", "(\w+)"\)\)', body)
        self.assertTrue(attrs and keys and gsis, "ensure_table no longer reads as expected")
        self.assertIn("ProjectionType::All", body)
        self.assertIn("BillingMode::PayPerRequest", body)

        p = self.res["ManifestTable"]["Properties"]
        self.assertEqual(p["BillingMode"], "PAY_PER_REQUEST")
        self.assertEqual({(a["AttributeName"], a["AttributeType"]) for a in p["AttributeDefinitions"]},
                         {(a, "S") for a in attrs})
        self.assertEqual([(k["AttributeName"], k["KeyType"]) for k in p["KeySchema"]],
                         [(n, t.upper()) for n, t in keys])
        self.assertEqual(
            {
                g["IndexName"]: ([(k["AttributeName"], k["KeyType"]) for k in g["KeySchema"]],
                                 g["Projection"]["ProjectionType"])
                for g in p["GlobalSecondaryIndexes"]
            },
            {names[c]: ([(h, "HASH"), (r, "RANGE")], "ALL") for c, h, r in gsis},
        )
        self.assertEqual(self.res["ManifestTable"]["DeletionPolicy"], "Retain")


class Timing(TemplateTestCase):
    def test_stop_timeout_drain_and_visibility_agree(self):
        worker = self.container("WorkerTaskDefinition")
        env = self.env("WorkerTaskDefinition")
        drain, visibility = int(env["SLUICE_DRAIN_TIMEOUT"]), int(env["SLUICE_VISIBILITY_TIMEOUT"])
        # SIGKILL comes StopTimeout after SIGTERM: the drain, then the abandon step (rollback,
        # visibility reset, manifest write), must end before it. 120 s is Fargate's maximum.
        self.assertLessEqual(worker["StopTimeout"], 120)
        self.assertGreaterEqual(worker["StopTimeout"] - drain, 15)
        queue = self.res["WorkQueue"]["Properties"]
        self.assertEqual(queue["VisibilityTimeout"], visibility)
        self.assertEqual(queue["ReceiveMessageWaitTimeSeconds"], 20)

    def test_dead_letter_queue_outlives_the_queue_and_counts_above_attempts(self):
        queue = self.res["WorkQueue"]["Properties"]
        dlq = self.res["DeadLetterQueue"]["Properties"]
        self.assertGreater(dlq["MessageRetentionPeriod"], queue["MessageRetentionPeriod"])
        redrive = queue["RedrivePolicy"]
        self.assertEqual(redrive["deadLetterTargetArn"], {"Fn::GetAtt": ["DeadLetterQueue", "Arn"]})
        self.assertEqual(redrive["maxReceiveCount"], {"Ref": "MaxReceiveCount"})
        params = self.t["Parameters"]
        self.assertGreater(params["MaxReceiveCount"]["Default"], params["MaxAttempts"]["Default"])
        for td in ("WorkerTaskDefinition", "CoordinatorTaskDefinition"):
            self.assertEqual(self.env(td)["SLUICE_MAX_ATTEMPTS"], {"Ref": "MaxAttempts"})


class Scaling(TemplateTestCase):
    def test_workers_scale_on_backlog_per_task_from_and_to_zero(self):
        target = self.res["WorkerScalableTarget"]["Properties"]
        self.assertEqual(target["MinCapacity"], {"Ref": "WorkerMinCount"})
        self.assertEqual(target["MaxCapacity"], {"Ref": "WorkerMaxCount"})
        self.assertEqual(self.t["Parameters"]["WorkerMinCount"]["Default"], 0)
        self.assertNotIn("DesiredCount", self.res["WorkerService"]["Properties"])

        tt = self.res["WorkerBacklogPerTaskPolicy"]["Properties"]["TargetTrackingScalingPolicyConfiguration"]
        self.assertEqual(tt["TargetValue"], {"Ref": "WorkerConcurrency"})
        self.assertEqual(self.env("WorkerTaskDefinition")["SLUICE_CONCURRENCY"], {"Ref": "WorkerConcurrency"})
        metrics = {m["Id"]: m for m in tt["CustomizedMetricSpecification"]["Metrics"]}
        self.assertEqual(metrics["visible"]["MetricStat"]["Metric"]["MetricName"], "ApproximateNumberOfMessagesVisible")
        self.assertEqual(metrics["inflight"]["MetricStat"]["Metric"]["MetricName"], "ApproximateNumberOfMessagesNotVisible")
        self.assertEqual(metrics["running"]["MetricStat"]["Metric"]["MetricName"], "RunningTaskCount")
        (returned,) = [m for m in metrics.values() if m["ReturnData"]]
        self.assertIn("(visible + inflight) / FILL(running, 0)", returned["Expression"])
        self.assertGreater(tt["ScaleInCooldown"], tt["ScaleOutCooldown"])
        settings = self.res["Cluster"]["Properties"]["ClusterSettings"]
        self.assertIn({"Name": "containerInsights", "Value": "enabled"}, settings)

        wake = self.res["WorkerWakeAlarm"]["Properties"]
        self.assertEqual(wake["MetricName"], "ApproximateNumberOfMessagesVisible")
        self.assertEqual(wake["AlarmActions"], [{"Ref": "WorkerWakePolicy"}])
        step = self.res["WorkerWakePolicy"]["Properties"]["StepScalingPolicyConfiguration"]
        self.assertEqual(step["StepAdjustments"], [{"MetricIntervalLowerBound": 0, "ScalingAdjustment": 1}])

    def test_operator_alarms(self):
        alarms = {
            (a["Properties"].get("Namespace"), a["Properties"]["MetricName"],
             tuple((d["Name"], render(d["Value"])) for d in a["Properties"]["Dimensions"])): n
            for n, a in self.resources_of("AWS::CloudWatch::Alarm").items()
            if a["Properties"].get("AlarmActions") == [{"Ref": "AlarmTopic"}]
        }
        table = ("ManifestTable", "${ManifestTable}")
        self.assertEqual(
            set(alarms),
            {
                ("AWS/SQS", "ApproximateNumberOfMessagesVisible",
                 (("QueueName", "${DeadLetterQueue.QueueName}"),)),
                ("AWS/SQS", "ApproximateNumberOfMessagesVisible",
                 (("QueueName", "${EventsDeadLetterQueue.QueueName}"),)),
                ("AWS/SQS", "ApproximateAgeOfOldestMessage", (("QueueName", "${WorkQueue.QueueName}"),)),
                ("Sluice", "CoordinatorManifestFiles", (table, ("Status", "failed"))),
                ("Sluice", "CoordinatorManifestFiles", (table, ("Status", "dead"))),
                ("Sluice", "CoordinatorTables", (table, ("State", "silent"))),
            },
        )


def defined_metrics():
    """CloudWatch name -> dimension names, from the definitions in common/src/metrics/catalog.rs."""
    src = strip_tests(read("common", "src", "metrics", "catalog.rs"))
    camel = lambda s: "".join(w[:1].upper() + w[1:] for w in s.split("_"))
    out = {}
    pattern = r'Def \{\s*name: "(sluice_\w+)",\s*kind: \w+,\s*unit: Unit::\w+,\s*labels: &\[([^\]]*)\]'
    for name, labels in re.findall(pattern, src):
        out[camel(name[len("sluice_"):])] = ["ManifestTable"] + [camel(l) for l in re.findall(r'"(\w+)"', labels)]
    return out


class Observability(TemplateTestCase):
    def test_alarms_on_sluice_metrics_use_emitted_names_and_dimensions(self):
        metrics = defined_metrics()
        self.assertIn("WorkerFilesLoaded", metrics)
        self.assertEqual(metrics["CoordinatorManifestFiles"], ["ManifestTable", "Status"])
        sluice = [a["Properties"] for a in self.resources_of("AWS::CloudWatch::Alarm").values()
                  if a["Properties"].get("Namespace") == "Sluice"]
        self.assertEqual(len(sluice), 3)
        for p in sluice:
            self.assertIn(p["MetricName"], metrics)
            # CloudWatch matches a metric on its full dimension set: exactly the emitted one.
            self.assertEqual([d["Name"] for d in p["Dimensions"]], metrics[p["MetricName"]])

    def test_dashboard_shows_only_metrics_the_code_emits(self):
        metrics = defined_metrics()
        (dash,) = self.resources_of("AWS::CloudWatch::Dashboard").values()
        body = json.loads(render(dash["Properties"]["DashboardBody"]))
        seen = set()
        for w in body["widgets"]:
            for m in w["properties"]["metrics"]:
                if isinstance(m[0], dict):
                    # SEARCH('{Sluice,Dim,...} MetricName="X" ...'): the dimension set exactly.
                    expr = m[0]["expression"]
                    found = re.findall(r"SEARCH\('\{(\w+),([\w,]+)\} MetricName=\"(\w+)\"", expr)
                    self.assertEqual(len(found), 1, expr)
                    ((ns, dims, name),) = found
                    dims = dims.split(",")
                else:
                    ns, name = m[0], m[1]
                    rest = [x for x in m[2:] if not isinstance(x, dict)]
                    dims = rest[0::2]
                if ns != "Sluice":
                    self.assertEqual((ns, name), ("ECS/ContainerInsights", "RunningTaskCount"))
                    continue
                self.assertIn(name, metrics, f"{name} is not in the metric catalogue")
                self.assertEqual(dims, metrics[name], name)
                seen.add(name)
        # What the issue asks the on-call to see.
        for name in ("CoordinatorQueueMessages", "CoordinatorOldestUnloadedSeconds",
                     "WorkerFilesLoaded", "WorkerFilesFailed", "CoordinatorSinceLandedSeconds",
                     "CoordinatorSinceLoadedSeconds", "CoordinatorTables", "Retries",
                     "WorkerFilesInFlight"):
            self.assertIn(name, seen)

    def test_both_tasks_write_metrics_to_their_log_stream(self):
        for td in ("WorkerTaskDefinition", "CoordinatorTaskDefinition"):
            self.assertEqual(self.env(td)["SLUICE_METRICS_EMF"], "true", td)
            self.assertNotIn("SLUICE_METRICS_ADDR", self.env(td), "no scraper on ECS")
        self.assertEqual(self.env("CoordinatorTaskDefinition")["SLUICE_DLQ_URL"], {"Ref": "DeadLetterQueue"})

    def test_worker_health_check_asks_its_own_endpoint(self):
        worker = self.container("WorkerTaskDefinition")
        addr = self.env("WorkerTaskDefinition")["SLUICE_HEALTH_ADDR"]
        self.assertTrue(addr.startswith("127.0.0.1:"), "loopback only: no inbound rule needed")
        check = worker["HealthCheck"]
        self.assertEqual(check["Command"], ["CMD", "/usr/local/bin/sluice-worker", "health", "--addr", addr])
        # The image copies the binary there (no shell, no curl in it).
        self.assertIn("/usr/local/bin/", read("Dockerfile"))
        self.assertLess(check["Timeout"], check["Interval"])
        self.assertGreaterEqual(check["Retries"], 3)
        self.assertNotIn("HealthCheck", self.container("CoordinatorTaskDefinition"))

    def test_worker_has_writable_scratch_space_at_the_image_s_tmpdir(self):
        # Parquet files are spooled to TMPDIR; the root filesystem is read-only.
        worker = self.container("WorkerTaskDefinition")
        self.assertTrue(worker["ReadonlyRootFilesystem"])
        tmpdir = re.search(r"^ENV TMPDIR=(\S+)$", read("Dockerfile"), re.M).group(1)
        self.assertIn(f'VOLUME ["{tmpdir}"]', read("Dockerfile"))
        mounts = {m["ContainerPath"]: m for m in worker["MountPoints"]}
        self.assertIn(tmpdir, mounts)
        self.assertFalse(mounts[tmpdir]["ReadOnly"])
        volumes = self.res["WorkerTaskDefinition"]["Properties"]["Volumes"]
        self.assertIn(mounts[tmpdir]["SourceVolume"], [v["Name"] for v in volumes])


class TargetSchemas(TemplateTestCase):
    def test_the_allowed_schemas_are_a_required_parameter_that_reaches_the_worker(self):
        param = self.t["Parameters"]["TargetSchemas"]
        self.assertNotIn("Default", param, "a deployment says where the lake may write")
        pattern = re.compile(param["AllowedPattern"])
        for good in ("warehouse", "warehouse,staging", "Mixed Case,x"):
            self.assertRegex(good, pattern)
        for bad in ("", ",", "a,", ",a", "a,,b"):
            self.assertNotRegex(bad, pattern)
        self.assertEqual(self.env("WorkerTaskDefinition")["SLUICE_SCHEMAS"], {"Ref": "TargetSchemas"})
        self.assertNotIn("SLUICE_SCHEMAS", self.env("CoordinatorTaskDefinition"))
        # The worker reads exactly this variable for its --schemas list.
        self.assertIn('env = "SLUICE_SCHEMAS"', read("worker", "src", "config.rs"))


if __name__ == "__main__":
    unittest.main()
