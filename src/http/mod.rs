//! Sans-I/O HTTP/1.1: bounded request head parsing and responses.

pub mod request;
pub mod response;

pub use request::{parse_head, parse_query, HttpError, Limits, RequestHead, Version};
pub use response::{envelope, envelope_of, go_escape, reason_phrase, Response};
