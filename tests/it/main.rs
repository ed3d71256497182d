//! Sluice's integration tests: one binary, real services (moto for S3, SQS and DynamoDB over
//! HTTP through the AWS SDK; a real PostgreSQL). Each test makes its own bucket, queue,
//! manifest table and schemas, so they run in parallel.

mod support;

mod attempts;
mod aws_stack;
mod awserrors;
mod badinput;
mod batch;
mod bombs;
mod check;
mod checkpoints;
mod direct;
mod drift;
mod events;
mod failures;
mod faults;
mod freshness;
mod fullload;
mod generations;
mod lakestate;
mod loader;
mod netfault;
mod numbers;
mod observe;
mod operate;
mod order;
mod outage;
mod parquet;
mod security;
mod shapes;
mod stage;
mod tail;
mod types;
mod waits;
