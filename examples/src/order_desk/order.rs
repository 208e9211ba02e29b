//! [`Order`] and the JSON bodies clients send.

use serde::{Deserialize, Serialize};

use super::ApiError;

/// The longest item name accepted, in characters.
pub const MAX_ITEM_CHARS: usize = 200;

/// The longest status accepted, in characters.
pub const MAX_STATUS_CHARS: usize = 64;

/// An order as the API renders it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Order {
    /// A short unique id: `"1"`, `"2"`, …
    pub id: String,
    /// What was ordered.
    pub item: String,
    /// The latest status: `placed`, then whatever events say (`packed`, `shipped`, `paid`, …).
    pub status: String,
    /// Starts at 1 and grows by one with every status change; long polls compare against it.
    pub version: u64,
}

/// The body of `POST /api/orders`.
#[derive(Debug, Clone, Deserialize)]
pub struct NewOrder {
    /// What to order; not blank, at most [`MAX_ITEM_CHARS`] characters.
    pub item: String,
}

/// The body of `POST /api/orders/{id}/events`.
#[derive(Debug, Clone, Deserialize)]
pub struct OrderEvent {
    /// The new status; not blank, at most [`MAX_STATUS_CHARS`] characters. It may repeat the
    /// current one: every event is a change.
    pub status: String,
}

impl NewOrder {
    /// The item, if it is acceptable; else `422`.
    pub fn validated(self) -> Result<String, ApiError> {
        validate("item", self.item, MAX_ITEM_CHARS)
    }
}

impl OrderEvent {
    /// The status, if it is acceptable; else `422`.
    pub fn validated(self) -> Result<String, ApiError> {
        validate("status", self.status, MAX_STATUS_CHARS)
    }
}

fn validate(field: &str, value: String, max_chars: usize) -> Result<String, ApiError> {
    if value.trim().is_empty() {
        return Err(ApiError::Invalid(format!("`{field}` must not be empty")));
    }
    if value.chars().count() > max_chars {
        return Err(ApiError::Invalid(format!(
            "`{field}` must be at most {max_chars} characters"
        )));
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_is_checked_for_blank_and_length() {
        let event = |status: &str| OrderEvent {
            status: status.to_owned(),
        };
        assert!(event("").validated().is_err());
        assert!(event("  ").validated().is_err());
        assert!(event(&"x".repeat(65)).validated().is_err());
        assert_eq!(
            event(&"é".repeat(64)).validated().ok(),
            Some("é".repeat(64))
        );
        assert_eq!(event("paid").validated().ok().as_deref(), Some("paid"));
    }
}
