//! Compile-time behaviour of `#[cached]`: what must compile, and the exact
//! error for each misuse.

#[test]
fn ui() {
    let cases = trybuild::TestCases::new();
    cases.pass("tests/ui/pass/*.rs");
    cases.compile_fail("tests/ui/fail/*.rs");
}
