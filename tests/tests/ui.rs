//! Compile tests of the macros: `ui/pass/*.rs` must build, `ui/fail/*.rs` must fail with the
//! committed `.stderr`. Regenerate those with `TRYBUILD=overwrite cargo test -p async-mvc-tests --test ui`.
//! The README's example, pasted into a `main`, must build without a warning.

use std::path::PathBuf;

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.pass("ui/pass/*.rs");
    t.pass(readme_example_in_main());
    t.compile_fail("ui/fail/*.rs");
}

/// The README's first Rust example wrapped in `fn main() { .. }` under `#![deny(warnings)]`,
/// written to the target directory.
fn readme_example_in_main() -> PathBuf {
    let readme = include_str!("../../README.md");
    let start = readme
        .find("```rust\n")
        .expect("the README has a Rust example")
        + "```rust\n".len();
    let end = start + readme[start..].find("\n```").expect("the example ends");
    let source = format!(
        "#![deny(warnings)]\n\nfn main() {{\n{}\n}}\n",
        &readme[start..end]
    );
    let path = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("readme_example_in_main.rs");
    std::fs::write(&path, source).expect("write the README example");
    path
}
