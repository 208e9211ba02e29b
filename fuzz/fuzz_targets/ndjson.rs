//! Fuzzes the NDJSON framing of `ReactiveStream`: arbitrary JSON values, served as a stream
//! through an axum `Router` (`tower::ServiceExt::oneshot`, `Accept: application/x-ndjson`),
//! come back as one line per value, each the value's compact JSON followed by exactly one `\n`,
//! which parses back to the same value. The framing is private to the library, so the public
//! API is what is exercised; the runtime is a current-thread tokio runtime built once.

#![no_main]

use std::sync::OnceLock;

use arbitrary::Arbitrary;
use async_mvc::{AsyncConfig, AsyncManager, ReactiveStream, RouterExt};
use axum::{body::Body, routing::get, Router};
use http::{
    header::{ACCEPT, CONTENT_TYPE},
    Request, StatusCode,
};
use libfuzzer_sys::fuzz_target;
use serde_json::{Map, Number, Value};
use tower::ServiceExt;

/// serde_json parses at most 128 levels of nesting; deeper values are cut to `null`.
const MAX_DEPTH: usize = 64;

/// Values that can be built into a `serde_json::Value`.
#[derive(Arbitrary, Debug)]
enum ArbitraryValue {
    Null,
    Bool(bool),
    Int(i64),
    Unsigned(u64),
    Float(f64),
    String(String),
    Array(Vec<ArbitraryValue>),
    Object(Vec<(String, ArbitraryValue)>),
}

impl ArbitraryValue {
    fn build(&self, depth: usize) -> Value {
        if depth > MAX_DEPTH {
            return Value::Null;
        }
        match self {
            ArbitraryValue::Null => Value::Null,
            ArbitraryValue::Bool(b) => Value::Bool(*b),
            ArbitraryValue::Int(n) => Value::from(*n),
            ArbitraryValue::Unsigned(n) => Value::from(*n),
            // NaN and infinities have no JSON form: `null`.
            ArbitraryValue::Float(x) => Number::from_f64(*x).map_or(Value::Null, Value::Number),
            ArbitraryValue::String(s) => Value::String(s.clone()),
            ArbitraryValue::Array(items) => {
                Value::Array(items.iter().map(|item| item.build(depth + 1)).collect())
            }
            ArbitraryValue::Object(entries) => Value::Object(
                entries
                    .iter()
                    .map(|(key, value)| (key.clone(), value.build(depth + 1)))
                    .collect::<Map<String, Value>>(),
            ),
        }
    }
}

#[derive(Arbitrary, Debug)]
struct Input {
    first: ArbitraryValue,
    more: Vec<ArbitraryValue>,
}

fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a current-thread runtime")
    })
}

fn manager() -> &'static AsyncManager {
    static MANAGER: OnceLock<AsyncManager> = OnceLock::new();
    MANAGER.get_or_init(|| AsyncManager::new(AsyncConfig::new()))
}

fuzz_target!(|input: Input| {
    // One to four values: one line each.
    let values: Vec<Value> = std::iter::once(&input.first)
        .chain(input.more.iter().take(3))
        .map(|value| value.build(0))
        .collect();

    let app = {
        let values = values.clone();
        Router::new()
            .route(
                "/",
                get(move || {
                    let values = values.clone();
                    async move { ReactiveStream::new(futures::stream::iter(values)) }
                }),
            )
            .async_support(manager().clone())
    };
    let request = Request::get("/")
        .header(ACCEPT, "application/x-ndjson")
        .body(Body::empty())
        .expect("a valid request");

    let (status, content_type, body) = runtime().block_on(async {
        let response = app.oneshot(request).await.expect("infallible");
        let status = response.status();
        let content_type = response.headers().get(CONTENT_TYPE).cloned();
        let body = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .expect("the body is read");
        (status, content_type, body)
    });

    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        content_type.as_ref().map(|value| value.as_bytes()),
        Some(&b"application/x-ndjson"[..])
    );
    assert_eq!(manager().metrics().in_flight, 0, "the stream ended");

    // One line per value, each ending with its one `\n`.
    assert!(body.ends_with(b"\n"), "{body:?}");
    let lines: Vec<&[u8]> = body[..body.len() - 1].split(|&b| b == b'\n').collect();
    assert_eq!(lines.len(), values.len(), "{body:?}");
    for (line, value) in lines.iter().zip(&values) {
        assert_eq!(
            *line,
            serde_json::to_vec(value)
                .expect("a Value serializes")
                .as_slice(),
            "not compact JSON"
        );
        let back: Value = serde_json::from_slice(line).expect("each line is JSON");
        assert_eq!(&back, value);
    }
});
