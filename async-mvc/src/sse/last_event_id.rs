//! [`LastEventId`]: the `Last-Event-ID` request header as an axum extractor.

use std::fmt;

use axum::extract::{FromRequestParts, OptionalFromRequestParts};
use http::{request::Parts, HeaderMap, StatusCode};

/// The `Last-Event-ID` request header: the id of the last event a client received, which a
/// browser's `EventSource` sends when it reconnects (the WHATWG standard's "last event ID"), so
/// the server can resume after that event.
///
/// An axum extractor. As `LastEventId` it requires the header (`400 Bad Request` when it is
/// missing); as `Option<LastEventId>` it gives `None` when the header is absent. Either way, a
/// value that is not valid UTF-8 is rejected with `400 Bad Request`. When the header is repeated,
/// the first one is used.
///
/// ```
/// use async_mvc::LastEventId;
/// use axum::{routing::get, Router};
///
/// async fn events(last: Option<LastEventId>) -> String {
///     match last {
///         Some(last) => format!("resuming after {}", last.as_str()),
///         None => "starting".to_owned(),
///     }
/// }
///
/// let app: Router = Router::new().route("/events", get(events));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct LastEventId(String);

impl LastEventId {
    /// The id, as the client sent it.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The id, as the client sent it.
    pub fn into_inner(self) -> String {
        self.0
    }
}

impl AsRef<str> for LastEventId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for LastEventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The header's name, in the lowercase form `http` uses.
const LAST_EVENT_ID: &str = "last-event-id";

/// The rejection of [`LastEventId`]: `400 Bad Request` with a plain-text reason.
type Rejection = (StatusCode, &'static str);

fn last_event_id(headers: &HeaderMap) -> Result<Option<LastEventId>, Rejection> {
    let Some(value) = headers.get(LAST_EVENT_ID) else {
        return Ok(None);
    };
    match std::str::from_utf8(value.as_bytes()) {
        Ok(id) => Ok(Some(LastEventId(id.to_owned()))),
        Err(_) => Err((
            StatusCode::BAD_REQUEST,
            "the `Last-Event-ID` header is not valid UTF-8",
        )),
    }
}

impl<S: Send + Sync> FromRequestParts<S> for LastEventId {
    type Rejection = Rejection;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        last_event_id(&parts.headers)?.ok_or((
            StatusCode::BAD_REQUEST,
            "the `Last-Event-ID` header is missing",
        ))
    }
}

impl<S: Send + Sync> OptionalFromRequestParts<S> for LastEventId {
    type Rejection = Rejection;

    async fn from_request_parts(
        parts: &mut Parts,
        _state: &S,
    ) -> Result<Option<Self>, Self::Rejection> {
        last_event_id(&parts.headers)
    }
}

#[cfg(test)]
mod tests {
    use axum::{body::Body, routing::get, Router};
    use http::{HeaderValue, Request};
    use tower::ServiceExt;

    use super::*;

    // --- LastEventId ---

    async fn call(app: Router, header: Option<HeaderValue>) -> (StatusCode, String) {
        let mut request = Request::builder().uri("/");
        if let Some(value) = header {
            request = request.header("Last-Event-ID", value);
        }
        let response = app
            .oneshot(request.body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = response.status();
        let body = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        (status, String::from_utf8(body.to_vec()).unwrap())
    }

    fn required() -> Router {
        Router::new().route("/", get(|id: LastEventId| async move { id.into_inner() }))
    }

    fn optional() -> Router {
        Router::new().route(
            "/",
            get(|id: Option<LastEventId>| async move {
                match id {
                    Some(id) => format!("some:{}", id.as_str()),
                    None => "none".to_owned(),
                }
            }),
        )
    }

    #[tokio::test]
    async fn last_event_id_present() {
        let value = HeaderValue::from_static("42");
        assert_eq!(
            call(required(), Some(value.clone())).await,
            (StatusCode::OK, "42".to_owned())
        );
        assert_eq!(
            call(optional(), Some(value)).await,
            (StatusCode::OK, "some:42".to_owned())
        );
        // Non-ASCII UTF-8, as a browser sends it.
        let value = HeaderValue::from_bytes("é😀".as_bytes()).unwrap();
        assert_eq!(
            call(required(), Some(value)).await,
            (StatusCode::OK, "é😀".to_owned())
        );
    }

    #[tokio::test]
    async fn last_event_id_absent() {
        let (status, body) = call(required(), None).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(body.contains("missing"), "{body}");
        assert_eq!(
            call(optional(), None).await,
            (StatusCode::OK, "none".to_owned())
        );
    }

    #[tokio::test]
    async fn last_event_id_not_utf8() {
        let value = HeaderValue::from_bytes(b"\xff\xfe").unwrap();
        for app in [required(), optional()] {
            let (status, body) = call(app, Some(value.clone())).await;
            assert_eq!(status, StatusCode::BAD_REQUEST);
            assert!(body.contains("not valid UTF-8"), "{body}");
        }
    }

    #[tokio::test]
    async fn last_event_id_from_parts() {
        let (mut parts, ()) = Request::builder()
            .header("last-event-id", "7")
            .body(())
            .unwrap()
            .into_parts();
        let id = <LastEventId as FromRequestParts<()>>::from_request_parts(&mut parts, &())
            .await
            .unwrap();
        assert_eq!(id.as_str(), "7");
        assert_eq!(id.as_ref(), "7");
        assert_eq!(id.to_string(), "7");
    }
}
