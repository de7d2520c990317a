//! Property tests: `parse(encode(x)) == x` for commands and responses.

#[test]
fn placeholder() {}
