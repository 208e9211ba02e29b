//! Compile tests of the macros: `ui/pass/*.rs` must build, `ui/fail/*.rs` must fail with the
//! committed `.stderr`. Regenerate those with `TRYBUILD=overwrite cargo test -p async-mvc-tests --test ui`.

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.pass("ui/pass/*.rs");
    t.compile_fail("ui/fail/*.rs");
}
