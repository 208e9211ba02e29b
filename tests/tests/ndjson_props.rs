//! Properties of NDJSON framing: a [`ReactiveStream`] served as `application/x-ndjson` writes
//! exactly one line per item, each the item's JSON, whatever the items hold.
#![allow(clippy::unwrap_used)] // test helpers: a poisoned lock is a failed test

use async_mvc::{AsyncConfig, ReactiveStream, RouterExt};
use async_mvc_tests::{client, TestServer};
use axum::{
    body::{to_bytes, Body},
    http::{header::ACCEPT, header::CONTENT_TYPE, Request, StatusCode},
    routing::{get, post},
    Json, Router,
};
use proptest::{prelude::*, test_runner::TestRunner};
use serde_json::{Map, Number, Value};
use tower::ServiceExt;

/// Strings that stress JSON escaping and line framing: line breaks of every kind, the
/// JavaScript line separators, quotes, backslashes, controls, and any unicode.
fn tricky_string() -> impl Strategy<Value = String> {
    prop_oneof![
        "[\n\r\u{2028}\u{2029}\"\\\\\t\u{0}\u{1f}\u{7f}a-zé€😀 {}\\[\\]:,]{0,16}",
        any::<String>(),
    ]
}

/// Numbers that survive a JSON round trip exactly: any integer, and floats with a short
/// binary fraction (a float's decimal text is serde_json's business, not framing's).
fn number() -> impl Strategy<Value = Value> {
    prop_oneof![
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        (-1_000_000i64..1_000_000, 0u32..8).prop_map(|(mantissa, shift)| {
            let float = mantissa as f64 / f64::from(1u32 << shift);
            Value::Number(Number::from_f64(float).unwrap())
        }),
    ]
}

/// Any JSON value, nested a few levels.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        number(),
        tricky_string().prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((tricky_string(), inner), 0..6)
                .prop_map(|entries| Value::Object(entries.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

fn items() -> impl Strategy<Value = Vec<Value>> {
    prop::collection::vec(json_value(), 0..12)
}

/// Checks that `body` is `items` as NDJSON: one `\n`-terminated line per item, each the
/// item's JSON, in order, nothing more.
fn assert_ndjson(body: &[u8], items: &[Value]) -> Result<(), TestCaseError> {
    if items.is_empty() {
        prop_assert!(body.is_empty(), "an empty stream has an empty body");
        return Ok(());
    }
    prop_assert_eq!(body.last(), Some(&b'\n'), "the last line ends with \\n");
    let lines: Vec<&[u8]> = body[..body.len() - 1].split(|&b| b == b'\n').collect();
    prop_assert_eq!(lines.len(), items.len(), "one line per item");
    for (line, item) in lines.iter().zip(items) {
        let expected = serde_json::to_vec(item).unwrap();
        prop_assert_eq!(*line, expected.as_slice());
        let parsed: Value = serde_json::from_slice(line).unwrap();
        prop_assert_eq!(&parsed, item);
    }
    Ok(())
}

/// The NDJSON body `values` are served as, through the router (no sockets).
async fn ndjson_oneshot(values: Vec<Value>, accept: &'static str) -> (String, Vec<u8>) {
    let app = Router::new()
        .route(
            "/items",
            get(move || {
                let values = values.clone();
                async move { ReactiveStream::new(futures::stream::iter(values)) }
            }),
        )
        .async_support(AsyncConfig::new());
    let request = Request::get("/items")
        .header(ACCEPT, accept)
        .body(Body::empty())
        .unwrap();
    let response = app.oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let content_type = response.headers()[CONTENT_TYPE]
        .to_str()
        .unwrap()
        .to_owned();
    let body = to_bytes(response.into_body(), usize::MAX).await.unwrap();
    (content_type, body.to_vec())
}

#[test]
fn every_item_is_one_line_through_the_router() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut runner = TestRunner::new(ProptestConfig::with_cases(256));
    runner
        .run(&items(), |items| {
            let (content_type, body) =
                runtime.block_on(ndjson_oneshot(items.clone(), "application/x-ndjson"));
            prop_assert_eq!(content_type, "application/x-ndjson");
            assert_ndjson(&body, &items)
        })
        .unwrap();
}

#[test]
fn jsonl_frames_the_same() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut runner = TestRunner::new(ProptestConfig::with_cases(32));
    runner
        .run(&items(), |items| {
            let (content_type, body) =
                runtime.block_on(ndjson_oneshot(items.clone(), "application/jsonl"));
            prop_assert_eq!(content_type, "application/jsonl");
            assert_ndjson(&body, &items)
        })
        .unwrap();
}

#[tokio::test]
async fn an_empty_stream_is_an_empty_body() {
    let (content_type, body) = ndjson_oneshot(Vec::new(), "application/x-ndjson").await;
    assert_eq!(content_type, "application/x-ndjson");
    assert!(body.is_empty(), "{body:?}");
}

/// The same property over real HTTP (hyper's chunked encoding in between): the server streams
/// back, as NDJSON, the items of a JSON array it is sent. One server for all cases.
#[test]
fn every_item_is_one_line_over_http() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let app = Router::new()
        .route(
            "/echo",
            post(|Json(items): Json<Vec<Value>>| async move {
                ReactiveStream::new(futures::stream::iter(items))
            }),
        )
        .async_support(AsyncConfig::new());
    let server = runtime.block_on(TestServer::start(app));
    let http = client();
    let mut runner = TestRunner::new(ProptestConfig::with_cases(64));
    runner
        .run(&items(), |items| {
            let (content_type, body) = runtime.block_on(async {
                let response = http
                    .post(server.url("/echo"))
                    .header(ACCEPT, "application/x-ndjson")
                    .json(&items)
                    .send()
                    .await
                    .unwrap();
                assert_eq!(response.status(), StatusCode::OK);
                let content_type = response.headers()[CONTENT_TYPE]
                    .to_str()
                    .unwrap()
                    .to_owned();
                (content_type, response.bytes().await.unwrap().to_vec())
            });
            prop_assert_eq!(content_type, "application/x-ndjson");
            assert_ndjson(&body, &items)
        })
        .unwrap();
    runtime.block_on(async move { drop(server) });
}
