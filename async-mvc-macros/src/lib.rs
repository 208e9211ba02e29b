//! Procedural macros for async-mvc (placeholder until the macro crate lands).
use proc_macro::TokenStream;

macro_rules! passthrough {
    ($($name:ident),*) => {$(
        /// Route attribute (see `async-mvc`).
        #[proc_macro_attribute]
        pub fn $name(_attr: TokenStream, item: TokenStream) -> TokenStream { item }
    )*};
}
passthrough!(async_controller, get, post, put, delete, patch, request_mapping);
