//! FLV file header and tag encoding.
