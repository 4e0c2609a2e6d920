//! Wrong handler signatures are compile errors that point at the mistake.

#[test]
fn wrong_signatures_are_reported_at_their_span() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/*.rs");
}
