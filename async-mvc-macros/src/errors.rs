//! The error collector every stage of the macros reports to, and the messages more than one
//! stage gives. The lowest layer of the crate: it imports nothing from it.

/// Collects errors, to report all of them at once.
#[derive(Debug, Default)]
pub(crate) struct Errors(Option<syn::Error>);

impl Errors {
    /// Adds an error.
    pub(crate) fn push(&mut self, error: syn::Error) {
        match &mut self.0 {
            Some(errors) => errors.combine(error),
            None => self.0 = Some(error),
        }
    }

    /// All errors, combined; `None` when there are none.
    pub(crate) fn finish(self) -> Option<syn::Error> {
        self.0
    }

    /// `Err` with all errors, if any.
    pub(crate) fn into_result(self) -> syn::Result<()> {
        match self.0 {
            Some(error) => Err(error),
            None => Ok(()),
        }
    }
}

/// The message of a route attribute that is not on a method of an `#[async_controller]` impl.
pub(crate) const MISPLACED_ROUTE: &str =
    "route attributes go on methods of an `#[async_controller]` impl";

/// The message of a route attribute on a controller method that the controller did not see,
/// because it was imported under another name.
pub(crate) fn renamed_route(name: &str) -> String {
    format!(
        "this is async-mvc's `#[{name}]` under another name, which `#[async_controller]` can't \
         recognise: it finds route attributes by their names (`get`, `post`, `put`, `delete`, \
         `patch`, `request_mapping`, bare or as `async_mvc::{name}`); write `#[{name}(..)]` or \
         `#[async_mvc::{name}(..)]` instead of the renamed import"
    )
}
