//! AWS errors are transient or permanent by what they are: the real SDK clients of the
//! coordinator's listing, the manifest store and the worker's GET talk to a stub that answers
//! every request with one HTTP status and error body, as S3 (XML) or DynamoDB (JSON) would.
//! A 5xx or a throttling code nobody listed is transient; a 4xx with its code is permanent;
//! the worker's GET still tells a missing, overwritten or forbidden object apart.

use crate::support::TestBed;
use sluice_common::config::AwsClients;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// One answer for every request, until dropped.
struct Stub {
    url: String,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Stub {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Stub {
    async fn start(status: u16, content_type: &'static str, body: String) -> Stub {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            while let Ok((sock, _)) = listener.accept().await {
                tokio::spawn(answer(sock, status, content_type, body.clone()));
            }
        });
        Stub { url, task }
    }

    /// The test's clients, sending to the stub, without the SDK's own retries (one request per
    /// call, so the error is the stub's answer).
    fn clients(&self, tb: &TestBed) -> AwsClients {
        use aws_sdk_s3::config::retry::RetryConfig;
        let via = tb.aws_via(&self.url);
        AwsClients {
            s3: aws_sdk_s3::Client::from_conf(
                via.s3
                    .config()
                    .to_builder()
                    .retry_config(RetryConfig::disabled())
                    .build(),
            ),
            sqs: via.sqs,
            dynamodb: aws_sdk_dynamodb::Client::from_conf(
                via.dynamodb
                    .config()
                    .to_builder()
                    .retry_config(RetryConfig::disabled())
                    .build(),
            ),
        }
    }
}

/// Reads one request (head and body) and answers it.
async fn answer(mut sock: TcpStream, status: u16, content_type: &str, body: String) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
        match sock.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    while buf.len() < head_end + 4 + length {
        match sock.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    let response = format!(
        "HTTP/1.1 {status} Stub\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
         x-amzn-requestid: stub\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = sock.write_all(response.as_bytes()).await;
    let _ = sock.shutdown().await;
}

fn s3_error(code: &str) -> String {
    format!("<Error><Code>{code}</Code><Message>stub</Message></Error>")
}

fn dynamodb_error(code: &str) -> String {
    format!(r#"{{"__type":"com.amazonaws.dynamodb.v20120810#{code}","message":"stub"}}"#)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listing_and_manifest_errors_are_classified_by_status_and_kind_of_code() {
    let tb = TestBed::new("awserrors").await;
    // (status, S3 code, transient)
    let s3_cases = [
        (500, "SomethingNobodyListed", true),
        (502, "", true),
        (503, "SlowDown", true),
        (504, "GatewayTimeout", true),
        (429, "TooManyRequests", true),
        (400, "RequestThrottledException", true),
        (403, "AccessDenied", false),
        (400, "InvalidArgument", false),
        (404, "NoSuchBucket", false),
        (501, "NotImplemented", false),
    ];
    for (status, code, transient) in s3_cases {
        let body = if code.is_empty() {
            String::new()
        } else {
            s3_error(code)
        };
        let stub = Stub::start(status, "application/xml", body).await;
        let aws = stub.clients(&tb);
        let e =
            sluice_coordinator::listing::list_objects(&aws.s3, &tb.bucket, &tb.prefix, &tb.prefix)
                .await
                .expect_err("the stub answers an error");
        assert_eq!(e.is_transient(), transient, "S3 {status} {code}: {e}");
    }

    // (status, DynamoDB code, transient)
    let dynamodb_cases = [
        (500, "SomethingNobodyListed", true),
        (400, "ThrottlingException", true),
        (400, "ProvisionedThroughputExceededException", true),
        (400, "RequestLimitExceeded", true),
        (503, "ServiceUnavailableException", true),
        (400, "ValidationException", false),
        (400, "ResourceNotFoundException", false),
        (400, "AccessDeniedException", false),
    ];
    for (status, code, transient) in dynamodb_cases {
        let stub = Stub::start(status, "application/x-amz-json-1.0", dynamodb_error(code)).await;
        let aws = stub.clients(&tb);
        let store = sluice_common::store::ManifestStore::new(aws.dynamodb, tb.name.clone());
        let e = store
            .get("dms/a/b/LOAD00000001.csv", "etag")
            .await
            .expect_err("the stub answers an error");
        assert_eq!(e.is_transient(), transient, "DynamoDB {status} {code}: {e}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_worker_s_get_keeps_missing_superseded_and_denied_and_retries_server_errors() {
    let tb = TestBed::new("awserrors-get").await;
    tb.sql("CREATE TABLE {s}.t (id bigint PRIMARY KEY, v text)")
        .await;
    let key = tb.key("t/LOAD00000001.csv");
    tb.put(&key, "1,a\n").await;
    let msg = tb.message(&key).await;
    // (status, code, class, transient)
    let cases = [
        (500, "SomethingNobodyListed", "s3", true),
        (503, "SlowDown", "s3", true),
        (400, "RequestThrottledException", "s3", true),
        (400, "InvalidArgument", "s3", false),
        (404, "NoSuchKey", "object_missing", false),
        (412, "PreconditionFailed", "object_superseded", false),
        (403, "AccessDenied", "access_denied", false),
    ];
    for (status, code, class, transient) in cases {
        let stub = Stub::start(status, "application/xml", s3_error(code)).await;
        let mut ctx = tb.load_context("").await;
        ctx.s3 = stub.clients(&tb).s3;
        let e = sluice_worker::load::load_file(&ctx, &msg)
            .await
            .expect_err("the stub answers an error");
        assert_eq!(
            (e.class(), e.is_transient()),
            (class, transient),
            "GET {status} {code}: {e}"
        );
    }
    assert_eq!(tb.count("SELECT count(*) FROM {s}.t").await, 0);
}
