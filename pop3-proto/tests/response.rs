//! Known-answer tests for the response codec.

use pop3_proto::line::Limits;
use pop3_proto::response::{Expected, Parsed, Response, StatReply};

#[test]
fn stat_reply() {
    let r = Response::parse(Expected::Stat, b"+OK 2 320\r\n", &Limits::strict()).unwrap();
    assert_eq!(
        r,
        Parsed::Complete {
            value: Response::Stat(StatReply {
                count: 2,
                size: 320
            }),
            consumed: 11
        }
    );
}
