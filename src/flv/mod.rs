//! FLV container: the file header and tags. HTTP-FLV viewers and recordings share it; a tag's
//! body is the RTMP message payload unchanged, so muxing is header bytes around shared data.

pub mod live;
pub mod recorder;
mod tag;
pub mod ws;

pub use tag::{encode_tag, file_header, tag_len, FILE_HEADER_LEN, TAG_HEADER_LEN};
